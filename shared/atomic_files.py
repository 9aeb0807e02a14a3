"""Durable file writes: a reader, or a crash at any instant, sees the old content or the new, never a mix."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["fsync_directory", "write_atomically"]


def fsync_directory(path: Path) -> None:
    """Make the entries of directory `path` (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, *, make_parents: bool = False) -> None:
    """Write `data` to `path` atomically and durably.

    The bytes go to a uniquely named temporary file in the same directory, which is fsynced, renamed over
    `path`, and the directory fsynced, so the rename itself survives a power loss. Two writers never share
    a temporary file.

    Args:
        path: the file to replace or create.
        data: its new content.
        make_parents: create missing parent directories first.

    Raises:
        OSError: the write, fsync or rename failed; `path` then still holds its old content.
    """
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_directory(path.parent)
