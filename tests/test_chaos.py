"""The fault campaign's short form: each fault caused for real, nothing lost or duplicated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from forewarn.chaos import SCENARIOS
from forewarn.cli import main


def _quick(scenario: str, workdir: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code = main(["chaos", "--scenario", scenario, "--quick", "--json", "--workdir", str(workdir)])
    figures: dict[str, Any] = json.loads(capsys.readouterr().out)["scenarios"][scenario]
    if "skipped" in figures:
        pytest.skip(figures["skipped"])
    assert code == 0, figures
    return figures


@pytest.mark.slow
@pytest.mark.parametrize("scenario", sorted(set(SCENARIOS) - {"partition", "disk-full"}))
def test_a_quick_fault_loses_and_duplicates_nothing(
    scenario: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    figures = _quick(scenario, tmp_path, capsys)
    assert figures["sent"] > 10, "the load ran through the fault"
    assert figures["stored"] == figures["sent"]
    assert (figures["lost"], figures["duplicated"], figures["still_queued"]) == (0, 0, 0)
    assert figures["recovery_s"] is not None
    assert figures["recovery_s"] < 10.0


@pytest.mark.slow
def test_a_partition_drops_by_policy_keeps_alerts_and_loses_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    figures = _quick("partition", tmp_path, capsys)
    assert figures["alerts_raised_during_fault"] > 0, "alerts were raised while cut off"
    assert figures["dropped_by_policy"] > 0, "the queue bound was smaller than the backlog"
    assert figures["alerts_dropped"] == 0
    assert figures["dropped_by_kind"]["aggregate"] > 0
    # Every seq is stored or was dropped, exactly: no drop is counted that arrived anyway.
    assert figures["stored"] + figures["dropped_by_policy"] == figures["sent"]
    assert (figures["lost"], figures["duplicated"], figures["still_queued"]) == (0, 0, 0)
    assert figures["recovery_s"] is not None
    assert figures["recovery_s"] < 10.0


@pytest.mark.slow
def test_a_full_disk_is_reported_alerts_go_on_and_nothing_is_lost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    figures = _quick("disk-full", tmp_path, capsys)
    assert figures["write_failing_reported"], "the heartbeat reported the failing writes"
    assert figures["held_max"] > 0, "messages waited in the in-memory hold"
    assert 1 <= figures["write_warnings_logged"] <= 2, "one rate-limited log line per minute"
    assert figures["alerts_raised_during_fault"] > 0, "local alerts went on"
    assert not figures["write_failing_at_end"]
    assert figures["still_held"] == 0, "the hold was written once there was room"
    assert figures["stored"] == figures["sent"]
    assert (figures["lost"], figures["duplicated"], figures["still_queued"]) == (0, 0, 0)
    assert figures["recovery_s"] is not None
    assert figures["recovery_s"] < 10.0


def test_chaos_needs_a_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chaos"]) == 2
    assert "--scenario NAME or --all" in capsys.readouterr().err
