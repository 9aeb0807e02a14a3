"""The versions probation rolled back, kept in `deployment.state_file` across restarts.

A retained deployment order for such a version is seen again after every reconnect; the receiver
ignores it, so a model that flooded alerts is not installed again. File format:
`{"rolled_back": {"<target>": [<version>, ...]}}`, replaced atomically and durably on every change.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from shared.atomic_files import write_atomically

__all__ = ["RollbackState"]

logger = logging.getLogger(__name__)


class RollbackState:
    """The rolled-back versions per target, read from `path` once and written through on every change.

    Args:
        path: the state file (an unreadable one is logged and treated as empty).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._rolled_back = self._read()

    def is_rolled_back(self, target: str, version: int) -> bool:
        """Whether probation rolled `version` of `target` back (now or before a restart)."""
        return version in self._rolled_back.get(target, ())

    def add(self, target: str, version: int) -> None:
        """Remember a rolled-back version and write the file (a failed write is logged)."""
        self._rolled_back.setdefault(target, set()).add(version)
        data = json.dumps({"rolled_back": {t: sorted(v) for t, v in self._rolled_back.items()}}).encode()
        try:
            write_atomically(self.path, data, make_parents=True)
        except OSError as exc:
            logger.error("cannot write deployment state %s: %s", self.path, exc)

    def _read(self) -> dict[str, set[int]]:
        try:
            raw = json.loads(self.path.read_bytes())
            return {str(t): {int(v) for v in versions} for t, versions in raw["rolled_back"].items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.error("deployment state %s is unreadable (%s); starting without it", self.path, exc)
            return {}
