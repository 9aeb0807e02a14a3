"""The pipeline with real int8 models in the real model store: scoring, labels and hot swap under load."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from cloud_service.modeling import ModelArtifact, build_anomaly_model
from edge_agent.aggregation import ScoredWindows
from edge_agent.model_store import ModelStore
from edge_agent.pipeline import Pipeline
from edge_agent.settings import ModelSettings, PipelineSettings
from shared.raw_batch import RawBatch
from tests.test_edge_pipeline_support import VIB_RATE, Run, Stream, asset_settings, healthy, settings


def _config(batch_windows: int = 4) -> PipelineSettings:
    return settings([asset_settings(with_temperature=False)], batch_windows=batch_windows)


def _stream(seed: int, batches: int) -> list[RawBatch]:
    vib = Stream("pump-1", "vibration", VIB_RATE, healthy(np.random.default_rng(seed)), 1024)
    return [vib.next() for _ in range(batches)]


@pytest.fixture(scope="module")
def artifacts() -> list[ModelArtifact]:
    """Two versions of a real int8 model for `pump-1`, trained on healthy pipeline features."""
    rows: list[npt.NDArray[np.float32]] = []

    def keep(asset_id: str, windows: ScoredWindows) -> None:
        del asset_id
        rows.append(windows.features)

    config = settings([asset_settings(with_temperature=False)], batch_windows=64)
    pipeline = Pipeline(
        settings=config, gateway_id="gw-1", models=None, on_reject=lambda *a: None, on_windows=keep
    )
    for batch in _stream(21, 400):
        pipeline.process(batch)
    pipeline.flush()
    features = np.concatenate(rows)
    names = pipeline.feature_names("pump-1")
    return [
        build_anomaly_model(
            features, names, feature_spec="vib-temp-current@1", target="pump-1", version=v, seed=v
        )
        for v in (1, 2)
    ]


@pytest.fixture
def store(tmp_path: Path, artifacts: list[ModelArtifact]) -> ModelStore:
    models = ModelStore(ModelSettings(store_dir=tmp_path / "models"))
    for artifact in artifacts:
        models.install(artifact.manifest, artifact.onnx_int8)
    return models


def test_the_active_int8_model_scores_and_labels_everything(store: ModelStore) -> None:
    store.activate("pump-1", 1)
    run = Run()
    pipeline = Pipeline(settings=_config(), gateway_id="gw-1", models=store, on_reject=run.on_reject)
    run.feed(pipeline, _stream(3, 100))
    run.out.extend(pipeline.flush())
    assert pipeline.metrics.windows_scored == pipeline.metrics.windows_cut == 100
    assert pipeline.metrics.model_versions == {"pump-1": "pump-1:v1"}
    assert {(a.model_version, a.model_kind) for a in run.aggregates} == {("pump-1:v1", "onnx")}
    assert sum(a.score.n_windows for a in run.aggregates) == 100
    assert sum(a.score.n_above_threshold for a in run.aggregates) <= 2  # healthy data
    assert not run.alerts


def test_a_hot_swap_from_another_thread_under_load_drops_no_window(store: ModelStore) -> None:
    store.activate("pump-1", 1)
    run = Run()
    versions: list[str] = []

    def record(asset_id: str, windows: ScoredWindows) -> None:
        del asset_id
        versions.extend([windows.model_version] * len(windows.end_ns))

    pipeline = Pipeline(
        settings=_config(batch_windows=2),
        gateway_id="gw-1",
        models=store,
        on_reject=run.on_reject,
        on_windows=record,
    )
    halfway = threading.Event()
    swapped = threading.Event()

    def swap() -> None:
        if halfway.wait(timeout=30):
            store.activate("pump-1", 2)
            swapped.set()

    thread = threading.Thread(target=swap, name="test-hot-swap")
    thread.start()
    batches = _stream(4, 600)
    try:
        for i, batch in enumerate(batches):
            if i == 300:
                halfway.set()
            run.out.extend(pipeline.process(batch))
        run.out.extend(pipeline.flush())
    finally:
        halfway.set()
        thread.join(timeout=30)
    assert swapped.is_set()
    metrics = pipeline.metrics
    assert metrics.windows_cut == metrics.windows_scored == len(versions) == 600
    first_v2 = versions.index("pump-1:v2")
    assert versions[:first_v2] == ["pump-1:v1"] * first_v2
    assert versions[first_v2:] == ["pump-1:v2"] * (600 - first_v2)
    assert metrics.model_versions == {"pump-1": "pump-1:v2"}
    assert {a.model_version for a in run.aggregates} >= {"pump-1:v2"}
