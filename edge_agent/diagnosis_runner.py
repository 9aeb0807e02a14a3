"""Diagnosis on the gateway: the failure mode of the window that raises an alert, where the raw signal is.

One `DiagnosisRunner` per asset configured with a `diagnosis` section. A diagnosis reads more than the
scoring window: the last `window_samples` contiguous samples of the driving sensor up to a window's end
(`shared.diagnosis.diagnosis_window_samples`: long enough to resolve the bearings' cage harmonics), so
the runner keeps that much of the stream (`append`, `restart` after a gap). A window near the start of a
run (a burst, or the stream just after a gap) reads the run's first `window_samples` instead. The
pipeline hands it every batch of windows as their features are computed (`hold`), then the windows
scored normal (`learn`): it measures one per `baseline_interval_s` of data time into a bounded healthy
baseline of the last `baseline_windows` (refitted every `refit_every` new windows), so its cost does not
grow with the window rate. Only a whole `window_samples` span is learned: the baseline's comb and line
levels depend on the span's length. An alert raised by a held window carries that window's diagnosis
(`diagnose`); a span cut short (a run shorter than the window so far) is diagnosed without the baseline
(`short_diagnoses`), and runs that end shorter than the window are counted (`short_runs`) and logged.
The slow sensors come from the window's features (`<sensor>.mean`, `.min`, `.max`), so no slow samples
are kept.

While an alert stays raised (`follow` ... `unfollow`), `rediagnose` diagnoses again at most once per
`rediagnose_every_s` of data time (the first time as soon as the span holds only samples from the raise
on, if that is sooner), on the latest anomalous window due, and says whether the result is
worth sending: the mode changed or the confidence moved by more than `rediagnose_confidence_change`
since the last diagnosis sent, or `rediagnose_resend_every` re-diagnoses went unsent. Its cost is one
diagnosis per interval per raised alert; a batch with nothing due costs one comparison.
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from edge_agent.windowing import SampleBuffer
from shared.asset_config import AssetDiagnosisConfig
from shared.diagnosis import (
    DiagnosisBaseline,
    Measurements,
    SlowLevel,
    WindowSignals,
    diagnose,
    diagnosis_window_samples,
    measure,
    to_alert_diagnosis,
)
from shared.messages import AlertDiagnosis

__all__ = ["DiagnosisMetrics", "DiagnosisRunner", "Rediagnosis"]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
_SLOW_SENSORS = ("temperature", "current", "pressure", "flow", "ambient")


@dataclass
class DiagnosisMetrics:
    """Counters of one runner: diagnoses run, their total time, windows learned, failures."""

    diagnoses: int = 0
    diagnosis_s_total: float = 0.0
    learned: int = 0
    failed: int = 0
    modes: dict[str, int] = field(default_factory=dict)
    rediagnoses: int = 0  # of `diagnoses`, those of an alert already raised
    updates: int = 0  # of those, the ones worth sending
    short_runs: int = 0  # contiguous runs of the stream that ended shorter than the diagnosis window
    short_diagnoses: int = 0  # of `diagnoses`, those read on fewer samples than the window (no baseline)


_NEVER = 1 << 62


@dataclass(frozen=True, slots=True)
class Rediagnosis:
    """A re-diagnosis of a raised alert worth sending: the window it read and why it is sent."""

    ts_ns: int
    diagnosis: AlertDiagnosis
    reason: Literal["changed", "unchanged"]
    previous: AlertDiagnosis | None  # the last diagnosis sent for this alert, if any


class DiagnosisRunner:
    """Learns an asset's healthy diagnosis baseline from normal windows and diagnoses alert windows.

    Args:
        config: the asset's diagnosis settings.
        sample_rate_hz: the driving (vibration) sensor's rate.
        feature_names: the columns of the asset's feature rows.
        scoring_window: samples per scoring window (the shortest span a diagnosis reads).
        scoring_lag_samples: most samples that can arrive between a window's end and its scoring.
        refit_every: refit the baseline after this many new healthy windows.
    """

    def __init__(
        self,
        *,
        config: AssetDiagnosisConfig,
        sample_rate_hz: float,
        feature_names: tuple[str, ...],
        scoring_window: int,
        scoring_lag_samples: int,
        refit_every: int = 16,
    ) -> None:
        self.config = config
        self.sample_rate_hz = sample_rate_hz
        self.window_samples = diagnosis_window_samples(config, sample_rate_hz, shortest=scoring_window)
        self._keep = self.window_samples + scoring_lag_samples
        self._history = SampleBuffer(sample_rate_hz=sample_rate_hz, capacity=self._keep + 4096)
        self._interval_ns = round(config.baseline_interval_s * 1e9)
        self.refit_every = refit_every
        self.metrics = DiagnosisMetrics()
        index = {name: j for j, name in enumerate(feature_names)}
        self._slow_columns = {
            sensor: (index[f"{sensor}.mean"], index[f"{sensor}.min"], index[f"{sensor}.max"])
            for sensor in _SLOW_SENSORS
            if all(f"{sensor}.{stat}" in index for stat in ("mean", "min", "max"))
        }
        self._healthy: collections.deque[Measurements] = collections.deque(maxlen=config.baseline_windows)
        self._next_learn_ns = -(1 << 62)
        self._since_refit = 0
        self._baseline: DiagnosisBaseline | None = None
        self._held: tuple[FloatArray, npt.NDArray[np.int64]] | None = None
        self._rediagnose_ns = round(config.rediagnose_every_s * 1e9)
        self._next_rediagnosis_ns = _NEVER
        self._last_sent: AlertDiagnosis | None = None
        self._unsent = 0

    def append(self, samples: FloatArray, start_ns: int) -> None:
        """Keep a run of the driving sensor's samples (contiguous with the ones before it)."""
        self._history.append(samples, start_ns)
        # A window scored after this run may end where the run starts: keep its span too.
        self._history.keep_last(self._keep + len(samples))

    def restart(self) -> None:
        """The driving stream restarted (a gap, a clock step): the samples before it do not join."""
        held = self._history.end_index  # samples since the last restart
        if 0 < held < self.window_samples:
            self.metrics.short_runs += 1
            if self.metrics.short_runs in (1, 100, 10_000):  # a stream of short runs says so, not per run
                logger.warning(
                    "diagnosis reads %d contiguous samples but the stream's run held %d (%d such runs): "
                    "its windows are learned from no baseline span; diagnosis.window_s sets the span",
                    self.window_samples,
                    held,
                    self.metrics.short_runs,
                )
        self._history.restart()

    def _span(self, ts_ns: int) -> FloatArray:
        """The `window_samples` held samples ending at `ts_ns`; if that would reach back past the last
        restart, the first `window_samples` of the run instead (they hold the window; fewer if the run is
        shorter so far)."""
        history = self._history
        end = int(history.index_before(np.array([ts_ns], dtype=np.int64))[0])
        if end < self.window_samples:  # indices count from the last restart
            end = min(self.window_samples, history.end_index)
        return history.slice(end - self.window_samples, end)

    def _window(self, samples: FloatArray, features: FloatArray) -> WindowSignals:
        levels = {
            sensor: SlowLevel(float(features[mean]), float(features[high] - features[low]))
            for sensor, (mean, low, high) in self._slow_columns.items()
            if np.isfinite(features[[mean, low, high]]).all()
        }
        return WindowSignals(
            vibration=samples.astype(np.float64), sample_rate_hz=self.sample_rate_hz, slow_levels=levels
        )

    def hold(self, features: FloatArray, end_ns: npt.NDArray[np.int64]) -> None:
        """Keep the batch being scored: full feature rows and window end times."""
        self._held = (features, end_ns)

    def _index(self, ts_ns: int) -> int | None:
        if self._held is None:
            return None
        end_ns = self._held[1]
        i = int(np.searchsorted(end_ns, ts_ns))
        return i if i < end_ns.size and int(end_ns[i]) == ts_ns else None

    def learn(self, end_ns: npt.NDArray[np.int64], is_normal: npt.NDArray[np.bool_]) -> None:
        """Learn from the held windows that ended at `end_ns` and scored normal (one per interval)."""
        if self._held is None:
            return
        features, _ = self._held
        normal = end_ns[is_normal]
        if normal.size == 0 or int(normal[-1]) < self._next_learn_ns:
            return  # the common case: no window of this batch is due
        for ts_ns in normal[normal >= self._next_learn_ns].tolist():
            i = self._index(ts_ns)
            if ts_ns < self._next_learn_ns or i is None:
                continue
            span = self._span(ts_ns)
            if span.size < self.window_samples:
                continue  # just after a restart: a later window will have the full span
            self._next_learn_ns = ts_ns + self._interval_ns
            self._healthy.append(measure(self._window(span, features[i]), self.config))
            self.metrics.learned += 1
            self._since_refit += 1
        # While the baseline is young every new window refits it: fitted once on its first window and then
        # only every `refit_every`, it would judge nothing against the asset for `refit_every` intervals
        # (a level needs MIN_BASELINE_WINDOWS windows).
        is_young = len(self._healthy) <= self.refit_every
        if self._since_refit >= self.refit_every or (is_young and self._since_refit):
            self._baseline = DiagnosisBaseline().fit(list(self._healthy))
            self._since_refit = 0

    def follow(self, ts_ns: int, sent: AlertDiagnosis | None) -> None:
        """An alert was raised at `ts_ns` carrying `sent`: re-diagnose it from `rediagnose_every_s` on.

        The first re-diagnosis comes sooner if the span a diagnosis reads is shorter than that interval:
        once the span holds only samples from the raise on (the raise's span may end in the fault's onset).
        """
        self._last_sent = sent
        self._unsent = 0
        span_ns = round(self.window_samples / self.sample_rate_hz * 1e9)
        first_ns = ts_ns + min(self._rediagnose_ns, span_ns)
        self._next_rediagnosis_ns = first_ns if self._rediagnose_ns > 0 else _NEVER

    def unfollow(self) -> None:
        """The alert cleared: no more re-diagnoses."""
        self._next_rediagnosis_ns = _NEVER
        self._last_sent = None

    def rediagnose(
        self, end_ns: npt.NDArray[np.int64], is_anomalous: npt.NDArray[np.bool_]
    ) -> Rediagnosis | None:
        """Re-diagnose the followed alert on the latest anomalous held window due, if one is.

        Args:
            end_ns: end times of scored windows of the held batch, rising, all while the alert is raised.
            is_anomalous: which of them scored above the threshold.

        Returns:
            The re-diagnosis when it is worth sending; None when nothing is due, no anomalous window is
            due (a normal window says nothing about the fault), the diagnosis failed, or nothing changed.
        """
        if end_ns.size == 0 or int(end_ns[-1]) < self._next_rediagnosis_ns:
            return None  # the common case
        due = np.flatnonzero(is_anomalous & (end_ns >= self._next_rediagnosis_ns))
        if due.size == 0:
            return None
        ts_ns = int(end_ns[due[-1]])
        self._next_rediagnosis_ns = ts_ns + self._rediagnose_ns
        diagnosis = self.diagnose(ts_ns)
        if diagnosis is None:
            return None
        self.metrics.rediagnoses += 1
        reason = self._reason(diagnosis)
        if reason is None:
            self._unsent += 1
            return None
        previous, self._last_sent, self._unsent = self._last_sent, diagnosis, 0
        self.metrics.updates += 1
        return Rediagnosis(ts_ns=ts_ns, diagnosis=diagnosis, reason=reason, previous=previous)

    def _reason(self, diagnosis: AlertDiagnosis) -> Literal["changed", "unchanged"] | None:
        last = self._last_sent
        if (
            last is None
            or last.mode != diagnosis.mode
            or abs(last.confidence - diagnosis.confidence) > self.config.rediagnose_confidence_change
        ):
            return "changed"
        if self._unsent + 1 >= self.config.rediagnose_resend_every:
            return "unchanged"
        return None

    def diagnose(self, ts_ns: int) -> AlertDiagnosis | None:
        """The diagnosis of the held window that ended at `ts_ns`; None if it is not held or fails."""
        index = self._index(ts_ns)
        if self._held is None or index is None:
            return None
        features, _ = self._held
        started = time.perf_counter()
        try:
            span = self._span(ts_ns)
            is_whole = span.size == self.window_samples
            baseline = self._baseline if is_whole else None
            self.metrics.short_diagnoses += not is_whole
            measured = measure(self._window(span, features[index]), self.config)
            result = diagnose(measured, self.config, baseline)
        except Exception:  # a diagnosis must never stop the alert it belongs to
            logger.exception("diagnosis failed for window %d", index)
            self.metrics.failed += 1
            return None
        metrics = self.metrics
        metrics.diagnoses += 1
        metrics.diagnosis_s_total += time.perf_counter() - started
        metrics.modes[result.mode] = metrics.modes.get(result.mode, 0) + 1
        return to_alert_diagnosis(result)
