"""Anomaly scorers for feature vectors: an online statistical baseline and an ONNX Runtime model.

A `Scorer` turns a batch of feature rows, columns in `feature_names` order, into one anomaly score per row;
a row is anomalous when its score is above `threshold`. Two implementations:

* `BaselineScorer`: learned online per asset before any model is deployed. Robust z-scores of each feature
  against a median and a robust scale estimated on a seeded reservoir sample of the windows seen so far;
  the score is the mean of the `combine_top` largest |z| of a row (1: the largest). Positive features
  (powers, RMS, frequencies) are compared in log space, where their spread is close to symmetric. With
  `features="shape"` only load-invariant features count: shape features (crest factor, kurtosis, skewness,
  spectral centroid) and each band's share of its sensor's band power, not absolute levels.
* `OnnxScorer`: a trained model (normally int8-quantized) in an `onnxruntime.InferenceSession`, whose graph
  computes the score itself. If the graph also exposes a per-feature error output, contributions come from
  it.

Neither scorer mutates shared state while scoring, so a scorer can be swapped by replacing one reference.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from shared.errors import ContractError, ModelVerificationError
from shared.messages import Contribution, ModelManifest

__all__ = [
    "FEATURE_CENTER_KEY",
    "FEATURE_ERROR_OUTPUT",
    "FEATURE_SCALE_KEY",
    "LEVEL_FEATURES",
    "MIN_FIT_ROWS",
    "BaselineFeatures",
    "BaselineScorer",
    "OnnxScorer",
    "Scorer",
    "make_session",
]

logger = logging.getLogger(__name__)

FEATURE_ERROR_OUTPUT = "feature_error"
"""Name of the optional graph output with each feature's share of the score, shape (n, F)."""
FEATURE_CENTER_KEY = "forewarn.feature_center"
FEATURE_SCALE_KEY = "forewarn.feature_scale"
"""Optional ONNX metadata: JSON lists of each feature's training median and robust scale (the fallback
for contributions when the graph has no `feature_error` output)."""

_MAX_ABS = 1e12  # scores and contributions are clipped to this, so they always fit a message's FiniteFloat
_MAX_Z = 1e6
_LOG_FLOOR = 1e-30
_MAD_TO_SIGMA = 1.4826  # MAD of a Gaussian times this is its standard deviation
_TAIL_SPAN_SIGMAS = 4.6527  # q99 - q1 of a Gaussian, in standard deviations
MIN_FIT_ROWS = 20
"""The fewest rows `BaselineScorer.finish_warmup` fits on: its q1/q99 tail span needs some rows."""

FloatArray = npt.NDArray[np.float32]
BaselineFeatures = Literal["all", "shape"]

LEVEL_FEATURES = frozenset(
    {"rms", "peak", "peak_to_peak", "std", "mean", "min", "max", "slope", "dominant_freq_hz"}
)
"""Feature suffixes a `features="shape"` baseline does not score: absolute levels that move with load,
speed and ambient temperature (RMS, peaks, a slow sensor's mean/min/max/slope) and the dominant frequency
(it jumps between shaft harmonics when their amplitudes trade places with load)."""
_BAND_PREFIX = "band_"


class Scorer(Protocol):
    """Scores feature rows; a row is anomalous when its score is above `threshold`."""

    @property
    def kind(self) -> Literal["baseline", "onnx"]:
        """`baseline` (online statistics) or `onnx` (a deployed model)."""
        ...

    @property
    def version(self) -> str:
        """`baseline`, or `target:vN` for a deployed model."""
        ...

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The order of the columns `score` expects."""
        ...

    @property
    def threshold(self) -> float:
        """A row is anomalous when its score is above this."""
        ...

    def score(self, features: FloatArray) -> FloatArray:
        """Scores of a (n, F) float32 batch, shape (n,)."""
        ...

    def contributions(self, row: FloatArray, top_k: int = 3) -> list[Contribution]:
        """The `top_k` features that pushed this row's score up most, largest first."""
        ...


def _as_batch(features: npt.ArrayLike, n_features: int) -> FloatArray:
    array = np.ascontiguousarray(features, dtype=np.float32)
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2 or array.shape[1] != n_features:
        raise ContractError("features", array.shape, f"a (n, {n_features}) array of feature rows")
    return array


def _finite(value: float) -> float:
    """`value` clipped to +-1e12, with NaN as +1e12, so it fits a message field."""
    if np.isnan(value):
        return _MAX_ABS
    return float(min(max(value, -_MAX_ABS), _MAX_ABS))


def _top_contributions(
    names: Sequence[str], row: FloatArray, weights: npt.NDArray[np.float64], top_k: int
) -> list[Contribution]:
    """Contributions of the `top_k` features with the largest |weight|, largest first."""
    if top_k <= 0:
        return []
    order = np.argsort(-np.abs(weights), kind="stable")[:top_k]
    return [
        Contribution(feature=names[j], value=_finite(float(row[j])), contribution=_finite(float(weights[j])))
        for j in order
    ]


class BaselineScorer:
    """Robust z-score baseline learned online from one asset's own windows.

    Until `warmup_windows` finite rows have been seen (or `finish_warmup` fitted early), `score` returns
    zeros and `contributions` nothing; the pipeline leaves such windows unscored (`warmup`).
    Statistics are re-estimated from a seeded reservoir sample (uniform over everything seen) at the end
    of warm-up and then every `refit_every` rows. Each feature's centre is the sample median; its scale is
    the larger of 1.4826 x MAD and (q99 - q1) / 4.65, both equal to the standard deviation for a Gaussian,
    the second keeping discrete or heavy-tailed features from scoring huge z on ordinary values. Features
    that were always positive are compared in log space. Each fit also scores the rows it was fitted on:
    their sorted scores (`healthy_scores_`) are the distribution of a healthy window's score, against which
    `baseline_learning` watches for level shifts.

    With `features="shape"`, features named `<sensor>.<suffix>` with a suffix in `LEVEL_FEATURES` get
    z = 0 (they move with load and ambient temperature, so a baseline learned in one regime would flag the
    next one), and each `<sensor>.band_j` is replaced by its share of the sensor's total band power, which
    stays put when the whole spectrum scales with load. The score is the mean of the `combine_top` largest
    |z| of a row: one noisy feature among ~20 no longer raises a window alone, a real fault (which moves
    several shape features together, e.g. kurtosis, crest factor and a high band) still does.

    Args:
        feature_names: the column order of the rows.
        threshold: a row is anomalous when its score is above this.
        warmup_windows: rows to learn from before scoring.
        seed: seed of the reservoir sampling.
        reservoir_size: rows kept to estimate the statistics.
        refit_every: rows between re-estimations after warm-up.
        features: `all` (every feature as it is) or `shape` (load-invariant features only, see above).
        combine_top: the score is the mean of this many largest |z| of a row (at most the features scored).

    >>> rng = np.random.default_rng(0)
    >>> scorer = BaselineScorer(feature_names=["a", "b"], warmup_windows=50)
    >>> scorer.update(rng.normal(10.0, 1.0, (200, 2)).astype(np.float32))
    >>> normal, odd = scorer.score(np.array([[10.0, 10.5], [10.0, 40.0]], dtype=np.float32))
    >>> bool(normal < scorer.threshold < odd)
    True
    """

    kind: Literal["baseline", "onnx"] = "baseline"
    version: str = "baseline"

    def __init__(
        self,
        *,
        feature_names: Sequence[str],
        threshold: float = 6.0,
        warmup_windows: int = 100,
        seed: int = 0,
        reservoir_size: int = 1024,
        refit_every: int = 200,
        features: BaselineFeatures = "all",
        combine_top: int = 1,
    ) -> None:
        self.feature_names = tuple(feature_names)
        self.threshold = float(threshold)
        self.warmup_windows = warmup_windows
        self.seed = seed
        self.reservoir_size = reservoir_size
        self.refit_every = refit_every
        self.features = features
        self.combine_top = combine_top
        self.reset()

    def reset(self) -> None:
        """Forget everything learned."""
        n_features = len(self.feature_names)
        self._rng = np.random.default_rng(self.seed)
        self._reservoir = np.empty((max(self.reservoir_size, 1), n_features), dtype=np.float64)
        self._n_seen = 0
        self._since_fit = 0
        self.center_: npt.NDArray[np.float64] | None = None
        self.scale_: npt.NDArray[np.float64] | None = None
        self.log_mask_: npt.NDArray[np.bool_] | None = None
        self.healthy_scores_ = np.zeros(1)
        self._scored, self._band_groups = _shape_layout(self.feature_names, self.features)

    @property
    def scored_features(self) -> tuple[str, ...]:
        """The features whose z-scores count towards the score (every feature with `features="all"`)."""
        return tuple(
            name for name, is_scored in zip(self.feature_names, self._scored, strict=True) if is_scored
        )

    @property
    def n_seen(self) -> int:
        """Finite rows learned from so far."""
        return self._n_seen

    @property
    def is_warmed_up(self) -> bool:
        """Whether enough rows were seen for `score` to return real scores."""
        return self.center_ is not None

    def finish_warmup(self) -> bool:
        """Fit now on the rows seen so far, however few (at least `MIN_FIT_ROWS`); whether it fitted.

        For a warm-up bounded by data time (`--learn-first`) rather than by `warmup_windows`.
        """
        if self._n_seen < MIN_FIT_ROWS:
            return False
        self._fit()
        return True

    def _transform(self, features: FloatArray) -> npt.NDArray[np.float64]:
        """The rows as float64, each band replaced by its share of its sensor's band power (shape mode)."""
        batch = _as_batch(features, len(self.feature_names)).astype(np.float64)
        for columns in self._band_groups:
            total = batch[:, columns].sum(axis=1, keepdims=True)
            with np.errstate(divide="ignore", invalid="ignore"):
                batch[:, columns] = batch[:, columns] / total
        return batch

    def update(self, features: FloatArray) -> None:
        """Learn from a (n, F) batch of rows; rows with NaN or inf are ignored."""
        batch = self._transform(features)
        batch = batch[np.isfinite(batch).all(axis=1)]
        self._add(batch)
        self._since_fit += len(batch)
        if (self.center_ is None and self._n_seen >= self.warmup_windows) or (
            self.center_ is not None and self._since_fit >= self.refit_every
        ):
            self._fit()

    def _add(self, rows: npt.NDArray[np.float64]) -> None:
        """Reservoir sampling (algorithm R), vectorised: every row seen has the same chance to be kept."""
        capacity = len(self._reservoir)
        n_fill = max(0, min(capacity - self._n_seen, len(rows)))
        self._reservoir[self._n_seen : self._n_seen + n_fill] = rows[:n_fill]
        rest = rows[n_fill:]
        if len(rest):
            seen_before = self._n_seen + n_fill + np.arange(len(rest))  # rows seen before each of `rest`
            slots = (self._rng.random(len(rest)) * (seen_before + 1)).astype(np.int64)
            kept = slots < capacity
            self._reservoir[slots[kept]] = rest[kept]  # later rows win a shared slot, as sequentially
        self._n_seen += len(rows)

    def _fit(self) -> None:
        sample = self._reservoir[: min(self._n_seen, len(self._reservoir))]
        log_mask: npt.NDArray[np.bool_] = np.asarray((sample > 0.0).all(axis=0))
        values = np.where(log_mask, np.log(np.maximum(sample, _LOG_FLOOR)), sample)
        q01, center, q99 = np.quantile(values, [0.01, 0.5, 0.99], axis=0)
        mad = np.median(np.abs(values - center), axis=0)
        floor = 1e-9 * (1.0 + np.abs(center))
        self.scale_ = np.maximum.reduce([_MAD_TO_SIGMA * mad, (q99 - q01) / _TAIL_SPAN_SIGMAS, floor])
        self.center_ = center
        self.log_mask_ = log_mask
        self._since_fit = 0
        self.healthy_scores_ = np.sort(self.score(sample.astype(np.float32)).astype(np.float64))

    def z_scores(self, features: FloatArray) -> npt.NDArray[np.float64]:
        """Robust z-score of every feature of every row, clipped to +-1e6.

        Zeros before warm-up, and for the features that are not scored (levels, with `features="shape"`).
        """
        batch = self._transform(features)
        if self.center_ is None or self.scale_ is None or self.log_mask_ is None:
            return np.zeros_like(batch)
        values = np.where(self.log_mask_, np.log(np.maximum(batch, _LOG_FLOOR)), batch)
        z = (values - self.center_) / self.scale_
        z = np.clip(np.nan_to_num(z, nan=_MAX_Z, posinf=_MAX_Z, neginf=-_MAX_Z), -_MAX_Z, _MAX_Z)
        z[:, ~self._scored] = 0.0
        return z

    def score(self, features: FloatArray) -> FloatArray:
        """The mean of each row's `combine_top` largest |z|, shape (n,); zeros before warm-up."""
        z = np.abs(self.z_scores(features)[:, self._scored])
        top = min(max(self.combine_top, 1), z.shape[1])
        if top == 0:
            return np.zeros(z.shape[0], dtype=np.float32)
        if top == 1:
            return np.asarray(z.max(axis=1), dtype=np.float32)
        largest = np.partition(z, z.shape[1] - top, axis=1)[:, z.shape[1] - top :]
        return np.asarray(largest.mean(axis=1), dtype=np.float32)

    def contributions(self, row: FloatArray, top_k: int = 3) -> list[Contribution]:
        """Features with the largest |z| (the signed z is the contribution); empty before warm-up."""
        if not self.is_warmed_up:
            return []
        batch = _as_batch(row, len(self.feature_names))
        return _top_contributions(self.feature_names, batch[0], self.z_scores(batch)[0], top_k)


def _shape_layout(
    names: Sequence[str], features: BaselineFeatures
) -> tuple[npt.NDArray[np.bool_], list[npt.NDArray[np.intp]]]:
    """Which columns a baseline scores, and the band columns of each sensor (normalised to shares).

    With `features="all"` every column is scored as it is; with `shape`, level features are not scored and
    the `band_j` columns of each sensor (two or more) become shares of that sensor's band power.
    """
    scored = np.ones(len(names), dtype=np.bool_)
    if features == "all":
        return scored, []
    bands: dict[str, list[int]] = {}
    for j, name in enumerate(names):
        sensor, _, suffix = name.rpartition(".")
        if suffix in LEVEL_FEATURES:
            scored[j] = False
        elif suffix.startswith(_BAND_PREFIX):
            bands.setdefault(sensor, []).append(j)
    groups = [np.array(columns, dtype=np.intp) for columns in bands.values() if len(columns) > 1]
    return scored, groups


def make_session(model: bytes, *, intra_op_threads: int = 1) -> ort.InferenceSession:
    """An ONNX Runtime CPU session for a serialized model, with `intra_op_threads` threads per call.

    Raises:
        ModelVerificationError: (`load`) if onnxruntime cannot load the model.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for any bad model
        raise ModelVerificationError("load", f"onnxruntime cannot load the model: {exc}") from exc


class OnnxScorer:
    """Scores with a model whose ONNX graph computes the anomaly score itself.

    The graph takes `manifest.input_name` (n, F) float32 and returns `manifest.output_name`, (n,) or (n, 1).
    If it also returns `feature_error` (n, F), contributions are each feature's share of the score; else,
    if its metadata holds the training statistics (`forewarn.feature_center`, `forewarn.feature_scale`),
    they are robust z-scores against them; else there are none. The session is created once and never
    changed; onnxruntime allows concurrent `run` calls on one session.

    Args:
        model: the serialized ONNX model (the artifact whose sha256 the manifest names).
        manifest: what the model expects and its threshold.
        intra_op_threads: onnxruntime intra-op threads per call (1 keeps a gateway core free).

    Raises:
        ModelVerificationError: (`load`) if the model cannot be loaded, (`io`) if its inputs or outputs do
            not match the manifest, (`features`) if its input width is not the number of feature names.
    """

    kind: Literal["baseline", "onnx"] = "onnx"

    def __init__(self, model: bytes, manifest: ModelManifest, *, intra_op_threads: int = 1) -> None:
        self.manifest = manifest
        self.version = f"{manifest.target}:v{manifest.version}"
        self.feature_names = tuple(manifest.feature_names)
        self.threshold = float(manifest.threshold)
        self._session = make_session(model, intra_op_threads=intra_op_threads)
        self._check_io()

    def _check_io(self) -> None:
        inputs = {node.name: node for node in self._session.get_inputs()}
        outputs = {node.name for node in self._session.get_outputs()}
        if self.manifest.input_name not in inputs or len(inputs) != 1:
            raise ModelVerificationError(
                "io", f"expected one input {self.manifest.input_name!r}, the graph has {sorted(inputs)}"
            )
        if self.manifest.output_name not in outputs:
            raise ModelVerificationError(
                "io", f"expected output {self.manifest.output_name!r}, the graph has {sorted(outputs)}"
            )
        shape = inputs[self.manifest.input_name].shape
        width = shape[-1] if len(shape) == 2 else None
        if isinstance(width, int) and width != len(self.feature_names):
            raise ModelVerificationError(
                "features", f"the graph takes {width} features, the manifest names {len(self.feature_names)}"
            )
        self._has_feature_error = FEATURE_ERROR_OUTPUT in outputs
        self._center, self._scale = self._training_statistics()

    def _training_statistics(self) -> tuple[npt.NDArray[np.float64] | None, npt.NDArray[np.float64] | None]:
        """The per-feature training median and scale from the model's metadata, if present and sane."""
        props = self._session.get_modelmeta().custom_metadata_map
        try:
            center = np.array(json.loads(props[FEATURE_CENTER_KEY]), dtype=np.float64)
            scale = np.array(json.loads(props[FEATURE_SCALE_KEY]), dtype=np.float64)
        except (KeyError, ValueError, TypeError):
            return None, None
        width = len(self.feature_names)
        if (
            center.shape != (width,)
            or scale.shape != (width,)
            or not (np.isfinite(center).all() and (scale > 0).all())
        ):
            logger.warning("model %s has unusable training statistics in its metadata; ignored", self.version)
            return None, None
        return center, scale

    def score(self, features: FloatArray) -> FloatArray:
        """Scores of a (n, F) float32 batch, shape (n,); non-finite results become +1e12."""
        batch = _as_batch(features, len(self.feature_names))
        (raw,) = self._session.run([self.manifest.output_name], {self.manifest.input_name: batch})
        scores = np.asarray(raw, dtype=np.float32).reshape(len(batch))
        return np.clip(
            np.nan_to_num(scores, nan=_MAX_ABS, posinf=_MAX_ABS, neginf=-_MAX_ABS), -_MAX_ABS, _MAX_ABS
        )

    def contributions(self, row: FloatArray, top_k: int = 3) -> list[Contribution]:
        """Features with the largest per-feature error, else the largest robust z, else an empty list."""
        batch = _as_batch(row, len(self.feature_names))
        if self._has_feature_error:
            (errors,) = self._session.run([FEATURE_ERROR_OUTPUT], {self.manifest.input_name: batch[:1]})
            weights = np.asarray(errors, dtype=np.float64).reshape(-1)
            if weights.shape[0] == len(self.feature_names):
                return _top_contributions(self.feature_names, batch[0], weights, top_k)
        if self._center is not None and self._scale is not None:
            z = (batch[0].astype(np.float64) - self._center) / self._scale
            z = np.clip(np.nan_to_num(z, nan=_MAX_Z, posinf=_MAX_Z, neginf=-_MAX_Z), -_MAX_Z, _MAX_Z)
            return _top_contributions(self.feature_names, batch[0], z, top_k)
        return []
