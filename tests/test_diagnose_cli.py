"""`forewarn diagnose`: a recorded CSV in, the mode with its evidence and a PNG of the spectra out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from forewarn.cli import main
from tests.test_diagnosis import ORDERS, RATE_HZ, SHAFT_HZ, Machine

EXAMPLE_CONFIG = Path(__file__).resolve().parents[1] / "examples" / "asset-config.toml"
_START_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


def _write_recording(path: Path, windows: list[np.ndarray], *, asset_id: str = "pump-001") -> None:
    samples = np.concatenate(windows)
    times = _START_NS + np.round(np.arange(samples.size) * (1e9 / RATE_HZ)).astype(np.int64)
    lines = ["asset_id,time,vibration"]
    lines += [f"{asset_id},{t},{x:.6g}" for t, x in zip(times.tolist(), samples.tolist(), strict=True)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert main(["diagnose", *args, "--json"]) == 0
    report: dict[str, object] = json.loads(capsys.readouterr().out)
    return report


@pytest.mark.slow
def test_a_recording_with_an_outer_race_defect_is_diagnosed_with_a_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    healthy = Machine()
    faulty = Machine(impact_hz=ORDERS.bpfo * SHAFT_HZ, impact_g=0.3)
    recording = tmp_path / "rig.csv"
    _write_recording(
        recording, [healthy.window(s) for s in range(6)] + [faulty.window(s) for s in range(10, 14)]
    )
    png = tmp_path / "evidence.png"
    report = _run(
        capsys,
        "--csv",
        str(recording),
        "--asset-config",
        str(EXAMPLE_CONFIG),
        "--learn-first",
        "4",
        "--window-len",
        "8192",
        "--png",
        str(png),
    )
    assert report["mode"] == "outer_race:drive-end"  # two bearings in the example: the mode names which
    assert report["baseline"] == "first 4 s"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(str(line).startswith("bpfo x1") for line in report["evidence"])  # type: ignore[attr-defined]


@pytest.mark.slow
def test_a_healthy_recording_names_no_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recording = tmp_path / "healthy.csv"
    _write_recording(recording, [Machine().window(s) for s in range(20, 30)])
    report = _run(
        capsys,
        "--csv",
        str(recording),
        "--asset-config",
        str(EXAMPLE_CONFIG),
        "--learn-first",
        "3",
        "--window-len",
        "8192",
    )
    assert report["mode"] == "unknown"
    assert report["iso_zone"] in ("A", "B")


def test_an_unknown_asset_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recording = tmp_path / "one.csv"
    _write_recording(recording, [Machine().window(1)[:2048]])
    assert main(["diagnose", "--csv", str(recording), "--asset", "fan-009"]) == 2
    assert "asset_id='fan-009'" in capsys.readouterr().err
