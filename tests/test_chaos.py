"""The fault campaign's short form: each fault caused for real, nothing lost or duplicated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forewarn.chaos import SCENARIOS
from forewarn.cli import main

_OWN_TESTS = {"model-push-during-outage"}  # scenarios whose queue bound drops by policy: tested below


@pytest.mark.slow
@pytest.mark.parametrize("scenario", sorted(set(SCENARIOS) - _OWN_TESTS))
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
def test_a_model_pushed_during_an_outage_arrives_and_a_flooding_one_is_rolled_back_with_the_queue_full(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "model-push-during-outage"
    code = main(["chaos", "--scenario", name, "--quick", "--json", "--workdir", str(tmp_path)])
    figures = json.loads(capsys.readouterr().out)["scenarios"][name]
    assert code == 0, figures
    assert figures["state_while_away"] is None  # no acknowledgement while the gateway was stopped
    assert figures["active_after_reconnect"], figures
    assert figures["deployed_after_reconnect_s"] is not None
    assert figures["rolled_back"], figures  # locally, with the uplink down
    assert figures["queue_dropped_before_rollback"] > 0, "the queue was full when it rolled back"
    assert figures["rollback_reported"], figures  # the acknowledgement survived the full queue
    assert figures["serving_after_rollback"] == f"{figures['target']}:v1"
    assert (figures["lost"], figures["duplicated"], figures["still_queued"]) == (0, 0, 0)
    assert figures["stored"] + figures["dropped_by_policy"] == figures["sent"]


def test_chaos_needs_a_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chaos"]) == 2
    assert "--scenario NAME or --all" in capsys.readouterr().err
