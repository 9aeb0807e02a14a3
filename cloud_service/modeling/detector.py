"""PCA reconstruction anomaly detector over feature vectors, and its conversion to one ONNX graph.

The detector learns what healthy feature vectors look like as a low-dimensional subspace:

1. features that were always positive in training (band powers, RMS, frequencies) become
   log(x + median): a fault that multiplies a band's power moves it by a constant whatever the machine's
   scale, and the offset keeps near-empty bands (whose log is heavy-tailed) from dominating;
2. each feature is centred on its median and divided by a robust scale: the largest of IQR / 1.349,
   (q99 - q1) / 4.65 (both the standard deviation for a Gaussian) and a small floor;
3. PCA keeps the components that explain `explained_variance` of the healthy variance;
4. a row's score is the average of two classic statistics, each about 1 on healthy data: the squared
   prediction error (SPE, the squared residual after projecting onto the subspace and back, divided by its
   healthy median) and Hotelling's T² (the squared projection in units of each component's variance, per
   component). SPE catches what healthy data never does (a new spectral line); T² catches healthy
   directions pushed too far (a harmonic growing).

`to_onnx` writes steps 1, 2 and 4 as ONNX nodes around the PCA graph skl2onnx converts (skl2onnx converts
PCA's `transform`, not the reconstruction), so the graph's output is the score itself; a second output,
`feature_error`, is each feature's share of the SPE half of the score (the contributions).
"""

from __future__ import annotations

import json
from typing import Self

import numpy as np
import numpy.typing as npt
import onnx
from onnx import helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.base import BaseEstimator
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError

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

__all__ = ["FEATURE_CENTER_KEY", "FEATURE_SCALE_KEY", "ONNX_OPSET", "PcaReconstructionDetector", "to_onnx"]

FEATURE_CENTER_KEY = "forewarn.feature_center"
FEATURE_SCALE_KEY = "forewarn.feature_scale"
"""ONNX metadata keys: JSON lists of each raw feature's training median and robust scale, so a scorer can
explain a score by robust z even for a graph without a `feature_error` output."""

_IQR_TO_SIGMA = 1.349
_TAIL_SPAN_SIGMAS = 4.6527

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


def _robust_scale(values: F64, center: F64) -> F64:
    """Per column: max(IQR / 1.349, (q99 - q1) / 4.65, 1e-3 (1 + |center|)).

    The first two are both a Gaussian's standard deviation; the second keeps heavy tails from scoring high.
    """
    q01, q25, q75, q99 = np.quantile(values, [0.01, 0.25, 0.75, 0.99], axis=0)
    floor = 1e-3 * (1.0 + np.abs(center))
    scale: F64 = np.maximum.reduce([(q75 - q25) / _IQR_TO_SIGMA, (q99 - q01) / _TAIL_SPAN_SIGMAS, floor])
    return scale


class PcaReconstructionDetector(BaseEstimator):  # type: ignore[misc]  # sklearn is untyped
    """Scores rows by the SPE and T² of a PCA of healthy, log-and-robust-scaled features.

    Args:
        explained_variance: fraction of the healthy (scaled) variance the kept components explain.
        max_components: upper bound on the kept components.
        seed: seed of PCA's solver (used by randomized solvers only).
    """

    def __init__(self, *, explained_variance: float = 0.5, max_components: int = 64, seed: int = 0) -> None:
        self.explained_variance = explained_variance
        self.max_components = max_components
        self.seed = seed

    def fit(self, features: npt.ArrayLike) -> Self:
        """Learn the healthy subspace from (n, F) healthy feature rows."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] < 8 or not np.isfinite(x).all():
            raise ValueError(f"features must be a finite (n >= 8, F) array, got shape {x.shape}")
        self.raw_center_ = np.median(x, axis=0)
        self.raw_scale_ = _robust_scale(x, self.raw_center_)
        self.log_mask_, self.log_offset_ = fit_logs(x)
        t = self._logs(x)
        self.center_ = np.median(t, axis=0)
        self.scale_ = _robust_scale(t, self.center_)
        z = (t - self.center_) / self.scale_
        full = PCA(svd_solver="full").fit(z)
        cumulative = np.cumsum(full.explained_variance_ratio_)
        wanted = int(np.searchsorted(cumulative, self.explained_variance) + 1)
        n_components = max(1, min(wanted, self.max_components, z.shape[1], z.shape[0] - 1))
        self.pca_ = PCA(n_components=n_components, svd_solver="full", random_state=self.seed).fit(z)
        self.n_features_in_ = x.shape[1]
        self.spe_weight_ = 1.0
        self.t2_weights_ = 0.5 / (n_components * np.maximum(self.pca_.explained_variance_, 1e-12))
        spe_median = float(np.median(self._squared_residuals(z).sum(axis=1)))
        self.spe_weight_ = 0.5 / max(spe_median, 1e-12)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "pca_"):
            raise NotFittedError("PcaReconstructionDetector is not fitted; call fit first")

    def _logs(self, x: F64) -> F64:
        return apply_logs(x, self.log_mask_, self.log_offset_)

    def _squared_residuals(self, z: F64, projection: F64 | None = None) -> F64:
        if projection is None:
            projection = self.pca_.transform(z)
        residual = z - self.pca_.inverse_transform(projection)
        squared: F64 = residual * residual
        return squared

    def scaled(self, features: npt.ArrayLike) -> F64:
        """Steps 1 and 2: logs of positive features, robustly centred and scaled."""
        self._check_fitted()
        x = np.asarray(features, dtype=np.float64)
        result: F64 = (self._logs(x) - self.center_) / self.scale_
        return result

    def feature_errors(self, features: npt.ArrayLike) -> F64:
        """Each feature's share of the SPE half of the score, (n, F)."""
        errors: F64 = self._squared_residuals(self.scaled(features)) * self.spe_weight_
        return errors

    def score_samples(self, features: npt.ArrayLike) -> F64:
        """Anomaly score of each row: (SPE / healthy median SPE + T² / k) / 2, about 1 when healthy."""
        z = self.scaled(features)
        projection = self.pca_.transform(z)
        spe = (self._squared_residuals(z, projection) * self.spe_weight_).sum(axis=1)
        scores: F64 = spe + (projection * projection * self.t2_weights_).sum(axis=1)
        return scores


def _pca_graph(detector: PcaReconstructionDetector, input_name: str) -> onnx.GraphProto:
    """skl2onnx's graph of PCA.transform, reading `input_name`."""
    model = convert_sklearn(
        detector.pca_,
        initial_types=[(input_name, FloatTensorType([None, int(detector.n_features_in_)]))],
        target_opset={"": ONNX_OPSET},
    )
    graph: onnx.GraphProto = model.graph
    return graph


def to_onnx(
    detector: PcaReconstructionDetector, *, input_name: str = "features", output_name: str = "score"
) -> bytes:
    """The float32 ONNX graph of `detector`: input (n, F), outputs `score` (n,) and `feature_error` (n, F).

    Returns:
        The serialized model, checked with `onnx.checker`.
    """
    detector._check_fitted()
    pca_graph = _pca_graph(detector, SCALED)
    projection = pca_graph.output[0].name
    pca = detector.pca_
    before, transform_constants = input_transform(
        input_name,
        log_offset=detector.log_offset_,
        log_mask=detector.log_mask_,
        center=detector.center_,
        scale=detector.scale_,
    )
    node = helper.make_node
    after = [
        node("MatMul", [projection, "components"], ["reconstructed_centred"]),
        node("Add", ["reconstructed_centred", "pca_mean"], ["reconstructed"]),
        *feature_error_nodes("reconstructed", "spe_weight", "spe"),
        node("Mul", [projection, projection], ["projection_squared"]),
        node("Mul", ["projection_squared", "t2_weights"], ["t2_terms"]),
        node("ReduceSum", ["t2_terms", "sum_axes"], ["t2"], keepdims=0),
        node("Add", ["spe", "t2"], [output_name]),
    ]
    constants = [
        const("components", pca.components_),
        const("pca_mean", pca.mean_),
        const("spe_weight", [detector.spe_weight_]),
        const("t2_weights", detector.t2_weights_),
        const("sum_axes", [1], np.int64),
    ]
    return assemble_scoring_model(
        name="pca_reconstruction",
        doc="PCA SPE + T² anomaly score over log/robust-scaled features (forewarn)",
        input_name=input_name,
        output_name=output_name,
        n_features=int(detector.n_features_in_),
        nodes=[*before, *pca_graph.node, *after],
        initializers=[*transform_constants, *constants, *pca_graph.initializer],
        properties={
            FEATURE_CENTER_KEY: json.dumps([float(v) for v in detector.raw_center_]),
            FEATURE_SCALE_KEY: json.dumps([float(v) for v in detector.raw_scale_]),
        },
    )
