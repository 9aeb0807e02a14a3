"""The demo's report scores each alert's diagnosis against the simulator's ground truth at that time."""

from __future__ import annotations

from forewarn.demo.report import DiagnosisScore, faults_at
from shared.timebase import NS_PER_S, iso_time
from simulators import TruthRecord

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
