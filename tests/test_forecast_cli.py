"""`forewarn forecast fit|predict|evaluate` end to end, and every bad-file case naming file, row, column."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from cloud_service.forecasting.synthetic import make_fleet, write_csv
from forewarn.cli import main

GOOD_EVENTS = "asset_id,time,event\na,3,failure\nb,3,failure\nc,3,failure\n"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A synthetic fleet written as CSV, a model fitted on it by the CLI, and a held-out test fleet."""
    root = tmp_path_factory.mktemp("forecast")
    train = write_csv(
        make_fleet(30, mean_life=100.0, censored_fraction=0.1, maintained_fraction=0.1, seed=1),
        root / "train",
    )
    test = write_csv(
        make_fleet(25, mean_life=100.0, censored_fraction=1.0, seed=2, id_prefix="test"), root / "test"
    )
    code = main(
        [
            "forecast", "fit", "--telemetry", str(train[0]), "--events", str(train[1]),
            "--condition-columns", "c0,c1", "--horizon", "15", "--out", str(root / "model"), "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    return {"root": root, "model": root / "model", "telemetry": test[0], "truth": test[2], "train": train[0]}


def test_fit_predict_evaluate_beats_the_constant_baseline(
    fitted: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    predictions = fitted["root"] / "pred.csv"
    model, telemetry = str(fitted["model"]), str(fitted["telemetry"])
    assert (
        main(["forecast", "predict", "--model", model, "--telemetry", telemetry, "--out", str(predictions)])
        == 0
    )
    header = predictions.read_text().splitlines()[0]
    assert header.startswith("asset_id,time,rul,rul_low,rul_high,p_fail")
    capsys.readouterr()
    assert main(["forecast", "evaluate", "--predictions", str(predictions), "--truth", str(fitted["truth"]),
                 "--json"]) == 0  # fmt: skip
    figures = json.loads(capsys.readouterr().out)
    assert figures["n_assets"] == 25
    metadata = json.loads((fitted["model"] / "metadata.json").read_text())
    truth = [float(line.split(",")[1]) for line in fitted["truth"].read_text().splitlines()[1:]]
    mean_rul = metadata["summary"]["train_mean_rul"]
    constant_rmse = math.sqrt(sum((mean_rul - t) ** 2 for t in truth) / len(truth))
    assert figures["rmse"] < 0.8 * constant_rmse
    assert 0.5 <= figures["coverage"] <= 1.0
    assert figures["brier"] < figures["brier_base_rate"]
    assert {"rmse", "mae", "prognostic_score", "coverage", "n_assets"} <= figures.keys()
    assert metadata["format"] == "forewarn-forecaster"
    assert metadata["format_version"] == 4


def test_too_short_assets_are_predicted_wide_and_flagged(fitted: dict[str, Path]) -> None:
    lines = fitted["telemetry"].read_text().splitlines()
    header, first_asset_rows = lines[0], [line for line in lines[1:] if line.startswith("test-000,")]
    short = fitted["root"] / "short.csv"
    short.write_text("\n".join([header, *first_asset_rows[:2]]) + "\n")
    out = fitted["root"] / "short_pred.csv"
    assert main(["forecast", "predict", "--model", str(fitted["model"]), "--telemetry", str(short),
                 "--out", str(out)]) == 0  # fmt: skip
    row = dict(
        zip(
            out.read_text().splitlines()[0].split(","),
            out.read_text().splitlines()[1].split(","),
            strict=True,
        )
    )
    assert row["short_history"] == "1"
    assert float(row["rul_low"]) == 0.0
    assert float(row["rul_high"]) >= 100.0


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return code, err[-1] if err else ""


def _fit_args(telemetry: Path, events: Path, out: Path, *extra: str) -> list[str]:
    return ["forecast", "fit", "--telemetry", str(telemetry), "--events", str(events), "--out", str(out),
            "--quiet", *extra]  # fmt: skip


TELEMETRY_CASES = [
    pytest.param(
        "asset_id,t,s1\na,1,0.5\n", "row 1, column 'time'", "missing column", id="missing_time_column"
    ),
    pytest.param(
        "asset_id,time,s1\na,1,0.5\na,2,abc\n", "row 3, column 's1'", "not a number", id="non_numeric"
    ),
    pytest.param("asset_id,time,s1\na,1,inf\n", "row 2, column 's1'", "not a finite number", id="infinite"),
    pytest.param(
        "asset_id,time,s1\na,1,0.5\nb,1,0.1\na,1,0.7\n", "row 4, column 'time'", "duplicate", id="duplicate"
    ),
    pytest.param(
        "asset_id,time,s1\na,1,0.5\na,3,0.6\na,2,0.7\n", "row 4, column 'time'", "before", id="unsorted"
    ),
    pytest.param("asset_id,time,s1\na,1,0.5\na,2\n", "row 3", "2 fields", id="ragged"),
    pytest.param(
        "asset_id,time,s1\na,1,0.5\na,yesterday,0.7\n", "row 3, column 'time'", "not a number", id="bad_time"
    ),
    pytest.param(
        "asset_id,time,s1\na,2026-01-01T00:00:00Z,0.5\na,5,0.7\n",
        "row 3, column 'time'",
        "ISO",
        id="mixed_time",
    ),
    pytest.param("asset_id,time,s1\n,1,0.5\n", "row 2, column 'asset_id'", "empty asset id", id="empty_id"),
    pytest.param("", "row 1", "empty file", id="empty"),
    pytest.param("asset_id,time,s1\n", "telemetry.csv", "no data rows", id="header_only"),
]


@pytest.mark.parametrize(("text", "where", "what"), TELEMETRY_CASES)
def test_bad_telemetry_names_file_row_and_column(
    text: str, where: str, what: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    telemetry, events = tmp_path / "telemetry.csv", tmp_path / "events.csv"
    telemetry.write_text(text)
    events.write_text(GOOD_EVENTS)
    code, line = _run(_fit_args(telemetry, events, tmp_path / "m"), capsys)
    assert code == 2
    assert line.startswith("forewarn forecast: error: ")
    assert str(telemetry) in line
    assert where in line
    assert what in line
    assert "Traceback" not in line


EVENT_CASES = [
    pytest.param(
        "asset_id,time,event\na,3,explosion\n",
        "row 2, column 'event'",
        "'failure' or 'maintenance'",
        id="unknown_event",
    ),
    pytest.param(
        "asset_id,time\na,3\n", "row 1, column 'event'", "missing column", id="missing_event_column"
    ),
    pytest.param(
        "asset_id,time,event\na,soon,failure\n", "row 2, column 'time'", "numeric", id="bad_event_time"
    ),
]


@pytest.mark.parametrize(("text", "where", "what"), EVENT_CASES)
def test_bad_events_name_file_row_and_column(
    text: str, where: str, what: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    telemetry, events = tmp_path / "telemetry.csv", tmp_path / "events.csv"
    telemetry.write_text("asset_id,time,s1\na,1,0.5\na,2,0.6\n")
    events.write_text(text)
    code, line = _run(_fit_args(telemetry, events, tmp_path / "m"), capsys)
    assert code == 2
    assert str(events) in line
    assert where in line
    assert what in line


def test_unknown_condition_column_and_too_few_failures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    telemetry, events = tmp_path / "telemetry.csv", tmp_path / "events.csv"
    telemetry.write_text("asset_id,time,s1\n" + "".join(f"a,{t},{t * 0.1}\n" for t in range(1, 20)))
    events.write_text("asset_id,time,event\na,19,failure\n")
    code, line = _run(_fit_args(telemetry, events, tmp_path / "m", "--condition-columns", "load"), capsys)
    assert (code, "row 1, column 'load'" in line) == (2, True)
    code, line = _run(_fit_args(telemetry, events, tmp_path / "m"), capsys)
    assert code == 2
    assert "1 run-to-failure" in line
    assert "at least 3" in line


def test_predict_with_a_missing_model_column_or_a_bad_model_dir(
    fitted: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    telemetry = tmp_path / "t.csv"
    telemetry.write_text("asset_id,time,s0,s1\nx,1,0.1,0.2\n")
    code, line = _run(["forecast", "predict", "--model", str(fitted["model"]), "--telemetry", str(telemetry),
                       "--out", str(tmp_path / "p.csv")], capsys)  # fmt: skip
    assert code == 2
    assert "row 1, column 's2'" in line
    code, line = _run(["forecast", "predict", "--model", str(tmp_path), "--telemetry", str(telemetry),
                       "--out", str(tmp_path / "p.csv")], capsys)  # fmt: skip
    assert code == 2
    assert "not a model directory" in line


def test_evaluate_bad_truth_names_row_and_column(
    fitted: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    predictions = tmp_path / "p.csv"
    predictions.write_text("asset_id,time,rul,rul_low,rul_high,p_fail\na,1,5,1,9,0.2\n")
    truth = tmp_path / "truth.csv"
    truth.write_text("asset_id,rul\na,five\n")
    code, line = _run(
        ["forecast", "evaluate", "--predictions", str(predictions), "--truth", str(truth)], capsys
    )
    assert code == 2
    assert f"{truth}, row 2, column 'rul'" in line
    del fitted


def test_a_text_column_is_named_and_can_be_ignored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = make_fleet(6, mean_life=40.0, n_regimes=0, n_sensors=3, seed=4)
    telemetry, events, _ = write_csv(fleet, tmp_path)
    lines = telemetry.read_text().splitlines()
    telemetry.write_text("\n".join([lines[0] + ",site", *(line + ",hall-a" for line in lines[1:])]) + "\n")
    code, line = _run(_fit_args(telemetry, events, tmp_path / "m"), capsys)
    assert code == 2
    assert "row 2, column 'site'" in line
    assert "--ignore-columns" in line
    code, line = _run(_fit_args(telemetry, events, tmp_path / "m", "--ignore-columns", "site"), capsys)
    assert code == 0
    assert json.loads((tmp_path / "m" / "metadata.json").read_text())["sensor_columns"] == ["s0", "s1", "s2"]


def test_fit_prints_the_regimes_and_the_cap_and_regimes_can_be_forced(
    fitted: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    metadata = json.loads((fitted["model"] / "metadata.json").read_text())
    assert metadata["regimes"]["n_regimes"] == 3  # the synthetic fleet's conditions hold 3 regimes
    assert "BIC" in metadata["regimes"]["criterion"]
    assert metadata["rul_cap"] == metadata["summary"]["rul_cap"]
    assert "run-to-failure lives" in metadata["rul_cap_reason"]
    events = fitted["train"].parent / "events.csv"
    out = fitted["root"] / "forced"
    args = ["forecast", "fit", "--telemetry", str(fitted["train"]), "--events", str(events),
            "--condition-columns", "c0,c1", "--regimes", "2", "--out", str(out), "--quiet"]  # fmt: skip
    capsys.readouterr()
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "2 regime(s) (forced by the user)" in printed
    assert "RUL cap" in printed
    with pytest.raises(SystemExit):
        main([*args[:-3], "--regimes", "0", "--out", str(out)])
