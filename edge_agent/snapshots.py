"""Raw snapshots: the driving sensor's samples around a raised alert, sent once they have all arrived.

An alert is raised when its batch of windows is scored, which may be a batch of windows after the
window's end, so each asset keeps the last samples of its driving sensor: the snapshot span, what can
arrive while windows wait to be scored, and some slack. A snapshot is sent as soon as its last sample is
in; a restart of the stream or a flush sends what is there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_agent.settings import SnapshotSettings
from edge_agent.windowing import SampleBuffer
from shared.asset_config import AssetDiagnosisConfig, encode_asset_config
from shared.messages import Alert, Snapshot

__all__ = ["SnapshotRecorder"]

FloatArray = npt.NDArray[np.float32]
_SNAPSHOT_SLACK = 65_536


@dataclass
class _SnapshotRequest:
    alert_id: str
    start_index: int
    end_index: int


class SnapshotRecorder:
    """Keeps the recent samples of one asset's driving sensor and cuts the snapshots alerts ask for.

    Args:
        settings: the snapshot settings (span before and after an alert, most samples).
        gateway_id: this gateway's id, for the messages.
        asset_id: the asset.
        sensor: the name of its driving sensor.
        sample_rate_hz: that sensor's sample rate.
        scoring_lag_samples: most samples that can arrive between a window's end and its alert (the
            window length plus the hops of a batch of windows).
        diagnosis_config: the asset's diagnosis settings, carried in each snapshot so the cloud can
            re-diagnose it (None: the asset has none).
    """

    def __init__(
        self,
        *,
        settings: SnapshotSettings,
        gateway_id: str,
        asset_id: str,
        sensor: str,
        sample_rate_hz: float,
        scoring_lag_samples: int,
        diagnosis_config: AssetDiagnosisConfig | None = None,
    ) -> None:
        self.settings = settings
        self.gateway_id = gateway_id
        self.asset_id = asset_id
        self.sensor = sensor
        self._diagnosis_config = "" if diagnosis_config is None else encode_asset_config(diagnosis_config)
        span = round((settings.before_s + settings.after_s) * sample_rate_hz)
        self._keep = min(span, settings.max_samples) + scoring_lag_samples + _SNAPSHOT_SLACK
        self._history = SampleBuffer(sample_rate_hz=sample_rate_hz, capacity=self._keep + 4096)
        self._requests: list[_SnapshotRequest] = []

    def append(self, samples: FloatArray, start_ns: int) -> list[Snapshot]:
        """Keep a run of the driving sensor's samples; returns the snapshots now complete."""
        history = self._history
        history.append(samples, start_ns)
        history.keep_last(self._keep)
        return self._finish(force=False) if self._requests else []

    def restart(self) -> list[Snapshot]:
        """The stream restarts: send what the waiting snapshots have, then forget every sample."""
        snapshots = self._finish(force=True)
        self._history.restart()
        return snapshots

    def flush(self) -> list[Snapshot]:
        """Send every waiting snapshot with the part of its samples held now."""
        return self._finish(force=True)

    def request(self, alert: Alert) -> list[Snapshot]:
        """Ask for the snapshot of a raised alert; returns it if its samples are all in already."""
        history = self._history
        if history.is_empty_stream:
            return []
        snap = self.settings
        rate = history.sample_rate_hz
        before, after = round(snap.before_s * rate), round(snap.after_s * rate)
        if before + after > snap.max_samples:
            before = snap.max_samples * before // (before + after)
            after = snap.max_samples - before
        end = int(history.index_before(np.array([alert.ts_ns], dtype=np.int64))[0])
        if end <= history.first_index:  # the alert's window is no longer in the history
            return []
        self._requests.append(_SnapshotRequest(alert.alert_id, end - before, end + after))
        return self._finish(force=False)

    def _finish(self, *, force: bool) -> list[Snapshot]:
        """The snapshots whose samples are all in (or, with `force`, the part still in) the history."""
        history = self._history
        if not self._requests:
            return []
        waiting: list[_SnapshotRequest] = []
        snapshots: list[Snapshot] = []
        for request in self._requests:
            if not force and history.end_index < request.end_index:
                waiting.append(request)
                continue
            samples = history.slice(request.start_index, request.end_index)
            if len(samples) == 0:
                continue
            first = max(request.start_index, history.first_index)
            snapshots.append(
                Snapshot(
                    gateway_id=self.gateway_id,
                    asset_id=self.asset_id,
                    sensor=self.sensor,
                    seq=0,
                    alert_id=request.alert_id,
                    start_ns=int(history.time_ns(first)),
                    sample_rate_hz=history.sample_rate_hz,
                    samples=samples.tolist(),
                    diagnosis_config=self._diagnosis_config,
                )
            )
        self._requests = waiting
        return snapshots
