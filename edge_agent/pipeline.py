"""The edge data pipeline: stream checks, windows, features, scoring, alerts, snapshots and aggregates.

One `Pipeline` serves every asset of a gateway and is driven by one thread (`process`, `poll`, `flush`);
the model store may swap models from another thread at any time. Per raw batch the hot path is a handful
of vectorised numpy calls; the expensive stages (features, scoring, alerts, aggregates) run on batches of
windows:

1. Stream checks per (asset, sensor): unknown asset or sensor, wrong sample rate, duplicate or
   out-of-order `seq` (dropped), gaps, clock steps backwards and `seq` resets (kept, windows restart),
   non-finite samples (the bad samples are dropped and act as a gap). Each is passed to `on_reject` and
   counted per reason and per stream.
2. Windows: the asset's driving sensor (its first vibration sensor) is cut into windows of `window_len`
   samples every `hop`; each of the asset's other sensors joins every window as of its end time
   (`windowing.JoinedHistory`: a slow sensor contributes its last `slow_window_s` of samples).
3. Windows wait per asset until `score_batch_windows` are ready or the oldest has waited
   `score_max_delay_ms` (checked on each `process` and `poll`), then features (`shared.features`) and
   scores are computed for the whole batch at once. The scorer is looked up once per batch of windows:
   the asset target's active model from the model store, else the asset's online `BaselineScorer`. A hot
   swap therefore lands between two batches of windows; no window is dropped or scored twice.
4. A model whose manifest names another feature spec, or features this asset does not produce, scores
   nothing: its windows are counted as `feature_mismatch` and reported in the log. The baseline neither
   scores nor learns windows where the machine is stopped or in a transient (`operating_state`, from the
   driving sensor's RMS and a `current` sensor's mean): they are counted as `stopped` / `transient`.
   Windows the baseline learns as its warm-up are not scored either (`warmup`); what it learns after
   warm-up is decided by `baseline_learning.BaselineLearner`. Each unscored window carries its reason
   (`ScoredWindows.unscored`).
5. Alerts are debounced k-of-n (`alerts.AlertDebouncer`); a raised alert may bring a raw snapshot of the
   driving sensor around it (`snapshots.SnapshotRecorder`). While it stays raised, an asset with a
   diagnosis section re-diagnoses it at a bounded rate and sends an `AlertUpdate` when the diagnosis
   changed or is due to be confirmed (`diagnosis_runner`). Aggregates summarise each asset per period
   of data time.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from edge_agent.aggregation import UNSCORED_REASONS, PeriodAggregator, ScoredWindows
from edge_agent.alerts import AlertDebouncer, Transition, severity
from edge_agent.baseline_learning import BaselineLearner
from edge_agent.diagnosis_runner import DiagnosisMetrics, DiagnosisRunner, Rediagnosis
from edge_agent.disk_queue import Outbound
from edge_agent.model_compatibility import ModelCompatibility, ModelSource, check_compatibility
from edge_agent.operating_state import SPIKE_SIGMAS, asset_operating_state, spiky_windows
from edge_agent.pipeline_metrics import PipelineMetrics
from edge_agent.scoring import BaselineScorer, Scorer
from edge_agent.settings import AssetSettings, PipelineSettings, SensorSettings
from edge_agent.snapshots import SnapshotRecorder
from edge_agent.windowing import JoinedHistory, StreamChecker, Verdict, Windower, Windows
from shared.features import FeatureSpec, SensorKind, SensorSpec
from shared.messages import Aggregate, Alert, AlertUpdate, ModelKind, Snapshot
from shared.rate_limited_log import RateLimitedLog
from shared.raw_batch import RawBatch
from shared.timebase import NS_PER_S

__all__ = ["REJECT_REASONS", "Pipeline", "RejectCallback", "WindowsCallback"]

logger = logging.getLogger(__name__)

RejectCallback = Callable[[str, RawBatch, str], None]
WindowsCallback = Callable[[str, ScoredWindows], None]
FloatArray = npt.NDArray[np.float32]

REJECT_REASONS = (
    "unknown_asset",
    "unknown_sensor",
    "sample_rate",
    "nonfinite",
    "duplicate",
    "out_of_order",
    "gap",
    "clock_backwards",
    "seq_reset",
)
"""Every reason `on_reject` can be called with. The last four keep the batch (windows restart)."""

_LIMIT = 1e15
_UNSCORED_CODE = {reason: code for code, reason in enumerate(UNSCORED_REASONS)}


@dataclass
class _Sensor:
    """One configured stream of an asset."""

    settings: SensorSettings
    spec: SensorSpec
    key: str  # "asset/sensor"
    checker: StreamChecker
    windower: Windower | None = None  # the driving sensor
    joined: JoinedHistory | None = None  # every other sensor
    needs_restart: bool = False  # the last batch ended with dropped (non-finite) samples


@dataclass
class _Pending:
    """Windows of one asset cut but not yet scored."""

    driver: list[FloatArray] = field(default_factory=list)
    end_ns: list[npt.NDArray[np.int64]] = field(default_factory=list)
    count: int = 0
    first_at: float = 0.0


def _concat(parts: list[FloatArray]) -> FloatArray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _clip(value: float) -> float:
    return float(min(max(value, -_LIMIT), _LIMIT))


class _Asset:
    """Everything the pipeline keeps for one asset."""

    def __init__(self, settings: AssetSettings, pipeline: PipelineSettings, gateway_id: str) -> None:
        self.settings = settings
        self.asset_id = settings.asset_id
        self.target = settings.target
        self.spec: FeatureSpec = pipeline.feature_spec(settings)
        self.spec_id = self.spec.spec_id
        self.feature_names = self.spec.feature_names
        self.columns: dict[str, slice] = {}
        start = 0
        for sensor_spec in self.spec.sensors:
            width = len(sensor_spec.feature_names(self.spec.n_bands))
            self.columns[sensor_spec.name] = slice(start, start + width)
            start += width
        driver_name = next(
            (s.name for s in settings.sensors if s.kind is SensorKind.VIBRATION), settings.sensors[0].name
        )
        self.sensors: dict[str, _Sensor] = {}
        for sensor_settings, sensor_spec in zip(settings.sensors, self.spec.sensors, strict=True):
            self.sensors[sensor_settings.name] = self._make_sensor(
                sensor_settings, sensor_spec, pipeline, is_driver=sensor_settings.name == driver_name
            )
        self.driver = self.sensors[driver_name]
        self.joined = [s for s in self.sensors.values() if s is not self.driver]
        self.pending = _Pending()
        self.baseline: BaselineScorer | None = None
        self.state = asset_operating_state(self.feature_names, driver_name, pipeline.baseline)
        index = {name: j for j, name in enumerate(self.feature_names)}
        p2p, std = f"{driver_name}.peak_to_peak", f"{driver_name}.std"
        self.spike_columns = (
            (index[p2p], index[std])
            if pipeline.baseline.spike_check and p2p in index and std in index
            else None
        )
        driver_settings = self.driver.settings
        self.learner = BaselineLearner(
            pipeline.baseline,
            asset_id=settings.asset_id,
            window_s=pipeline.sensor_window_len(driver_settings) / driver_settings.sample_rate_hz,
        )
        self.compat: ModelCompatibility | None = None
        self.debouncer = AlertDebouncer(
            k=pipeline.alerts.k, n=pipeline.alerts.n, clear_after=pipeline.alerts.clear_after
        )
        self.alert_id = ""
        self.aggregator = PeriodAggregator(
            gateway_id=gateway_id,
            asset_id=self.asset_id,
            feature_names=self.feature_names,
            feature_spec=self.spec_id,
            period_s=pipeline.aggregation.period_s,
        )
        driver = self.driver.settings
        window_len = pipeline.sensor_window_len(driver)
        # most samples that arrive between a window's end and its scoring: the window and a batch of hops
        scoring_lag = window_len + pipeline.sensor_hop(driver) * pipeline.score_batch_windows
        self.diagnosis: DiagnosisRunner | None = None
        if settings.diagnosis is not None:
            self.diagnosis = DiagnosisRunner(
                config=settings.diagnosis,
                sample_rate_hz=driver.sample_rate_hz,
                feature_names=self.feature_names,
                scoring_window=window_len,
                scoring_lag_samples=scoring_lag,
            )
        self.snapshots: SnapshotRecorder | None = None
        if pipeline.snapshots.enabled:
            self.snapshots = SnapshotRecorder(
                settings=pipeline.snapshots,
                gateway_id=gateway_id,
                asset_id=self.asset_id,
                sensor=driver.name,
                sample_rate_hz=driver.sample_rate_hz,
                scoring_lag_samples=scoring_lag,
                diagnosis_config=settings.diagnosis,
            )

    @staticmethod
    def _make_sensor(
        settings: SensorSettings, spec: SensorSpec, pipeline: PipelineSettings, *, is_driver: bool
    ) -> _Sensor:
        sensor = _Sensor(
            settings=settings,
            spec=spec,
            key="",
            checker=StreamChecker(
                sample_rate_hz=settings.sample_rate_hz, tolerance_s=pipeline.gap_tolerance_s
            ),
        )
        window_len = pipeline.sensor_window_len(settings)
        if is_driver:
            sensor.windower = Windower(
                window_len=window_len,
                hop=pipeline.sensor_hop(settings),
                sample_rate_hz=settings.sample_rate_hz,
            )
        else:
            sensor.joined = JoinedHistory(
                span=window_len, sample_rate_hz=settings.sample_rate_hz, max_lag_s=pipeline.join_max_lag_s
            )
        return sensor


class Pipeline:
    """Turns raw sample batches into alerts, snapshots and aggregates (all with `seq=0`).

    Args:
        settings: the `pipeline` settings section.
        gateway_id: this gateway's id, for the messages.
        models: where active models come from (a `ModelStore`), or None to use only the baseline.
        on_reject: called with (reason, batch, detail) for every batch a stream check flags; see
            `REJECT_REASONS`. It runs on the pipeline's thread and must be quick; if it raises, the error
            is logged and the pipeline goes on.
        on_windows: optional, called with (asset_id, windows) for every batch of windows scored (or
            refused), before the alerts they cause; offline scoring writes its per-window rows from it.
    """

    def __init__(
        self,
        *,
        settings: PipelineSettings,
        gateway_id: str,
        models: ModelSource | None,
        on_reject: RejectCallback,
        on_windows: WindowsCallback | None = None,
    ) -> None:
        self.settings = settings
        self.gateway_id = gateway_id
        self._models = models
        self._on_reject = on_reject
        self._on_windows = on_windows
        self._metrics = PipelineMetrics()
        self._log = RateLimitedLog(logger)
        self._assets = {a.asset_id: _Asset(a, settings, gateway_id) for a in settings.assets}
        for asset in self._assets.values():
            for name, sensor in asset.sensors.items():
                sensor.key = f"{asset.asset_id}/{name}"
        self._batch_windows = settings.score_batch_windows
        self._delay_s = settings.score_max_delay_ms / 1000.0
        self._deadline = math.inf

    @property
    def metrics(self) -> PipelineMetrics:
        """The live counters."""
        return self._metrics

    def diagnosis_metrics(self, asset_id: str) -> DiagnosisMetrics | None:
        """The diagnosis counters of one configured asset; None if it has no diagnosis section."""
        runner = self._assets[asset_id].diagnosis
        return None if runner is None else runner.metrics

    def feature_names(self, asset_id: str) -> tuple[str, ...]:
        """The feature vector's column names for one configured asset."""
        return self._assets[asset_id].feature_names

    # ----------------------------------------------------------------------------------------- intake

    def process(self, batch: RawBatch) -> list[Outbound]:
        """Check, window, score and summarise one raw batch; return the messages that became ready."""
        metrics = self._metrics
        metrics.batches_in += 1
        metrics.samples_in += len(batch.samples)
        out: list[Outbound] = []
        asset = self._assets.get(batch.asset_id)
        sensor = asset.sensors.get(batch.sensor) if asset is not None else None
        if asset is None:
            self._reject("unknown_asset", batch, f"asset {batch.asset_id!r} is not configured", None)
        elif sensor is None:
            self._reject(
                "unknown_sensor", batch, f"asset {batch.asset_id!r} has no sensor {batch.sensor!r}", None
            )
        elif abs(batch.sample_rate_hz - sensor.settings.sample_rate_hz) > (
            self.settings.rate_tolerance * sensor.settings.sample_rate_hz
        ):
            detail = f"{batch.sample_rate_hz:g} Hz, expected {sensor.settings.sample_rate_hz:g} Hz"
            self._reject("sample_rate", batch, detail, sensor)
        else:
            self._accept(asset, sensor, batch, out)
        if time.monotonic() >= self._deadline:
            self._run_due(out, force=False)
        return out

    def poll(self) -> list[Outbound]:
        """Score windows that have waited `score_max_delay_ms`; call it when no batch arrived for a while."""
        out: list[Outbound] = []
        if time.monotonic() >= self._deadline:
            self._run_due(out, force=False)
        return out

    def flush(self) -> list[Outbound]:
        """Score every waiting window, send partial snapshots and close every open aggregation period."""
        out: list[Outbound] = []
        self._run_due(out, force=True)
        for asset in self._assets.values():
            if asset.snapshots is not None:
                self._send_snapshots(asset.snapshots.flush(), out)
            aggregates = asset.aggregator.flush()
            self._metrics.aggregates += len(aggregates)
            out.extend(aggregates)
        return out

    def _reject(self, reason: str, batch: RawBatch, detail: str, sensor: _Sensor | None) -> None:
        metrics = self._metrics
        metrics.rejected[reason] = metrics.rejected.get(reason, 0) + 1
        if sensor is not None:
            per_stream = metrics.stream_rejected.setdefault(sensor.key, {})
            per_stream[reason] = per_stream.get(reason, 0) + 1
        self._log.warn(
            reason, "raw batch %s/%s seq=%d: %s: %s", batch.asset_id, batch.sensor, batch.seq, reason, detail
        )
        try:
            self._on_reject(reason, batch, detail)
        except Exception:  # the caller's callback must not stop the pipeline
            logger.exception("on_reject callback failed for reason %s", reason)

    def _accept(self, asset: _Asset, sensor: _Sensor, batch: RawBatch, out: list[Outbound]) -> None:
        verdict, offset_ns = sensor.checker.check(batch)
        if not verdict.is_accepted:
            self._reject(verdict.value, batch, f"seq {batch.seq} after {sensor.checker.last_seq}", sensor)
            return
        if verdict is not Verdict.FIRST and verdict.is_restart:
            self._reject(verdict.value, batch, f"{offset_ns / 1e6:+.3f} ms from the expected start", sensor)
        restart = verdict.is_restart or sensor.needs_restart
        samples = batch.samples
        if math.isfinite(float(samples.sum(dtype=np.float64))):
            sensor.needs_restart = False
            self._ingest(asset, sensor, samples, batch.start_ns, restart, out)
            return
        self._ingest_finite_runs(asset, sensor, batch, restart, out)

    def _ingest_finite_runs(
        self, asset: _Asset, sensor: _Sensor, batch: RawBatch, restart: bool, out: list[Outbound]
    ) -> None:
        """Drop the non-finite samples of a batch; each run of finite samples restarts the windows."""
        samples = batch.samples
        bad = ~np.isfinite(samples)
        n_bad = int(np.count_nonzero(bad))
        self._metrics.samples_nonfinite += n_bad
        self._reject("nonfinite", batch, f"{n_bad} of {len(samples)} samples are NaN or inf", sensor)
        edges = np.flatnonzero(np.diff(np.concatenate(([True], bad, [True])).astype(np.int8)))
        ns_per_sample = NS_PER_S / batch.sample_rate_hz
        for lo, hi in zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True):
            start_ns = batch.start_ns + round(lo * ns_per_sample)
            self._ingest(asset, sensor, samples[lo:hi], start_ns, restart or lo > 0, out)
        sensor.needs_restart = bool(bad[-1])

    def _ingest(  # noqa: PLR0917 - private hot-path helper, keyword calls would cost per batch
        self,
        asset: _Asset,
        sensor: _Sensor,
        samples: FloatArray,
        start_ns: int,
        restart: bool,
        out: list[Outbound],
    ) -> None:
        self._metrics.samples_used += len(samples)
        if sensor.joined is not None:
            if restart:
                if asset.pending.count:  # score them while the history they join is still there
                    self._compute(asset, out)
                    self._update_deadline()
                sensor.joined.restart()
            sensor.joined.push(samples, start_ns)
            return
        windower = sensor.windower
        if windower is None:  # every sensor is either joined or the driver
            return
        if restart:
            if asset.pending.count:  # score them while the history their snapshots need is there
                self._compute(asset, out)
                self._update_deadline()
            windower.restart()
            if asset.snapshots is not None:
                self._send_snapshots(asset.snapshots.restart(), out)
            if asset.diagnosis is not None:
                asset.diagnosis.restart()
        windows = windower.push(samples, start_ns)
        if asset.diagnosis is not None:
            asset.diagnosis.append(samples, start_ns)
        if asset.snapshots is not None:
            snapshots = asset.snapshots.append(samples, start_ns)
            if snapshots:
                self._send_snapshots(snapshots, out)
        if len(windows):
            self._add_pending(asset, windows, out)

    # -------------------------------------------------------------------------------------- batching

    def _add_pending(self, asset: _Asset, windows: Windows, out: list[Outbound]) -> None:
        pending = asset.pending
        if pending.count == 0:
            pending.first_at = time.monotonic()
            self._deadline = min(self._deadline, pending.first_at + self._delay_s)
            for sensor in asset.joined:
                if sensor.joined is not None:
                    sensor.joined.pin(int(windows.end_ns[0]))
        pending.driver.append(windows.samples)
        pending.end_ns.append(windows.end_ns)
        pending.count += len(windows)
        self._metrics.windows_cut += len(windows)
        if pending.count >= self._batch_windows:
            self._compute(asset, out)
            self._update_deadline()

    def _run_due(self, out: list[Outbound], *, force: bool) -> None:
        now = time.monotonic()
        for asset in self._assets.values():
            if asset.pending.count and (force or asset.pending.first_at + self._delay_s <= now):
                self._compute(asset, out)
        self._update_deadline()

    def _update_deadline(self) -> None:
        firsts = [a.pending.first_at for a in self._assets.values() if a.pending.count]
        self._deadline = min(firsts) + self._delay_s if firsts else math.inf

    # ------------------------------------------------------------------------------------ features

    def _features(
        self, asset: _Asset, pending: _Pending
    ) -> tuple[FloatArray, npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """The feature matrix of the pending windows (NaN rows where a joined sensor had no data), their
        end times, and which of them hold spikes of the driving (vibration) sensor."""
        end_ns = pending.end_ns[0] if len(pending.end_ns) == 1 else np.concatenate(pending.end_ns)
        n = len(end_ns)
        matrix = np.empty((n, len(asset.feature_names)), dtype=np.float32)
        driver = asset.driver
        driver_windows = _concat(pending.driver)
        matrix[:, asset.columns[driver.settings.name]] = asset.spec.sensor_features(
            driver.spec, driver_windows, driver.settings.sample_rate_hz
        )
        spiky = np.zeros(n, dtype=np.bool_)
        if asset.spike_columns is not None:
            # |x - mean| <= peak-to-peak: only windows whose peak-to-peak exceeds 8 std can hold a spike
            p2p, std = asset.spike_columns
            candidates = np.flatnonzero(matrix[:, p2p] > SPIKE_SIGMAS * matrix[:, std])
            if len(candidates):
                spiky[candidates] = spiky_windows(driver_windows[candidates])
        for sensor in asset.joined:
            if sensor.joined is None:  # every sensor is either joined or the driver
                continue
            windows, valid = sensor.joined.take(end_ns)
            sensor.joined.unpin()
            columns = asset.columns[sensor.settings.name]
            if not valid.all():
                matrix[:, columns] = np.nan
            if len(windows):
                features = asset.spec.sensor_features(sensor.spec, windows, sensor.settings.sample_rate_hz)
                if valid.all():
                    matrix[:, columns] = features
                else:
                    matrix[np.flatnonzero(valid), columns] = features
        if asset.diagnosis is not None:  # keeps the feature rows an alert's diagnosis reads
            asset.diagnosis.hold(matrix, end_ns)
        return matrix, end_ns, spiky

    # ------------------------------------------------------------------------------------- scoring

    def _scorer(self, asset: _Asset) -> tuple[Scorer, npt.NDArray[np.intp] | None, bool]:
        """The scorer for the next batch of windows, the columns it takes, and whether it fits them."""
        model = self._models.active(asset.target) if self._models is not None else None
        if model is None:
            if asset.baseline is None:
                asset.baseline = asset.learner.make_baseline(asset.feature_names)
            return asset.baseline, None, True
        compat = asset.compat
        if compat is None or compat.model is not model:
            compat = check_compatibility(
                model, asset_id=asset.asset_id, spec_id=asset.spec_id, feature_names=asset.feature_names
            )
            asset.compat = compat
        return model.scorer, compat.columns, compat.is_match

    def _compute(self, asset: _Asset, out: list[Outbound]) -> None:
        """Features, scores, alerts and aggregates of every pending window of one asset."""
        pending, asset.pending = asset.pending, _Pending()
        matrix, end_ns, spiky = self._features(asset, pending)
        finite = np.asarray(np.isfinite(matrix).all(axis=1), dtype=np.bool_)
        metrics = self._metrics
        unscored = np.zeros(len(end_ns), dtype=np.uint8)
        if not finite.all():
            self._unscore(unscored, np.asarray(np.isnan(matrix).any(axis=1)), "incomplete")
            self._unscore(unscored, ~finite, "nonfinite_features")
            matrix[~finite] = np.nan
        scorer, columns, is_match = self._scorer(asset)
        stopped, transient = asset.state.classify(matrix, end_ns, finite & ~spiky)
        baseline = asset.baseline if scorer is asset.baseline else None
        if baseline is not None:
            if stopped.any() or transient.any() or spiky.any():
                for reason, mask in (
                    ("sensor_spikes", spiky),
                    ("stopped", stopped),
                    ("transient", transient),
                ):
                    self._unscore(unscored, mask, reason)
            self._warm_up(asset, baseline, matrix, end_ns, unscored)
        metrics.model_versions[asset.asset_id] = scorer.version
        scores = np.full(len(end_ns), np.nan, dtype=np.float32)
        scored_rows = np.flatnonzero(unscored == 0)
        rows = matrix
        if not is_match:
            self._unscore(unscored, unscored == 0, "feature_mismatch")
        elif len(scored_rows):
            rows = matrix if len(scored_rows) == len(end_ns) else matrix[scored_rows]
            if columns is not None:
                rows = rows[:, columns]
            rows = np.ascontiguousarray(rows)
            try:
                scores[scored_rows] = scorer.score(rows)
            except Exception:  # a broken model must not stop the pipeline: the windows stay unscored
                logger.exception(
                    "scorer %s failed on %d windows of %s", scorer.version, len(rows), asset.asset_id
                )
                self._unscore(unscored, unscored == 0, "scorer_error")
                scored_rows = scored_rows[:0]
            metrics.windows_scored += len(scored_rows)
        windows = ScoredWindows(
            end_ns=end_ns,
            features=matrix,
            scores=scores,
            threshold=scorer.threshold,
            model_version=scorer.version,
            model_kind=_kind(scorer),
            unscored=unscored,
        )
        if self._on_windows is not None:
            self._on_windows(asset.asset_id, windows)
        if is_match and len(scored_rows):
            row_scores = scores[scored_rows]
            if baseline is not None:
                learned, shift_opened = asset.learner.learn(baseline, rows, row_scores, end_ns[scored_rows])
                self._learned(asset, learned)
                metrics.baseline_shifts += int(shift_opened)
            self._alerts(asset, scorer, rows, row_scores, end_ns[scored_rows], out)
        aggregates = asset.aggregator.add(windows)
        self._close_stale_periods(int(end_ns.max()), aggregates)
        metrics.aggregates += len(aggregates)
        out.extend(aggregates)

    def _close_stale_periods(self, latest_ns: int, out: list[Aggregate]) -> None:
        """Emit the open periods of silent assets once the gateway's data is a whole period past them.

        An asset with windows still waiting to be scored is left alone: they may belong to its open period.
        """
        for asset in self._assets.values():
            end_ns = asset.aggregator.open_end_ns
            is_stale = end_ns is not None and end_ns + asset.aggregator.period_ns <= latest_ns
            if is_stale and not asset.pending.count:
                out.extend(asset.aggregator.flush())

    def _unscore(self, unscored: npt.NDArray[np.uint8], mask: npt.NDArray[np.bool_], reason: str) -> None:
        """Mark the windows of `mask` not yet marked as unscored for `reason`, and count them."""
        new = mask & (unscored == 0)
        count = int(np.count_nonzero(new))
        if count:
            unscored[new] = _UNSCORED_CODE[reason]
            counts = self._metrics.windows_unscored
            counts[reason] = counts.get(reason, 0) + count

    def _warm_up(
        self,
        asset: _Asset,
        baseline: BaselineScorer,
        matrix: FloatArray,
        end_ns: npt.NDArray[np.int64],
        unscored: npt.NDArray[np.uint8],
    ) -> None:
        """Teach a baseline that is not warmed up its warm-up windows; they are marked `warmup`."""
        asset.learner.note_start(end_ns)
        if baseline.is_warmed_up:
            return
        eligible = np.flatnonzero(unscored == 0)
        if len(eligible) == 0:
            return
        n_warm, learned = asset.learner.warm_up(baseline, matrix[eligible], end_ns[eligible])
        warm = np.zeros(len(end_ns), dtype=np.bool_)
        warm[eligible[:n_warm]] = True
        self._unscore(unscored, warm, "warmup")
        self._learned(asset, learned)

    def _learned(self, asset: _Asset, rows: FloatArray) -> None:
        """Rows a baseline learned: healthy running windows, whose levels anchor the operating state."""
        if len(rows):
            self._metrics.baseline_learned += len(rows)
            asset.state.learn_healthy(rows)

    # -------------------------------------------------------------------------------------- alerts

    def _alerts(  # noqa: PLR0917 - private helper over parallel arrays of one batch
        self,
        asset: _Asset,
        scorer: Scorer,
        rows: FloatArray,
        scores: FloatArray,
        end_ns: npt.NDArray[np.int64],
        out: list[Outbound],
    ) -> None:
        anomalous = scores > scorer.threshold
        runner = asset.diagnosis
        if runner is not None:
            runner.learn(end_ns, ~anomalous)
        transitions = asset.debouncer.update(anomalous)
        for transition in transitions:
            alert = self._alert(asset, scorer, transition, rows, scores, end_ns)
            out.append(alert)
            if transition.state == "raised":
                self._metrics.alerts_raised += 1
                if runner is not None:
                    runner.follow(alert.ts_ns, alert.diagnosis)
                if asset.snapshots is not None:
                    self._send_snapshots(asset.snapshots.request(alert), out)
            else:
                self._metrics.alerts_cleared += 1
                if runner is not None:
                    runner.unfollow()
        if runner is not None and asset.debouncer.is_raised:
            first = transitions[-1].index + 1 if transitions else 0  # windows after the raise
            update = runner.rediagnose(end_ns[first:], anomalous[first:])
            if update is not None:
                out.append(self._update(asset, scorer, update, scores, end_ns))

    def _alert(  # noqa: PLR0917 - private helper over parallel arrays of one batch
        self,
        asset: _Asset,
        scorer: Scorer,
        transition: Transition,
        rows: FloatArray,
        scores: FloatArray,
        end_ns: npt.NDArray[np.int64],
    ) -> Alert:
        settings = self.settings.alerts
        i = transition.index
        score = float(scores[i])
        ts_ns = int(end_ns[i])
        if transition.state == "raised":
            asset.alert_id = f"{asset.asset_id}:{ts_ns}"
            level = severity(score, scorer.threshold, settings)
            top = scorer.contributions(np.ascontiguousarray(rows[i : i + 1]), settings.top_features)
            message = f"{settings.k} of the last {settings.n} windows scored above {scorer.threshold:.4g}"
            diagnosis = asset.diagnosis.diagnose(ts_ns) if asset.diagnosis is not None else None
        else:
            level, top, diagnosis = "info", [], None
            message = f"{settings.clear_after} consecutive windows scored normal"
        return Alert(
            gateway_id=self.gateway_id,
            asset_id=asset.asset_id,
            seq=0,
            alert_id=asset.alert_id,
            state=transition.state,
            severity=level,
            ts_ns=ts_ns,
            score=_clip(score),
            threshold=_clip(scorer.threshold),
            model_version=scorer.version,
            model_kind=_kind(scorer),
            top_features=top,
            message=message,
            diagnosis=diagnosis,
        )

    def _update(
        self,
        asset: _Asset,
        scorer: Scorer,
        update: Rediagnosis,
        scores: FloatArray,
        end_ns: npt.NDArray[np.int64],
    ) -> AlertUpdate:
        """The message of a raised alert's re-diagnosis (also logged: the gateway's local record of it)."""
        i = int(np.searchsorted(end_ns, update.ts_ns))
        score = float(scores[i])
        new, old = update.diagnosis, update.previous
        was = "none" if old is None else f"{old.mode} ({old.confidence:.2f})"
        message = f"diagnosis {update.reason}: {new.mode} ({new.confidence:.2f}), was {was}"
        self._metrics.alert_updates += 1
        logger.info("alert %s of %s: %s", asset.alert_id, asset.asset_id, message)
        return AlertUpdate(
            gateway_id=self.gateway_id,
            asset_id=asset.asset_id,
            seq=0,
            alert_id=asset.alert_id,
            ts_ns=update.ts_ns,
            reason=update.reason,
            severity=severity(score, scorer.threshold, self.settings.alerts),
            score=_clip(score),
            threshold=_clip(scorer.threshold),
            model_version=scorer.version,
            model_kind=_kind(scorer),
            diagnosis=new,
            message=message,
        )

    # ----------------------------------------------------------------------------------- snapshots

    def _send_snapshots(self, snapshots: list[Snapshot], out: list[Outbound]) -> None:
        self._metrics.snapshots += len(snapshots)
        out.extend(snapshots)


def _kind(scorer: Scorer) -> ModelKind:
    return "baseline" if scorer.kind == "baseline" else "onnx"
