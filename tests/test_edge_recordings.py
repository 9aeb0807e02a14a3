"""Bring your own recordings: single-accelerometer bearing recordings (12 and 48 kHz) of known answer through
`forewarn edge score` and `forewarn models fit`, as a new user would run them."""

from __future__ import annotations

import contextlib
import io
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psycopg
import pytest

from cloud_service.migrate import migrate
from edge_agent.baseline_learning import LevelShiftGuard, rising_trend_z
from edge_agent.operating_state import OperatingState
from forewarn.cli import main
from shared.timebase import NS_PER_S
from tests.recordings_support import T0_NS, Recording, auc, labelled_scores, read_scores, write_recording

RATE_12K = 12_000.0
RATE_48K = 48_000.0
WINDOW_S_12K = 1024 / RATE_12K


def _score(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[str, list[dict[str, str]]]:
    """Run `forewarn edge score ARGS`; its stdout and the rows of the file it wrote."""
    argv = ["edge", "score", *map(str, args)]
    assert main(argv) == 0
    out = Path(argv[argv.index("--out") + 1])
    return capsys.readouterr().out, read_scores(out)


def _times(rows: list[dict[str, str]]) -> np.ndarray:
    return np.array([(int(r["time_ns"]) - T0_NS) / NS_PER_S for r in rows])


def _toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- (1) and (2): a short recording, the default warm-up, and --learn-first ----------------------------------


@pytest.mark.slow
def test_a_short_recording_says_why_it_is_unscored_and_learn_first_scores_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recording = write_recording(
        tmp_path / "short.csv",
        Recording(
            rate_hz=RATE_48K, duration_s=8.0, impacts=((0.0, 0.0), (4.0, 0.0), (4.01, 4.0), (8.0, 4.0))
        ),
    )
    stdout, rows = _score(capsys, "--csv", recording, "--out", tmp_path / "default.csv")
    assert len(rows) == 375  # 8 s of 1024-sample windows at 48 kHz
    assert {(r["score"], r["anomalous"], r["unscored"]) for r in rows} == {("", "", "warmup")}
    assert "0 of 375 windows scored" in stdout
    assert "not scored: 375 warmup" in stdout
    assert "did not finish its warm-up" in stdout
    assert "--learn-first 2 " in stdout  # a quarter of the 8 s

    stdout, rows = _score(capsys, "--csv", recording, "--out", tmp_path / "first.csv", "--learn-first", "3")
    times = _times(rows)
    warmup = np.array([r["unscored"] == "warmup" for r in rows])
    assert warmup.tolist() == (times < 3.0).tolist()  # exactly the first 3 s are learned, not scored
    assert all(r["score"] for r, is_warmup in zip(rows, warmup, strict=True) if not is_warmup)
    assert "warm-up on the first 3 s of the recording (--learn-first)" in stdout
    assert f"not scored: {warmup.sum()} warmup" in stdout
    assert "did not finish" not in stdout
    healthy = [r for r, t in zip(rows, times, strict=True) if 3.0 <= t < 4.0]
    assert healthy
    assert all(r["anomalous"] == "0" for r in healthy)
    (raised,) = [t for r, t in zip(rows, times, strict=True) if r["alert"] == "raised"]
    assert 4.0 < raised < 4.2


# -- (3): learning left on must not absorb a developing fault ------------------------------------------------

RAMP = Recording(
    rate_hz=RATE_12K,
    duration_s=110.0,
    impacts=((0.0, 0.0), (30.0, 0.0), (50.0, 1.0), (110.0, 1.0)),  # scores straddling the threshold
    seed=1,
)
HAND_WARMUP = "[pipeline.baseline]\nwarmup_windows = 200\nlearn_interval_s = 0.0\n"
WARMED_UP_S = 200 * WINDOW_S_12K


@pytest.mark.slow
def test_learning_left_on_never_absorbs_a_developing_fault(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fault grows over 20 s to a level whose windows score around the threshold, then stays 60 s.

    The old baseline learned the windows of it that scored just below the threshold, refitted, scored the
    rest lower, learned those too, and after 50 s scored the fault like healthy data (AUC 0.975 over the
    fault, no alert at all). Learning only confirmed-normal windows keeps it where a baseline that stops
    learning after warm-up is.
    """
    recording = write_recording(tmp_path / "ramp.csv", RAMP)
    config = _toml(tmp_path / "gateway.toml", HAND_WARMUP)
    stdout, rows = _score(capsys, "--csv", recording, "--out", tmp_path / "s.csv", "--config", config)
    scores, is_fault = labelled_scores(rows, healthy=(WARMED_UP_S, 30.0), fault=(50.0, 110.0))
    assert auc(scores, is_fault) >= 0.995
    late, late_fault = labelled_scores(rows, healthy=(WARMED_UP_S, 30.0), fault=(90.0, 110.0))
    assert auc(late, late_fault) >= 0.995
    assert np.mean(late[late_fault] > 6.0) >= 0.5  # still flagged a minute into the fault
    assert np.mean(scores[~is_fault] > 6.0) == 0.0
    assert "1 alert(s) raised" in stdout
    assert "learning paused 1 time(s)" in stdout


# -- (4): operating state is not fooled by the fault ------------------------------------------------------


@pytest.mark.slow
def test_a_fault_level_rise_then_a_dip_is_still_scored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fault raises the whole level fivefold, dips back to healthy for 1 s, and comes back.

    The old running level (90th percentile of all windows) followed the fault, so the dip looked like a
    stop and the next 7 s were left unscored (`stopped`, then `transient`).
    """
    on = (8.5, 16.0), (17.0, 24.0)
    impacts = ((0.0, 0.0), (8.0, 0.0), (8.5, 10.0), (16.0, 10.0), (16.01, 0.0), (17.0, 0.0), (17.01, 10.0))
    level = ((0.0, 1.0), (8.0, 1.0), (8.5, 5.0), (16.0, 5.0), (16.01, 1.0), (17.0, 1.0), (17.01, 5.0))
    recording = write_recording(
        tmp_path / "dip.csv", Recording(rate_hz=RATE_48K, duration_s=24.0, impacts=impacts, level=level)
    )
    stdout, rows = _score(capsys, "--csv", recording, "--out", tmp_path / "s.csv", "--learn-first", "5")
    reasons = Counter(r["unscored"] for r in rows)
    assert set(reasons) == {"", "warmup"}, reasons
    times = _times(rows)
    after_dip = [r for r, t in zip(rows, times, strict=True) if on[1][0] + 0.5 <= t < on[1][1]]
    assert len(after_dip) > 250
    assert np.mean([r["anomalous"] == "1" for r in after_dip]) >= 0.9
    assert "stopped" not in stdout
    assert "transient" not in stdout


def test_the_running_level_is_anchored_to_the_healthy_windows() -> None:
    state = OperatingState(
        np.array([0], dtype=np.intp),
        change_columns=np.array([], dtype=np.intp),
        stopped_ratio=0.2,
        change_ratio=0.2,
        settle_s=60.0,
    )
    step_ns = NS_PER_S // 10
    clock = iter(range(1, 10**6))

    def classify(level: float, n: int) -> tuple[np.ndarray, np.ndarray]:
        matrix = np.full((n, 1), level, dtype=np.float32)
        end_ns = np.array([next(clock) * step_ns for _ in range(n)], dtype=np.int64)
        return state.classify(matrix, end_ns, np.ones(n, dtype=np.bool_))

    classify(1.0, 40)
    state.learn_healthy(np.full((40, 1), 1.0, dtype=np.float32))
    assert state.is_anchored
    classify(6.0, 2000)  # a fault raises the level sixfold for a long time
    stopped, transient = classify(1.0, 20)  # and dips back to healthy
    assert not stopped.any()
    assert not transient.any()
    stopped, _ = classify(0.05, 5)  # a real stop: a twentieth of the healthy running level
    assert stopped.all()


# -- the level-shift guard ----------------------------------------------------------------------------------


def _ends(n: int, *, from_s: float = 0.0, step_s: float = 0.1) -> np.ndarray:
    return T0_NS + np.round((from_s + step_s * np.arange(1, n + 1)) * NS_PER_S).astype(np.int64)


def test_healthy_scores_rarely_open_a_shift() -> None:
    rng = np.random.default_rng(3)
    guard = LevelShiftGuard(confirm_s=60.0)
    # a skewed score, as the baseline's (the mean of its three largest |z|), read against 1024 healthy ones
    top3 = np.sort(np.abs(rng.normal(0.0, 1.0, (21_024, 12))), axis=1)[:, -3:].mean(axis=1)
    reference, healthy = np.sort(top3[:1024]), top3[1024:]
    update = guard.update(
        healthy.astype(np.float32), _ends(len(healthy)), healthy_scores=reference, threshold=6.0
    )
    openings = int(np.count_nonzero(np.diff(update.in_shift.astype(np.int8)) == 1))
    assert openings <= 4  # in 20,000 windows
    assert update.in_shift.mean() < 0.01


_REFERENCE = np.sort(np.random.default_rng(9).normal(1.0, 0.5, 1024))  # healthy scores: median 1, sd 0.5


def test_a_stationary_shift_is_confirmed_after_its_time_and_a_growing_one_is_not() -> None:
    rng = np.random.default_rng(4)
    for growth, confirmed in ((0.0, True), (0.004, False)):
        guard = LevelShiftGuard(confirm_s=60.0)
        n = 1200  # 120 s at 10 windows per second
        scores = 2.5 + growth * np.arange(n) + rng.normal(0.0, 0.5, n)
        update = guard.update(scores.astype(np.float32), _ends(n), healthy_scores=_REFERENCE, threshold=6.0)
        assert update.opened
        assert update.confirmed is confirmed


def test_an_anomalous_window_restarts_the_confirmation() -> None:
    rng = np.random.default_rng(5)
    guard = LevelShiftGuard(confirm_s=60.0)
    scores = 2.5 + rng.normal(0.0, 0.3, 1200)
    scores[::300] = 9.0  # above the threshold every 30 s
    update = guard.update(scores.astype(np.float32), _ends(1200), healthy_scores=_REFERENCE, threshold=6.0)
    assert update.opened
    assert not update.confirmed


def test_a_shift_closes_when_the_scores_come_back() -> None:
    guard = LevelShiftGuard(confirm_s=600.0)
    raised = guard.update(np.full(50, 3.0, np.float32), _ends(50), healthy_scores=_REFERENCE, threshold=6.0)
    back = guard.update(
        np.full(50, 0.5, np.float32), _ends(50, from_s=5.0), healthy_scores=_REFERENCE, threshold=6.0
    )
    assert raised.in_shift[-1]
    assert not back.in_shift[-1]
    assert not back.confirmed


def test_rising_trend_z_is_zero_mean_on_noise_and_large_on_a_ramp() -> None:
    rng = np.random.default_rng(6)
    noise = [rising_trend_z(rng.normal(0.0, 1.0, 200).tolist()) for _ in range(200)]
    assert abs(float(np.mean(noise))) < 0.2
    assert rising_trend_z(np.linspace(0.0, 1.0, 200).tolist()) > 10.0


# -- (5): an edge model trained offline from a healthy recording ---------------------------------------------


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`forewarn models fit` on 30 s of a healthy 12 kHz recording: the model directory and its stdout."""
    directory = tmp_path_factory.mktemp("fit")
    healthy = write_recording(directory / "healthy.csv", Recording(rate_hz=RATE_12K, duration_s=30.0, seed=7))
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["models", "fit", "--csv", str(healthy), "--out", str(directory / "model")]) == 0
    return directory / "model", stdout.getvalue()


@pytest.mark.slow
def test_models_fit_trains_a_vibration_only_int8_model_that_edge_score_uses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fitted: tuple[Path, str]
) -> None:
    model_dir, stdout = fitted
    assert "gates passed" in stdout
    assert "(vibration)" in stdout
    manifest = json.loads((model_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["target"] == "bearing-1"
    assert manifest["quantization"] == "int8-static-qdq"
    assert manifest["feature_names"]
    assert all(n.startswith("vibration.") for n in manifest["feature_names"])
    report = json.loads((model_dir / "fit_report.json").read_text(encoding="utf-8"))
    assert report["n_rows"] == 351  # every 1024-sample window of 30 s at 12 kHz
    assert all(gate["passed"] for name, gate in report["gates"].items() if name != "champion")

    faulty = write_recording(
        tmp_path / "faulty.csv",
        Recording(rate_hz=RATE_12K, duration_s=20.0, impacts=((0.0, 0.0), (10.0, 0.0), (10.01, 2.0)), seed=8),
    )
    stdout, rows = _score(capsys, "--csv", faulty, "--out", tmp_path / "s.csv", "--model", model_dir)
    assert {(r["model_version"], r["model_kind"]) for r in rows} == {("bearing-1:v1", "onnx")}
    assert all(r["score"] for r in rows)  # a model needs no warm-up
    scores, is_fault = labelled_scores(rows, healthy=(0.0, 10.0), fault=(10.1, 20.0))
    assert auc(scores, is_fault) >= 0.99
    assert (
        np.mean([r["anomalous"] == "1" for r, f in zip(rows, _times(rows) < 10.0, strict=True) if f]) <= 0.01
    )
    assert "1 alert(s) raised" in stdout


@pytest.mark.slow
def test_models_fit_refuses_a_recording_with_too_few_windows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    healthy = write_recording(tmp_path / "tiny.csv", Recording(rate_hz=RATE_12K, duration_s=2.0))
    assert main(["models", "fit", "--csv", str(healthy), "--out", str(tmp_path / "m")]) == 1
    assert "at least 40 are needed" in capsys.readouterr().out
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_a_fitted_model_is_registered_as_a_signed_candidate_and_approved(
    db: str,
    workdir: Path,
    unique_id: Callable[[str], str],
    capsys: pytest.CaptureFixture[str],
    fitted: tuple[Path, str],
) -> None:
    migrate(db)
    assert main(["keys", "init", "--out", str(workdir / "keys")]) == 0
    params = psycopg.conninfo.conninfo_to_dict(db)
    config = _toml(
        workdir / "cloud.toml",
        f'[db]\nhost = "{params["host"]}"\nport = {params["port"]}\ndbname = "{params["dbname"]}"\n'
        f'[lifecycle]\nsigning_key = "{workdir / "keys" / "forewarn-signing.key"}"\n',
    )
    target = unique_id("bearing")
    model_dir, _ = fitted
    for expected in (1, 2):
        assert main(["models", "register", str(model_dir), "--target", target, "--config", str(config)]) == 0
        assert f"registered {target} v{expected} (candidate)" in capsys.readouterr().out
    assert main(["models", "approve", "--config", str(config), target, "2"]) == 0
    capsys.readouterr()
    assert main(["models", "show", "--config", str(config), target, "2", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    manifest = json.loads((model_dir / "manifest.json").read_text(encoding="utf-8"))
    assert (shown["status"], shown["sha256"]) == ("approved", manifest["artifact_sha256"])
    assert shown["feature_spec"] == manifest["feature_spec"]
    assert shown["gates"]["agreement"]["passed"]
