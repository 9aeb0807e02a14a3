"""The edge model store: versioned models on local disk, verified before use, hot-swapped by reference.

Layout under `store_dir`::

    <target>/v<version>/model.onnx      the artifact (int8 ONNX), its sha256 in the manifest
    <target>/v<version>/manifest.json   the `ModelManifest` as JSON
    <target>/active                     JSON {"history": [..., previous, active]}: survives a restart

A model is installed only after its checks pass (`sha256`, `manifest`, `features`, `load`, `io`, `golden`);
each failure raises `ModelVerificationError(check, detail)` and leaves the store and the active model as
they were. Files are written to a temporary directory, fsynced, then renamed into place, so a crash never
leaves a half-installed version. Activation replaces one reference in a dict (atomic under the GIL): a
scoring thread that called `active(target)` keeps a complete, immutable model for its batch, and the next
call sees the new one. One lock, owned by the store, serialises installs and activations.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge_agent.scoring import OnnxScorer
from shared.atomic_files import fsync_directory, write_atomically
from shared.errors import ContractError, ModelVerificationError
from shared.messages import ModelManifest, decode_manifest, encode
from shared.topics import IDENT_PATTERN

if TYPE_CHECKING:  # edge_agent.settings imports the deployment receiver, which imports this module
    from edge_agent.settings import ModelSettings

__all__ = [
    "ARTIFACT_FILE",
    "MANIFEST_FILE",
    "LoadedModel",
    "ModelStore",
    "load_model",
    "verify_model",
    "write_model_dir",
]

logger = logging.getLogger(__name__)

ARTIFACT_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
_ACTIVE_FILE = "active"
_HISTORY_LIMIT = 16
_VERSION_DIR = re.compile(r"^v([1-9][0-9]{0,9})$")
_TARGET = re.compile(IDENT_PATTERN)
GOLDEN_RTOL = 1e-2
"""Golden scores must match to 1 % of max(|expected|, threshold): int8 kernels differ slightly by CPU."""


@dataclass(frozen=True)
class LoadedModel:
    """A verified model ready to score: immutable, so it can be shared between threads."""

    manifest: ModelManifest
    scorer: OnnxScorer
    path: Path


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_golden(manifest: ModelManifest, scorer: OnnxScorer) -> None:
    if not manifest.golden:
        raise ModelVerificationError("golden", "the manifest has no golden input/output pairs")
    width = len(manifest.feature_names)
    if any(len(pair.features) != width for pair in manifest.golden):
        raise ModelVerificationError("golden", f"a golden input does not have {width} features")
    inputs = np.array([pair.features for pair in manifest.golden], dtype=np.float32)
    expected = np.array([pair.score for pair in manifest.golden], dtype=np.float64)
    got = scorer.score(inputs).astype(np.float64)
    tolerance = GOLDEN_RTOL * np.maximum(np.abs(expected), abs(manifest.threshold)) + 1e-6
    bad = np.flatnonzero(~(np.abs(got - expected) <= tolerance))
    if len(bad):
        i = int(bad[0])
        raise ModelVerificationError(
            "golden",
            f"{len(bad)} of {len(expected)} golden pairs differ, first #{i}: expected {expected[i]:.6g}, "
            f"got {got[i]:.6g}",
        )


def verify_model(
    manifest: ModelManifest,
    artifact: bytes,
    *,
    intra_op_threads: int = 1,
    expected_feature_names: Sequence[str] | None = None,
    path: Path = Path(),
) -> LoadedModel:
    """Run every check on a model and return it loaded, ready to score.

    Checks, in order: `sha256` (artifact digest), `features` (names unique, and equal to
    `expected_feature_names` when given), `load`/`io` (onnxruntime loads it; the input and output names and
    the input width match the manifest), `golden` (every golden input reproduces its score).

    Raises:
        ModelVerificationError: naming the first check that failed.
    """
    digest = _sha256(artifact)
    if digest != manifest.artifact_sha256:
        raise ModelVerificationError(
            "sha256", f"artifact sha256 {digest} is not the manifest's {manifest.artifact_sha256}"
        )
    names = list(manifest.feature_names)
    if len(set(names)) != len(names):
        raise ModelVerificationError("features", "the manifest names a feature twice")
    if expected_feature_names is not None and names != list(expected_feature_names):
        missing = sorted(set(expected_feature_names) - set(names))[:5]
        extra = sorted(set(names) - set(expected_feature_names))[:5]
        raise ModelVerificationError(
            "features",
            f"the model's {len(names)} features are not the pipeline's {len(expected_feature_names)} "
            f"(missing {missing}, unexpected {extra}, or another order)",
        )
    scorer = OnnxScorer(artifact, manifest, intra_op_threads=intra_op_threads)
    _check_golden(manifest, scorer)
    return LoadedModel(manifest=manifest, scorer=scorer, path=path)


def write_model_dir(directory: Path, manifest: ModelManifest, artifact: bytes) -> Path:
    """Write `model.onnx` and `manifest.json` into `directory` (created if needed), each atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    write_atomically(directory / ARTIFACT_FILE, artifact)
    write_atomically(directory / MANIFEST_FILE, encode(manifest))
    return directory


def _read_model_files(directory: Path) -> tuple[ModelManifest, bytes]:
    try:
        manifest_bytes = (directory / MANIFEST_FILE).read_bytes()
        artifact = (directory / ARTIFACT_FILE).read_bytes()
    except OSError as exc:
        raise ModelVerificationError("files", f"cannot read the model in {directory}: {exc}") from exc
    try:
        manifest = decode_manifest(manifest_bytes)
    except ContractError as exc:
        raise ModelVerificationError("manifest", str(exc)) from exc
    return manifest, artifact


def load_model(
    path: Path, *, intra_op_threads: int = 1, expected_feature_names: Sequence[str] | None = None
) -> LoadedModel:
    """Load and verify a model from a directory, its `manifest.json`, or its `model.onnx`.

    The directory must hold both `model.onnx` and `manifest.json` (the layout `write_model_dir` and the
    store use); this is what `forewarn edge score --model DIR|FILE` reads.

    Raises:
        ModelVerificationError: if the files cannot be read or a check fails.
    """
    directory = path if path.is_dir() else path.parent
    manifest, artifact = _read_model_files(directory)
    return verify_model(
        manifest,
        artifact,
        intra_op_threads=intra_op_threads,
        expected_feature_names=expected_feature_names,
        path=directory,
    )


class ModelStore:
    """Versioned local models per target, with verified install, hot swap by reference, and rollback.

    On construction the store reloads, and re-verifies, each target's active model from disk; if that
    fails it falls back to the previous active version, logging why.

    Args:
        settings: where the store lives, threads per scoring call, versions kept.
    """

    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings
        self._root = settings.store_dir
        self._lock = threading.Lock()
        self._active: dict[str, LoadedModel] = {}
        self._history: dict[str, list[int]] = {}
        self._root.mkdir(parents=True, exist_ok=True)
        for target_dir in sorted(self._root.iterdir()):
            if target_dir.is_dir() and _TARGET.match(target_dir.name):
                self._restore(target_dir.name)

    # -- reading (any thread, no lock) -------------------------------------------------------------------

    def active(self, target: str) -> LoadedModel | None:
        """The model serving `target` now, or None; cheap enough to call for every batch of windows."""
        return self._active.get(target)

    def targets(self) -> list[str]:
        """Targets with an active model."""
        return sorted(self._active)

    def versions(self, target: str) -> list[int]:
        """Installed versions of `target`, ascending."""
        target_dir = self._root / target
        if not _TARGET.match(target) or not target_dir.is_dir():
            return []
        found = (_VERSION_DIR.match(child.name) for child in target_dir.iterdir() if child.is_dir())
        return sorted(int(match.group(1)) for match in found if match)

    def history(self, target: str) -> list[int]:
        """Versions activated for `target`, oldest first; the last one is active."""
        return list(self._history.get(target, []))

    # -- writing (serialised by the store's lock) --------------------------------------------------------

    def install(
        self,
        manifest: ModelManifest,
        artifact: bytes,
        *,
        expected_feature_names: Sequence[str] | None = None,
    ) -> LoadedModel:
        """Verify a model and write it to `store_dir/target/vN/`; it is not activated.

        Installing a version that is already there with the same digest returns it; with another digest
        it is refused (`version`).

        Args:
            manifest: the model's manifest.
            artifact: the ONNX bytes.
            expected_feature_names: the feature vector the pipeline computes for this target, if known.

        Raises:
            ModelVerificationError: naming the failed check; the store is unchanged.
        """
        target_dir = self._target_dir(manifest.target)
        final = target_dir / f"v{manifest.version}"
        loaded = verify_model(
            manifest,
            artifact,
            intra_op_threads=self.settings.intra_op_threads,
            expected_feature_names=expected_feature_names,
            path=final,
        )
        with self._lock:
            if final.exists():
                existing, _ = _read_model_files(final)
                if existing.artifact_sha256 != manifest.artifact_sha256:
                    raise ModelVerificationError(
                        "version", f"{manifest.target} v{manifest.version} is installed with another digest"
                    )
                return loaded
            target_dir.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".v{manifest.version}.", dir=target_dir))
            try:
                write_atomically(staging / ARTIFACT_FILE, artifact)
                write_atomically(staging / MANIFEST_FILE, encode(manifest))
                fsync_directory(staging)
                staging.rename(final)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            fsync_directory(target_dir)
        logger.info("installed model %s v%d", manifest.target, manifest.version)
        return loaded

    def activate(self, target: str, version: int) -> LoadedModel:
        """Make an installed version the one `active(target)` returns, persisted across restarts.

        The model is re-read and re-verified from disk first, so a file damaged since install is refused.

        Raises:
            ModelVerificationError: (`version`) if it is not installed, or the check that failed.
        """
        with self._lock:
            loaded = self._load(target, version)
            history = [v for v in self._history.get(target, []) if v != version] + [version]
            self._commit(target, history[-_HISTORY_LIMIT:], loaded)
            self._prune(target)
        logger.info("activated model %s v%d", target, version)
        return loaded

    def rollback(self, target: str) -> LoadedModel:
        """Go back to the version that was active before the current one.

        Raises:
            ModelVerificationError: (`rollback`) if there is no previous version, or the check that failed
                when reloading it.
        """
        with self._lock:
            history = self._history.get(target, [])
            if len(history) < 2:
                raise ModelVerificationError("rollback", f"{target} has no previous version to roll back to")
            previous = history[-2]
            loaded = self._load(target, previous)
            self._commit(target, history[:-1], loaded)
        logger.warning("rolled model %s back from v%d to v%d", target, history[-1], previous)
        return loaded

    # -- internals ---------------------------------------------------------------------------------------

    def _target_dir(self, target: str) -> Path:
        if not _TARGET.match(target):
            raise ModelVerificationError("manifest", f"target {target!r} is not a valid identifier")
        return self._root / target

    def _load(self, target: str, version: int) -> LoadedModel:
        directory = self._target_dir(target) / f"v{version}"
        if not directory.is_dir():
            raise ModelVerificationError("version", f"{target} v{version} is not installed")
        manifest, artifact = _read_model_files(directory)
        if manifest.target != target or manifest.version != version:
            raise ModelVerificationError(
                "manifest",
                f"{directory} holds {manifest.target} v{manifest.version}, not {target} v{version}",
            )
        return verify_model(
            manifest, artifact, intra_op_threads=self.settings.intra_op_threads, path=directory
        )

    def _commit(self, target: str, history: list[int], loaded: LoadedModel) -> None:
        """Persist the pointer, then publish the model with one reference assignment."""
        pointer = json.dumps({"history": history}).encode()
        write_atomically(self._target_dir(target) / _ACTIVE_FILE, pointer)
        self._history[target] = history
        self._active[target] = loaded

    def _prune(self, target: str) -> None:
        """Remove the oldest versions beyond `keep_versions`, never the active or the previous one."""
        history = self._history.get(target, [])
        protected = set(history[-2:])
        installed = self.versions(target)
        excess = len(installed) - self.settings.keep_versions
        for version in installed:
            if excess <= 0:
                break
            if version in protected:
                continue
            shutil.rmtree(self._target_dir(target) / f"v{version}", ignore_errors=True)
            excess -= 1
            logger.info("pruned model %s v%d", target, version)
        kept = set(self.versions(target))
        self._history[target] = [v for v in history if v in kept]

    def _restore(self, target: str) -> None:
        """Reload the active model of `target` after a restart, falling back through its history.

        Leftovers of an install or pointer write cut short by a crash (dot-prefixed temporaries) go first.
        """
        for leftover in (self._root / target).glob(".*"):
            logger.warning("removing %s, left by an interrupted write", leftover)
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        pointer = self._root / target / _ACTIVE_FILE
        try:
            raw = json.loads(pointer.read_bytes())
            history = [int(v) for v in raw["history"]]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.error(
                "model store pointer %s is unreadable (%s); %s has no active model", pointer, exc, target
            )
            return
        while history:
            try:
                loaded = self._load(target, history[-1])
            except ModelVerificationError as exc:
                logger.error("cannot restore model %s v%d: %s", target, history[-1], exc)
                history = history[:-1]
                continue
            self._history[target] = history
            self._active[target] = loaded
            logger.info("restored model %s v%d", target, history[-1])
            return
