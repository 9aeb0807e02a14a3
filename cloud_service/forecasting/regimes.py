"""Per-operating-regime normalisation: machines at different loads read differently.

The condition columns (load, speed, altitude, ...) are standardised and clustered with k-means. The number
of regimes k (2 to `max_regimes`) is chosen for the purpose: on a sample of training rows, the share of the
(standardised) sensor variance that the regime means explain is computed for each k, and the smallest k
within `tolerance` (0.02) of the best is kept; k = 1 when the conditions are constant or no k explains
`min_explained` (5 %) of the variance (the conditions do not move the sensors). Each sensor is then
z-scored with the mean and standard deviation of its regime, learned on training data. Without condition
columns there is one regime, i.e. a global z-score.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
from sklearn.cluster import KMeans
from sklearn.exceptions import NotFittedError

__all__ = ["RegimeNormalizer"]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
_MIN_STD = 1e-9
MAX_Z = 100.0  # values this far out are clipped: a broken sensor must not dominate the pooled drift


class RegimeNormalizer:
    """Cluster operating conditions into regimes and z-score each sensor per regime.

    Args:
        max_regimes: the largest number of regimes tried.
        min_explained: regimes must explain at least this share of the sensor variance (else one regime).
        tolerance: the fewest regimes explaining within this share of the best are chosen.
        sample_rows: rows sampled for choosing k.
        seed: seed of the sampling and of k-means.
    """

    def __init__(
        self,
        *,
        max_regimes: int = 8,
        min_explained: float = 0.05,
        tolerance: float = 0.02,
        sample_rows: int = 3000,
        seed: int = 0,
    ) -> None:
        self.max_regimes = max_regimes
        self.min_explained = min_explained
        self.tolerance = tolerance
        self.sample_rows = sample_rows
        self.seed = seed

    def fit(self, conditions: FloatArray, sensors: FloatArray) -> RegimeNormalizer:
        """Learn regimes from `conditions` (rows x c, c may be 0) and per-regime sensor statistics."""
        rng = np.random.default_rng(self.seed)
        self.n_conditions_ = int(conditions.shape[1])
        self.kmeans_: KMeans | None = None
        self.explained_ = 0.0
        if self.n_conditions_:
            filled = _fill_columns(conditions, np.nanmedian(conditions, axis=0))
            self.condition_center_ = filled.mean(axis=0)
            self.condition_scale_ = np.maximum(filled.std(axis=0), _MIN_STD)
            scaled = (filled - self.condition_center_) / self.condition_scale_
            self.kmeans_, self.explained_ = self._choose_clustering(scaled, sensors, rng)
        regimes = self.regimes(conditions)
        self.n_regimes_ = 1 if self.kmeans_ is None else int(self.kmeans_.n_clusters)
        global_mean = _nan_stat(np.nanmean, sensors)
        global_std = _nan_stat(np.nanstd, sensors)
        # A sensor constant in training carries no information: it reads 0 whatever it reads later, so a
        # tiny change on new data cannot become a huge z-score.
        scale = np.maximum(np.abs(np.nan_to_num(global_mean)), 1.0)
        global_std = np.where(np.isnan(global_std) | (global_std < _MIN_STD * scale), np.inf, global_std)
        self.mean_ = np.tile(global_mean, (self.n_regimes_, 1))
        self.std_ = np.tile(global_std, (self.n_regimes_, 1))
        for regime in range(self.n_regimes_):
            rows = sensors[regimes == regime]
            if rows.shape[0] >= 10:
                self.mean_[regime] = np.where(np.isnan(m := _nan_stat(np.nanmean, rows)), global_mean, m)
                std = _nan_stat(np.nanstd, rows)
                self.std_[regime] = np.where(np.isnan(std) | (std < _MIN_STD), global_std, std)
        logger.info(
            "operating regimes: %d (explaining %.3f of sensor variance)", self.n_regimes_, self.explained_
        )
        return self

    def _choose_clustering(
        self, scaled: FloatArray, sensors: FloatArray, rng: np.random.Generator
    ) -> tuple[KMeans | None, float]:
        """The clustering whose regimes explain the sensors best, with as few regimes as possible."""
        pick = rng.choice(scaled.shape[0], min(scaled.shape[0], self.sample_rows), replace=False)
        sample, values = scaled[pick], _standardise(sensors[pick])
        total = float(np.sum(values * values))
        distinct = np.unique(np.round(sample, 6), axis=0).shape[0]
        if total <= 0.0 or distinct < 2:
            return None, 0.0
        candidates: list[tuple[KMeans, float]] = []
        for k in range(2, min(self.max_regimes, distinct) + 1):
            model = KMeans(n_clusters=k, n_init=3, random_state=self.seed).fit(sample)
            within = sum(
                float(np.sum((values[model.labels_ == c] - values[model.labels_ == c].mean(axis=0)) ** 2))
                for c in np.unique(model.labels_)
            )
            candidates.append((model, 1.0 - within / total))
            logger.debug("regimes k=%d explain %.3f of the sensor variance", k, candidates[-1][1])
        best = max(explained for _, explained in candidates)
        if best < self.min_explained:
            return None, best
        return next(
            (model, explained) for model, explained in candidates if explained >= best - self.tolerance
        )

    def regimes(self, conditions: FloatArray) -> npt.NDArray[np.int64]:
        """The regime index (0 to n_regimes - 1) of each row."""
        if not hasattr(self, "n_conditions_"):
            raise NotFittedError("RegimeNormalizer is not fitted")
        if self.kmeans_ is None or conditions.shape[0] == 0:
            return np.zeros(conditions.shape[0], dtype=np.int64)
        filled = _fill_columns(conditions, self.condition_center_)
        labels = self.kmeans_.predict((filled - self.condition_center_) / self.condition_scale_)
        return np.asarray(labels, dtype=np.int64)

    def transform(self, conditions: FloatArray, sensors: FloatArray) -> FloatArray:
        """Sensors z-scored per regime, clipped to +-`MAX_Z` (NaN stays NaN; constant sensors read 0)."""
        regimes = self.regimes(conditions)
        with np.errstate(invalid="ignore"):
            z = (sensors - self.mean_[regimes]) / self.std_[regimes]
        return np.asarray(np.clip(z, -MAX_Z, MAX_Z), dtype=np.float64)

    def describe(self, condition_columns: Sequence[str]) -> dict[str, object]:
        """A JSON-able summary for the model metadata."""
        centers: list[list[float]] = []
        if self.kmeans_ is not None:
            raw = self.kmeans_.cluster_centers_ * self.condition_scale_ + self.condition_center_
            centers = [[round(float(v), 6) for v in row] for row in raw]
        return {
            "condition_columns": list(condition_columns),
            "n_regimes": self.n_regimes_,
            "explained_variance": round(self.explained_, 4),
            "centers": centers,
        }


def _nan_stat(stat: Callable[..., FloatArray], rows: FloatArray) -> FloatArray:
    """A numpy nan-reducer over rows, silent about all-NaN columns (they give NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return np.asarray(stat(rows, axis=0), dtype=np.float64)


def _standardise(values: FloatArray) -> FloatArray:
    """Columns centred and scaled to unit variance, NaN as 0; constant columns become 0."""
    mean = _nan_stat(np.nanmean, values)
    std = _nan_stat(np.nanstd, values)
    scaled = (values - mean) / np.where(np.isnan(std) | (std < _MIN_STD), np.inf, std)
    return np.where(np.isnan(scaled), 0.0, scaled)


def _fill_columns(matrix: FloatArray, fill: FloatArray) -> FloatArray:
    fill = np.where(np.isnan(fill), 0.0, fill)
    return np.where(np.isnan(matrix), fill, matrix)
