"""The fault campaign's short form: each fault caused for real, nothing lost or duplicated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forewarn.chaos import SCENARIOS
from forewarn.chaos_clock import APPLIED_SKEW_S
from forewarn.cli import main


@pytest.mark.slow
@pytest.mark.parametrize("scenario", sorted(set(SCENARIOS) - {"clock-skew"}))  # clock-skew: below
def test_a_quick_fault_loses_and_duplicates_nothing(
    scenario: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["chaos", "--scenario", scenario, "--quick", "--json", "--workdir", str(tmp_path)])
    figures = json.loads(capsys.readouterr().out)["scenarios"][scenario]
    assert code == 0, figures
    assert figures["sent"] > 10, "the load ran through the fault"
    assert figures["stored"] == figures["sent"]
    assert (figures["lost"], figures["duplicated"], figures["still_queued"]) == (0, 0, 0)
    assert figures["recovery_s"] is not None
    assert figures["recovery_s"] < 10.0


@pytest.mark.slow
def test_a_gateway_clock_minutes_ahead_is_measured_and_its_rows_flagged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["chaos", "--scenario", "clock-skew", "--quick", "--json", "--workdir", str(tmp_path)])
    figures = json.loads(capsys.readouterr().out)["scenarios"]["clock-skew"]
    assert code == 0, figures
    assert (figures["lost"], figures["duplicated"], figures["still_queued"]) == (0, 0, 0)
    assert figures["skew_applied_s"] == {"gw-chaos-1": APPLIED_SKEW_S, "gw-chaos-2": 0}
    measured = figures["skew_measured_s"]
    assert abs(measured["gw-chaos-1"] - APPLIED_SKEW_S) < 3.0, measured
    assert abs(measured["gw-chaos-2"]) < 3.0, measured
    skewed, normal = figures["flagged_rows"]["gw-chaos-1"], figures["flagged_rows"]["gw-chaos-2"]
    assert skewed["rows"] > 5, "the skewed gateway sent rows under the skew"
    assert skewed["flagged"] == skewed["rows"]
    assert normal["rows"] > 5
    assert normal["flagged"] == 0


def test_chaos_needs_a_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chaos"]) == 2
    assert "--scenario NAME or --all" in capsys.readouterr().err
