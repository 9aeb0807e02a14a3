"""MLP autoencoder anomaly detector over feature vectors, and its conversion to one ONNX graph.

A scikit-learn `MLPRegressor` is trained to reproduce healthy rows after the same kind of scaling as the
PCA detector (logs of always-positive features, robust centring and scaling); a row's score is its mean
squared reconstruction error over the healthy median (about 1 on healthy data). `mlp_to_onnx` converts
the network with skl2onnx and writes the scaling and the error as ONNX nodes around it, so the graph
outputs the score itself, plus `feature_error` (each feature's share of the score) for contributions.
"""

from __future__ import annotations

import warnings
from typing import Self

import numpy as np
import numpy.typing as npt
from onnx import helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.neural_network import MLPRegressor

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

__all__ = ["MlpAutoencoderDetector", "mlp_to_onnx"]

F64 = npt.NDArray[np.float64]
_IQR_TO_SIGMA = 1.349


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
        """Learn to reproduce (n, F) healthy rows.

        Raises:
            ValueError: the rows are not a finite (n >= 16, F) array.
        """
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
    """The float32 ONNX graph of `detector`: input (n, F); outputs `score` (n,) and `feature_error` (n, F).

    Raises:
        NotFittedError: the detector is not fitted.
    """
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
