"""The demo's report: alerts' diagnoses against the ground truth, and failures alerted in time."""

from __future__ import annotations

import msgspec

from forewarn.demo.report import DiagnosisScore, failure_leads, failures_alerted, faults_at
from forewarn.demo.watcher import AlertSeen
from shared.timebase import NS_PER_S, iso_time
from simulators import TruthRecord
from tests.test_edge_agent_helpers import alert

H = 3600 * NS_PER_S


def test_faults_at_follows_onsets_repairs_and_sensor_faults() -> None:
    truth = [
        TruthRecord("pump-1", 10 * H, "onset", "outer_race"),
        TruthRecord("pump-1", 30 * H, "failure", "outer_race"),
        TruthRecord("pump-1", 54 * H, "maintenance", "outer_race"),
        TruthRecord(
            "pump-1", 60 * H, "sensor_fault", "stuck", f"sensor=temperature;until={iso_time(70 * H)}"
        ),
        TruthRecord("fan-1", 5 * H, "onset", "imbalance"),
    ]
    assert faults_at(truth, "pump-1", 9 * H) == set()
    assert faults_at(truth, "pump-1", 10 * H) == {"outer_race"}
    assert faults_at(truth, "pump-1", 40 * H) == {"outer_race"}, "failed and not yet repaired"
    assert faults_at(truth, "pump-1", 55 * H) == set(), "the repair ended it"
    assert faults_at(truth, "pump-1", 65 * H) == {"sensor_fault"}
    assert faults_at(truth, "pump-1", 71 * H) == set()
    assert faults_at(truth, "fan-1", 40 * H) == {"imbalance"}


def test_diagnosis_score_counts_right_wrong_and_unknown_apart_from_healthy_assets() -> None:
    score = DiagnosisScore()
    score.add("outer_race:drive-end", {"outer_race"})
    score.add("inner_race", {"outer_race"})
    score.add("unknown", {"outer_race"})
    score.add("imbalance", set())
    score.add("unknown", set())
    score.add("unknown", set())
    assert (score.correct, score.wrong, score.unknown) == (1, 1, 1)
    assert (score.mode_without_fault, score.unknown_without_fault) == (1, 2)


def _raised(asset_id: str, ts_ns: int) -> AlertSeen:
    return AlertSeen(msgspec.structs.replace(alert("gw", asset_id, ts_ns), ts_ns=ts_ns), 0.0)


def test_each_failure_is_alerted_only_by_an_alert_between_its_onset_and_it() -> None:
    truth = [
        TruthRecord("pump-1", 10 * H, "onset", "outer_race"),
        TruthRecord("pump-1", 30 * H, "failure", "outer_race"),
        TruthRecord("pump-1", 54 * H, "maintenance", "outer_race"),
        TruthRecord("pump-1", 60 * H, "onset", "imbalance"),
        TruthRecord("pump-1", 90 * H, "failure", "imbalance"),  # its second failure: no alert after 60 h
        TruthRecord("fan-1", 40 * H, "failure", "cage"),  # no onset, and the fan's alert came before
    ]
    alerts = [
        _raised("pump-1", 5 * H),
        _raised("pump-1", 20 * H),
        _raised("pump-1", 40 * H),
        _raised("fan-1", 39 * H),
    ]
    leads = failure_leads(truth, alerts)
    assert [(record.asset_id, lead) for record, lead in leads] == [
        ("pump-1", 10.0),  # the alert at 20 h: the one at 5 h came before the onset
        ("fan-1", None),
        ("pump-1", None),  # the alerts at 20 and 40 h came before this failure's onset
    ]
    assert failures_alerted(truth, alerts) == 1


def test_a_maintenance_between_onset_and_failure_ends_that_degradation() -> None:
    truth = [
        TruthRecord("pump-1", 10 * H, "onset", "outer_race"),
        TruthRecord("pump-1", 20 * H, "maintenance", "outer_race"),  # repaired: the onset no longer leads
        TruthRecord("pump-1", 50 * H, "failure", "outer_race"),  # nothing degraded first
    ]
    before_the_repair = [_raised("pump-1", 15 * H)]
    assert [lead for _, lead in failure_leads(truth, before_the_repair)] == [None]
    at_the_failure = [_raised("pump-1", 50 * H)]
    assert [lead for _, lead in failure_leads(truth, at_the_failure)] == [0.0]
