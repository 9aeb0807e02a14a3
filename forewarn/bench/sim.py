"""`forewarn bench sim`: how fast the simulator publishes to a broker and exports to CSV.

- `publish_samples_per_s`: the `stress` scenario simulated, encoded (binary raw batches) and published
  at full speed, from this one process, to a throwaway local Mosquitto started here.
- `publish_only_samples_per_s`: the same messages encoded beforehand, so only the MQTT client is timed.
- `publish_4096_batches_samples_per_s`: as `publish_samples_per_s`, with 4096-sample vibration batches.
- `export_samples_per_s`: samples simulated per second by `sim export` of the `stress` scenario
  (features for every asset and step, CSV written to a temporary directory).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from forewarn.localservices import MosquittoServer, running, temporary_directory
from shared.config import MqttSettings
from simulators import (
    Publisher,
    Scenario,
    export_scenario,
    iter_messages,
    load_scenario,
    parse_scenario,
    publish_stream,
)

__all__ = ["run"]


def _stress(scenario_steps: int, batch_samples: int | None = None) -> Scenario:
    scenario = load_scenario("stress")
    if batch_samples is not None:
        data = scenario.spec.model_dump()
        data["signals"]["batch_samples"] = batch_samples
        scenario = parse_scenario(data, source=scenario.source)
    return scenario.with_changes(n_steps=scenario_steps)


def _publish(
    settings: MqttSettings, scenario_steps: int, *, pre_encode: bool, batch_samples: int | None = None
) -> dict[str, float]:
    scenario = _stress(scenario_steps, batch_samples)
    with Publisher(settings=settings, client_id="forewarn-bench-sim", max_unpublished=4096) as publisher:
        messages = list(iter_messages(scenario)) if pre_encode else iter_messages(scenario)
        stats = publish_stream(messages, publisher, speed=0.0)
    return {
        "samples": stats.samples,
        "messages": stats.messages,
        "bytes": stats.bytes,
        "elapsed_s": stats.elapsed_s,
        "samples_per_s": stats.samples_per_s,
    }


def _export(workdir: Path, scenario_steps: int) -> tuple[float, int]:
    scenario = load_scenario("stress").with_changes(n_steps=scenario_steps)
    start = time.perf_counter()
    result = export_scenario(scenario, workdir / "export", raw_assets=())
    return result.samples_simulated / (time.perf_counter() - start), result.samples_simulated


def run(*, quick: bool = False) -> dict[str, Any]:
    """Measure publish and export rates (one process; the machine may be shared)."""
    steps = 20 if quick else 146
    with temporary_directory("forewarn-bench-sim-") as workdir:
        with running(MosquittoServer(workdir / "broker")) as broker:
            settings = MqttSettings.model_validate({"host": broker.host, "port": broker.port})
            _publish(settings, 5, pre_encode=False)  # warm-up: connection, caches
            live = _publish(settings, steps, pre_encode=False)
            only = _publish(settings, steps, pre_encode=True)
            small = _publish(settings, steps, pre_encode=False, batch_samples=4096)
        export_rate, export_samples = _export(workdir, steps)
    return {
        "scenario": "stress",
        "publish_samples_per_s": round(live["samples_per_s"]),
        "publish_messages": int(live["messages"]),
        "publish_samples": int(live["samples"]),
        "publish_mbytes_per_s": round(live["bytes"] / live["elapsed_s"] / 1e6, 1),
        "publish_batch_samples": load_scenario("stress").spec.signals.batch_samples,
        "publish_only_samples_per_s": round(only["samples_per_s"]),
        "publish_4096_batches_samples_per_s": round(small["samples_per_s"]),
        "publish_target_samples_per_s": 5_000_000,
        "publish_meets_target": live["samples_per_s"] >= 5_000_000,
        "export_samples_per_s": round(export_rate),
        "export_samples": export_samples,
    }
