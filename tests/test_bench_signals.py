"""`forewarn bench` stopped by SIGTERM (what `timeout` and systemd send) stops its throwaway PostgreSQL."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _postmaster(tmp: Path, process: subprocess.Popen[bytes], timeout_s: float) -> int:
    """The pid of the PostgreSQL the bench started under `tmp`, once it accepts connections."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "the bench ended before its PostgreSQL was up"
        for pid_file in tmp.glob("forewarn-bench-pg-*/data/postmaster.pid"):
            lines = pid_file.read_text().splitlines()
            if len(lines) >= 8 and lines[7].strip() == "ready":  # the status line pg_ctl -w waits for
                return int(lines[0])
        time.sleep(0.1)
    raise AssertionError(f"no PostgreSQL of the bench was ready within {timeout_s:.0f} s")


@pytest.mark.slow
def test_sigterm_stops_a_bench_and_its_throwaway_postgres() -> None:
    # The bench's temporary directories go here, so the test finds its own PostgreSQL and no other; the
    # `postgres` user must traverse it (pytest's tmp_path is private to root).
    tmp_path = Path(tempfile.mkdtemp(prefix="forewarn-test-sigterm-"))
    tmp_path.chmod(0o755)
    try:
        _sigterm_the_bench(tmp_path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _sigterm_the_bench(tmp_path: Path) -> None:
    environment = {**os.environ, "TMPDIR": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "forewarn.cli", "bench", "forecast-live", "--quick"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environment,
    )
    try:
        postmaster = _postmaster(tmp_path, process, timeout_s=60)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 130  # unwound like Ctrl-C: "interrupted"
    finally:
        process.kill()
        process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _alive(postmaster) and time.monotonic() < deadline:
        time.sleep(0.1)
    left_running = _alive(postmaster)
    if left_running:  # do not leave it behind when the test fails
        os.kill(postmaster, signal.SIGQUIT)
    assert not left_running, "the bench's PostgreSQL kept running after SIGTERM"
    assert not list(tmp_path.glob("forewarn-bench-pg-*")), "its data directory was left behind"
