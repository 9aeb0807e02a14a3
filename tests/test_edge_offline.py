"""Offline scoring (`forewarn edge score`): a recorded CSV through the same pipeline, one row per window."""

from __future__ import annotations

import csv
import tomllib
from collections import Counter
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from cloud_service.modeling import build_anomaly_model, save_artifact
from edge_agent.aggregation import ScoredWindows
from edge_agent.offline import OUTPUT_COLUMNS, score_csv, warmup_advice
from edge_agent.pipeline import Pipeline
from edge_agent.settings import PipelineSettings
from shared.timebase import NS_PER_S, parse_time_ns
from simulators.export import export_scenario
from simulators.scenario import parse_scenario
from tests.test_edge_pipeline_support import (
    T0_NS,
    TEMP_RATE,
    VIB_RATE,
    Stream,
    asset_settings,
    healthy,
    interleave,
    settings,
    with_defect,
)

DEFECT_FROM_S = 20.0


def _iso(times_ns: npt.NDArray[np.int64]) -> list[str]:
    return [f"{text}Z" for text in times_ns.astype("datetime64[ns]").astype(str).tolist()]


def _steady_temperature(rng: np.random.Generator) -> Stream:
    def signal(t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return 40.0 + rng.normal(0.0, 0.05, len(t))

    return Stream("pump-1", "temperature", TEMP_RATE, signal, 10)


def _streams(seed: int, *, defect: bool) -> list[Stream]:
    rng = np.random.default_rng(seed)

    def amplitude(t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.clip((t - DEFECT_FROM_S) / 2.0, 0.0, 1.0) * 2.0 if defect else np.zeros_like(t)

    vib = Stream("pump-1", "vibration", VIB_RATE, with_defect(healthy(rng), amplitude), 4096)
    return [_steady_temperature(rng), vib]


def write_recording(directory: Path, *, duration_s: float, seed: int = 0, defect: bool = True) -> Path:
    """The simulator's raw export layout: `raw_vibration.csv` and `raw_slow.csv` with ISO ns times."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "vibration": (directory / "raw_vibration.csv").open("w", encoding="utf-8"),
        "temperature": (directory / "raw_slow.csv").open("w", encoding="utf-8"),
    }
    files["vibration"].write("asset_id,time,vibration\n")
    files["temperature"].write("asset_id,time,temperature\n")
    for batch in interleave(_streams(seed, defect=defect), duration_s):
        times = batch.start_ns + np.rint(np.arange(len(batch.samples)) * NS_PER_S / batch.sample_rate_hz)
        lines = [
            f"{batch.asset_id},{t},{v!r}\n"
            for t, v in zip(_iso(times.astype(np.int64)), batch.samples.tolist(), strict=True)
        ]
        files[batch.sensor].write("".join(lines))
    for handle in files.values():
        handle.close()
    return directory


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == OUTPUT_COLUMNS
        return list(reader)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real int8 model trained on healthy pipeline features of `pump-1` (vibration + temperature)."""
    rows: list[npt.NDArray[np.float32]] = []

    def keep(asset_id: str, windows: ScoredWindows) -> None:
        del asset_id
        rows.append(windows.features[~np.isnan(windows.features).any(axis=1)])

    pipeline = Pipeline(
        settings=settings(batch_windows=64),
        gateway_id="gw-1",
        models=None,
        on_reject=lambda *a: None,
        on_windows=keep,
    )
    for batch in interleave(_streams(11, defect=False), 60.0):
        pipeline.process(batch)
    pipeline.flush()
    artifact = build_anomaly_model(
        np.concatenate(rows),
        pipeline.feature_names("pump-1"),
        feature_spec="vib-temp-current@1",
        target="pump-1",
        version=1,
        seed=0,
    )
    return save_artifact(artifact, tmp_path_factory.mktemp("model") / "pump-1" / "v1")


def _offline_settings() -> PipelineSettings:
    return settings([asset_settings()], warmup=60)


@pytest.mark.slow
def test_offline_baseline_writes_one_row_per_window_with_the_alert(tmp_path: Path) -> None:
    recording = write_recording(tmp_path / "rec", duration_s=32.0)
    out = tmp_path / "scores.csv"
    summary = score_csv(csv_path=recording, out_path=out, model_path=None, settings=_offline_settings())
    rows = _read(out)
    n_windows = int(32.0 * VIB_RATE) // 1024
    assert len(rows) == summary.windows == n_windows
    ends = [T0_NS + (i + 1) * 1024 * NS_PER_S // int(VIB_RATE) for i in range(n_windows)]
    assert [int(r["time_ns"]) for r in rows] == ends
    assert [parse_time_ns(r["time"]) for r in rows] == ends
    unscored = Counter(r["unscored"] for r in rows if r["score"] == "")
    assert unscored["incomplete"] == 15  # windows ending before 2 s of temperature exist
    assert summary.windows_unscored == {"incomplete": 15, "warmup": unscored["warmup"]}
    assert summary.windows_scored == n_windows - unscored.total() == sum(1 for r in rows if r["score"])
    # the warm-up learns 60 windows, one per 0.25 s +- 50 %, from 2 s on (8 windows a second)
    assert 60 <= unscored["warmup"] <= 8 * 60 * 0.25 * 1.5
    assert summary.baseline_learned >= 60
    assert warmup_advice(summary) == ""
    raised = [r for r in rows if r["alert"] == "raised"]
    assert len(raised) == 1
    assert DEFECT_FROM_S < (int(raised[0]["time_ns"]) - T0_NS) / NS_PER_S < DEFECT_FROM_S + 3
    assert raised[0]["anomalous"] == "1"
    assert {r["model_kind"] for r in rows} == {"baseline"}
    assert summary.alerts_raised == 1
    assert summary.bad_rows == {}
    assert summary.rejected == {}
    assert summary.model_version == "baseline"
    assert summary.assets == ("pump-1",)


@pytest.mark.slow
def test_offline_scores_with_a_real_int8_model(tmp_path: Path, model_dir: Path) -> None:
    recording = write_recording(tmp_path / "rec", duration_s=26.0, seed=5)
    out = tmp_path / "scores.csv"
    summary = score_csv(csv_path=recording, out_path=out, model_path=model_dir, settings=_offline_settings())
    rows = _read(out)
    assert summary.model_version == "pump-1:v1"
    assert {(r["model_version"], r["model_kind"]) for r in rows} == {("pump-1:v1", "onnx")}
    before = [r for r in rows if int(r["time_ns"]) - T0_NS < DEFECT_FROM_S * NS_PER_S and r["score"]]
    assert len(before) > 140
    assert all(r["anomalous"] == "0" for r in before)
    (raised,) = [r for r in rows if r["alert"] == "raised"]
    assert DEFECT_FROM_S < (int(raised["time_ns"]) - T0_NS) / NS_PER_S < DEFECT_FROM_S + 3


def test_offline_counts_bad_rows_and_keeps_scoring(tmp_path: Path) -> None:
    recording = write_recording(tmp_path / "rec", duration_s=6.0, defect=False)
    vibration = recording / "raw_vibration.csv"
    lines = vibration.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[100] = "pump-1,not-a-time,0.5\n"
    lines[200] = "pump 1!,2026-09-21T14:13:20Z,0.5\n"
    lines[300] = "pump-1,2026-09-21T14:13:20Z\n"
    lines[400] = lines[400].rsplit(",", 1)[0] + ",abc\n"
    vibration.write_text("".join(lines), encoding="utf-8")
    out = tmp_path / "scores.csv"
    summary = score_csv(
        csv_path=recording, out_path=out, model_path=None, settings=_offline_settings(), learn_first_s=3.0
    )
    assert summary.bad_rows == {"time": 1, "asset_id": 1, "columns": 1, "value": 1}
    assert summary.rejected == {"gap": 4}  # each dropped sample is a gap in the stream
    assert summary.windows_scored > 0
    assert len(_read(out)) == summary.windows


@pytest.mark.slow
def test_offline_reads_the_simulator_export_and_discovers_assets(tmp_path: Path) -> None:
    scenario_file = Path(__file__).parents[1] / "simulators" / "scenarios" / "smoke.toml"
    data = tomllib.loads(scenario_file.read_text(encoding="utf-8"))
    data["time"]["duration_h"] = 0.05  # 18 steps of 10 s
    data.setdefault("export", {})["raw_every"] = 1
    data["failures"], data["sensor_faults"] = [], []  # they start after this short run
    scenario = parse_scenario(data, source="smoke-short")
    export_scenario(scenario, tmp_path / "export", raw_assets=("pump-001",))
    out = tmp_path / "scores.csv"
    summary = score_csv(
        csv_path=tmp_path / "export", out_path=out, model_path=None, settings=PipelineSettings()
    )
    assert summary.assets == ("pump-001",)
    bursts = 18
    assert summary.windows == bursts * 4  # 4096-sample bursts, 1024-sample windows
    assert summary.rejected == {"gap": bursts - 1}  # the recording holds bursts, not a continuous stream
    # one window learned per burst: 18 of the 200 the default warm-up needs, so nothing is scored
    assert summary.windows_scored == 0
    assert summary.windows_unscored["warmup"] >= summary.windows - 4  # the first burst has no slow history
    assert "--learn-first 43" in warmup_advice(summary)  # a quarter of the 170 s between window ends
    assert summary.bad_rows == {}
    assert len(_read(out)) == summary.windows


def test_parse_time_ns_accepts_iso_epoch_ns_and_epoch_seconds() -> None:
    assert parse_time_ns("2026-09-21T14:13:20.000000001Z") == T0_NS + 1
    assert parse_time_ns("2026-09-21T15:13:20+01:00") == T0_NS
    assert parse_time_ns(str(T0_NS)) == T0_NS
    assert parse_time_ns("1790000000.25") == T0_NS + NS_PER_S // 4
