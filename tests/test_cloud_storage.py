"""Cloud storage on a real PostgreSQL: migrations, the idempotent write path, rollups and queries."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import msgspec
import psycopg
import psycopg.conninfo
import pytest

from cloud_service.deadletter import DeadLetter
from cloud_service.migrate import migrate
from cloud_service.queries import (
    acknowledge_alert,
    asset_series,
    feature_matrix,
    fleet_status,
    gateway_health,
    open_alerts,
    storage_jobs,
    update_asset,
    upsert_site,
)
from cloud_service.rollups import align_down, refresh_rollups
from cloud_service.schema import Backend, current_backend, detect_backend
from cloud_service.settings import CloudSettings, StorageSettings
from cloud_service.upkeep import apply_storage_policies, run_upkeep
from cloud_service.writer import BatchWriter
from forewarn import cloud_cmd
from forewarn.bench.messages import PERIOD_NS, aggregate, one_of_each
from forewarn.localservices import PostgresServer
from shared.config import load_settings
from shared.errors import ConfigError, ContractError
from shared.features import DEFAULT_SPEC
from shared.messages import (
    Alert,
    ScoreStats,
    Status,
)
from shared.timebase import now_ns, ns_to_datetime

NS_PER_S = 1_000_000_000


TABLES = (
    "aggregates",
    "alert_messages",
    "alerts",
    "snapshots",
    "heartbeats",
    "deployment_acks",
    "maintenance_events",
    "assets",
    "gateways",
)


def counts(conninfo: str) -> dict[str, int]:
    """Rows per table."""
    with psycopg.connect(conninfo) as conn:
        return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES}  # type: ignore[index]


def test_migrations_run_twice_and_concurrently_are_harmless(postgres: PostgresServer, db: str) -> None:
    again = migrate(db)
    assert again.applied == []
    assert again.already_applied >= 3
    fresh = postgres.create_database("t_migrate_concurrent")
    try:
        reports = []
        threads = [threading.Thread(target=lambda: reports.append(migrate(fresh))) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sum(len(report.applied) for report in reports) == len(reports[0].applied) + len(
            reports[1].applied
        ) + len(reports[2].applied)
        assert sorted(len(report.applied) for report in reports)[0] == 0  # only one run did the work
        with psycopg.connect(fresh) as conn:
            versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
        assert versions[:3] == [1, 2, 3]
        assert versions == sorted(set(versions))
    finally:
        postgres.drop_database("t_migrate_concurrent")


def test_every_kind_is_written_once_even_when_replayed(db: str) -> None:
    messages = one_of_each("gw-s1", "pump-s1")
    with psycopg.connect(db) as conn:
        writer = BatchWriter(conn)
        first = writer.write(messages)
        second = writer.write(messages)
        assert BatchWriter(conn).write(messages).rows_inserted == 0
    assert first.rows_inserted == 7
    assert first.conflict_fallbacks == 0  # new rows: straight binary COPY
    assert second.rows_inserted == 0
    assert second.duplicates == 7
    assert second.conflict_fallbacks == 1  # replayed rows: staging + ON CONFLICT DO NOTHING
    assert counts(db) == {
        "aggregates": 1,
        "alert_messages": 1,
        "alerts": 1,
        "snapshots": 1,
        "heartbeats": 2,
        "deployment_acks": 1,
        "maintenance_events": 1,
        "assets": 1,
        "gateways": 1,
    }


def test_a_batch_mixing_new_and_replayed_aggregates_stores_each_once(db: str) -> None:
    ts = now_ns() - 3600 * NS_PER_S
    messages = [aggregate("gw-mix", "pump-mix", seq, ts + seq * PERIOD_NS) for seq in range(100)]
    with psycopg.connect(db) as conn:
        writer = BatchWriter(conn)
        writer.write(messages[::2])
        result = writer.write(messages[::-1] + messages[:10])
        seqs = [row[0] for row in conn.execute("SELECT seq FROM aggregates ORDER BY seq")]
    assert seqs == list(range(100))
    assert result.inserted["aggregates"] == 50
    assert result.duplicates == 60


def test_dead_letters_keep_topic_bytes_reason_and_field(db: str) -> None:
    letter = DeadLetter(
        "forewarn/v1/gw/g1/aggregate", b"\x00\xffnot json", "payload=...: expected valid JSON", "payload"
    )
    with psycopg.connect(db) as conn:
        BatchWriter(conn).write([], [letter])
        row = conn.execute("SELECT topic, payload, reason, field, received_at FROM dead_letters").fetchone()
    assert row is not None
    assert row[:4] == (letter.topic, letter.payload, letter.reason, "payload")
    assert row[4] is not None


def test_alert_lifecycle_raised_acknowledged_cleared(db: str) -> None:
    ts = now_ns()
    raised, *_ = (m for m in one_of_each("gw-a", "pump-a", ts_ns=ts) if isinstance(m, Alert))
    cleared = Alert(
        gateway_id="gw-a",
        asset_id="pump-a",
        seq=50,
        alert_id=raised.alert_id,
        state="cleared",
        severity="warning",
        ts_ns=ts + 60 * NS_PER_S,
        score=0.2,
        threshold=1.0,
        model_version="3",
        model_kind="onnx",
    )
    early_clear = Alert(
        gateway_id="gw-a",
        asset_id="pump-a",
        seq=60,
        alert_id="late-raise",
        state="cleared",
        severity="info",
        ts_ns=ts,
        score=0.1,
        threshold=1.0,
        model_version="3",
        model_kind="onnx",
    )
    with psycopg.connect(db) as conn:
        writer = BatchWriter(conn)
        writer.write([raised])
        assert [a.state for a in open_alerts(conn)] == ["open"]
        assert acknowledge_alert(
            conn, gateway_id="gw-a", alert_id=raised.alert_id, by="ana", comment="looking"
        )
        assert not acknowledge_alert(conn, gateway_id="gw-a", alert_id=raised.alert_id, by="bob")
        with pytest.raises(ContractError):
            acknowledge_alert(conn, gateway_id="gw-a", alert_id=raised.alert_id, by=" ")
        conn.commit()
        (alert,) = open_alerts(conn, asset_id="pump-a")
        assert (alert.state, alert.acknowledged_by, alert.comment) == ("acknowledged", "ana", "looking")
        writer.write([cleared, cleared])
        assert open_alerts(conn) == []
        writer.write([early_clear])
        writer.write([msgspec.structs.replace(raised, alert_id="late-raise", seq=61)])
        state = conn.execute("SELECT state, raised_at IS NOT NULL FROM alerts WHERE alert_id = 'late-raise'")
        assert state.fetchone() == ("cleared", True)  # a late "raised" fills details, never reopens


def _history(conninfo: str, *, days: int) -> datetime:
    start = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
    start_ns = int(start.timestamp()) * NS_PER_S
    per_day = 24 * 3600 // 600  # one period every 10 minutes
    messages = []
    for asset_index, asset_id in enumerate(("pump-h1", "fan-h2")):
        for i in range(days * per_day):
            seq = asset_index * 100_000 + i
            messages.append(
                aggregate("gw-h", asset_id, seq, start_ns + i * 600 * NS_PER_S, score=((i * 7) % 13) / 10)
            )
    with psycopg.connect(conninfo) as conn:
        writer = BatchWriter(conn)
        for chunk in range(0, len(messages), 500):
            writer.write(messages[chunk : chunk + 500])
    return start


def test_series_are_the_same_from_raw_data_and_rollups(db: str) -> None:
    start = _history(db, days=3)
    end = start + timedelta(days=3)
    with psycopg.connect(db, autocommit=True) as conn:
        refresh_rollups(conn, start=start, end=end)
        for resolution in (timedelta(hours=1), timedelta(hours=6), timedelta(days=1)):
            raw = asset_series(conn, "pump-h1", start=start, end=end, resolution=resolution, source="raw")
            rolled = asset_series(
                conn, "pump-h1", start=start, end=end, resolution=resolution, source="rollup"
            )
            assert raw.source == "raw"
            assert rolled.source == ("rollup_daily" if resolution == timedelta(days=1) else "rollup_hourly")
            assert len(raw.points) == (end - start) // resolution
            assert [p.bucket for p in raw.points] == [p.bucket for p in rolled.points]
            for a, b in zip(raw.points, rolled.points, strict=True):
                assert (a.n_periods, a.n_windows, a.n_above) == (b.n_periods, b.n_windows, b.n_above)
                assert a.score_max == b.score_max
                assert a.score_mean == pytest.approx(b.score_mean, rel=1e-9)
        auto = asset_series(conn, "pump-h1", start=start, end=end, resolution=timedelta(hours=1))
        assert auto.source == "rollup_hourly"
        short = asset_series(
            conn, "pump-h1", start=start, end=start + timedelta(hours=5), resolution=timedelta(minutes=30)
        )
        assert short.source == "raw"
        assert sum(p.n_periods for p in short.points) == 30
        # a refresh is idempotent and picks up late rows
        refresh_rollups(conn, start=start, end=end)
        again = asset_series(
            conn, "pump-h1", start=start, end=end, resolution=timedelta(days=1), source="rollup"
        )
        assert [p.n_periods for p in again.points] == [144, 144, 144]
        with pytest.raises(ContractError):
            asset_series(
                conn, "pump-h1", start=start, end=end, resolution=timedelta(minutes=5), source="rollup"
            )


def _recent(conninfo: str, asset_id: str, start: datetime, periods: int, *, seq: int = 0) -> None:
    """`periods` ten-minute aggregates of `asset_id` from `start`, written by the ingest's writer."""
    start_ns = int(start.timestamp()) * NS_PER_S
    messages = [
        aggregate("gw-late", asset_id, seq + i, start_ns + i * 600 * NS_PER_S) for i in range(periods)
    ]
    with psycopg.connect(conninfo) as conn:
        BatchWriter(conn, rollup_lookback=timedelta(hours=48)).write(messages)


def test_aggregates_arriving_after_the_lookback_passed_their_day_are_rolled_up_at_the_next_upkeep(
    db: str,
) -> None:
    """A gateway back after a week offline: its old periods show in long ranges after the next upkeep."""
    now = datetime.now(UTC)
    week_ago = align_down(now - timedelta(days=7), timedelta(days=1)) + timedelta(hours=3)
    _recent(db, "pump-late", week_ago, 12)
    _recent(db, "pump-late", now - timedelta(hours=2), 6, seq=100)  # recent: the lookback covers it
    with psycopg.connect(db, autocommit=True) as conn:
        pending = conn.execute("SELECT day FROM rollup_pending_days").fetchall()
        assert pending == [(align_down(week_ago, timedelta(days=1)),)]  # only the old day is marked
        run_upkeep(conn, StorageSettings(), now=now)
        assert conn.execute("SELECT count(*) FROM rollup_pending_days").fetchone() == (0,)
        rolled = asset_series(
            conn,
            "pump-late",
            start=now - timedelta(days=8),
            end=now,
            resolution=timedelta(days=1),
            source="rollup",
        )
        assert sum(p.n_periods for p in rolled.points) == 18


def test_long_ranges_show_scores_stored_since_the_last_rollup_refresh(db: str) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(db, autocommit=True) as conn:
        run_upkeep(conn, StorageSettings(), now=now - timedelta(hours=3))  # the last refresh, 3 h ago
    _recent(db, "pump-new", now - timedelta(hours=2), 6)
    with psycopg.connect(db) as conn:
        series = asset_series(
            conn, "pump-new", start=now - timedelta(days=7), end=now, resolution=timedelta(hours=1)
        )
        only_rollup = asset_series(
            conn,
            "pump-new",
            start=now - timedelta(days=7),
            end=now,
            resolution=timedelta(hours=1),
            source="rollup",
        )
    assert series.source == "rollup_hourly"
    assert sum(p.n_periods for p in series.points) == 6  # from the raw aggregates after the refresh
    assert only_rollup.points == []


def test_feature_matrix_reads_back_what_was_written(db: str) -> None:
    ts = now_ns() - 3600 * NS_PER_S
    messages = [aggregate("gw-f", "pump-f", seq, ts + seq * PERIOD_NS) for seq in range(50)]
    with psycopg.connect(db) as conn:
        BatchWriter(conn).write(messages)
        matrix = feature_matrix(
            conn, ["pump-f"], start=datetime.fromtimestamp(ts / NS_PER_S - 1, UTC), end=datetime.now(UTC)
        )
    assert matrix.feature_names == DEFAULT_SPEC.feature_names
    assert matrix.values.shape == (50, len(DEFAULT_SPEC.feature_names))
    assert matrix.values[7, 2] == pytest.approx(messages[7].features[DEFAULT_SPEC.feature_names[2]].mean)
    assert list(matrix.period_start_ns[:2]) == [ts // 1000 * 1000, (ts + PERIOD_NS) // 1000 * 1000]


def test_fleet_status_gateway_health_and_asset_metadata(db: str) -> None:
    with psycopg.connect(db) as conn:
        BatchWriter(conn).write(one_of_each("gw-q", "pump-q"))
        upsert_site(conn, "plant-1", name="Plant 1")
        assert update_asset(
            conn, "pump-q", asset_type="pump", line="L2", criticality="high", site_id="plant-1"
        )
        assert not update_asset(conn, "nope", line="L1")
        with pytest.raises(ContractError):
            update_asset(conn, "pump-q", criticality="extreme")
        conn.commit()
        (status,) = fleet_status(conn)
        assert (status.asset_id, status.asset_type, status.line, status.criticality) == (
            "pump-q",
            "pump",
            "L2",
            "high",
        )
        assert (status.site_id, status.gateway_id, status.gateway_state) == ("plant-1", "gw-q", "online")
        assert status.open_alerts == 1
        assert status.last_score_mean == pytest.approx(0.5)
        (health,) = gateway_health(conn)
        assert health.state == "online"
        assert not health.is_stale
        # the newer heartbeat (with seq) is the latest state; it had no counters, so the last known stay
        assert health.metrics == {"received": 5.0}
        (stale,) = gateway_health(conn, now=datetime.now(UTC) + timedelta(hours=1))
        assert stale.is_stale
        # the last will of a gateway that went away: offline, with what it last reported
        BatchWriter(conn).write([Status(gateway_id="gw-q", ts_ns=now_ns(), state="offline")])
        (offline,) = gateway_health(conn)
        assert (offline.state, offline.metrics) == ("offline", {"received": 5.0})


def test_edits_leave_the_transaction_to_the_caller(db: str) -> None:
    raised = next(m for m in one_of_each("gw-t", "pump-t") if isinstance(m, Alert))
    with psycopg.connect(db) as conn:
        BatchWriter(conn).write([raised])
        upsert_site(conn, "plant-t", name="Plant T")
        assert update_asset(conn, "pump-t", line="L9", site_id="plant-t")
        assert acknowledge_alert(conn, gateway_id="gw-t", alert_id=raised.alert_id, by="ana")
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM sites").fetchone() == (0,)
        assert conn.execute("SELECT line FROM assets WHERE asset_id = 'pump-t'").fetchone() == ("",)
        assert [a.state for a in open_alerts(conn)] == ["open"]


def test_feature_matrix_skips_periods_whose_windows_all_went_unscored(db: str) -> None:
    ts = now_ns() - 3600 * NS_PER_S
    scored = [aggregate("gw-fu", "pump-fu", seq, ts + seq * PERIOD_NS) for seq in range(5)]
    unscored = msgspec.structs.replace(
        aggregate("gw-fu", "pump-fu", 5, ts + 5 * PERIOD_NS),
        features={},
        score=ScoreStats(mean=0.0, max=0.0, threshold=0.0, n_windows=0, n_above_threshold=0),
    )
    with psycopg.connect(db) as conn:
        BatchWriter(conn).write([*scored, unscored])
        matrix = feature_matrix(
            conn, ["pump-fu"], start=datetime.fromtimestamp(ts / NS_PER_S - 1, UTC), end=datetime.now(UTC)
        )
    assert matrix.values.shape == (5, len(DEFAULT_SPEC.feature_names))


def test_fleet_status_scores_come_from_the_last_period_that_scored_windows(db: str) -> None:
    start = now_ns() - 10 * PERIOD_NS
    scored = aggregate("gw-fs", "fan-fs", 1, start, score=0.75)
    unscored = msgspec.structs.replace(
        aggregate("gw-fs", "fan-fs", 2, start + PERIOD_NS, score=0.0),
        score=ScoreStats(mean=0.0, max=0.0, threshold=0.0, n_windows=0, n_above_threshold=0),
    )
    with psycopg.connect(db) as conn:
        BatchWriter(conn).write([scored, unscored])
        (status,) = fleet_status(conn)
    assert status.last_period_end == ns_to_datetime(start + 2 * PERIOD_NS)
    assert (status.last_score_mean, status.last_score_max, status.threshold) == (0.75, 1.5, 1.0)


def test_upkeep_creates_partitions_ahead_and_drops_expired_ones(db: str) -> None:
    old = now_ns() - 400 * 24 * 3600 * NS_PER_S
    with psycopg.connect(db) as conn:
        if current_backend(conn) is not Backend.POSTGRES:
            pytest.skip("partitions are plain PostgreSQL's; TimescaleDB's retention is its policy's")
        BatchWriter(conn).write([aggregate("gw-r", "pump-r", 1, old)])
    storage = StorageSettings.model_validate({"retention_days": 365, "partitions_ahead_days": 14})
    with psycopg.connect(db, autocommit=True) as conn:
        run_upkeep(conn, storage)
        names = [
            row[0]
            for row in conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'aggregates'::regclass ORDER BY 1"
            )
        ]
        assert conn.execute("SELECT count(*) FROM aggregates").fetchone() == (0,)
    assert len(names) == 3  # this week and the two ahead; the expired one is gone


def test_receive_maximum_above_queue_size_is_refused() -> None:
    with pytest.raises(ConfigError, match="receive_maximum"):
        load_settings(
            CloudSettings,
            environ={},
            overrides={"mqtt": {"receive_maximum": 100}, "ingest": {"queue_size": 50}},
        )


def _cli_env(monkeypatch: pytest.MonkeyPatch, conninfo: str) -> None:
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    monkeypatch.setenv("FOREWARN_CLOUD_DB__HOST", str(params["host"]))
    monkeypatch.setenv("FOREWARN_CLOUD_DB__PORT", str(params["port"]))
    monkeypatch.setenv("FOREWARN_CLOUD_DB__DBNAME", str(params["dbname"]))


def test_cloud_migrate_and_status_commands(
    db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _cli_env(monkeypatch, db)
    with psycopg.connect(db) as conn:
        backend = current_backend(conn)
    assert cloud_cmd.main(["migrate"]) == 0
    assert f"backend: {backend.value}; applied: none (up to date)" in capsys.readouterr().out
    with psycopg.connect(db) as conn:
        writer = BatchWriter(conn)
        writer.write(one_of_each("gw-st", "pump-st"), [DeadLetter("t", b"x", "seq=-1: expected >= 0", "seq")])
    assert cloud_cmd.main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["backend"] == backend.value
    assert status["schema_version"] >= 3
    assert status["storage_jobs_failing"] == 0
    if backend is Backend.POSTGRES:
        assert status["storage_jobs"] == []
    assert status["aggregates_last_minute"] == 1
    assert status["dead_letters_total"] == 1
    assert status["dead_letters_last_day"] == {"seq": 1}
    assert cloud_cmd.main(["status"]) == 0
    assert "dead_letters_total" in capsys.readouterr().out


def test_backend_is_plain_postgresql_without_a_preloaded_timescaledb(db: str) -> None:
    with psycopg.connect(db) as conn:
        if current_backend(conn) is not Backend.POSTGRES:
            pytest.skip("this server preloads TimescaleDB")
        assert detect_backend(conn) is Backend.POSTGRES
        assert detect_backend(conn, allow_timescale=False) is Backend.POSTGRES
        assert current_backend(conn) is Backend.POSTGRES


def test_storage_jobs_list_timescaledb_policies_with_their_runs(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        if current_backend(conn) is not Backend.TIMESCALE:
            assert storage_jobs(conn) == []
            pytest.skip("TimescaleDB is not preloaded on this server: only the plain answer was checked")
        apply_storage_policies(conn, StorageSettings.model_validate({"retention_days": 365}))
        jobs = storage_jobs(conn)
    policies = {job.policy for job in jobs}
    assert {"retention", "refresh_continuous_aggregate"} <= policies
    assert policies & {"compression", "columnstore"}  # the name TimescaleDB 2.18 and newer give it
    assert all(job.total_failures <= job.total_runs for job in jobs)
