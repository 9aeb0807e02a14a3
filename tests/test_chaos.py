"""The fault campaign's short form: each fault caused for real, nothing lost or duplicated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forewarn.chaos import SCENARIOS
from forewarn.cli import main


@pytest.mark.slow
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
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


def test_chaos_needs_a_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chaos"]) == 2
    assert "--scenario NAME or --all" in capsys.readouterr().err
