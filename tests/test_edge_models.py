"""Edge model store (verify, install, activate, rollback, restart, prune, hot swap) and the scorers."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

import msgspec
import numpy as np
import onnx
import pytest

from cloud_service.modeling import (
    SPECTRAL_SPEC,
    ModelArtifact,
    build_anomaly_model,
    save_artifact,
    synthetic_features,
)
from cloud_service.modeling.synthetic import Fault
from edge_agent.model_store import ModelStore, load_model, verify_model
from edge_agent.scoring import BaselineScorer, OnnxScorer, Scorer
from edge_agent.settings import ModelSettings
from forewarn.localservices import wait_until
from shared.errors import ContractError, ModelVerificationError
from shared.features import DEFAULT_SPEC
from shared.messages import GoldenPair, ModelManifest

NAMES = SPECTRAL_SPEC.feature_names
TARGET = "pump-a"


def _train(version: int, seed: int) -> ModelArtifact:
    return build_anomaly_model(
        synthetic_features(240, seed=seed),
        NAMES,
        feature_spec=SPECTRAL_SPEC.spec_id,
        target=TARGET,
        version=version,
        seed=seed,
    )


@pytest.fixture(scope="module")
def models() -> dict[int, ModelArtifact]:
    """Versions 1-4 of one target, each trained on different seeded data (so each scores differently)."""
    return {version: _train(version, seed=version * 10) for version in (1, 2, 3, 4)}


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    return synthetic_features(64, seed=99)


@pytest.fixture
def settings(tmp_path: Path) -> ModelSettings:
    return ModelSettings(store_dir=tmp_path / "models", keep_versions=3)


def _install(store: ModelStore, artifact: ModelArtifact) -> None:
    store.install(artifact.manifest, artifact.onnx_int8, expected_feature_names=NAMES)


def _active_version(store: ModelStore) -> int | None:
    loaded = store.active(TARGET)
    return None if loaded is None else loaded.manifest.version


def test_install_then_activate_serves_the_model(
    settings: ModelSettings, models: dict[int, ModelArtifact]
) -> None:
    store = ModelStore(settings)
    assert store.active(TARGET) is None
    _install(store, models[1])
    assert store.versions(TARGET) == [1]
    assert store.active(TARGET) is None  # installing does not activate
    loaded = store.activate(TARGET, 1)
    assert store.active(TARGET) is loaded
    assert loaded.scorer.version == "pump-a:v1"
    assert loaded.scorer.kind == "onnx"
    assert (settings.store_dir / TARGET / "v1" / "model.onnx").read_bytes() == models[1].onnx_int8
    assert (settings.store_dir / TARGET / "v1" / "manifest.json").is_file()


def test_activation_and_rollback_survive_a_restart(
    settings: ModelSettings, models: dict[int, ModelArtifact], rows: np.ndarray
) -> None:
    store = ModelStore(settings)
    for version in (1, 2):
        _install(store, models[version])
        store.activate(TARGET, version)
    assert _active_version(ModelStore(settings)) == 2  # a fresh store (a restart) reloads v2

    leftover = settings.store_dir / TARGET / ".v3.crashed"  # an install cut short by a crash
    leftover.mkdir()
    (leftover / "model.onnx").write_bytes(b"half")
    rolled = store.rollback(TARGET)
    assert rolled.manifest.version == 1
    restarted = ModelStore(settings)
    assert _active_version(restarted) == 1
    assert not leftover.exists()
    assert restarted.versions(TARGET) == [1, 2]
    expected = OnnxScorer(models[1].onnx_int8, models[1].manifest).score(rows)
    restarted_model = restarted.active(TARGET)
    assert restarted_model is not None
    np.testing.assert_array_equal(restarted_model.scorer.score(rows), expected)
    with pytest.raises(ModelVerificationError) as caught:
        restarted.rollback(TARGET)
    assert caught.value.check == "rollback"


def test_old_versions_are_pruned_but_never_active_or_previous(
    settings: ModelSettings, models: dict[int, ModelArtifact]
) -> None:
    store = ModelStore(settings.model_copy(update={"keep_versions": 2}))
    for version in (1, 2, 3, 4):
        _install(store, models[version])
    store.activate(TARGET, 2)
    store.activate(TARGET, 4)
    assert store.versions(TARGET) == [2, 4]
    assert store.rollback(TARGET).manifest.version == 2


def _tampered(artifact: ModelArtifact) -> tuple[ModelManifest, bytes]:
    blob = bytearray(artifact.onnx_int8)
    blob[len(blob) // 2] ^= 0xFF
    return artifact.manifest, bytes(blob)


def _wrong_features(artifact: ModelArtifact) -> tuple[ModelManifest, bytes]:
    names = list(artifact.manifest.feature_names)
    names[0], names[1] = names[1], names[0]
    return msgspec.structs.replace(artifact.manifest, feature_names=names), artifact.onnx_int8


def _failing_golden(artifact: ModelArtifact) -> tuple[ModelManifest, bytes]:
    golden = [
        GoldenPair(features=pair.features, score=pair.score * 3.0 + 1.0) for pair in artifact.manifest.golden
    ]
    return msgspec.structs.replace(artifact.manifest, golden=golden), artifact.onnx_int8


def _not_onnx(artifact: ModelArtifact) -> tuple[ModelManifest, bytes]:
    blob = b"definitely not an onnx model"
    return msgspec.structs.replace(artifact.manifest, artifact_sha256=hashlib.sha256(blob).hexdigest()), blob


def _fewer_features(artifact: ModelArtifact) -> tuple[ModelManifest, bytes]:
    return msgspec.structs.replace(
        artifact.manifest, feature_names=list(DEFAULT_SPEC.feature_names)
    ), artifact.onnx_int8


@pytest.mark.parametrize(
    ("corrupt", "check", "expected_names"),
    [
        (_tampered, "sha256", NAMES),
        (_wrong_features, "features", NAMES),
        (_failing_golden, "golden", NAMES),
        (_not_onnx, "load", NAMES),
        (_fewer_features, "features", None),  # caught by the graph's input width, not by the pipeline's names
    ],
    ids=["tampered-artifact", "wrong-feature-names", "failing-golden", "not-onnx", "graph-width"],
)
def test_a_bad_model_is_refused_and_the_previous_one_keeps_serving(
    settings: ModelSettings,
    models: dict[int, ModelArtifact],
    corrupt: Callable[[ModelArtifact], tuple[ModelManifest, bytes]],
    check: str,
    expected_names: tuple[str, ...] | None,
) -> None:
    store = ModelStore(settings)
    _install(store, models[1])
    serving = store.activate(TARGET, 1)
    manifest, artifact = corrupt(models[2])
    with pytest.raises(ModelVerificationError) as caught:
        store.install(manifest, artifact, expected_feature_names=expected_names)
    assert caught.value.check == check
    assert store.versions(TARGET) == [1]
    assert store.active(TARGET) is serving
    assert _active_version(ModelStore(settings)) == 1


def test_a_model_damaged_on_disk_is_refused_at_activation(
    settings: ModelSettings, models: dict[int, ModelArtifact]
) -> None:
    store = ModelStore(settings)
    for version in (1, 2):
        _install(store, models[version])
    serving = store.activate(TARGET, 1)
    path = settings.store_dir / TARGET / "v2" / "model.onnx"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ModelVerificationError) as caught:
        store.activate(TARGET, 2)
    assert caught.value.check == "sha256"
    assert store.active(TARGET) is serving
    with pytest.raises(ModelVerificationError) as missing:
        store.activate(TARGET, 9)
    assert missing.value.check == "version"


def test_reinstalling_a_version_with_another_digest_is_refused(
    settings: ModelSettings, models: dict[int, ModelArtifact]
) -> None:
    store = ModelStore(settings)
    _install(store, models[1])
    _install(store, models[1])  # the same bytes again: idempotent
    impostor = msgspec.structs.replace(models[2].manifest, version=1)
    with pytest.raises(ModelVerificationError) as caught:
        store.install(impostor, models[2].onnx_int8)
    assert caught.value.check == "version"


def _progressed(seen: dict[int, int], errors: list[BaseException]) -> Callable[[], bool]:
    """A predicate: the scoring thread scored another batch since now (or failed)."""
    count = sum(seen.values())
    return lambda: sum(seen.values()) > count or bool(errors)


def test_hot_swap_under_concurrent_scoring_never_fails_or_mixes_models(
    settings: ModelSettings, models: dict[int, ModelArtifact], rows: np.ndarray
) -> None:
    """A scoring thread sees, for every batch, exactly one complete model's scores."""
    expected = {v: OnnxScorer(models[v].onnx_int8, models[v].manifest).score(rows) for v in (1, 2, 3, 4)}
    store = ModelStore(settings)
    for version in (1, 2, 3):
        _install(store, models[version])
    store.activate(TARGET, 1)
    stop = threading.Event()
    seen: dict[int, int] = {}
    errors: list[BaseException] = []

    def score_forever() -> None:
        try:
            while not stop.is_set():
                loaded = store.active(TARGET)
                assert loaded is not None
                version = loaded.manifest.version
                np.testing.assert_array_equal(loaded.scorer.score(rows), expected[version])
                seen[version] = seen.get(version, 0) + 1
        except BaseException as exc:  # noqa: BLE001 - anything, assertion failures included, goes to the test thread
            errors.append(exc)

    scorer_thread = threading.Thread(target=score_forever, name="edge-scorer-test")
    scorer_thread.start()
    try:
        for round_ in range(12):
            store.activate(TARGET, (2, 3, 1)[round_ % 3])
            if round_ % 4 == 3:
                store.rollback(TARGET)
            wait_until(_progressed(seen, errors), timeout_s=10)
        _install(store, models[4])  # installing while scoring: nothing half-written is ever served
        wait_until(_progressed(seen, errors), timeout_s=10)
        store.activate(TARGET, 4)
        wait_until(_progressed(seen, errors), timeout_s=10)
    finally:
        stop.set()
        scorer_thread.join(timeout=10)
    assert not errors
    assert set(seen) == {1, 2, 3, 4}


def test_load_model_reads_a_directory_or_its_files(tmp_path: Path, models: dict[int, ModelArtifact]) -> None:
    directory = save_artifact(models[1], tmp_path / "model")
    for path in (directory, directory / "model.onnx", directory / "manifest.json"):
        loaded = load_model(path, expected_feature_names=NAMES)
        assert loaded.manifest == models[1].manifest
    (directory / "manifest.json").write_text("{not json")
    with pytest.raises(ModelVerificationError) as caught:
        load_model(directory)
    assert caught.value.check == "manifest"


def test_onnx_scorer_refuses_rows_of_the_wrong_width(models: dict[int, ModelArtifact]) -> None:
    loaded = verify_model(models[1].manifest, models[1].onnx_int8)
    with pytest.raises(ContractError) as caught:
        loaded.scorer.score(np.zeros((2, 5), dtype=np.float32))
    assert caught.value.field == "features"


def _without_feature_error(model: bytes, *, keep_metadata: bool) -> bytes:
    proto = onnx.load_from_string(model)
    kept = [output for output in proto.graph.output if output.name != "feature_error"]
    del proto.graph.output[:]
    proto.graph.output.extend(kept)
    if not keep_metadata:
        del proto.metadata_props[:]
    serialized: bytes = proto.SerializeToString()
    return serialized


def _scorer_without_feature_error(artifact: ModelArtifact, *, keep_metadata: bool) -> OnnxScorer:
    blob = _without_feature_error(artifact.onnx_int8, keep_metadata=keep_metadata)
    manifest = msgspec.structs.replace(artifact.manifest, artifact_sha256=hashlib.sha256(blob).hexdigest())
    return verify_model(manifest, blob).scorer


def test_contributions_fall_back_to_robust_z_from_the_model_metadata(
    models: dict[int, ModelArtifact],
) -> None:
    row = synthetic_features(1, fault="imbalance", severity=2.0, seed=7)[0]
    top = _scorer_without_feature_error(models[1], keep_metadata=True).contributions(row, top_k=3)
    assert len(top) == 3
    assert top[0].feature.startswith("vibration.")
    assert abs(top[0].contribution) > 3.0
    assert _scorer_without_feature_error(models[1], keep_metadata=False).contributions(row) == []


# -- BaselineScorer ------------------------------------------------------------------------------------

BASE_NAMES = DEFAULT_SPEC.feature_names


def _default_rows(n: int, *, fault: Fault = "none", seed: int) -> np.ndarray:
    return synthetic_features(n, spec=DEFAULT_SPEC, fault=fault, seed=seed)


def test_baseline_is_silent_until_warmed_up() -> None:
    scorer: Scorer = BaselineScorer(feature_names=BASE_NAMES, warmup_windows=100)
    assert isinstance(scorer, BaselineScorer)
    scorer.update(_default_rows(99, seed=1))
    assert not scorer.is_warmed_up
    anomalous = _default_rows(5, fault="bearing", seed=2)
    np.testing.assert_array_equal(scorer.score(anomalous), np.zeros(5, dtype=np.float32))
    assert scorer.contributions(anomalous[0]) == []
    scorer.update(_default_rows(1, seed=3))
    assert scorer.is_warmed_up
    assert (scorer.kind, scorer.version) == ("baseline", "baseline")


def test_baseline_flags_an_injected_fault_and_not_the_healthy_signal() -> None:
    scorer = BaselineScorer(feature_names=BASE_NAMES, threshold=6.0, warmup_windows=100, seed=3)
    for start in range(0, 600, 50):
        scorer.update(_default_rows(50, seed=100 + start))
    healthy = scorer.score(_default_rows(1000, seed=7))
    bearing = scorer.score(_default_rows(200, fault="bearing", seed=8))
    imbalance = scorer.score(_default_rows(200, fault="imbalance", seed=9))
    assert np.mean(healthy > scorer.threshold) <= 0.01
    assert np.mean(bearing > scorer.threshold) >= 0.95
    assert np.mean(imbalance > scorer.threshold) >= 0.95
    top = scorer.contributions(_default_rows(1, fault="imbalance", seed=10)[0], top_k=2)
    assert top[0].feature.startswith("vibration.")
    assert abs(top[0].contribution) > scorer.threshold


def test_baseline_ignores_non_finite_rows_and_keeps_scores_finite() -> None:
    scorer = BaselineScorer(feature_names=BASE_NAMES, warmup_windows=50)
    rows = _default_rows(60, seed=1)
    rows[::2, 0] = np.nan
    scorer.update(rows)
    assert scorer.n_seen == 30
    scorer.update(_default_rows(30, seed=2))
    extreme = _default_rows(2, seed=3)
    extreme[0, :] = np.inf
    extreme[1, :] = -1e30
    assert np.isfinite(scorer.score(extreme)).all()
    assert all(np.isfinite(c.contribution) for c in scorer.contributions(extreme[0]))
