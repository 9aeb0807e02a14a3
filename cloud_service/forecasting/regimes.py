"""Per-operating-regime normalisation: machines at different loads read differently.

Regimes are found in the condition columns (load, speed, altitude, ...) alone. Columns that are constant in
training are left out; the others are standardised, and Gaussian mixtures (diagonal covariances, each
variance floored at `variance_floor` of a column's variance so that tight clusters are not split further)
with 1 to `max_regimes` components are fitted to a sample of rows. The number of regimes is the one with
the lowest Bayesian information criterion (BIC) among the mixtures whose regimes are clearly separated
(silhouette of the sample's regime labels at least `min_silhouette`, 0.7: "strong structure" in Kaufman
and Rousseeuw's scale; one regime always qualifies). BIC alone splits a single, non-Gaussian operating
point (measured: quantised condition readings); `n_regimes` forces the number. Each sensor is then
z-scored with the mean and standard deviation of its regime, learned on training data. Without condition
columns there is one regime, i.e. a global z-score. A sensor that is constant in training (standard
deviation below `1e-9 x max(1, |mean|)`) carries no information: it is listed in `constant_sensors_`
and reads 0.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from sklearn.mixture import GaussianMixture

__all__ = ["RegimeNormalizer"]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
_MIN_STD = 1e-9
MAX_Z = 100.0  # values this far out are clipped: a broken sensor must not dominate a feature


class RegimeNormalizer:
    """Cluster operating conditions into regimes (BIC over Gaussian mixtures) and z-score each sensor.

    Args:
        n_regimes: the number of regimes to use (None: chosen by BIC).
        max_regimes: the largest number of regimes BIC may choose.
        variance_floor: floor of each mixture component's variance, as a share of the column's variance.
        min_silhouette: the silhouette a mixture's regimes need to count as separate.
        sample_rows: rows sampled for the mixtures.
        seed: seed of the sampling and of the mixtures.
    """

    def __init__(
        self,
        *,
        n_regimes: int | None = None,
        max_regimes: int = 10,
        variance_floor: float = 1e-3,
        min_silhouette: float = 0.7,
        sample_rows: int = 3000,
        seed: int = 0,
    ) -> None:
        self.n_regimes = n_regimes
        self.max_regimes = max_regimes
        self.variance_floor = variance_floor
        self.min_silhouette = min_silhouette
        self.sample_rows = sample_rows
        self.seed = seed

    def fit(self, conditions: FloatArray, sensors: FloatArray) -> RegimeNormalizer:
        """Learn regimes from `conditions` (rows x c, c may be 0) and per-regime sensor statistics."""
        self.mixture_: GaussianMixture | None = None
        self.bic_: dict[int, float] = {}
        self.silhouette_: dict[int, float] = {}
        self.condition_used_ = np.zeros(conditions.shape[1], dtype=bool)
        self.condition_center_ = np.zeros(conditions.shape[1])
        self.condition_scale_ = np.ones(conditions.shape[1])
        if conditions.shape[1] and conditions.shape[0]:
            filled = _fill_columns(conditions, _nan_stat(np.nanmedian, conditions))
            center, scale = filled.mean(axis=0), filled.std(axis=0)
            self.condition_used_ = scale > _MIN_STD * np.maximum(np.abs(center), 1.0)
            self.condition_center_ = center
            self.condition_scale_ = np.where(self.condition_used_, scale, 1.0)
            if self.condition_used_.any():
                self.mixture_ = self._choose_mixture(self._scaled(filled))
        self.n_regimes_ = 1 if self.mixture_ is None else int(self.mixture_.n_components)
        regimes = self.regimes(conditions)
        global_mean = _nan_stat(np.nanmean, sensors)
        global_std = _nan_stat(np.nanstd, sensors)
        scale = np.maximum(np.abs(np.nan_to_num(global_mean)), 1.0)
        is_constant = np.isnan(global_std) | (global_std < _MIN_STD * scale)
        self.constant_sensors_ = is_constant
        global_std = np.where(is_constant, np.inf, global_std)
        self.mean_ = np.tile(global_mean, (self.n_regimes_, 1))
        self.std_ = np.tile(global_std, (self.n_regimes_, 1))
        for regime in range(self.n_regimes_):
            rows = sensors[regimes == regime]
            if rows.shape[0] >= 10:
                self.mean_[regime] = np.where(np.isnan(m := _nan_stat(np.nanmean, rows)), global_mean, m)
                std = _nan_stat(np.nanstd, rows)
                self.std_[regime] = np.where(np.isnan(std) | (std < _MIN_STD * scale), global_std, std)
        logger.info("operating regimes: %d (%s)", self.n_regimes_, self.criterion)
        return self

    @property
    def criterion(self) -> str:
        """How the number of regimes was chosen, for messages and the model summary."""
        if self.n_regimes is not None:
            return "forced by the user"
        if not self.bic_:
            return "no varying condition column"
        return (
            f"lowest BIC of Gaussian mixtures with 1 to {max(self.bic_)} components whose regimes are "
            f"separated (silhouette >= {self.min_silhouette:g})"
        )

    def _scaled(self, filled: FloatArray) -> FloatArray:
        scaled = (filled - self.condition_center_) / self.condition_scale_
        return np.asarray(scaled[:, self.condition_used_], dtype=np.float64)

    def _choose_mixture(self, scaled: FloatArray) -> GaussianMixture | None:
        from sklearn.metrics import silhouette_score  # noqa: PLC0415  # keeps the package import cheap
        from sklearn.mixture import GaussianMixture  # noqa: PLC0415  # keeps the package import cheap

        rng = np.random.default_rng(self.seed)
        pick = rng.choice(scaled.shape[0], min(scaled.shape[0], self.sample_rows), replace=False)
        sample = scaled[pick]
        distinct = np.unique(np.round(sample, 6), axis=0).shape[0]
        if self.n_regimes is not None:
            counts = [self.n_regimes]
        else:
            counts = list(range(1, min(self.max_regimes, distinct) + 1))
        best: tuple[float, GaussianMixture] | None = None
        for k in counts:
            mixture = GaussianMixture(
                n_components=k,
                covariance_type="diag",
                reg_covar=self.variance_floor,
                init_params="k-means++",
                random_state=self.seed,
            ).fit(sample)
            bic = float(mixture.bic(sample))
            is_separated = True
            if self.n_regimes is None:
                self.bic_[k] = round(bic, 2)
                labels = mixture.predict(sample)
                if k > 1 and np.unique(labels).size > 1:
                    silhouette = float(
                        silhouette_score(sample, labels, sample_size=2000, random_state=self.seed)
                    )
                    self.silhouette_[k] = round(silhouette, 3)
                    is_separated = silhouette >= self.min_silhouette
                elif k > 1:
                    is_separated = False
            logger.debug("regimes k=%d: BIC %.1f", k, bic)
            if is_separated and (best is None or bic < best[0]):
                best = (bic, mixture)
        if best is None or best[1].n_components == 1:
            return None
        return best[1]

    def regimes(self, conditions: FloatArray) -> npt.NDArray[np.int64]:
        """The regime index (0 to n_regimes - 1) of each row.

        Raises:
            NotFittedError: before `fit`.
        """
        if not hasattr(self, "n_regimes_"):
            from sklearn.exceptions import NotFittedError  # noqa: PLC0415  # keeps the package import cheap

            raise NotFittedError("RegimeNormalizer is not fitted")
        if self.mixture_ is None or conditions.shape[0] == 0:
            return np.zeros(conditions.shape[0], dtype=np.int64)
        filled = _fill_columns(conditions, self.condition_center_)
        return np.asarray(self.mixture_.predict(self._scaled(filled)), dtype=np.int64)

    def transform(self, conditions: FloatArray, sensors: FloatArray) -> FloatArray:
        """Sensors z-scored per regime, clipped to +-`MAX_Z` (NaN stays NaN; constant sensors read 0)."""
        regimes = self.regimes(conditions)
        with np.errstate(invalid="ignore"):
            z = (sensors - self.mean_[regimes]) / self.std_[regimes]
        return np.asarray(np.clip(z, -MAX_Z, MAX_Z), dtype=np.float64)

    def describe(self, condition_columns: Sequence[str]) -> dict[str, object]:
        """A JSON-able summary for the model metadata."""
        centers: list[list[float]] = []
        if self.mixture_ is not None:
            used = np.flatnonzero(self.condition_used_)
            for row in self.mixture_.means_:
                center = self.condition_center_.copy()
                center[used] = row * self.condition_scale_[used] + self.condition_center_[used]
                centers.append([round(float(v), 6) for v in center])
        return {
            "condition_columns": list(condition_columns),
            "n_regimes": self.n_regimes_,
            "criterion": self.criterion,
            "bic_by_regimes": {str(k): v for k, v in self.bic_.items()},
            "silhouette_by_regimes": {str(k): v for k, v in self.silhouette_.items()},
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
