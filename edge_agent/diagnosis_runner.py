"""Diagnosis on the gateway: the failure mode of the window that raises an alert, where the raw signal is.

One `DiagnosisRunner` per asset configured with a `diagnosis` section. The pipeline hands it every batch
of windows as their features are computed (`hold`), then the windows scored normal (`learn`): it measures
one per `baseline_interval_s` of data time into a bounded healthy baseline of the last `baseline_windows`
(refitted every `refit_every` new windows), so its cost does not grow with the window rate. An
alert raised by a held window carries that window's diagnosis (`diagnose`). The slow sensors come from
the window's features (`<sensor>.mean`, `.min`, `.max`), so no slow samples are kept.
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from shared.asset_config import AssetDiagnosisConfig
from shared.diagnosis import (
    DiagnosisBaseline,
    Measurements,
    SlowLevel,
    WindowSignals,
    diagnose,
    measure,
    to_alert_diagnosis,
)
from shared.messages import AlertDiagnosis

__all__ = ["DiagnosisMetrics", "DiagnosisRunner"]

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


class DiagnosisRunner:
    """Learns an asset's healthy diagnosis baseline from normal windows and diagnoses alert windows.

    Args:
        config: the asset's diagnosis settings.
        sample_rate_hz: the driving (vibration) sensor's rate.
        feature_names: the columns of the asset's feature rows.
        refit_every: refit the baseline after this many new healthy windows.
    """

    def __init__(
        self,
        *,
        config: AssetDiagnosisConfig,
        sample_rate_hz: float,
        feature_names: tuple[str, ...],
        refit_every: int = 16,
    ) -> None:
        self.config = config
        self.sample_rate_hz = sample_rate_hz
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
        self._held: tuple[FloatArray, FloatArray, npt.NDArray[np.int64]] | None = None

    def _window(self, samples: FloatArray, features: FloatArray) -> WindowSignals:
        levels = {
            sensor: SlowLevel(float(features[mean]), float(features[high] - features[low]))
            for sensor, (mean, low, high) in self._slow_columns.items()
            if np.isfinite(features[[mean, low, high]]).all()
        }
        return WindowSignals(
            vibration=samples.astype(np.float64), sample_rate_hz=self.sample_rate_hz, slow_levels=levels
        )

    def hold(self, windows: FloatArray, features: FloatArray, end_ns: npt.NDArray[np.int64]) -> None:
        """Keep the batch being scored: raw driver windows, full feature rows, window end times."""
        self._held = (windows, features, end_ns)

    def _index(self, ts_ns: int) -> int | None:
        if self._held is None:
            return None
        end_ns = self._held[2]
        i = int(np.searchsorted(end_ns, ts_ns))
        return i if i < end_ns.size and int(end_ns[i]) == ts_ns else None

    def learn(self, end_ns: npt.NDArray[np.int64], is_normal: npt.NDArray[np.bool_]) -> None:
        """Learn from the held windows that ended at `end_ns` and scored normal (one per interval)."""
        if self._held is None:
            return
        windows, features, _ = self._held
        normal = end_ns[is_normal]
        if normal.size == 0 or int(normal[-1]) < self._next_learn_ns:
            return  # the common case: no window of this batch is due
        for ts_ns in normal[normal >= self._next_learn_ns].tolist():
            i = self._index(ts_ns)
            if ts_ns < self._next_learn_ns or i is None:
                continue
            self._next_learn_ns = ts_ns + self._interval_ns
            self._healthy.append(measure(self._window(windows[i], features[i]), self.config))
            self.metrics.learned += 1
            self._since_refit += 1
        if self._since_refit >= self.refit_every or (self._baseline is None and self._since_refit):
            self._baseline = DiagnosisBaseline().fit(list(self._healthy))
            self._since_refit = 0

    def diagnose(self, ts_ns: int) -> AlertDiagnosis | None:
        """The diagnosis of the held window that ended at `ts_ns`; None if it is not held or fails."""
        index = self._index(ts_ns)
        if self._held is None or index is None:
            return None
        windows, features, _ = self._held
        started = time.perf_counter()
        try:
            measured = measure(self._window(windows[index], features[index]), self.config)
            result = diagnose(measured, self.config, self._baseline)
        except Exception:  # a diagnosis must never stop the alert it belongs to
            logger.exception("diagnosis failed for window %d", index)
            self.metrics.failed += 1
            return None
        metrics = self.metrics
        metrics.diagnoses += 1
        metrics.diagnosis_s_total += time.perf_counter() - started
        metrics.modes[result.mode] = metrics.modes.get(result.mode, 0) + 1
        return to_alert_diagnosis(result)
