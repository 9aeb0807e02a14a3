"""The fault campaign's short form: each fault caused for real, nothing lost or duplicated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from forewarn.chaos import SCENARIOS
from forewarn.chaos_clock import APPLIED_SKEW_S
from forewarn.cli import main

# scenarios with tests of their own below (their queue bound drops by policy, or they check more)
_OWN_TESTS = {"clock-skew", "disk-full", "model-push-during-outage", "partition"}


def _quick(scenario: str, workdir: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code = main(["chaos", "--scenario", scenario, "--quick", "--json", "--workdir", str(workdir)])
    figures: dict[str, Any] = json.loads(capsys.readouterr().out)["scenarios"][scenario]
    if "skipped" in figures:
        pytest.skip(figures["skipped"])
    assert code == 0, figures
    return figures


@pytest.mark.slow
@pytest.mark.parametrize("scenario", sorted(set(SCENARIOS) - _OWN_TESTS))
def test_a_quick_fault_loses_and_duplicates_nothing(
    scenario: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    figures = _quick(scenario, tmp_path, capsys)
    assert figures["sent"] > 10, "the load ran through the fault"
    assert figures["stored"] == figures["sent"]
    assert (figures["lost"], figures["duplicated"], figures["still_queued"]) == (0, 0, 0)
    assert figures["recovery_s"] is not None  # caught up (how fast is a figure, not a test)


@pytest.mark.slow
def test_a_model_pushed_during_an_outage_arrives_and_a_flooding_one_is_rolled_back_with_the_queue_full(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    figures = _quick("model-push-during-outage", tmp_path, capsys)
    assert figures["state_while_away"] is None  # no acknowledgement while the gateway was stopped
    assert figures["active_after_reconnect"], figures
    assert figures["deployed_after_reconnect_s"] is not None
    assert figures["rolled_back"], figures  # locally, with the uplink down
    assert figures["queue_dropped_before_rollback"] > 0, "the queue was full when it rolled back"
    assert figures["rollback_reported"], figures  # the acknowledgement survived the full queue
    assert figures["serving_after_rollback"] == f"{figures['target']}:v1"
    assert (figures["lost"], figures["duplicated"], figures["still_queued"]) == (0, 0, 0)
    assert figures["stored"] + figures["dropped_by_policy"] == figures["sent"]


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
    assert figures["recovery_s"] is not None  # caught up (how fast is a figure, not a test)


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
    assert figures["recovery_s"] is not None  # caught up (how fast is a figure, not a test)


@pytest.mark.slow
def test_a_gateway_clock_minutes_ahead_is_measured_and_its_rows_flagged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    figures = _quick("clock-skew", tmp_path, capsys)
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
