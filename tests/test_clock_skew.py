"""A gateway's clock skew: estimated from its heartbeats (minimum-delay filter), flagged on its rows."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import psycopg
import pytest
from dash import html

from cloud_service.clock_skew import ClockSkewEstimator, SkewWarnings
from cloud_service.queries import GatewayHealth, gateway_health
from cloud_service.writer import BatchWriter
from dashboard.pages import gateways_table
from forewarn.bench.messages import aggregate, one_of_each
from shared.messages import Status
from shared.timebase import NS_PER_S

NOW_NS = 1_800_000_000 * NS_PER_S
SKEW_NS = 300 * NS_PER_S


def _heartbeats(estimator: ClockSkewEstimator, delays_s: list[float], *, skew_ns: int = SKEW_NS) -> None:
    """One heartbeat a second, each sent `skew_ns` ahead and received after its delay."""
    for i, delay_s in enumerate(delays_s):
        sent_ns = NOW_NS + i * NS_PER_S + skew_ns
        estimator.observe("gw", sent_ns=sent_ns, received_ns=sent_ns - skew_ns + int(delay_s * NS_PER_S))


def test_the_estimate_is_the_least_delayed_heartbeat() -> None:
    estimator = ClockSkewEstimator()
    _heartbeats(estimator, [0.8, 0.02, 1.5, 0.3])
    assert estimator.skew_s("gw", now_ns=NOW_NS + 5 * NS_PER_S) == pytest.approx(299.98)


def test_heartbeats_delivered_late_from_a_queue_do_not_move_it() -> None:
    estimator = ClockSkewEstimator()
    _heartbeats(estimator, [0.05, 600.0, 3600.0, 120.0])
    assert estimator.skew_s("gw", now_ns=NOW_NS + 10 * NS_PER_S) == pytest.approx(299.95)


def test_a_clock_behind_is_measured_negative() -> None:
    estimator = ClockSkewEstimator()
    _heartbeats(estimator, [0.1, 0.4], skew_ns=-SKEW_NS)
    assert estimator.skew_s("gw", now_ns=NOW_NS) == pytest.approx(-300.1)


def test_a_fixed_clock_stops_counting_after_the_window() -> None:
    estimator = ClockSkewEstimator(window_s=60.0)
    _heartbeats(estimator, [0.1])
    fixed_at_ns = NOW_NS + 30 * NS_PER_S
    estimator.observe("gw", sent_ns=fixed_at_ns, received_ns=fixed_at_ns + NS_PER_S // 10)
    assert estimator.skew_s("gw", now_ns=fixed_at_ns) == pytest.approx(299.9)
    assert estimator.skew_s("gw", now_ns=NOW_NS + 61 * NS_PER_S) == pytest.approx(-0.1)
    assert estimator.skew_s("gw", now_ns=NOW_NS + 200 * NS_PER_S) is None
    assert estimator.skew_s("unknown") is None


def test_only_skews_past_the_limit_are_flagged_and_warned_once(caplog: pytest.LogCaptureFixture) -> None:
    warnings = SkewWarnings(max_skew_s=5.0, every_s=3600.0)
    with caplog.at_level(logging.WARNING, logger="cloud_service.clock_skew"):
        assert warnings.flagged({"ahead": 300.0, "behind": -6.0, "fine": 4.9}) == {
            "ahead": 300.0,
            "behind": -6.0,
        }
        assert warnings.flagged({"ahead": 301.0}) == {"ahead": 301.0}
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["gateway ahead", "gateway behind"]


@pytest.mark.slow
def test_rows_of_a_skewed_gateway_are_stored_flagged_with_their_own_timestamps(db: str) -> None:
    now_ns = time.time_ns()
    skewed = [*one_of_each("gw-ahead", "pump-ahead", ts_ns=now_ns + SKEW_NS)]
    normal = [*one_of_each("gw-fine", "pump-fine", ts_ns=now_ns)]
    with psycopg.connect(db) as conn:
        BatchWriter(conn).write([*skewed, *normal])
        health = {h.gateway_id: h for h in gateway_health(conn)}
        assert health["gw-ahead"].clock_skew_s == pytest.approx(300.0, abs=2.0)
        assert health["gw-fine"].clock_skew_s == pytest.approx(0.0, abs=2.0)
        # A writer started later (ingest restarted) flags from the stored skew before any new heartbeat,
        # on the straight COPY path and on the redelivery (staging) path alike.
        later = BatchWriter(conn)
        later.write([aggregate("gw-ahead", "pump-ahead", 100, now_ns + SKEW_NS)])
        assert later.write([aggregate("gw-ahead", "pump-ahead", 100, now_ns + SKEW_NS)]).duplicates == 1
        later.write([aggregate("gw-ahead", "pump-ahead", 101, now_ns + SKEW_NS)])
        rows = conn.execute(
            "SELECT gateway_id, seq, clock_skew_s, period_start FROM aggregates ORDER BY gateway_id, seq"
        ).fetchall()
        alerts = conn.execute("SELECT gateway_id, clock_skew_s FROM alert_messages ORDER BY 1").fetchall()
    flags = {(g, seq): skew for g, seq, skew, _ in rows}
    assert set(flags) == {("gw-ahead", 0), ("gw-ahead", 100), ("gw-ahead", 101), ("gw-fine", 0)}
    assert all(flags[("gw-ahead", seq)] == pytest.approx(300.0, abs=2.0) for seq in (0, 100, 101))
    assert flags[("gw-fine", 0)] is None
    assert rows[0][3].timestamp() == pytest.approx((now_ns + SKEW_NS) / NS_PER_S), "never shifted"
    assert alerts[0][0] == "gw-ahead"
    assert alerts[0][1] == pytest.approx(300.0, abs=2.0)
    assert alerts[1] == ("gw-fine", None)


@pytest.mark.slow
def test_an_offline_last_will_is_not_a_clock_reading(db: str) -> None:
    hour_ago_ns = time.time_ns() - 3600 * NS_PER_S
    with psycopg.connect(db) as conn:
        BatchWriter(conn).write([Status(gateway_id="gw-gone", ts_ns=hour_ago_ns, state="offline")])
        (health,) = gateway_health(conn)
    assert health.clock_skew_s is None


def test_the_gateways_page_shows_each_gateways_skew() -> None:
    def gateway(gateway_id: str, skew_s: float | None) -> GatewayHealth:
        return GatewayHealth(
            gateway_id=gateway_id,
            site_id=None,
            state="online",
            status_ts=None,
            status_received_at=None,
            is_stale=False,
            uptime_s=None,
            cpu_percent=None,
            memory_bytes=None,
            metrics={},
            model_versions={},
            clock_skew_s=skew_s,
        )

    table = gateways_table([gateway("gw-ahead", 299.96), gateway("gw-new", None)], now=datetime.now(UTC))
    assert isinstance(table, html.Table)
    header, body = table.children
    columns = [th.children for th in header.children.children]
    skew_column = columns.index("clock skew (s)")
    assert [row.children[skew_column].children for row in body.children] == ["+300.0", "–"]


def _beat(estimator: ClockSkewEstimator, at_s: float, *, skew_s: float, uptime_s: float) -> None:
    received_ns = NOW_NS + int(at_s * NS_PER_S)
    sent_ns = received_ns + int(skew_s * NS_PER_S) - NS_PER_S // 20  # 50 ms on the way
    estimator.observe("gw", sent_ns=sent_ns, received_ns=received_ns, uptime_s=uptime_s)


def test_a_clock_set_back_while_running_counts_at_once() -> None:
    estimator = ClockSkewEstimator()
    for i in range(5):
        _beat(estimator, i, skew_s=0.0, uptime_s=100.0 + i)
    _beat(estimator, 5, skew_s=-300.0, uptime_s=105.0)  # NTP stepped it, or someone set it
    assert estimator.skew_s("gw", now_ns=NOW_NS + 5 * NS_PER_S) == pytest.approx(-300.05)


def test_a_restart_with_the_clock_behind_counts_at_once() -> None:
    estimator = ClockSkewEstimator()
    for i in range(5):
        _beat(estimator, i, skew_s=0.0, uptime_s=100.0 + i)
    _beat(estimator, 9, skew_s=-300.0, uptime_s=1.0)
    assert estimator.skew_s("gw", now_ns=NOW_NS + 9 * NS_PER_S) == pytest.approx(-300.05)


def test_heartbeats_that_waited_do_not_look_like_a_step() -> None:
    estimator = ClockSkewEstimator()
    _beat(estimator, 0, skew_s=300.0, uptime_s=10.0)
    for i in range(1, 4):  # sent a second apart, all received after a 60 s outage
        sent_ns = NOW_NS + i * NS_PER_S + 300 * NS_PER_S
        estimator.observe("gw", sent_ns=sent_ns, received_ns=NOW_NS + 64 * NS_PER_S, uptime_s=10.0 + i)
    assert estimator.skew_s("gw", now_ns=NOW_NS + 64 * NS_PER_S) == pytest.approx(299.95)
