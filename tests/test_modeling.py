"""Training → ONNX → int8 → manifest: parity, golden pairs, agreement, detection on seeded signals."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from cloud_service.modeling import (
    SPECTRAL_SPEC,
    ModelArtifact,
    build_anomaly_model,
    decision_agreement,
    onnx_scores,
    synthetic_features,
)
from edge_agent.scoring import OnnxScorer
from shared.messages import decode_manifest, encode

NAMES = SPECTRAL_SPEC.feature_names


@pytest.fixture(scope="module")
def faulty() -> np.ndarray:
    return np.vstack(
        [
            synthetic_features(150, fault="bearing", severity=1.0, seed=21),
            synthetic_features(150, fault="imbalance", severity=1.0, seed=22),
        ]
    )


@pytest.fixture(scope="module", params=["int8-dynamic", "int8-static-qdq"])
def artifact(request: pytest.FixtureRequest, faulty: np.ndarray) -> ModelArtifact:
    healthy = synthetic_features(1200, seed=1)
    return build_anomaly_model(
        healthy,
        NAMES,
        feature_spec=SPECTRAL_SPEC.spec_id,
        target="pump-a",
        version=3,
        seed=5,
        quantization=request.param,
        validation_features=faulty,
    )


def test_manifest_describes_the_int8_artifact(artifact: ModelArtifact) -> None:
    manifest = artifact.manifest
    assert manifest.artifact_sha256 == hashlib.sha256(artifact.onnx_int8).hexdigest()
    assert (manifest.target, manifest.version) == ("pump-a", 3)
    assert manifest.feature_spec == "vib-temp-current-spectral@1"
    assert tuple(manifest.feature_names) == NAMES
    assert manifest.threshold > 0
    assert len(manifest.golden) >= 4
    assert manifest.quantization.startswith("int8")
    assert decode_manifest(encode(manifest)) == manifest


def test_float_graph_reproduces_the_sklearn_scores(artifact: ModelArtifact) -> None:
    rows = synthetic_features(200, seed=9)
    expected = artifact.sklearn_model.score_samples(rows)
    np.testing.assert_allclose(onnx_scores(artifact.onnx_float, rows), expected, rtol=1e-3, atol=1e-4)


def test_golden_pairs_reproduce_in_onnxruntime(artifact: ModelArtifact) -> None:
    inputs = np.array([pair.features for pair in artifact.manifest.golden], dtype=np.float32)
    expected = np.array([pair.score for pair in artifact.manifest.golden], dtype=np.float32)
    np.testing.assert_allclose(onnx_scores(artifact.onnx_int8, inputs), expected, rtol=1e-5, atol=1e-6)


def test_int8_and_float_decisions_agree(artifact: ModelArtifact, faulty: np.ndarray) -> None:
    assert artifact.metrics["int8_float_decision_agreement"] >= 0.995
    fresh = np.vstack([synthetic_features(600, seed=31), faulty])
    threshold = artifact.manifest.threshold
    agreement = decision_agreement(
        onnx_scores(artifact.onnx_float, fresh), onnx_scores(artifact.onnx_int8, fresh), threshold
    )
    assert agreement >= 0.995
    assert artifact.metrics["model_bytes_int8"] < artifact.metrics["model_bytes_float"]


def test_default_int8_scores_do_not_depend_on_the_rest_of_the_batch(faulty: np.ndarray) -> None:
    """Static QDQ has fixed activation scales: a faulty window cannot change its neighbours' scores."""
    healthy = synthetic_features(600, seed=1)
    model = build_anomaly_model(healthy, NAMES, feature_spec=SPECTRAL_SPEC.spec_id, target="t", version=1)
    assert model.manifest.quantization == "int8-static-qdq"
    rows = np.vstack([synthetic_features(20, seed=61), faulty[:5] * 50.0])
    alone = np.concatenate([onnx_scores(model.onnx_int8, rows[i : i + 1]) for i in range(len(rows))])
    np.testing.assert_allclose(onnx_scores(model.onnx_int8, rows), alone, rtol=1e-3, atol=1e-3)


def test_faults_score_above_the_threshold_and_healthy_rows_below(artifact: ModelArtifact) -> None:
    threshold = artifact.manifest.threshold
    healthy = onnx_scores(artifact.onnx_int8, synthetic_features(1000, seed=41))
    bearing = onnx_scores(artifact.onnx_int8, synthetic_features(200, fault="bearing", seed=42))
    imbalance = onnx_scores(artifact.onnx_int8, synthetic_features(200, fault="imbalance", seed=43))
    assert np.mean(healthy > threshold) <= 0.005
    assert np.mean(bearing > threshold) >= 0.95
    assert np.mean(imbalance > threshold) >= 0.95


def test_other_healthy_machine_speed_is_not_an_anomaly_after_training_on_it() -> None:
    """The model learns the machine it is given, not the simulator's constants."""
    healthy = synthetic_features(800, shaft_hz=49.5, seed=3)
    model = build_anomaly_model(healthy, NAMES, feature_spec=SPECTRAL_SPEC.spec_id, target="fan-b", version=1)
    fresh = onnx_scores(model.onnx_int8, synthetic_features(500, shaft_hz=49.5, seed=4))
    faulty = onnx_scores(model.onnx_int8, synthetic_features(100, shaft_hz=49.5, fault="bearing", seed=5))
    assert np.mean(fresh > model.manifest.threshold) <= 0.01
    assert np.mean(faulty > model.manifest.threshold) >= 0.95


def test_contributions_point_at_the_fault(artifact: ModelArtifact) -> None:
    scorer = OnnxScorer(artifact.onnx_int8, artifact.manifest)
    row = synthetic_features(1, fault="bearing", severity=2.0, seed=51)
    top = scorer.contributions(row[0], top_k=3)
    assert len(top) == 3
    assert top[0].contribution >= top[1].contribution >= top[2].contribution > 0
    assert all(item.feature.startswith("vibration.") for item in top)


@pytest.mark.parametrize(
    ("rows", "names"),
    [
        (np.full((100, 3), np.nan, dtype=np.float32), ("a", "b", "c")),
        (np.ones((100, 3), dtype=np.float32), ("a", "b")),
        (np.ones((10, 3), dtype=np.float32), ("a", "b", "c")),
    ],
    ids=["nan", "width", "too-few-rows"],
)
def test_bad_training_input_is_refused(rows: np.ndarray, names: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="features must be"):
        build_anomaly_model(rows, names, feature_spec="x@1", target="t", version=1)
