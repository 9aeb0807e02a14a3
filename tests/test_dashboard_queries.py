"""The dashboard's reads on a seeded fleet: one asset's page reads only that asset, long ranges read the
rollups and agree with the raw aggregates, and the bench's COPY-seeded rollups equal the refreshes'."""

from __future__ import annotations

from datetime import UTC, date, timedelta
from typing import Any

import psycopg
import pytest

from cloud_service.forecasting.repository import refresh_hourly
from cloud_service.queries import (
    LIKELY_P_FAIL,
    POSSIBLE_P_FAIL,
    asset_series,
    asset_status,
    feature_series,
    fleet_status,
    model_periods,
    risk_history,
)
from cloud_service.rollups import refresh_rollups
from dashboard import pages
from dashboard.fleet import FleetRow
from dashboard.page_data import asset_page_data, fleet_page_data
from forewarn.bench.dashboard import run
from forewarn.bench.dashboard_seed import Fleet, seed_fleet
from shared.errors import ContractError

FLEET = Fleet(gateways=2, assets_per_gateway=10, days=4, period=timedelta(minutes=10))
DEGRADING = FLEET.asset_id(10)
RMS = "vibration.rms"  # `is_degrading`: every twentieth asset, from the tenth
_ROLLUP = (
    "SELECT asset_id, bucket, n_periods, score_mean_sum, score_max, n_windows, n_above FROM {} ORDER BY 1, 2"
)
_HOURLY = (
    "SELECT asset_id, hour, names, means, score_mean, score_max, n_periods, last_end FROM forecast_hourly "
)


@pytest.fixture
def seeded(db: str) -> str:
    with psycopg.connect(db) as conn:
        seed_fleet(conn, FLEET)
    return db


def _rows(conn: psycopg.Connection[Any], statement: str) -> list[tuple[Any, ...]]:
    return conn.execute(statement).fetchall()


def _close(left: list[tuple[Any, ...]], right: list[tuple[Any, ...]]) -> None:
    assert len(left) == len(right)
    for a, b in zip(left, right, strict=True):
        assert a[:3] == b[:3]
        assert a[3:] == pytest.approx(b[3:], rel=1e-6)


@pytest.mark.slow
def test_the_seeded_rollups_are_what_the_refreshes_compute(seeded: str) -> None:
    with psycopg.connect(seeded, autocommit=True) as conn:
        assert DEGRADING == "a00010"
        before = {t: _rows(conn, _ROLLUP.format(t)) for t in ("rollup_hourly", "rollup_daily")}
        hourly_before = _rows(conn, _HOURLY + "ORDER BY 1, 2")
        assert len(before["rollup_hourly"]) == FLEET.n_assets * FLEET.days * 24
        refresh_rollups(conn, start=FLEET.start, end=FLEET.end)
        refresh_hourly(conn, start=FLEET.start, end=FLEET.end)
        for table, rows in before.items():
            _close(
                [(r[0], r[1], r[2], r[3], r[4], int(r[5]), int(r[6])) for r in rows],
                [
                    (r[0], r[1], r[2], r[3], r[4], int(r[5]), int(r[6]))
                    for r in _rows(conn, _ROLLUP.format(table))
                ],
            )
        after = _rows(conn, _HOURLY + "ORDER BY 1, 2")
        assert [r[:3] for r in after] == [r[:3] for r in hourly_before]
        for old, new in zip(hourly_before, after, strict=True):
            assert old[3] == pytest.approx(new[3], rel=1e-5)
            assert old[4:7] == pytest.approx(new[4:7], rel=1e-5)
            assert old[7] == new[7]


@pytest.mark.slow
def test_the_asset_page_reads_its_own_asset_and_long_ranges_from_the_rollups(seeded: str) -> None:
    with psycopg.connect(seeded) as conn:
        own = asset_status(conn, DEGRADING)
        assert own is not None
        assert own == next(a for a in fleet_status(conn) if a.asset_id == DEGRADING)
        assert asset_status(conn, "no-such-asset") is None
        start, end, day = FLEET.start, FLEET.end, timedelta(days=1)
        data = asset_page_data(conn, DEGRADING, start=start, end=end, resolution=day, feature=RMS)
        assert data.series.source == "rollup_daily"
        assert data.status == own
        assert data.feature == RMS
        from_rollup = feature_series(conn, DEGRADING, RMS, start=start, end=end, resolution=day)
        raw = feature_series(conn, DEGRADING, RMS, start=start, end=end, resolution=day, source="raw")
        assert [p.bucket for p in from_rollup] == [p.bucket for p in raw]
        assert [p.mean for p in from_rollup] == pytest.approx([p.mean for p in raw], rel=1e-5)
        assert all(p.low is None for p in from_rollup)
        assert all(p.low is not None and p.low <= p.mean <= (p.high or 0.0) for p in raw)
        # the degrading asset's score rises to cross its threshold within the range
        scores = [
            p.score_mean for p in asset_series(conn, DEGRADING, start=start, end=end, resolution=day).points
        ]
        assert scores[-1] > scores[0]
        assert any(a.state == "open" for a in data.alerts)


@pytest.mark.slow
def test_model_periods_from_the_hourly_rollup_match_the_raw_runs(seeded: str) -> None:
    with psycopg.connect(seeded) as conn:
        switch = FLEET.start + timedelta(days=2)
        conn.execute(
            "UPDATE aggregates SET model_version = '4' WHERE asset_id = %s AND period_start >= %s",
            (DEGRADING, switch),
        )
        long_range = model_periods(conn, DEGRADING, start=FLEET.start, end=FLEET.end)
        raw = model_periods(
            conn, DEGRADING, start=FLEET.start, end=FLEET.end, rollup_from=timedelta(days=365)
        )
        assert [(p.model_version, p.first_start, p.n_periods) for p in long_range] == [
            (p.model_version, p.first_start, p.n_periods) for p in raw
        ]
        assert [p.model_version for p in raw] == ["3", "4"]
        assert raw[0].last_end == switch == long_range[0].last_end


@pytest.mark.slow
def test_the_fleet_page_puts_the_degrading_assets_first(seeded: str) -> None:
    with psycopg.connect(seeded) as conn:
        rows = fleet_page_data(conn)
    assert len(rows) == FLEET.n_assets
    assert rows[0].asset_id == DEGRADING
    assert rows[0].state == "alarm"


@pytest.mark.slow
def test_the_risk_overview_counts_each_assets_last_forecast_of_the_day(seeded: str) -> None:
    with psycopg.connect(seeded) as conn:
        days = risk_history(conn, start=FLEET.start, end=FLEET.end + timedelta(hours=1))
        rows = conn.execute(
            "SELECT asset_id, computed_at, p_fail FROM forecasts ORDER BY computed_at"
        ).fetchall()
    last: dict[tuple[str, date], float] = {}
    for asset_id, computed_at, p_fail in rows:  # ordered by time: the last one of each day wins
        last[asset_id, computed_at.astimezone(UTC).date()] = p_fail
    by_day: dict[date, list[float]] = {}
    for (_, day), p_fail in last.items():
        by_day.setdefault(day, []).append(p_fail)
    assert [d.day.date() for d in days] == sorted(by_day)
    for d in days:
        values = by_day[d.day.date()]
        assert d.n_assets == len(values) == FLEET.n_assets
        assert d.n_likely == sum(p >= LIKELY_P_FAIL for p in values)
        assert d.n_possible == sum(POSSIBLE_P_FAIL <= p < LIKELY_P_FAIL for p in values)
        assert d.mean_p_fail == pytest.approx(sum(values) / len(values))
    assert days[-1].n_likely + days[-1].n_possible >= 1  # the degrading asset
    with pytest.raises(ContractError):
        risk_history(conn, start=FLEET.start, end=FLEET.end, likely=0.1, possible=0.5)


@pytest.mark.slow
def test_bench_dashboard_quick_reports_every_figure() -> None:
    figures = run(quick=True)
    for key in (
        "fleet_page_ms",
        "asset_page_90d_ms",
        "alerts_page_ms",
        "seed_rows_per_s",
        "copy_ceiling_rows_per_s",
    ):
        assert isinstance(figures[key], float | int)
        assert figures[key] > 0  # type: ignore[operator]  # checked numeric on the line above
    assert figures["seed_rows"] == sum(figures["seed_rows_by_table"].values())  # type: ignore[attr-defined]
    assert figures["assets"] == 10


def test_the_fleet_table_shows_the_most_at_risk_rows_and_says_how_many_more() -> None:
    rows = [
        FleetRow(
            asset_id=f"a{i:03d}",
            site_id="s",
            line="l",
            asset_type="pump",
            criticality="normal",
            state="normal",
            score=0.1,
            threshold=1.0,
            forecast=None,
            last_alert=None,
            open_alerts=0,
        )
        for i in range(250)
    ]
    note, table = pages.fleet_top(rows, limit=100).children
    assert "100 most at risk of 250" in note.children
    assert len(table.children[1].children) == 100
    assert "250 assets." in pages.fleet_top(rows, limit=300).children[0].children


def test_the_fleet_tables_forecast_headers_say_which_question_each_answers() -> None:
    header = pages.fleet_table([]).children[0].children.children
    titles = {th.children: str(getattr(th, "title", "")) for th in header}
    assert "if this life ends in a failure" in titles["RUL (interval)"]
    assert "healthy ones too" in titles["p(fail)"]
