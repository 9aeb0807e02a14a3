"""Alarm management against a real PostgreSQL: the append-only event log, the two facts of an alert,
acknowledge, shelve (with its automatic end), out of service, and the alarm-health definitions on known
event sequences. Alerts arrive through the real write path (`BatchWriter`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import msgspec
import psycopg
import pytest

from cloud_service.queries import (
    AlarmPoint,
    AlarmState,
    Transition,
    acknowledge,
    alarm_health,
    alert_history,
    expire_shelves,
    list_alerts,
    out_of_service_assets,
    return_to_service,
    set_out_of_service,
    shelve_alert,
    unshelve_alert,
    update_asset,
    upsert_site,
)
from cloud_service.writer import BatchWriter
from shared.errors import ContractError
from shared.messages import Alert
from shared.timebase import datetime_to_ns

GATEWAY = "gw-alarms"
HOUR = timedelta(hours=1)
MAX_SHELVE = timedelta(hours=8)


class Plant:
    """Alerts written through the real write path, with a counter for message sequence numbers."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.writer = BatchWriter(conn)
        self._seq = 0

    def send(
        self,
        alert_id: str,
        state: Literal["raised", "cleared"],
        at: datetime,
        *,
        asset_id: str = "pump-1",
        model_kind: Literal["baseline", "onnx"] = "onnx",
    ) -> Alert:
        self._seq += 1
        message = Alert(
            gateway_id=GATEWAY,
            asset_id=asset_id,
            seq=self._seq,
            alert_id=alert_id,
            state=state,
            severity="warning",
            ts_ns=datetime_to_ns(at),
            score=2.0,
            threshold=1.0,
            model_version="pump:v1",
            model_kind=model_kind,
        )
        self.writer.write([message])
        return message

    def state_of(self, alert_id: str) -> AlarmState:
        (alert,) = [a for a in list_alerts(self.conn, states=set(AlarmState)) if a.alert_id == alert_id]
        return alert.state


@pytest.fixture
def plant(db: str) -> Iterator[Plant]:
    with psycopg.connect(db) as conn:
        yield Plant(conn)


def _wait_until(predicate: Callable[[], bool], *, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"not true within {timeout_s} s")
        time.sleep(0.05)


def _transitions(plant: Plant, alert_id: str) -> list[tuple[Transition, str, str]]:
    return [
        (e.transition, e.actor, e.comment)
        for e in alert_history(plant.conn, gateway_id=GATEWAY, alert_id=alert_id)
    ]


def test_the_event_log_refuses_update_delete_and_truncate(plant: Plant) -> None:
    now = datetime.now(UTC)
    plant.send("a1", "raised", now)
    for statement in (
        "UPDATE alert_events SET actor = 'mallory'",
        "DELETE FROM alert_events",
        "TRUNCATE alert_events",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            plant.conn.execute(statement)
        plant.conn.rollback()
    assert _transitions(plant, "a1") == [(Transition.RAISED, f"gateway:{GATEWAY}", "")]


def test_ingest_logs_each_raise_and_clear_once_even_when_replayed(plant: Plant) -> None:
    now = datetime.now(UTC)
    raised = plant.send("a1", "raised", now - HOUR)
    cleared = plant.send("a1", "cleared", now)
    plant.writer.write([raised, cleared])  # a redelivery
    plant.writer.write(
        [msgspec.structs.replace(raised, seq=99)]
    )  # the same raise under a new sequence number
    history = alert_history(plant.conn, gateway_id=GATEWAY, alert_id="a1")
    assert [(e.transition, e.ts) for e in history] == [
        (Transition.RAISED, now - HOUR),
        (Transition.CLEARED, now),
    ]
    assert all(e.rule == "onnx" and e.annunciated for e in history)


def test_active_and_acknowledged_are_separate_facts(plant: Plant) -> None:
    now = datetime.now(UTC)
    for alert_id in ("standing", "seen", "returned"):
        plant.send(alert_id, "raised", now - HOUR, asset_id=f"asset-{alert_id}")
    assert acknowledge(plant.conn, gateway_id=GATEWAY, alert_id="seen", by="erin", comment="on it")
    plant.send("returned", "cleared", now, asset_id="asset-returned")
    assert plant.state_of("standing") is AlarmState.ACTIVE_UNACKNOWLEDGED
    assert plant.state_of("seen") is AlarmState.ACTIVE_ACKNOWLEDGED
    assert plant.state_of("returned") is AlarmState.RETURNED_UNACKNOWLEDGED
    (returned,) = list_alerts(plant.conn, states={AlarmState.RETURNED_UNACKNOWLEDGED})
    assert (returned.is_active, returned.is_acknowledged) == (False, False)

    assert acknowledge(
        plant.conn, gateway_id=GATEWAY, alert_id="returned", by="erin", comment="bearing swapped"
    )
    assert plant.state_of("returned") is AlarmState.NORMAL
    assert "returned" not in {a.alert_id for a in list_alerts(plant.conn)}  # needs nobody any more
    plant.send("seen", "cleared", now, asset_id="asset-seen")
    assert plant.state_of("seen") is AlarmState.NORMAL


def test_acknowledging_records_who_and_the_comment_once(plant: Plant) -> None:
    plant.send("a1", "raised", datetime.now(UTC))
    assert acknowledge(plant.conn, gateway_id=GATEWAY, alert_id="a1", by="erin", comment="<b>checked</b>")
    assert not acknowledge(plant.conn, gateway_id=GATEWAY, alert_id="a1", by="vic", comment="again")
    assert not acknowledge(plant.conn, gateway_id=GATEWAY, alert_id="unknown", by="erin")
    (alert,) = list_alerts(plant.conn)
    assert (alert.acknowledged_by, alert.comment) == ("erin", "<b>checked</b>")
    assert _transitions(plant, "a1")[1:] == [(Transition.ACKNOWLEDGED, "erin", "<b>checked</b>")]
    with pytest.raises(ContractError, match="by"):
        acknowledge(plant.conn, gateway_id=GATEWAY, alert_id="a1", by="  ")
    with pytest.raises(ContractError, match="comment"):
        acknowledge(plant.conn, gateway_id=GATEWAY, alert_id="a1", by="erin", comment="x" * 501)


def test_shelving_needs_a_reason_and_a_duration_within_the_maximum(plant: Plant) -> None:
    plant.send("a1", "raised", datetime.now(UTC))
    for duration, reason, field in (
        (MAX_SHELVE + timedelta(seconds=1), "noisy", "duration"),
        (timedelta(0), "noisy", "duration"),
        (HOUR, " ", "reason"),
    ):
        with pytest.raises(ContractError) as caught:
            shelve_alert(
                plant.conn,
                gateway_id=GATEWAY,
                alert_id="a1",
                by="erin",
                reason=reason,
                duration=duration,
                max_duration=MAX_SHELVE,
            )
        assert caught.value.field == field
    assert plant.state_of("a1") is AlarmState.ACTIVE_UNACKNOWLEDGED


@pytest.mark.slow
def test_a_shelve_ends_on_time_and_its_end_is_logged_when_it_happened(plant: Plant) -> None:
    now = datetime.now(UTC)
    plant.send("a1", "raised", now - HOUR)
    until = shelve_alert(
        plant.conn,
        gateway_id=GATEWAY,
        alert_id="a1",
        by="erin",
        reason="sensor cable loose",
        duration=timedelta(seconds=0.8),
        max_duration=MAX_SHELVE,
    )
    plant.conn.commit()
    assert until is not None
    (shelved,) = list_alerts(plant.conn, states={AlarmState.SHELVED})
    assert (shelved.shelved_by, shelved.shelve_reason, shelved.shelved_until) == (
        "erin",
        "sensor cable loose",
        until,
    )
    # The point is shelved, not only the alert: a new raise of the same asset and rule is not annunciated.
    plant.send("a2", "raised", now)
    assert plant.state_of("a2") is AlarmState.SHELVED
    plant.conn.commit()

    def unshelved() -> bool:
        plant.conn.commit()  # a new transaction: now() is the transaction's start
        return plant.state_of("a1") is AlarmState.ACTIVE_UNACKNOWLEDGED

    _wait_until(unshelved)  # no job needed: an ended shelve is not shelved when read
    assert plant.state_of("a2") is AlarmState.ACTIVE_UNACKNOWLEDGED
    assert expire_shelves(plant.conn) == 1
    assert expire_shelves(plant.conn) == 0
    events = alert_history(plant.conn, gateway_id=GATEWAY, alert_id="a1")
    assert [(e.transition, e.actor) for e in events] == [
        (Transition.RAISED, f"gateway:{GATEWAY}"),
        (Transition.SHELVED, "erin"),
        (Transition.UNSHELVED, "system"),
    ]
    assert events[1].shelved_until == until
    assert events[2].ts == until
    a2_raise = alert_history(plant.conn, gateway_id=GATEWAY, alert_id="a2")[0]
    assert (a2_raise.transition, a2_raise.annunciated) == (Transition.RAISED, False)


def test_concurrent_sweeps_log_each_shelve_end_once(plant: Plant, db: str) -> None:
    plant.send("a1", "raised", datetime.now(UTC))
    shelve_alert(
        plant.conn,
        gateway_id=GATEWAY,
        alert_id="a1",
        by="erin",
        reason="known",
        duration=timedelta(milliseconds=1),
        max_duration=MAX_SHELVE,
    )
    plant.conn.commit()
    time.sleep(0.01)  # let the 1 ms shelve end (a new transaction reads a later now())
    results: list[int] = []
    with psycopg.connect(db) as other:
        assert expire_shelves(plant.conn) == 1  # holds the row until it commits
        sweeper = threading.Thread(target=lambda: results.append(expire_shelves(other)))
        sweeper.start()
        sweeper.join(0.3)
        assert sweeper.is_alive()  # waiting on the first sweep's lock
        plant.conn.commit()
        sweeper.join(10)
        other.commit()
    assert results == [0]
    unshelves = [
        e
        for e in alert_history(plant.conn, gateway_id=GATEWAY, alert_id="a1")
        if e.transition is Transition.UNSHELVED
    ]
    assert len(unshelves) == 1


def test_unshelving_by_hand_ends_the_shelve_now(plant: Plant) -> None:
    plant.send("a1", "raised", datetime.now(UTC))
    assert not unshelve_alert(plant.conn, gateway_id=GATEWAY, alert_id="a1", by="erin")
    shelve_alert(
        plant.conn,
        gateway_id=GATEWAY,
        alert_id="a1",
        by="erin",
        reason="known",
        duration=HOUR,
        max_duration=MAX_SHELVE,
    )
    assert plant.state_of("a1") is AlarmState.SHELVED
    assert unshelve_alert(plant.conn, gateway_id=GATEWAY, alert_id="a1", by="ada", comment="fixed")
    assert plant.state_of("a1") is AlarmState.ACTIVE_UNACKNOWLEDGED
    assert _transitions(plant, "a1")[-1] == (Transition.UNSHELVED, "ada", "fixed")


def test_an_asset_out_of_service_records_its_alerts_without_annunciating_them(plant: Plant) -> None:
    now = datetime.now(UTC)
    plant.send("before", "raised", now - HOUR)
    assert set_out_of_service(plant.conn, asset_id="pump-1", by="erin", reason="bearing replacement")
    assert not set_out_of_service(plant.conn, asset_id="pump-1", by="erin", reason="again")
    assert not set_out_of_service(plant.conn, asset_id="no-such-asset", by="erin", reason="x")
    assert set(out_of_service_assets(plant.conn)) == {"pump-1"}
    plant.send("during", "raised", now)
    assert plant.state_of("before") is AlarmState.OUT_OF_SERVICE
    assert plant.state_of("during") is AlarmState.OUT_OF_SERVICE
    assert alert_history(plant.conn, gateway_id=GATEWAY, alert_id="during")[0].annunciated is False

    assert return_to_service(plant.conn, asset_id="pump-1", by="erin", comment="done")
    assert not return_to_service(plant.conn, asset_id="pump-1", by="erin")
    assert plant.state_of("during") is AlarmState.ACTIVE_UNACKNOWLEDGED
    assert [t for t, _, _ in _transitions(plant, "before")] == [
        Transition.RAISED,
        Transition.OUT_OF_SERVICE,
        Transition.RETURNED_TO_SERVICE,
    ]


# ---------------------------------------------------------------------------------------- alarm health

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday, 00:00 UTC
WEEK = timedelta(days=7)


def _site(plant: Plant, site_id: str, asset_ids: list[str]) -> None:
    upsert_site(plant.conn, site_id)
    for asset_id in asset_ids:
        update_asset(plant.conn, asset_id, site_id=site_id)


def _raise_at(plant: Plant, asset_id: str, offsets_s: list[float], *, start: datetime = START) -> None:
    for offset in offsets_s:
        at = start + timedelta(seconds=offset)
        plant.send(f"{asset_id}:{datetime_to_ns(at)}", "raised", at, asset_id=asset_id)


def test_chattering_is_three_raises_of_one_point_within_sixty_seconds(plant: Plant) -> None:
    _raise_at(plant, "chatters", [0, 30, 60])  # the third exactly 60 s after the first: chattering
    _raise_at(plant, "almost", [0, 30, 61])  # 61 s: not
    _raise_at(plant, "slow", [0, 120, 240, 360])
    plant.send(
        "other-rule", "raised", START + timedelta(seconds=10), asset_id="almost", model_kind="baseline"
    )
    _site(plant, "plant-1", ["chatters", "almost", "slow"])
    (site,) = alarm_health(plant.conn, start=START, end=START + WEEK)
    assert site.chattering == (AlarmPoint("chatters", "onnx"),)


def test_a_flood_is_a_ten_minute_period_with_more_than_ten_raises(plant: Plant) -> None:
    assets = [f"a{i:02d}" for i in range(12)]
    for i, asset_id in enumerate(assets):  # 11 raises in [00:00, 00:10): a flood
        if i < 11:
            _raise_at(plant, asset_id, [i * 50.0])
    for asset_id in assets[:10]:  # exactly 10 in [01:00, 01:10): not a flood
        _raise_at(plant, asset_id, [3600 + 30.0])
    for i, asset_id in enumerate(assets):  # 12 raised astride 02:10, 6 per period: no flood either
        _raise_at(plant, asset_id, [2 * 3600 + 600 - 300 + i * 50.0])
    _site(plant, "plant-1", assets)
    (site,) = alarm_health(plant.conn, start=START, end=START + WEEK)
    assert site.flood_periods == 1
    assert site.periods == 7 * 24 * 6


def test_alerts_per_asset_week_stale_and_the_top_ten_share_per_site(plant: Plant) -> None:
    # Site one: 4 assets, 2 weeks; 12 points raised once and one point 8 times: 20 raises.
    busy = [f"busy-{i:02d}" for i in range(12)]
    for i, asset_id in enumerate(busy):
        _raise_at(plant, asset_id, [i * 3600.0])
    _raise_at(plant, "noisy", [86400.0 + i * 3600 for i in range(8)])
    _site(plant, "one", [*busy, "noisy"])
    # Site two: one alert standing for 30 h, one for 20 h, one cleared after 30 h.
    end = START + 2 * WEEK
    plant.send("standing", "raised", end - timedelta(hours=30), asset_id="two-a")
    plant.send("recent", "raised", end - timedelta(hours=20), asset_id="two-b")
    plant.send("gone", "raised", end - timedelta(hours=31), asset_id="two-c")
    plant.send("gone", "cleared", end - timedelta(hours=1), asset_id="two-c")
    _site(plant, "two", ["two-a", "two-b", "two-c"])
    upsert_site(plant.conn, "empty")

    one, two = alarm_health(plant.conn, start=START, end=end)
    assert (one.site_id, one.assets, one.raised) == ("one", 13, 20)
    assert one.alerts_per_asset_week == pytest.approx(20 / (13 * 2))
    assert one.top_ten_share == pytest.approx((8 + 9) / 20)  # the noisy point and nine of the rest
    assert one.points == 13
    assert one.stale == 20  # nothing of site one ever cleared, all raised > 24 h before the end
    assert (two.site_id, two.raised, two.stale) == ("two", 3, 1)
    assert two.top_ten_share == pytest.approx(1.0)
    with pytest.raises(ContractError):
        alarm_health(plant.conn, start=end, end=START)


def test_raises_of_assets_out_of_service_do_not_count_towards_health(plant: Plant) -> None:
    _site(plant, "plant-1", [])
    plant.send("first", "raised", START)
    update_asset(plant.conn, "pump-1", site_id="plant-1")
    assert set_out_of_service(plant.conn, asset_id="pump-1", by="erin", reason="overhaul")
    _raise_at(plant, "pump-1", [10, 20, 30])
    (site,) = alarm_health(plant.conn, start=START, end=START + WEEK)
    assert (site.raised, site.chattering) == (1, ())
