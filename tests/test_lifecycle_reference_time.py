"""The lifecycle jobs' notion of now: the clock, or the newest stored data for replays and the demo."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from cloud_service.lifecycle.service import LifecycleService
from cloud_service.queries import advised_modes, latest_period_end
from cloud_service.queries.diagnoses import store_diagnosis
from cloud_service.settings import CloudSettings
from cloud_service.writer import BatchWriter
from forewarn.bench.messages import PERIOD_NS, aggregate
from shared.config import load_settings
from shared.messages import AlertDiagnosis
from shared.timebase import NS_PER_S, now_ns, ns_to_datetime


def _service(db: str, reference_time: str) -> LifecycleService:
    params = psycopg.conninfo.conninfo_to_dict(db)
    settings = load_settings(
        CloudSettings,
        environ={},
        overrides={
            "db": {"host": params["host"], "port": int(str(params["port"])), "dbname": params["dbname"]},
            "lifecycle": {"reference_time": reference_time},
        },
    )
    return LifecycleService(settings)


def test_latest_data_reference_is_the_newest_stored_aggregate_and_wall_is_the_clock(db: str) -> None:
    old_start = now_ns() - 100 * 24 * 3600 * NS_PER_S
    with psycopg.connect(db) as conn:
        assert latest_period_end(conn) is None
        assert abs(_service(db, "latest_data").reference_now(conn) - datetime.now(UTC)) < timedelta(
            minutes=1
        ), "with nothing stored, the clock"
        BatchWriter(conn).write(
            [aggregate("gw-ref", "pump-ref", seq, old_start + seq * PERIOD_NS) for seq in range(3)]
            + [aggregate("gw-ref", "fan-ref", 0, old_start)]
        )
        newest = ns_to_datetime(old_start + 3 * PERIOD_NS)
        assert latest_period_end(conn) == newest
        assert _service(db, "latest_data").reference_now(conn) == newest
        assert abs(_service(db, "wall").reference_now(conn) - datetime.now(UTC)) < timedelta(minutes=1)


def test_advice_is_refreshed_at_the_reference_time_so_a_replays_diagnoses_are_fresh(db: str) -> None:
    old_start = now_ns() - 100 * 24 * 3600 * NS_PER_S  # a replay's data, 100 days behind the clock
    with psycopg.connect(db) as conn:
        BatchWriter(conn).write(
            [aggregate("gw-ref", "pump-ref", seq, old_start + seq * PERIOD_NS) for seq in range(3)]
        )
        store_diagnosis(
            conn,
            gateway_id="gw-ref",
            alert_id="a1",
            asset_id="pump-ref",
            ts_ns=old_start + 2 * PERIOD_NS,
            diagnosis=AlertDiagnosis(mode="outer_race", confidence=0.8, iso_zone="B"),
        )
        conn.commit()
    assert _service(db, "wall").refresh_advice().created == 0, "100 days old by the clock: not acted on"
    assert _service(db, "latest_data").refresh_advice().created == 1
    with psycopg.connect(db) as conn:
        assert advised_modes(conn) == {"pump-ref": ["outer_race"]}
