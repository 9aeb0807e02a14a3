"""`sim export`: byte-identical CSV files for a seed, in the bring-your-own-data format, and replayable."""

from __future__ import annotations

import csv
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from forewarn.cli import main
from shared.features import DEFAULT_SPEC
from shared.messages import MaintenanceEvent
from shared.raw_batch import RawBatch
from simulators import (
    ReplayStats,
    export_scenario,
    feature_columns,
    iter_batches,
    load_scenario,
    read_recording,
)

FILES = (
    "features.csv",
    "events.csv",
    "ground_truth.csv",
    "assets.csv",
    "raw_vibration.csv",
    "raw_slow.csv",
    "manifest.json",
)


@pytest.fixture(scope="module")
def smoke_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full smoke scenario exported once for this module."""
    out = tmp_path_factory.mktemp("smoke-export")
    export_scenario(load_scenario("smoke"), out)
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_same_seed_gives_byte_identical_files(smoke_export: Path, workdir: Path) -> None:
    export_scenario(load_scenario("smoke"), workdir / "again")
    for name in FILES:
        assert (smoke_export / name).read_bytes() == (workdir / "again" / name).read_bytes(), name
    other = load_scenario("smoke").with_changes(seed=99, n_steps=30)
    export_scenario(other, workdir / "other")
    first_rows = (smoke_export / "features.csv").read_text().splitlines()[1:4]
    assert (workdir / "other" / "features.csv").read_text().splitlines()[1:4] != first_rows


def test_features_file_has_one_row_per_asset_per_step(smoke_export: Path) -> None:
    scenario = load_scenario("smoke")
    rows = _rows(smoke_export / "features.csv")
    header = list(rows[0].keys())
    assert header[:2] == ["asset_id", "time"]
    assert header[2:-3] == list(feature_columns())
    assert set(DEFAULT_SPEC.feature_names) <= set(header)
    assert header[-3:] == ["load", "speed_rpm", "running"]
    assert len(rows) == len(scenario.asset_ids) * scenario.n_steps
    assert rows[0]["time"] == "2026-01-01T00:00:00.000000Z"
    motor = next(r for r in rows if r["asset_id"] == "motor-001")
    assert motor["pressure.mean"] == ""  # motors have no pressure sensor: missing, not 0
    pump = next(r for r in rows if r["asset_id"] == "pump-001")
    assert float(pump["pressure.mean"]) > 1.0
    assert float(pump["vibration.rms"]) > 0.0


def test_bearing_wear_is_visible_in_the_exported_features(smoke_export: Path) -> None:
    rows = [r for r in _rows(smoke_export / "features.csv") if r["asset_id"] == "pump-001"]
    running = [r for r in rows if r["running"] == "1" and r["time"] < "2026-01-01T02:15"]
    early = np.mean([float(r["vibration.kurtosis"]) for r in running[:60]])
    late = np.mean([float(r["vibration.kurtosis"]) for r in running[-20:]])
    assert late > 1.5 * early


def test_events_and_ground_truth(smoke_export: Path) -> None:
    events = _rows(smoke_export / "events.csv")
    assert [(e["asset_id"], e["event"]) for e in events] == [
        ("pump-001", "failure"),
        ("pump-001", "maintenance"),
    ]
    assert list(events[0].keys()) == ["asset_id", "time", "event"]
    truth = _rows(smoke_export / "ground_truth.csv")
    onset = next(t for t in truth if t["event"] == "onset")
    assert (onset["asset_id"], onset["mode"], onset["time"]) == (
        "pump-001",
        "outer_race",
        "2026-01-01T00:15:00.000000Z",
    )
    kinds = {(t["asset_id"], t["mode"]) for t in truth if t["event"] == "sensor_fault"}
    assert kinds == {
        ("motor-001", "stuck"),
        ("motor-001", "spikes"),
        ("fan-001", "dropout"),
        ("fan-001", "nan"),
    }
    manifest = json.loads((smoke_export / "manifest.json").read_text())
    assert manifest["seed"] == 42
    assert manifest["feature_spec"] == DEFAULT_SPEC.spec_id
    assets = _rows(smoke_export / "assets.csv")
    assert [a["type"] for a in assets] == ["centrifugal_pump", "electric_motor", "fan"]


@pytest.mark.slow
def test_raw_export_replays_to_the_same_batches(smoke_export: Path) -> None:
    stats = ReplayStats()
    replayed = list(read_recording(smoke_export / "raw_vibration.csv", stats=stats))
    assert stats.rejected == {}
    original = [
        b
        for i, b in enumerate(
            b
            for b in iter_batches(load_scenario("smoke"))
            if b.asset_id == "pump-001" and b.sensor == "vibration"
        )
        if i % 30 == 0
    ]
    assert len(replayed) == len(original)
    for got, want in zip(replayed, original, strict=True):
        assert isinstance(got, RawBatch)
        assert got.start_ns == want.start_ns
        assert got.sample_rate_hz == pytest.approx(10_000.0)
        np.testing.assert_allclose(got.samples, want.samples, rtol=1e-5, atol=1e-6)
    events = list(read_recording(smoke_export / "events.csv"))
    assert all(isinstance(e, MaintenanceEvent) for e in events)
    assert len(events) == 2


def test_replay_counts_bad_rows_and_keeps_going(workdir: Path) -> None:
    path = workdir / "rec.csv"
    path.write_text(
        "asset_id,time,temperature,current\n"
        "m1,2026-01-01T00:00:00Z,40.0,10\n"
        "m1,2026-01-01T00:00:01Z,40.1,\n"
        "m1,2026-01-01T00:00:02Z,oops,10\n"
        "m1,2026-01-01T00:00:01Z,40.2,10\n"  # back in time
        "bad id!,2026-01-01T00:00:03Z,40.3,10\n"
        "m1,not-a-time,40.3,10\n"
        "m1,2026-01-01T00:00:03Z,40.3\n"  # too few columns
        "m1,1767225604,40.4,11\n"  # numeric epoch seconds
    )
    stats = ReplayStats()
    batches = [b for b in read_recording(path, stats=stats) if isinstance(b, RawBatch)]
    assert stats.rows == 8
    assert stats.rejected == {"value": 1, "time_order": 1, "asset_id": 1, "time": 1, "columns": 1}
    temps = [b for b in batches if b.sensor == "temperature"]
    assert [float(v) for b in temps for v in b.samples] == pytest.approx([40.0, 40.1, 40.4])
    assert all(b.sample_rate_hz == pytest.approx(1.0) for b in temps)


def test_cli_export_and_bad_scenario(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = workdir / "tiny.toml"
    scenario.write_text(
        'name = "tiny"\nseed = 3\n[time]\nduration_h = 0.1\nstep_s = 60.0\n'
        '[[assets]]\ntype = "fan"\ncount = 2\n[export]\nraw_assets = ["fan-002"]\n'
    )
    assert main(["sim", "export", "--scenario", str(scenario), "--out", str(workdir / "out"), "--quiet"]) == 0
    assert len(_rows(workdir / "out" / "features.csv")) == 12
    assert len(_rows(workdir / "out" / "raw_vibration.csv")) == 6 * 4096
    scenario.write_text('name = "tiny"\n[[assets]]\ntype = "windmill"\n')
    assert main(["sim", "export", "--scenario", str(scenario), "--out", str(workdir / "bad")]) == 2
    err = capsys.readouterr().err
    assert "scenario.assets[0].type" in err
    assert "windmill" in err


@pytest.mark.slow
def test_export_memory_stays_flat_as_the_scenario_grows(workdir: Path) -> None:
    plant = load_scenario("plant")
    peaks = []
    for n_steps in (40, 160):
        tracemalloc.start()
        export_scenario(plant.with_changes(n_steps=n_steps), workdir / f"p{n_steps}", raw_assets=())
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.3 * peaks[0], peaks  # 4x the steps, about the same peak


def test_cli_lists_scenarios_and_shows_sim_settings(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["sim", "list"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in ("smoke", "plant", "stress"))
    monkeypatch.setenv("FOREWARN_SIM_MQTT__PORT", "1884")
    assert main(["config", "show", "sim"]) == 0
    shown = capsys.readouterr().out
    assert "port = 1884" in shown
    assert "max_unpublished = 4096" in shown
    monkeypatch.setenv("FOREWARN_SIM_MAX_UNPUBLISHED", "3")
    assert main(["config", "show", "sim"]) == 2
    assert "sim.max_unpublished" in capsys.readouterr().err


def test_replay_reads_every_time_form_as_edge_score_does(workdir: Path) -> None:
    """Epoch ns, epoch seconds with nine decimals and ISO times give the same exact batch start.

    Before the shared parser, replay read an integer epoch-ns time as seconds (1.7e27 ns, rejected as far
    future) and rounded nine decimals through a float.
    """
    start_ns = 1_767_225_600_000_000_001
    forms = [str(start_ns), "1767225600.000000001", "2026-01-01T00:00:00.000000001Z"]
    for form in forms:
        path = workdir / "rec.csv"
        path.write_text(f"asset_id,time,temperature\nm1,{form},40.0\n")
        stats = ReplayStats()
        batches = [b for b in read_recording(path, stats=stats) if isinstance(b, RawBatch)]
        assert stats.rejected == {}, form
        assert [b.start_ns for b in batches] == [start_ns], form
