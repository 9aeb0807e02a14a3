"""`sim export`: a scenario written to CSV files in the bring-your-own-data format, streamed step by step.

Files written to the output directory (times are ISO 8601 UTC with microseconds and `Z`; an empty cell is
a missing value: an absent sensor, a dropout, or a feature of a window holding NaN/inf samples):

- `features.csv`: `asset_id,time,<sensor.feature...>,load,speed_rpm,running`, one row per asset per step,
  features computed with `shared.features` (vibration: the mean over the burst's `DEFAULT_SPEC`
  windows; slow sensors: over the step's slow samples).
- `events.csv`: `asset_id,time,event` with event `failure` or `maintenance`.
- `ground_truth.csv`: `asset_id,time,event,mode,detail`: fault onsets, failures, maintenance, injected
  sensor and transport faults.
- `assets.csv`: `asset_id,type,nominal_rpm,bpfo_order,bpfi_order,pass_order,sensors`.
- `raw_vibration.csv` (`asset_id,time,vibration`) and `raw_slow.csv`
  (`asset_id,time,temperature,current,pressure,flow`): raw samples of `[export] raw_assets`, every
  `raw_every`-th step.
- `manifest.json`: scenario, seed, feature spec, columns, counts.

Memory stays flat: nothing is kept across steps but counters.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt

from shared.features import DEFAULT_SPEC, SLOW_FEATURES, slow_features, vibration_features
from shared.timebase import iso_time
from simulators.assets import FAST_SENSOR
from simulators.engine import SENSORS, Step, TruthRecord, fleet_units, simulate
from simulators.scenario import Scenario
from simulators.signals import F32
from simulators.stream import burst_offset_ns

__all__ = ["CONDITION_COLUMNS", "ExportResult", "export_scenario", "feature_columns"]

CONDITION_COLUMNS = ("load", "speed_rpm", "running")
SLOW_SENSORS = SENSORS[1:]


def feature_columns() -> tuple[str, ...]:
    """The feature columns of `features.csv`, in order (without `asset_id,time` and the conditions)."""
    vibration = DEFAULT_SPEC.sensors[0].feature_names(DEFAULT_SPEC.n_bands)
    slow = tuple(f"{sensor}.{name}" for sensor in SLOW_SENSORS for name in SLOW_FEATURES)
    return vibration + slow


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What an export wrote."""

    out_dir: Path
    n_steps: int
    feature_rows: int
    raw_rows: int
    samples_simulated: int
    events: int
    truth_records: int


def _cell(value: float) -> str:
    return format(value, ".6g") if math.isfinite(value) else ""


def _step_features(scenario: Scenario, step: Step) -> npt.NDArray[np.float64]:
    """assets x feature columns (NaN where a sensor is absent or dropped)."""
    signals = scenario.spec.signals
    n = len(scenario.asset_ids)
    vib = step.signals[FAST_SENSOR]
    window = DEFAULT_SPEC.window_len
    per_burst = vib.shape[1] // window
    vib_features = vibration_features(
        vib.reshape(n * per_burst, window), signals.vibration_rate_hz, DEFAULT_SPEC.n_bands
    )
    parts = [vib_features.reshape(n, per_burst, -1).mean(axis=1, dtype=np.float64)]
    parts[0][~step.emitted[FAST_SENSOR]] = np.nan
    for sensor in SLOW_SENSORS:
        values = slow_features(step.signals[sensor], signals.slow_rate_hz).astype(np.float64)
        values[~step.emitted[sensor]] = np.nan
        parts.append(values)
    return np.concatenate(parts, axis=1)


class _Writers:
    def __init__(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.files: dict[str, IO[str]] = {}
        headers = {
            "features": ["asset_id", "time", *feature_columns(), *CONDITION_COLUMNS],
            "events": ["asset_id", "time", "event"],
            "ground_truth": ["asset_id", "time", "event", "mode", "detail"],
            "raw_vibration": ["asset_id", "time", FAST_SENSOR],
            "raw_slow": ["asset_id", "time", *SLOW_SENSORS],
        }
        for name, header in headers.items():
            handle = (out_dir / f"{name}.csv").open("w", encoding="utf-8", newline="\n")
            handle.write(",".join(header) + "\n")
            self.files[name] = handle

    def write(self, name: str, text: str) -> None:
        self.files[name].write(text)

    def close(self) -> None:
        for handle in self.files.values():
            handle.close()


def _raw_times(t_ns: int, n: int, rate_hz: float) -> list[str]:
    offsets = np.round(np.arange(n) * (1e9 / rate_hz)).astype(np.int64) + t_ns
    stamps = np.datetime_as_string(offsets.astype("datetime64[ns]").astype("datetime64[us]"), unit="us")
    return [f"{stamp}Z" for stamp in stamps.tolist()]


def _write_raw(scenario: Scenario, step: Step, rows: list[int], writers: _Writers) -> int:
    signals = scenario.spec.signals
    written = 0
    vib_times = _raw_times(
        step.t_ns + burst_offset_ns(scenario), signals.burst_samples, signals.vibration_rate_hz
    )
    slow_times = _raw_times(step.t_ns, signals.slow_samples, signals.slow_rate_hz)
    for i in rows:
        asset_id = scenario.asset_ids[i]
        if step.emitted[FAST_SENSOR][i]:
            values = step.signals[FAST_SENSOR][i].tolist()
            lines = [f"{asset_id},{t},{_cell(v)}\n" for t, v in zip(vib_times, values, strict=True)]
            writers.write("raw_vibration", "".join(lines))
            written += len(lines)
        slow: list[F32] = [step.signals[s][i] for s in SLOW_SENSORS]
        masks = [bool(step.emitted[s][i]) for s in SLOW_SENSORS]
        lines = []
        for k, t in enumerate(slow_times):
            cells = [_cell(float(col[k])) if ok else "" for col, ok in zip(slow, masks, strict=True)]
            lines.append(f"{asset_id},{t},{','.join(cells)}\n")
        writers.write("raw_slow", "".join(lines))
        written += len(lines)
    return written


def _truth_line(record: TruthRecord) -> str:
    mode = record.mode.replace(",", ";")
    detail = record.detail.replace(",", ";")
    return f"{record.asset_id},{iso_time(record.ts_ns)},{record.event},{mode},{detail}\n"


def _write_assets(scenario: Scenario, out_dir: Path) -> None:
    lines = ["asset_id,type,nominal_rpm,bpfo_order,bpfi_order,pass_order,sensors\n"]
    for unit in fleet_units(scenario):
        t = unit.type
        lines.append(
            f"{unit.asset_id},{t.name},{unit.rpm:.6g},{t.bpfo_order:g},{t.bpfi_order:g},{t.pass_order},"
            f"{' '.join(t.sensors)}\n"
        )
    (out_dir / "assets.csv").write_text("".join(lines), encoding="utf-8")


def export_scenario(
    scenario: Scenario,
    out_dir: Path,
    *,
    raw_assets: tuple[str, ...] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ExportResult:
    """Simulate `scenario` and write its CSV files to `out_dir` (see the module docstring).

    Args:
        scenario: the scenario (byte-identical output for the same scenario and seed).
        out_dir: created if needed; existing files of the same names are overwritten.
        raw_assets: assets whose raw samples are written (default: the scenario's `[export] raw_assets`).
        progress: called as `progress(step_index, n_steps)` after each step.
    """
    writers = _Writers(out_dir)
    raw_ids = scenario.spec.export.raw_assets if raw_assets is None else raw_assets
    raw_rows = [scenario.asset_ids.index(asset_id) for asset_id in raw_ids]
    counts = {"features": 0, "raw": 0, "samples": 0, "events": 0, "truth": 0}
    try:
        _write_assets(scenario, out_dir)
        for step in simulate(scenario):
            time_text = iso_time(step.t_ns)
            features = _step_features(scenario, step)
            conditions = np.stack([step.load, step.speed_rpm, step.running.astype(np.float64)], axis=1)
            table = np.concatenate([features, conditions], axis=1).tolist()
            lines = [
                f"{asset_id},{time_text},{','.join(_cell(v) for v in row)}\n"
                for asset_id, row in zip(scenario.asset_ids, table, strict=True)
            ]
            writers.write("features", "".join(lines))
            counts["features"] += len(lines)
            counts["samples"] += sum(int(step.emitted[s].sum()) * step.signals[s].shape[1] for s in SENSORS)
            for event in step.events:
                writers.write("events", f"{event.asset_id},{iso_time(event.ts_ns)},{event.event}\n")
                counts["events"] += 1
            for record in step.truth:
                writers.write("ground_truth", _truth_line(record))
                counts["truth"] += 1
            if raw_rows and step.index % scenario.spec.export.raw_every == 0:
                counts["raw"] += _write_raw(scenario, step, raw_rows, writers)
            if progress is not None:
                progress(step.index, scenario.n_steps)
    finally:
        writers.close()
    result = ExportResult(
        out_dir,
        scenario.n_steps,
        counts["features"],
        counts["raw"],
        counts["samples"],
        counts["events"],
        counts["truth"],
    )
    _write_manifest(scenario, result)
    return result


def _write_manifest(scenario: Scenario, result: ExportResult) -> None:
    manifest = {
        "scenario": scenario.name,
        "source": scenario.source,
        "seed": scenario.seed,
        "start": iso_time(scenario.start_ns),
        "end": iso_time(scenario.end_ns),
        "step_s": scenario.spec.time.step_s,
        "time_format": "ISO 8601 UTC with microseconds, e.g. 2026-01-01T00:00:10.000000Z",
        "feature_spec": DEFAULT_SPEC.spec_id,
        "feature_columns": list(feature_columns()),
        "condition_columns": list(CONDITION_COLUMNS),
        "assets": list(scenario.asset_ids),
        "steps": result.n_steps,
        "feature_rows": result.feature_rows,
        "raw_rows": result.raw_rows,
        "events": result.events,
        "samples_simulated": result.samples_simulated,
    }
    (result.out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
