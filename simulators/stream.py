"""From simulated steps to what goes on the wire: raw batches, events, and transport faults.

`iter_batches` yields `RawBatch` objects in time order (per step: by start time, then asset, then
sensor; a step's vibration burst ends with its slow samples, `burst_offset_ns`); `seq` increments by 1
per (asset, sensor) batch. `iter_messages` turns them and the maintenance events into MQTT messages
(topic, payload, QoS) and injects the scenario's transport faults: duplicated batches (same payload
twice), out-of-order batches (held back and sent after the next one) and malformed payloads (a valid
batch with its body cut short).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from shared import topics
from shared.messages import MaintenanceEvent, encode
from shared.raw_batch import RawBatch, encode_raw_batch
from shared.timebase import NS_PER_S
from simulators.engine import SENSORS, Step, TruthRecord, simulate
from simulators.scenario import Scenario, TransportFaultSpec

__all__ = [
    "Message",
    "burst_offset_ns",
    "event_message",
    "iter_batches",
    "iter_items",
    "iter_messages",
    "raw_message",
]

_NS_PER_H = 3600 * NS_PER_S
QOS_RAW = 0
QOS_EVENT = 1


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT publication; `fault` names the transport fault that produced or altered it, if any."""

    topic: str
    payload: bytes
    qos: int
    ts_ns: int
    n_samples: int = 0
    fault: str = ""


class _SeqCounter:
    def __init__(self) -> None:
        self._next: dict[tuple[str, str], int] = {}

    def take(self, asset_id: str, sensor: str) -> int:
        key = (asset_id, sensor)
        seq = self._next.get(key, 0)
        self._next[key] = seq + 1
        return seq


def burst_offset_ns(scenario: Scenario) -> int:
    """How far into each step the vibration burst starts: at the end of the step's slow samples.

    A data collector that records a vibration burst with the slow readings (temperature, load, ...)
    around it gives the edge a stretch of each slow sensor leading up to every vibration window, which
    the pipeline joins to it. With a continuous signal (step = burst length) the offset is 0.
    """
    signals = scenario.spec.signals
    slow_s = min(signals.slow_samples / signals.slow_rate_hz, scenario.spec.time.step_s)
    burst_s = signals.burst_samples / signals.vibration_rate_hz
    return max(0, round((slow_s - burst_s) * NS_PER_S))


def _step_batches(scenario: Scenario, step: Step, seqs: _SeqCounter) -> list[RawBatch]:
    """The raw batches of one step, sorted by start time, then asset, then sensor."""
    signals = scenario.spec.signals
    burst_offset = burst_offset_ns(scenario)
    out: list[tuple[int, int, int, RawBatch]] = []
    for sensor_index, sensor in enumerate(SENSORS):
        fast = sensor_index == 0
        rate = signals.vibration_rate_hz if fast else signals.slow_rate_hz
        chunk = signals.batch_samples if fast else signals.slow_samples
        lead_ns = burst_offset if fast else 0
        data = step.signals[sensor]
        emitted = step.emitted[sensor]
        skew = step.skew_ns[sensor]
        for i in np.flatnonzero(emitted):
            asset_id = scenario.asset_ids[int(i)]
            row = data[int(i)]
            for offset in range(0, row.size, chunk):
                samples = row[offset : offset + chunk]
                samples.flags.writeable = False
                start_ns = step.t_ns + lead_ns + int(skew[i]) + round(offset * NS_PER_S / rate)
                batch = RawBatch(
                    asset_id=asset_id,
                    sensor=sensor,
                    seq=seqs.take(asset_id, sensor),
                    start_ns=start_ns,
                    sample_rate_hz=rate,
                    samples=samples,
                )
                out.append((start_ns - int(skew[i]), int(i), sensor_index, batch))
    out.sort(key=lambda item: item[:3])
    return [item[3] for item in out]


def iter_items(
    scenario: Scenario, *, on_truth: Callable[[TruthRecord], None] | None = None
) -> Iterator[RawBatch | MaintenanceEvent]:
    """Every raw batch and every maintenance/failure event of the scenario, in time order.

    Args:
        scenario: what to simulate.
        on_truth: called with each ground-truth record as the simulation reaches it.
    """
    seqs = _SeqCounter()
    for step in simulate(scenario):
        if on_truth is not None:
            for record in step.truth:
                on_truth(record)
        yield from step.events
        yield from _step_batches(scenario, step, seqs)


def iter_batches(scenario: Scenario) -> Iterator[RawBatch]:
    """Every raw batch of the scenario, in time order (see the module docstring)."""
    for item in iter_items(scenario):
        if isinstance(item, RawBatch):
            yield item


def _applies(fault: TransportFaultSpec, scenario: Scenario, batch: RawBatch) -> bool:
    start = scenario.start_ns + round(fault.start_h * _NS_PER_H)
    end = start + round(fault.duration_h * _NS_PER_H)
    return (
        start <= batch.start_ns < end
        and fault.asset in ("*", batch.asset_id)
        and fault.sensor in ("*", batch.sensor)
    )


def raw_message(batch: RawBatch, fault: str = "") -> Message:
    """The MQTT message of a raw batch (binary encoding, QoS 0)."""
    return Message(
        topics.raw(batch.asset_id, batch.sensor),
        encode_raw_batch(batch),
        QOS_RAW,
        batch.start_ns,
        len(batch.samples),
        fault,
    )


def event_message(event: MaintenanceEvent) -> Message:
    """The MQTT message of a maintenance/failure event (JSON, QoS 1)."""
    return Message(topics.event(event.asset_id), encode(event), QOS_EVENT, event.ts_ns)


def iter_messages(
    scenario: Scenario,
    items: Iterable[RawBatch | MaintenanceEvent] | None = None,
    *,
    on_truth: Callable[[TruthRecord], None] | None = None,
) -> Iterator[Message]:
    """The MQTT messages of a scenario, with its transport faults injected (deterministic for the seed).

    Args:
        scenario: what to simulate.
        items: the batches and events to send (default: the scenario's own, `iter_items`).
        on_truth: passed to `iter_items`.
    """
    rng = np.random.default_rng([scenario.seed, 5])
    faults = scenario.spec.transport_faults
    held: dict[tuple[str, str], Message] = {}
    for item in iter_items(scenario, on_truth=on_truth) if items is None else items:
        if isinstance(item, MaintenanceEvent):
            yield event_message(item)
            continue
        key = (item.asset_id, item.sensor)
        message = raw_message(item)
        kinds = [f.kind for f in faults if _applies(f, scenario, item) and rng.uniform() < f.probability]
        if "malformed" in kinds:
            message = Message(message.topic, message.payload[:-6], QOS_RAW, message.ts_ns, 0, "malformed")
        if "reorder" in kinds and key not in held:
            held[key] = Message(
                message.topic, message.payload, QOS_RAW, message.ts_ns, message.n_samples, "reorder"
            )
            continue
        yield message
        if key in held:
            yield held.pop(key)
        if "duplicate" in kinds:
            yield Message(message.topic, message.payload, QOS_RAW, message.ts_ns, 0, "duplicate")
    yield from held.values()
