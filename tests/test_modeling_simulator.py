"""Models trained on the simulator's healthy fleet flag its degrading pump and stay quiet on the fan."""

from __future__ import annotations

import numpy as np
import pytest

from cloud_service.modeling import SPECTRAL_SPEC, ModelArtifact, build_anomaly_model, onnx_scores
from forewarn.bench.edge_models import healthy_scenario, simulator_features
from simulators import load_scenario

WINDOWS_PER_STEP = 4  # smoke: 4096-sample bursts every 10 s, cut into 1024-sample windows
STEP_S = 10.0


@pytest.fixture(scope="module")
def smoke_rows() -> dict[str, np.ndarray]:
    return simulator_features(load_scenario("smoke"), SPECTRAL_SPEC)


@pytest.fixture(scope="module")
def models(smoke_rows: dict[str, np.ndarray]) -> dict[str, ModelArtifact]:
    healthy = simulator_features(healthy_scenario("smoke", duration_h=4.0), SPECTRAL_SPEC)
    return {
        asset: build_anomaly_model(
            rows,
            SPECTRAL_SPEC.feature_names,
            feature_spec=SPECTRAL_SPEC.spec_id,
            target=asset,
            version=1,
            validation_features=smoke_rows[asset],  # healthy, wearing, failed and repaired windows
        )
        for asset, rows in healthy.items()
        if asset in ("pump-001", "fan-001")
    }


def _hours(rows: np.ndarray) -> np.ndarray:
    return (np.arange(len(rows)) // WINDOWS_PER_STEP) * STEP_S / 3600.0


def test_healthy_scenario_strips_every_fault() -> None:
    scenario = healthy_scenario("smoke", duration_h=0.5)
    assert scenario.spec.failures == []
    assert scenario.spec.sensor_faults == []
    assert scenario.asset_ids == load_scenario("smoke").asset_ids


@pytest.mark.slow
def test_the_degrading_pump_alarms_before_failure_and_not_before_onset(
    models: dict[str, ModelArtifact], smoke_rows: dict[str, np.ndarray]
) -> None:
    rows = smoke_rows["pump-001"]
    model = models["pump-001"]
    assert model.metrics["int8_float_decision_agreement"] >= 0.995
    above = onnx_scores(model.onnx_int8, rows) > model.manifest.threshold
    hours = _hours(rows)
    before_onset = above[hours < 0.25]  # outer-race wear starts at 0.25 h, fails at 2.25 h
    late_wear = above[(hours >= 1.5) & (hours < 2.2)]
    assert np.mean(before_onset) <= 0.01
    assert np.mean(late_wear) >= 0.9


@pytest.mark.slow
def test_the_healthy_fan_raises_almost_nothing(
    models: dict[str, ModelArtifact], smoke_rows: dict[str, np.ndarray]
) -> None:
    model = models["fan-001"]
    scores = onnx_scores(model.onnx_int8, smoke_rows["fan-001"])
    assert np.mean(scores > model.manifest.threshold) <= 0.01
