"""Per-operating-regime normalisation: machines at different loads read differently.

The condition columns (load, speed, altitude, ...) are standardised and clustered with k-means; the number
of regimes k (1 to `max_regimes`) is chosen by the silhouette score on a sample of the training rows (k = 1
when the conditions are constant or no k reaches `min_silhouette`). Each sensor is then z-scored with
the mean and standard deviation of its regime, learned on training data. Without condition columns there is
one regime, i.e. a global z-score.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
from sklearn.cluster import KMeans
from sklearn.exceptions import NotFittedError
from sklearn.metrics import silhouette_score

__all__ = ["RegimeNormalizer"]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
_MIN_STD = 1e-9


class RegimeNormalizer:
    """Cluster operating conditions into regimes and z-score each sensor per regime.

    Args:
        max_regimes: the largest number of regimes tried.
        min_silhouette: a clustering must reach this silhouette score to be used (else one regime).
        sample_rows: rows sampled for choosing k.
        seed: seed of the sampling and of k-means.
    """

    def __init__(
        self,
        *,
        max_regimes: int = 8,
        min_silhouette: float = 0.3,
        sample_rows: int = 3000,
        seed: int = 0,
    ) -> None:
        self.max_regimes = max_regimes
        self.min_silhouette = min_silhouette
        self.sample_rows = sample_rows
        self.seed = seed

    def fit(self, conditions: FloatArray, sensors: FloatArray) -> RegimeNormalizer:
        """Learn regimes from `conditions` (rows x c, c may be 0) and per-regime sensor statistics."""
        rng = np.random.default_rng(self.seed)
        self.n_conditions_ = int(conditions.shape[1])
        self.kmeans_: KMeans | None = None
        self.silhouette_ = float("nan")
        if self.n_conditions_:
            filled = _fill_columns(conditions, np.nanmedian(conditions, axis=0))
            self.condition_center_ = filled.mean(axis=0)
            self.condition_scale_ = np.maximum(filled.std(axis=0), _MIN_STD)
            scaled = (filled - self.condition_center_) / self.condition_scale_
            self.kmeans_, self.silhouette_ = self._choose_clustering(scaled, rng)
        regimes = self.regimes(conditions)
        self.n_regimes_ = 1 if self.kmeans_ is None else int(self.kmeans_.n_clusters)
        global_mean = _nan_stat(np.nanmean, sensors)
        global_std = np.maximum(_nan_stat(np.nanstd, sensors), _MIN_STD)
        self.mean_ = np.tile(global_mean, (self.n_regimes_, 1))
        self.std_ = np.tile(global_std, (self.n_regimes_, 1))
        for regime in range(self.n_regimes_):
            rows = sensors[regimes == regime]
            if rows.shape[0] >= 10:
                self.mean_[regime] = np.where(np.isnan(m := _nan_stat(np.nanmean, rows)), global_mean, m)
                std = _nan_stat(np.nanstd, rows)
                self.std_[regime] = np.where(np.isnan(std) | (std < _MIN_STD), global_std, std)
        logger.info("operating regimes: %d (silhouette %.3f)", self.n_regimes_, self.silhouette_)
        return self

    def _choose_clustering(self, scaled: FloatArray, rng: np.random.Generator) -> tuple[KMeans | None, float]:
        sample = scaled
        if scaled.shape[0] > self.sample_rows:
            sample = scaled[rng.choice(scaled.shape[0], self.sample_rows, replace=False)]
        distinct = np.unique(np.round(sample, 6), axis=0).shape[0]
        best: tuple[KMeans | None, float] = (None, float("nan"))
        best_score = self.min_silhouette
        for k in range(2, min(self.max_regimes, distinct) + 1):
            model = KMeans(n_clusters=k, n_init=3, random_state=self.seed).fit(sample)
            if len(np.unique(model.labels_)) < 2:
                continue
            score = float(
                silhouette_score(
                    sample, model.labels_, sample_size=min(2000, sample.shape[0]), random_state=self.seed
                )
            )
            logger.debug("regimes k=%d silhouette %.3f", k, score)
            if score > best_score + 0.01:
                best, best_score = (model, score), score
        return best

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
        """Sensors z-scored per regime (NaN stays NaN)."""
        regimes = self.regimes(conditions)
        return np.asarray((sensors - self.mean_[regimes]) / self.std_[regimes], dtype=np.float64)

    def describe(self, condition_columns: Sequence[str]) -> dict[str, object]:
        """A JSON-able summary for the model metadata."""
        centers: list[list[float]] = []
        if self.kmeans_ is not None:
            raw = self.kmeans_.cluster_centers_ * self.condition_scale_ + self.condition_center_
            centers = [[round(float(v), 6) for v in row] for row in raw]
        return {
            "condition_columns": list(condition_columns),
            "n_regimes": self.n_regimes_,
            "silhouette": None if np.isnan(self.silhouette_) else round(self.silhouette_, 4),
            "centers": centers,
        }


def _nan_stat(stat: Callable[..., FloatArray], rows: FloatArray) -> FloatArray:
    """A numpy nan-reducer over rows, silent about all-NaN columns (they give NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return np.asarray(stat(rows, axis=0), dtype=np.float64)


def _fill_columns(matrix: FloatArray, fill: FloatArray) -> FloatArray:
    fill = np.where(np.isnan(fill), 0.0, fill)
    return np.where(np.isnan(matrix), fill, matrix)
