"""P(failure within the horizon h): a classifier on "fails within h" labels, calibrated against the base rate.

The probability is learned from every asset-hour (row) whose outcome is known, not from the run-to-failure
lives alone: conditioned on an asset being in a life that ends in a failure, most of its rows are near
that failure, so a probability derived from those lives' residuals (the RUL model's conformal predictive
distribution) is many times the fleet's real rate (the live demo's plant: 43-83 % a week for nearly every
asset, against about 3 % observed).

1. Labels. A row at time t of asset a is positive if a has a failure event in [t, t + h] (in its current
   life, or in a later one after a maintenance: a maintenance itself is not a failure).
   It is negative if a was watched failure-free through t + h. A row within h of the end of a
   right-censored asset's observation is left out whether a failure followed or not: keeping the failures
   seen in that last stretch but not the survivals (whose outcome is not known yet) would inflate the
   rate; leaving the whole stretch out is unbiased under censoring that does not depend on the asset's
   state (a data window ending now). An asset whose data ends at a failure (run-to-failure files) was
   watched to its failure, so every row of it is known.
2. The base rate r: the share of positive rows among the known rows, i.e. the fleet's failures per
   asset-hour turned into a probability over h.
3. Gradient-boosted trees (the regressor's fixed settings, leaves of at least 100 rows) fitted once per
   fold of whole assets, giving an out-of-fold probability for every known row.
4. Recalibration (Platt: logistic regression of the label on the logit of the out-of-fold probability)
   fitted on the out-of-fold rows. A slope of 0 is the base rate itself, so a model without skill is
   pulled towards r by the data, not by a constant.
5. Skill, out of fold twice over: each fold's rows recalibrated by a fit on the other folds' rows and
   scored (Brier) beside the other folds' base rate. The gain counts as skill only if it is significant
   (one-sided 5 %, z > 1.645, with a cluster-robust standard error over assets: rows of one asset are
   nearly copies of each other). Without skill the forecaster predicts r for every asset: no pattern the
   data do not support (on pure noise a gain below the base rate's Brier turns up by chance).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from cloud_service.forecasting.data import Life
from cloud_service.forecasting.table import Table, subsample

if TYPE_CHECKING:
    from sklearn.ensemble import HistGradientBoostingClassifier

__all__ = ["FailureProbability", "fit_failure_probability", "horizon_labels", "platt"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_EPS = 1e-6  # probabilities are clipped to [eps, 1 - eps] before taking logits
SKILL_Z = 1.645  # one-sided 5 % test of "the model's Brier is below the base rate's", assets as units
_RIDGE = 1e-3  # a tiny L2 penalty on the Platt slope: keeps Newton's method finite on separable folds


@dataclass
class FailureProbability:
    """The fitted probability: fold classifiers (None: a fold without both outcomes), Platt (a, b)."""

    classifiers: list[HistGradientBoostingClassifier | None]
    fold_rates: list[float]
    intercept: float
    slope: float
    base_rate: float
    report: dict[str, Any]

    def predict(self, x: npt.NDArray[np.float32]) -> FloatArray:
        """P(failure within the horizon) for feature rows `x`."""
        if self.slope == 0.0:
            return np.full(x.shape[0], _sigmoid(np.array([self.intercept]))[0])
        raw = np.mean(
            [_proba(model, rate, x) for model, rate in zip(self.classifiers, self.fold_rates, strict=True)],
            axis=0,
        )
        return _sigmoid(self.intercept + self.slope * _logit(raw))


def horizon_labels(
    asset: IntArray, time: FloatArray, lives: Sequence[Life], horizon: float
) -> tuple[BoolArray, BoolArray]:
    """(known, positive) per row: is "a failure within `horizon`" known for the row, and did one happen.

    Args:
        asset: each row's asset index (as `Life.asset_index`).
        time: each row's time.
        lives: the lives of the rows' history (`data.split_lives`), in its order.
        horizon: h, in the time's unit.
    """
    n_assets = int(asset.max()) + 1 if asset.size else 0
    failures: list[list[float]] = [[] for _ in range(n_assets)]
    watched_to: FloatArray = np.full(n_assets, -np.inf)
    ends_failed = np.zeros(n_assets, dtype=bool)
    for life in lives:  # an asset's lives in time order: its last one is seen last
        if life.failed:
            failures[life.asset_index].append(life.end_time)
        watched_to[life.asset_index] = life.end_time
        ends_failed[life.asset_index] = life.failed
    next_failure = np.full(time.shape[0], np.inf)
    for number in range(n_assets):
        rows = np.flatnonzero(asset == number)
        if not failures[number] or rows.size == 0:
            continue
        times = np.sort(np.asarray(failures[number]))
        index = np.searchsorted(times, time[rows], side="left")
        found = index < times.size
        next_failure[rows[found]] = times[index[found]]
    known = (time + horizon <= watched_to[asset]) | ends_failed[asset]
    return known, known & ((next_failure - time) <= horizon)


def fit_failure_probability(
    table: Table,
    lives: Sequence[Life],
    *,
    horizon: float,
    folds: Sequence[tuple[IntArray, IntArray]],
    params: dict[str, float],
    max_fit_rows: int,
    seed: int,
) -> FailureProbability:
    """Fit the classifier per fold, recalibrate it out of fold, and measure its skill (module docstring).

    Args:
        table: the training table.
        lives: its lives.
        horizon: h, in the table's time unit.
        folds: (training rows, held-out rows) per fold of whole assets (any rows; unknown ones are dropped).
        params: the gradient-boosting settings.
        max_fit_rows: training rows sampled per fold model.
        seed: seed of the sampling and the trees.
    """
    known, positive = horizon_labels(table.asset, table.time, lives, horizon)
    label = positive.astype(np.float64)
    known_rows = np.flatnonzero(known)
    base_rate = float(label[known_rows].mean()) if known_rows.size else 0.0
    classifiers: list[HistGradientBoostingClassifier | None] = []
    fold_rates: list[float] = []
    oof = np.full(label.size, np.nan)
    fold_of_row = np.full(label.size, -1)
    for number, (train_rows, held_rows) in enumerate(folds):
        train = subsample(train_rows[known[train_rows]], max_fit_rows, seed + 100 + number)
        held = held_rows[known[held_rows]]
        rate = float(label[train].mean()) if train.size else base_rate
        model = None
        if 0 < label[train].sum() < train.size:
            model = _new_classifier(seed, params).fit(table.x[train], positive[train])
        classifiers.append(model)
        fold_rates.append(rate)
        oof[held] = _proba(model, rate, table.x[held])
        fold_of_row[held] = number
    scored = np.flatnonzero(~np.isnan(oof))
    z, y, fold = _logit(oof[scored]), label[scored], fold_of_row[scored]
    cv_p, cv_base = np.empty(scored.size), np.empty(scored.size)
    for number in range(len(folds)):
        mine = fold == number
        if not mine.any():
            continue
        a, b = platt(z[~mine], y[~mine])
        cv_p[mine] = _sigmoid(a + b * z[mine])
        cv_base[mine] = y[~mine].mean() if (~mine).any() else base_rate
    brier = float(np.mean((cv_p - y) ** 2)) if scored.size else float("nan")
    base_brier = float(np.mean((cv_base - y) ** 2)) if scored.size else float("nan")
    z_skill = _skill_z(table.asset[scored], (cv_base - y) ** 2 - (cv_p - y) ** 2)
    skilled = bool(scored.size and y.any() and z_skill > SKILL_Z)
    intercept, slope = platt(z, y) if skilled else (float(_logit(np.array([base_rate]))[0]), 0.0)
    report = {
        "method": "gradient-boosted classifier of 'a failure within the horizon' on every row whose outcome "
        "is known, Platt-recalibrated out of fold; the base rate without out-of-fold skill",
        "horizon": horizon,
        "rows_known": int(known_rows.size),
        "rows_unknown": int(label.size - known_rows.size),
        "rows_positive": int(positive.sum()),
        "base_rate": round(base_rate, 6),
        "cv_brier": round(brier, 6),
        "cv_base_rate_brier": round(base_brier, 6),
        "cv_brier_skill": round(1.0 - brier / base_brier, 4) if base_brier > 0 else None,
        "cv_skill_z": round(z_skill, 3),
        "platt": [round(intercept, 6), round(slope, 6)],
        "shrunk_to_base_rate": not skilled,
    }
    return FailureProbability(classifiers, fold_rates, intercept, slope, base_rate, report)


def platt(z: FloatArray, y: FloatArray, *, iterations: int = 50) -> tuple[float, float]:
    """(a, b) of the logistic regression P(y = 1) = sigmoid(a + b z), by Newton's method.

    The slope carries a tiny ridge penalty; the intercept starts at the logit of the mean of y, so a
    constant z (or no positives) gives b = 0 and the mean itself.

    >>> a, b = platt(np.array([-1.0, -1.0, 1.0, 1.0]), np.array([0.0, 1.0, 1.0, 1.0]))
    >>> round(float(_sigmoid(np.array([a - b]))[0]), 2), round(float(_sigmoid(np.array([a + b]))[0]), 2)
    (0.5, 1.0)
    """
    if y.size == 0:
        return 0.0, 0.0
    rate = float(np.clip(y.mean(), _EPS, 1.0 - _EPS))
    a, b = float(np.log(rate / (1.0 - rate))), 0.0
    if np.ptp(z) == 0.0 or rate in (_EPS, 1.0 - _EPS):
        return a, 0.0
    for _ in range(iterations):
        p = _sigmoid(a + b * z)
        w = np.maximum(p * (1.0 - p), 1e-12)
        grad = np.array([np.sum(p - y), np.sum((p - y) * z) + _RIDGE * b])
        hess = np.array([[np.sum(w), np.sum(w * z)], [np.sum(w * z), np.sum(w * z * z) + _RIDGE]])
        step = np.linalg.solve(hess, grad)
        a, b = a - float(step[0]), b - float(step[1])
        if np.max(np.abs(step)) < 1e-8:
            break
    return a, b


def _skill_z(asset: IntArray, gain: FloatArray) -> float:
    """z statistic of the mean Brier gain per row (base rate's squared error - the model's), assets as units.

    Rows of one asset are strongly correlated, so the standard error is the cluster-robust one over assets
    (their summed gains), not over rows: a gain a few lucky assets carry is not skill.
    """
    if gain.size == 0:
        return 0.0
    ids, index = np.unique(asset, return_inverse=True)
    if ids.size < 2:
        return 0.0
    sums = np.bincount(index, weights=gain)
    counts = np.bincount(index).astype(np.float64)
    mean = float(gain.sum() / counts.sum())
    residual = sums - counts * mean
    se = float(np.sqrt(ids.size / (ids.size - 1) * np.sum(residual**2)) / counts.sum())
    return mean / se if se > 0 else (np.inf if mean > 0 else 0.0)


def _new_classifier(seed: int, params: dict[str, float]) -> HistGradientBoostingClassifier:
    from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: PLC0415  # keeps the import cheap

    settings: dict[str, Any] = dict(params)
    for name in ("max_iter", "max_leaf_nodes", "min_samples_leaf"):
        if name in settings:
            settings[name] = int(settings[name])
    return HistGradientBoostingClassifier(early_stopping=False, random_state=seed, **settings)


def _proba(
    model: HistGradientBoostingClassifier | None, rate: float, x: npt.NDArray[np.float32]
) -> FloatArray:
    if model is None:
        return np.full(x.shape[0], rate)
    return np.asarray(model.predict_proba(x)[:, 1], dtype=np.float64)


def _logit(p: FloatArray) -> FloatArray:
    q = np.clip(p, _EPS, 1.0 - _EPS)
    return np.asarray(np.log(q / (1.0 - q)), dtype=np.float64)


def _sigmoid(z: FloatArray | float) -> FloatArray:
    clipped = np.clip(np.asarray(z, dtype=np.float64), -500.0, 500.0)  # exp overflows beyond
    return np.asarray(1.0 / (1.0 + np.exp(-clipped)), dtype=np.float64)
