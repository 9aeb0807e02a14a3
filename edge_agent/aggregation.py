"""Per-asset aggregates over fixed periods of data time: features' mean/min/max and a score summary.

Periods are aligned to multiples of the period since the epoch. A window belongs to the period holding
its last sample. A period is emitted when a window of a different period arrives (normally the next one;
after a clock step backwards an earlier one, which then starts a new period of its own), on `flush`, or
(driven by the pipeline) when other assets' data has moved a whole period past its end.
Accumulation is vectorised over each run of consecutive windows of one period.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from shared.messages import Aggregate, FeatureStats, ModelKind, ScoreStats
from shared.timebase import NS_PER_S

__all__ = ["UNSCORED_REASONS", "PeriodAggregator", "ScoredWindows"]

UNSCORED_REASONS = (
    "",
    "incomplete",
    "nonfinite_features",
    "sensor_spikes",
    "stopped",
    "transient",
    "warmup",
    "feature_mismatch",
    "scorer_error",
)
"""Why a window was not scored, by the code `ScoredWindows.unscored` holds (0, the empty reason: scored)."""

_LIMIT = 1e15  # the range of a message's FiniteFloat


@dataclass(frozen=True, slots=True)
class ScoredWindows:
    """A batch of one asset's windows as the aggregator needs them.

    Attributes:
        end_ns: each window's end time.
        features: windows x features; rows with any NaN (incomplete or non-finite) are not summarised.
        scores: each window's score, NaN where the window was not scored.
        threshold: the scorer's threshold (NaN if nothing was scored).
        model_version: the version of the scorer used (or that refused the windows).
        model_kind: `baseline` or `onnx`.
        unscored: per window, the index in `UNSCORED_REASONS` of why it was not scored (0: scored).
    """

    end_ns: npt.NDArray[np.int64]
    features: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float32]
    threshold: float
    model_version: str
    model_kind: ModelKind
    unscored: npt.NDArray[np.uint8] | None = None


def _clip(value: float) -> float:
    return float(min(max(value, -_LIMIT), _LIMIT))


class _Period:
    """Running sums of one open period."""

    def __init__(self, index: int, n_features: int) -> None:
        self.index = index
        self.n_rows = 0
        self.sum = np.zeros(n_features, dtype=np.float64)
        self.min = np.full(n_features, np.inf)
        self.max = np.full(n_features, -np.inf)
        self.n_scored = 0
        self.n_above = 0
        self.score_sum = 0.0
        self.score_max = -np.inf
        self.threshold = float("nan")
        self.model_version = "baseline"
        self.model_kind: ModelKind = "baseline"

    def add(self, windows: ScoredWindows, lo: int, hi: int) -> None:
        rows = windows.features[lo:hi]
        complete = ~np.isnan(rows).any(axis=1)
        good = rows if complete.all() else rows[complete]
        if len(good):
            self.n_rows += len(good)
            self.sum += good.sum(axis=0, dtype=np.float64)
            np.minimum(self.min, good.min(axis=0), out=self.min)
            np.maximum(self.max, good.max(axis=0), out=self.max)
        scores = windows.scores[lo:hi]
        scores = scores[~np.isnan(scores)]
        if len(scores):
            self.n_scored += len(scores)
            self.score_sum += float(scores.sum(dtype=np.float64))
            self.score_max = max(self.score_max, float(scores.max()))
            self.n_above += int(np.count_nonzero(scores > windows.threshold))
            self.threshold = windows.threshold
        self.model_version = windows.model_version
        self.model_kind = windows.model_kind


class PeriodAggregator:
    """Aggregates one asset's windows per period of data time.

    Args:
        gateway_id: the gateway, for the messages.
        asset_id: the asset.
        feature_names: names of the feature columns.
        feature_spec: the spec id (`name@version`) the features follow.
        period_s: the period length.
    """

    def __init__(
        self,
        *,
        gateway_id: str,
        asset_id: str,
        feature_names: tuple[str, ...],
        feature_spec: str,
        period_s: float,
    ) -> None:
        self.gateway_id = gateway_id
        self.asset_id = asset_id
        self.feature_names = feature_names
        self.feature_spec = feature_spec
        self.period_ns = round(period_s * NS_PER_S)
        self._open: _Period | None = None

    def add(self, windows: ScoredWindows) -> list[Aggregate]:
        """Add a batch of windows (in arrival order); return the aggregates of the periods it closes."""
        if len(windows.end_ns) == 0:
            return []
        periods = (windows.end_ns - 1) // self.period_ns
        out: list[Aggregate] = []
        if periods[0] == periods[-1] and (periods[1:] == periods[:-1]).all():
            self._add_run(windows, int(periods[0]), 0, len(periods), out)
            return out
        starts = np.concatenate(([0], np.flatnonzero(periods[1:] != periods[:-1]) + 1, [len(periods)]))
        for lo, hi in zip(starts[:-1].tolist(), starts[1:].tolist(), strict=True):
            self._add_run(windows, int(periods[lo]), lo, hi, out)
        return out

    def _add_run(self, windows: ScoredWindows, index: int, lo: int, hi: int, out: list[Aggregate]) -> None:
        if self._open is not None and self._open.index != index:
            out.append(self._emit(self._open))
            self._open = None
        if self._open is None:
            self._open = _Period(index, len(self.feature_names))
        self._open.add(windows, lo, hi)

    @property
    def open_end_ns(self) -> int | None:
        """End of the open period (None if no period is open)."""
        return None if self._open is None else (self._open.index + 1) * self.period_ns

    def flush(self) -> list[Aggregate]:
        """Emit the open period, if any."""
        if self._open is None:
            return []
        period, self._open = self._open, None
        return [self._emit(period)]

    def _emit(self, period: _Period) -> Aggregate:
        features: dict[str, FeatureStats] = {}
        if period.n_rows:
            means = (period.sum / period.n_rows).tolist()
            mins, maxs = period.min.tolist(), period.max.tolist()
            for j, name in enumerate(self.feature_names):
                features[name] = FeatureStats(_clip(means[j]), _clip(mins[j]), _clip(maxs[j]))
        scored = period.n_scored
        score = ScoreStats(
            mean=_clip(period.score_sum / scored) if scored else 0.0,
            max=_clip(period.score_max) if scored else 0.0,
            threshold=_clip(period.threshold) if scored else 0.0,
            n_windows=scored,
            n_above_threshold=period.n_above,
        )
        start_ns = period.index * self.period_ns
        return Aggregate(
            gateway_id=self.gateway_id,
            asset_id=self.asset_id,
            seq=0,
            period_start_ns=start_ns,
            period_end_ns=start_ns + self.period_ns,
            feature_spec=self.feature_spec,
            features=features,
            score=score,
            model_version=period.model_version,
            model_kind=period.model_kind,
        )
