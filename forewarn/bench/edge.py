"""`forewarn bench edge`: the edge agent end to end, through a real (throwaway) Mosquitto broker.

Three measurements in one run, on whatever machine this is (a shared 2-core box in CI: expect noise):

* **throughput** (`samples_per_s`): a separate publisher process floods the plant broker with binary raw
  batches (16,384 float32 samples at 25.6 kHz) for several assets; the agent, in this process, takes them
  from the broker, decodes, windows (1,024 samples), computes features, scores with the int8 ONNX model
  (one onnxruntime thread) and queues aggregates on disk for the upstream broker. The pipeline runs on one
  thread (`edge-scorer`); paho's network threads and the forwarder are the only other threads. The rate is
  samples scored divided by the time from the first batch received to the last one scored.
* **latency** (`window_to_alert_p50_ms`, `window_to_alert_p99_ms`): batches are published at a steady
  pace, alternating healthy and faulty (a strong bearing tone); a subscriber on the plant broker receives
  each raised alert. Latency is from the moment the batch holding the alert's window was published (the
  earliest the window could be complete at the gateway) to the alert's arrival at the subscriber: both
  broker hops are included. `gateway_batch_to_alert_*` is the agent's own share: from its receipt of the
  batch (paho's callback) to the alert handed to its plant client.
* **bandwidth** (`upstream_bytes_per_raw_byte`): bytes the forwarder published upstream (topic + payload
  of aggregates, alerts, snapshots and status) over raw payload bytes received, in the throughput run.

`forewarn.bench.edge_rediagnosis` adds the cost of re-diagnosing a sustained alert (`rediagnosis_*`:
windows/s of the pipeline in process with re-diagnosis off, at the default rate and at stress rates,
beside the pipeline without diagnosis, its ceiling).

The model is a real int8 model from `cloud_service.modeling.build_anomaly_model`, trained on healthy
windows of the same synthetic signal; E1's `forewarn.bench.edge_models.measure` adds the per-window model
latencies (int8 vs float vs scikit-learn).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.agent import EdgeAgent
from edge_agent.settings import (
    AggregationSettings,
    AlertSettings,
    AssetSettings,
    EdgeSettings,
    PipelineSettings,
    SensorSettings,
    SnapshotSettings,
)
from forewarn.bench import edge_rediagnosis
from forewarn.bench.timing import percentile
from forewarn.localservices import MosquittoServer, running, temporary_directory, wait_until
from shared import topics
from shared.config import load_settings
from shared.features import SensorKind, vibration_features
from shared.messages import Alert, decode_uplink
from shared.raw_batch import RawBatch, encode_raw_batch
from shared.timebase import NS_PER_S

__all__ = ["run"]

logger = logging.getLogger(__name__)

RATE_HZ = 25_600.0
BATCH_SAMPLES = 16_384
WINDOW_LEN = 1024
N_BANDS = 128
MODEL_TARGET = "bench"
T0_NS = 1_790_000_000 * NS_PER_S  # a fixed, plausible start (2026-09), aligned to 10 s


@dataclass(frozen=True)
class _Plan:
    assets: tuple[str, ...]
    throughput_batches: int  # per asset
    latency_cycles: int  # per asset: one faulty batch, then one healthy batch
    latency_pace_s: float


def _signal(index: int, *, rng: np.random.Generator, fault: float) -> npt.NDArray[np.float32]:
    t = (np.arange(BATCH_SAMPLES) + index * BATCH_SAMPLES) / RATE_HZ
    x = (
        np.sin(2 * np.pi * 49.3 * t)
        + 0.3 * np.sin(2 * np.pi * 98.6 * t)
        + rng.normal(0.0, 0.2, BATCH_SAMPLES)
        + fault * np.sin(2 * np.pi * 3217.0 * t)
    )
    return x.astype(np.float32)


def _batch(asset_id: str, index: int, samples: npt.NDArray[np.float32]) -> RawBatch:
    start_ns = T0_NS + round(index * BATCH_SAMPLES * NS_PER_S / RATE_HZ)
    return RawBatch(asset_id, "vibration", index, start_ns, RATE_HZ, samples)


def _publish_flood(host: str, port: int, assets: tuple[str, ...], n_batches: int, go: Any) -> None:
    """Child process: publish `n_batches` healthy batches per asset as fast as paho allows (QoS 0)."""
    rng = np.random.default_rng(1)
    templates = [_signal(i, rng=rng, fault=0.0) for i in range(8)]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="forewarn-bench-flood", protocol=mqtt.MQTTv5)
    client.connect(host, port)
    client.loop_start()
    payloads = [
        [(topics.raw(a, "vibration"), encode_raw_batch(_batch(a, i, templates[i % 8]))) for a in assets]
        for i in range(n_batches)
    ]
    go.wait(60)
    for row in payloads:
        for topic, payload in row:
            client.publish(topic, payload, qos=0)
    client.disconnect()
    client.loop_stop()


def _train_model(pipeline: PipelineSettings) -> tuple[Any, str]:
    """An int8 model over the pipeline's features, trained on healthy windows; None if training is absent."""
    try:
        from cloud_service.modeling import build_anomaly_model  # noqa: PLC0415 - optional at bench time
    except ImportError:
        return None, "baseline"
    asset = pipeline.assets[0]
    spec = pipeline.feature_spec(asset)
    rng = np.random.default_rng(7)
    samples = np.concatenate([_signal(i, rng=rng, fault=0.0) for i in range(48)])
    windows = samples.reshape(-1, WINDOW_LEN)
    features = vibration_features(windows, RATE_HZ, N_BANDS)
    artifact = build_anomaly_model(
        features, spec.feature_names, feature_spec=spec.spec_id, target=MODEL_TARGET, version=1, seed=1
    )
    return artifact, f"{MODEL_TARGET}:v1 ({artifact.manifest.model_type}, {artifact.manifest.quantization})"


def _settings(
    workdir: Path,
    broker: MosquittoServer,
    plan: _Plan,
    *,
    n_bands: int = N_BANDS,
    gateway_id: str = "gw-bench",
) -> EdgeSettings:
    sensor = SensorSettings(name="vibration", kind=SensorKind.VIBRATION, sample_rate_hz=RATE_HZ)
    pipeline = PipelineSettings(
        assets=tuple(
            AssetSettings(asset_id=a, sensors=(sensor,), model_target=MODEL_TARGET) for a in plan.assets
        ),
        window_len=WINDOW_LEN,
        hop=WINDOW_LEN,
        n_bands=n_bands,
        feature_spec_name="bench-vibration",
        score_batch_windows=16,  # one raw batch: its windows are scored as soon as it arrives
        score_max_delay_ms=2.0,
        alerts=AlertSettings(k=2, n=3, clear_after=4),
        snapshots=SnapshotSettings(enabled=False),
        aggregation=AggregationSettings(period_s=10.0),
    )
    mqtt_settings = {"host": broker.host, "port": broker.port, "reconnect_max_s": 1.0}
    return load_settings(
        EdgeSettings,
        environ={},
        overrides={
            "gateway_id": gateway_id,
            "heartbeat_interval_s": 1.0,
            "intake_queue_size": plan.throughput_batches * len(plan.assets) + 100,
            "plant_mqtt": mqtt_settings,
            "upstream_mqtt": mqtt_settings,
            "pipeline": pipeline,
            "models": {"store_dir": str(workdir / "models")},
            "queue": {"dir": str(workdir / "queue")},
            "quarantine": {"dir": str(workdir / "quarantine")},
        },
    )


def _throughput(agent: EdgeAgent, broker: MosquittoServer, plan: _Plan) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    child = context.Process(
        target=_publish_flood,
        args=(broker.host, broker.port, plan.assets, plan.throughput_batches, go),
        name="bench-flood",
    )
    child.start()
    total = plan.throughput_batches * len(plan.assets)
    metrics = agent.pipeline.metrics
    before_batches, before_samples = metrics.batches_in, metrics.samples_in
    received_before = agent.intake.metrics.received
    go.set()
    wait_until(lambda: agent.intake.metrics.received > received_before, timeout_s=60, interval_s=0.001)
    start = time.perf_counter()
    wait_until(lambda: metrics.batches_in - before_batches >= total, timeout_s=600, interval_s=0.002)
    elapsed = time.perf_counter() - start
    child.join(60)
    samples = metrics.samples_in - before_samples
    return {
        "samples_per_s": samples / elapsed,
        "batches": float(total),
        "dropped_intake_full": float(agent.intake.metrics.dropped_queue_full),
        "elapsed_s": elapsed,
    }


class _AlertClock:
    """Plant-broker subscriber that timestamps each raised alert on arrival."""

    def __init__(self, host: str, port: int) -> None:
        self.arrivals: list[tuple[int, str, int]] = []  # (arrival monotonic ns, asset, window end ns)
        self._ready = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="forewarn-bench-alerts", protocol=mqtt.MQTTv5
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._ready.set()
        self.client.connect(host, port)
        self.client.subscribe(topics.subscription(topics.TopicKind.PLANT_ALERT), qos=1)
        self.client.loop_start()
        wait_until(self._ready.is_set, timeout_s=10)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        arrived = time.monotonic_ns()
        alert = decode_uplink(bytes(message.payload))
        if isinstance(alert, Alert) and alert.state == "raised":
            self.arrivals.append((arrived, alert.asset_id, alert.ts_ns))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _latency_batches(plan: _Plan, first_index: int) -> Iterator[tuple[RawBatch, bool]]:
    rng = np.random.default_rng(3)
    index = first_index
    for _ in range(plan.latency_cycles):
        for fault in (4.0, 0.0):
            samples = _signal(index, rng=rng, fault=fault)
            for asset_id in plan.assets:
                yield _batch(asset_id, index, samples), fault > 0
            index += 1


def _latency_driver(host: str, port: int, plan: _Plan, first_index: int, results: Any) -> None:
    """Child process: publish paced healthy/faulty batches, time each raised alert at a plant subscriber.

    Runs apart from the agent so that its threads do not compete with the agent's for the GIL.
    """
    clock = _AlertClock(host, port)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="forewarn-bench-pace", protocol=mqtt.MQTTv5)
    client.connect(host, port)
    client.loop_start()
    batches = [
        (batch, is_faulty, encode_raw_batch(batch))
        for batch, is_faulty in _latency_batches(plan, first_index)
    ]
    published: dict[str, list[tuple[int, int, int]]] = {}  # asset -> (start ns, end ns, publish ns)
    pause = threading.Event()
    faulty = 0
    for batch, is_faulty, payload in batches:
        published.setdefault(batch.asset_id, []).append((batch.start_ns, batch.end_ns, time.monotonic_ns()))
        client.publish(topics.raw(batch.asset_id, batch.sensor), payload, qos=0)
        faulty += is_faulty
        if batch.asset_id == plan.assets[-1]:
            pause.wait(plan.latency_pace_s)
    with contextlib.suppress(TimeoutError):  # reported: alerts_measured < faulty_batches_sent
        wait_until(lambda: len(clock.arrivals) >= faulty, timeout_s=20)
    client.disconnect()
    client.loop_stop()
    clock.close()
    latencies_ms = []
    for arrived_ns, asset_id, window_end_ns in clock.arrivals:
        for start_ns, end_ns, sent_ns in published.get(asset_id, []):
            if start_ns < window_end_ns <= end_ns:
                latencies_ms.append((arrived_ns - sent_ns) / 1e6)
                break
    results.put((latencies_ms, faulty))


def _latency(broker: MosquittoServer, plan: _Plan, first_index: int) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(
        target=_latency_driver,
        args=(broker.host, broker.port, plan, first_index, results),
        name="bench-latency",
    )
    child.start()
    latencies_ms, faulty = results.get(timeout=300)
    child.join(30)
    return {
        "window_to_alert_p50_ms": percentile(latencies_ms, 50),
        "window_to_alert_p99_ms": percentile(latencies_ms, 99),
        "alerts_measured": float(len(latencies_ms)),
        "faulty_batches_sent": float(faulty),
    }


def _bandwidth_default_features(workdir: Path, broker: MosquittoServer, plan: _Plan) -> float:
    """Upstream bytes per raw byte with the pipeline's default 8 bands (17 features) and the baseline."""
    settings = _settings(workdir / "default-features", broker, plan, n_bands=8, gateway_id="gw-bench-8")
    agent = EdgeAgent(settings)
    agent.start()
    try:
        wait_until(lambda: agent.intake.is_subscribed and agent.forwarder.is_connected, timeout_s=20)
        _throughput(agent, broker, plan)
        wait_until(lambda: agent.disk_queue.stats().depth == 0, timeout_s=60)
        raw_bytes = agent.intake.metrics.received_bytes
        return agent.forwarder.metrics.bytes_out / raw_bytes if raw_bytes else float("nan")
    finally:
        agent.stop()


def _edge_models(quick: bool) -> dict[str, Any]:
    try:
        from forewarn.bench.edge_models import measure  # noqa: PLC0415 - E1's part of the suite
    except ImportError as exc:
        return {"edge_models_error": str(exc)}
    return measure(quick=quick)


def run(*, quick: bool = False) -> dict[str, object]:
    """Measure the edge agent: throughput, window-to-alert latency, upstream bandwidth, model latencies."""
    plan = _Plan(
        assets=("bench-a1", "bench-a2", "bench-a3", "bench-a4"),
        throughput_batches=120 if quick else 500,
        latency_cycles=15 if quick else 60,
        latency_pace_s=0.05,
    )
    figures: dict[str, object] = {}
    with (
        temporary_directory("forewarn-bench-edge-") as workdir,
        running(MosquittoServer(workdir / "broker")) as broker,
    ):
        settings = _settings(workdir, broker, plan)
        artifact, model = _train_model(settings.pipeline)
        agent = EdgeAgent(settings)
        if artifact is not None:
            agent.models.install(artifact.manifest, artifact.onnx_int8)
            agent.models.activate(MODEL_TARGET, 1)
        agent.start()
        try:
            wait_until(lambda: agent.intake.is_subscribed and agent.forwarder.is_connected, timeout_s=20)
            throughput = _throughput(agent, broker, plan)
            wait_until(lambda: agent.disk_queue.stats().depth == 0, timeout_s=60)
            raw_bytes = agent.intake.metrics.received_bytes
            upstream_bytes = agent.forwarder.metrics.bytes_out
            agent.alert_latencies_ms.clear()
            latency = _latency(broker, plan, first_index=plan.throughput_batches + 10)
            gateway_ms = list(agent.alert_latencies_ms)
            windows_scored = agent.pipeline.metrics.windows_scored
        finally:
            agent.stop()
        ratio_8_bands = _bandwidth_default_features(workdir, broker, plan)
    figures.update(
        {
            "samples_per_s": round(throughput["samples_per_s"]),
            "window_to_alert_p50_ms": round(latency["window_to_alert_p50_ms"], 2),
            "window_to_alert_p99_ms": round(latency["window_to_alert_p99_ms"], 2),
            "gateway_batch_to_alert_p50_ms": round(percentile(gateway_ms, 50), 2),
            "gateway_batch_to_alert_p99_ms": round(percentile(gateway_ms, 99), 2),
            "upstream_bytes_per_raw_byte": round(upstream_bytes / raw_bytes, 6) if raw_bytes else None,
            "upstream_bytes_per_raw_byte_8_bands": round(ratio_8_bands, 6),
            "edge_model": model,
            "edge_n_features": len(settings.pipeline.feature_spec(settings.pipeline.assets[0]).feature_names),
            "edge_aggregation_period_s": settings.pipeline.aggregation.period_s,
            "edge_assets": len(plan.assets),
            "edge_batch_samples": BATCH_SAMPLES,
            "edge_sample_rate_hz": RATE_HZ,
            "edge_throughput_batches": int(throughput["batches"]),
            "edge_throughput_elapsed_s": round(throughput["elapsed_s"], 3),
            "edge_dropped_intake_full": int(throughput["dropped_intake_full"]),
            "edge_windows_scored": windows_scored,
            "edge_alerts_measured": int(latency["alerts_measured"]),
            "edge_faulty_batches_sent": int(latency["faulty_batches_sent"]),
            "edge_raw_bytes": raw_bytes,
            "edge_upstream_bytes": upstream_bytes,
        }
    )
    figures.update(_edge_models(quick))
    figures.update(edge_rediagnosis.run(quick=quick))
    return figures
