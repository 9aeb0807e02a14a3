"""Candidate anomaly models of a training run, in one shape: float and int8 ONNX, manifest, metrics.

Two model types:

* `pca`: E1's PCA SPE + T² detector, built by `cloud_service.modeling.build_anomaly_model`;
* `mlp_autoencoder`: a scikit-learn `MLPRegressor` trained to reproduce healthy rows after the same kind of
  scaling (logs of always-positive features, robust centring and scaling), scored by its mean squared
  reconstruction error over the healthy median (about 1 on healthy data). skl2onnx converts the network;
  the scaling and the error are ONNX nodes around it, so the graph outputs the score itself, plus
  `feature_error` (each feature's share of the score) for contributions.

Both are quantized to int8 with E1's `quantize_int8` and carry golden input/output pairs of the int8 graph.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Self

import numpy as np
import numpy.typing as npt
from onnx import helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.neural_network import MLPRegressor

from cloud_service.modeling import build_anomaly_model, onnx_scores, quantize_int8
from cloud_service.modeling.graph import (
    ONNX_OPSET,
    SCALED,
    apply_logs,
    assemble_scoring_model,
    const,
    feature_error_nodes,
    fit_logs,
    input_transform,
)
from shared.messages import GoldenPair, ModelManifest
from shared.timebase import now_ns

__all__ = [
    "BUILDERS",
    "MLP_MAX_FIT_ROWS",
    "Candidate",
    "MlpAutoencoderDetector",
    "build_candidate",
    "mlp_to_onnx",
]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
_IQR_TO_SIGMA = 1.349
_N_GOLDEN = 8
MLP_MAX_FIT_ROWS = 10_000
"""The autoencoder is fitted on at most this many rows (evenly spaced): 25 features need no more, and
its training time grows linearly with rows (36,000 rows took 33 s here, 8,000 rows 3 s)."""


@dataclass(frozen=True)
class Candidate:
    """One trained candidate: what the registry keeps and the gates look at."""

    model_type: str
    manifest: ModelManifest
    onnx_float: bytes
    onnx_int8: bytes
    metrics: dict[str, float] = field(default_factory=dict)


class MlpAutoencoderDetector(BaseEstimator):  # type: ignore[misc]  # sklearn is untyped
    """An MLP autoencoder over log/robust-scaled feature rows, scored by reconstruction error.

    Args:
        hidden: sizes of the hidden layers (the middle one is the bottleneck).
        max_iter: training epochs of the network.
        seed: seeds the network's initialisation and shuffling.
    """

    def __init__(self, *, hidden: tuple[int, ...] = (16, 6, 16), max_iter: int = 300, seed: int = 0) -> None:
        self.hidden = hidden
        self.max_iter = max_iter
        self.seed = seed

    def fit(self, features: npt.ArrayLike) -> Self:
        """Learn to reproduce (n, F) healthy rows."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] < 16 or not np.isfinite(x).all():
            raise ValueError(f"features must be a finite (n >= 16, F) array, got shape {x.shape}")
        self.log_mask_, self.log_offset_ = fit_logs(x)
        t = self._logs(x)
        q25, center, q75 = np.quantile(t, [0.25, 0.5, 0.75], axis=0)
        self.center_ = center
        self.scale_ = np.maximum((q75 - q25) / _IQR_TO_SIGMA, 1e-3 * (1.0 + np.abs(center)))
        z = (t - center) / self.scale_
        width = x.shape[1]
        hidden = tuple(max(2, min(size, width)) for size in self.hidden)
        network = MLPRegressor(
            hidden_layer_sizes=hidden,
            activation="relu",
            max_iter=self.max_iter,
            random_state=self.seed,
            early_stopping=False,
            tol=1e-5,
        )
        with warnings.catch_warnings():  # an unconverged autoencoder is still scored and gated like any other
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.network_ = network.fit(z, z)
        self.n_features_in_ = width
        self.error_weight_ = 1.0
        median = float(np.median(self._squared_errors(z).mean(axis=1)))
        self.error_weight_ = 1.0 / (width * max(median, 1e-12))
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "network_"):
            raise NotFittedError("MlpAutoencoderDetector is not fitted; call fit first")

    def _logs(self, x: F64) -> F64:
        return apply_logs(x, self.log_mask_, self.log_offset_)

    def _squared_errors(self, z: F64) -> F64:
        residual = z - self.network_.predict(z)
        squared: F64 = residual * residual
        return squared

    def score_samples(self, features: npt.ArrayLike) -> F64:
        """Anomaly score of each row: mean squared reconstruction error over its healthy median."""
        self._check_fitted()
        z = (self._logs(np.asarray(features, dtype=np.float64)) - self.center_) / self.scale_
        scores: F64 = (self._squared_errors(z) * self.error_weight_).sum(axis=1)
        return scores


def mlp_to_onnx(
    detector: MlpAutoencoderDetector, *, input_name: str = "features", output_name: str = "score"
) -> bytes:
    """The float32 ONNX graph of `detector`: input (n, F); outputs `score` (n,) and `feature_error` (n, F)."""
    detector._check_fitted()
    width = int(detector.n_features_in_)
    network = convert_sklearn(
        detector.network_,
        initial_types=[(SCALED, FloatTensorType([None, width]))],
        target_opset={"": ONNX_OPSET},
    ).graph
    flat = network.output[0].name  # skl2onnx flattens a multi-output MLPRegressor to (n * F, 1)
    before, transform_constants = input_transform(
        input_name,
        log_offset=detector.log_offset_,
        log_mask=detector.log_mask_,
        center=detector.center_,
        scale=detector.scale_,
    )
    node = helper.make_node
    after = [
        node("Reshape", [flat, "row_shape"], ["reconstructed"]),
        *feature_error_nodes("reconstructed", "error_weight", output_name),
    ]
    constants = [
        const("row_shape", [-1, width], np.int64),
        const("error_weight", [detector.error_weight_]),
        const("sum_axes", [1], np.int64),
    ]
    return assemble_scoring_model(
        name="mlp_autoencoder",
        doc="MLP autoencoder reconstruction error over log/robust-scaled features (forewarn)",
        input_name=input_name,
        output_name=output_name,
        n_features=width,
        nodes=[*before, *network.node, *after],
        initializers=[*transform_constants, *constants, *network.initializer],
    )


def _golden(int8: bytes, rows: F32, rng: np.random.Generator) -> list[GoldenPair]:
    picks = rows[np.linspace(0, len(rows) - 1, min(_N_GOLDEN - 2, len(rows))).astype(int)]
    perturbed = np.repeat(picks[:1], 2, axis=0)
    for i, column in enumerate(rng.choice(rows.shape[1], size=2, replace=False)):
        perturbed[i, column] = perturbed[i, column] * 10.0 + 1.0
    inputs = np.vstack([picks, perturbed]).astype(np.float32)
    scores = onnx_scores(int8, inputs)
    return [
        GoldenPair(features=[float(v) for v in row], score=float(s))
        for row, s in zip(inputs, scores, strict=True)
    ]


def _build_mlp(
    fit: F32, holdout: F32, names: Sequence[str], *, feature_spec: str, target: str, version: int, seed: int
) -> Candidate:
    step = max(1, -(-len(fit) // MLP_MAX_FIT_ROWS))
    detector = MlpAutoencoderDetector(seed=seed).fit(fit[::step])
    onnx_float = mlp_to_onnx(detector)
    onnx_int8 = quantize_int8(onnx_float, fit[:1024], method="int8-dynamic")
    manifest = ModelManifest(
        target=target,
        version=version,
        model_type="mlp-autoencoder",
        artifact_sha256=hashlib.sha256(onnx_int8).hexdigest(),
        feature_spec=feature_spec,
        feature_names=list(names),
        threshold=1.0,  # set by the training run from the false-alarm budget
        quantization="int8-dynamic",
        created_ns=now_ns(),
        golden=_golden(onnx_int8, holdout, np.random.default_rng(seed)),
    )
    return Candidate("mlp_autoencoder", manifest, onnx_float, onnx_int8)


def _build_pca(
    fit: F32, holdout: F32, names: Sequence[str], *, feature_spec: str, target: str, version: int, seed: int
) -> Candidate:
    rows = np.vstack([fit, holdout])
    artifact = build_anomaly_model(
        rows,
        list(names),
        feature_spec=feature_spec,
        target=target,
        version=version,
        seed=seed,
        holdout_fraction=max(len(holdout) / len(rows), 0.05),
    )
    return Candidate("pca", artifact.manifest, artifact.onnx_float, artifact.onnx_int8)


Builder = Callable[..., Candidate]
BUILDERS: dict[str, Builder] = {"mlp_autoencoder": _build_mlp, "pca": _build_pca}


def build_candidate(
    model_type: str,
    fit: F32,
    holdout: F32,
    names: Sequence[str],
    *,
    feature_spec: str,
    target: str,
    version: int,
    seed: int = 0,
) -> Candidate:
    """Train, convert and quantize one candidate of `model_type` (a key of `BUILDERS`).

    Raises:
        KeyError: unknown model type.
        ValueError: the rows are unusable (too few, not finite).
    """
    return BUILDERS[model_type](
        fit, holdout, names, feature_spec=feature_spec, target=target, version=version, seed=seed
    )
