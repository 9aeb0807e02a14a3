"""`forewarn bench dashboard`: how long the dashboard's pages take to build on a large fleet.

A throwaway PostgreSQL is seeded with binary COPY (`forewarn.bench.dashboard_seed`): 1,000 assets on 50
gateways, 90 days of aggregates at a 10-minute period, their rollups, hourly feature means, forecasts
every 6 hours, alerts with their diagnoses, advice and assets out of service. Figures:

- `fleet_page_ms`, `asset_page_90d_ms`, `alerts_page_ms`: server time to build each page, median over
  `loads` loads, each in its own transaction on one connection: the page's reads
  (`dashboard.page_data`) and the tables and figures its callbacks return, serialised to JSON as Dash
  sends them (the fleet page: its table of the 100 most at-risk assets, by default, with their states,
  out of service included, and probable failure modes, and its 30-day risk overview). The asset page is
  loaded for a different asset each time, the degrading ones first, over the "last 90 days" range, with
  its diagnosis and advice panels and its "why this alert" panel on the newest alert. The alerts page is
  timed as its refresh draws it: expired shelves swept, the alerts needing attention by state, the
  alarm-health table and raises per hour.
- `seed_rows`, `seed_rows_per_s`: rows written in all tables, and per second over the whole seeding
  (reference data, COPY, commits and ANALYZE); beside `copy_ceiling_rows_per_s`, binary COPY of one day
  of the same aggregates stream, pre-built, into an unindexed, unpartitioned copy of the table (best of
  three), and their ratio (the seeding also writes wider rows into indexed, partitioned tables).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import plotly.io
import psycopg

from cloud_service.copy_encoding import AGGREGATE_BULK_COLUMNS, aggregate_copy_data
from cloud_service.migrate import migrate
from cloud_service.queries import (
    ATTENTION_STATES,
    LIKELY_P_FAIL,
    POSSIBLE_P_FAIL,
    alarm_health,
    alert_detail,
    alert_snapshots,
    expire_shelves,
    feature_baselines,
    list_alerts,
    raises_per_hour,
)
from dashboard import diagnosis_panel, figures, pages, why_panel
from dashboard.alerts_page import SHOWN_STATES, alert_sections, health_table, rate_figure
from dashboard.page_data import (
    asset_diagnosis_data,
    asset_page_data,
    fleet_page_data,
    fleet_risk_data,
    risk_span,
)
from dashboard.settings import AlertsSettings
from forewarn.bench.dashboard_seed import Fleet, aggregate_blocks, feature_levels, seed_fleet, simulate_day
from forewarn.localservices import PostgresServer, running, temporary_directory

__all__ = ["TARGET_MS", "run"]

TARGET_MS = 1000.0
_RANGE = "last 90 days"


def _to_json(outputs: object) -> str:
    """A callback's outputs as Dash sends them (its JSON encoder is plotly's)."""
    text: str = plotly.io.json.to_json_plotly(outputs)
    return text


def _median_ms(conn: psycopg.Connection[Any], load: Callable[[int], object], loads: int) -> float:
    """Median wall time of `loads` calls of `load(i)`, each in its own transaction."""
    times = []
    for index in range(loads):
        start = time.perf_counter()
        with conn.transaction():
            load(index)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def _fleet_page(conn: psycopg.Connection[Any]) -> str:
    rows = fleet_page_data(conn)
    now = datetime.now(UTC)
    risk = fleet_risk_data(conn, end=now)
    overview = figures.risk_figure(
        risk, likely=LIKELY_P_FAIL, possible=POSSIBLE_P_FAIL, span=risk_span(now), revision=""
    )
    return _to_json([pages.fleet_top(rows, limit=pages.FLEET_ROWS_SHOWN), overview])


def _asset_page(conn: psycopg.Connection[Any], asset_id: str) -> str:
    hours, bucket_s = pages.RANGES[_RANGE]
    end = datetime.now(UTC)
    data = asset_page_data(
        conn,
        asset_id,
        start=end - timedelta(hours=hours),
        end=end,
        resolution=timedelta(seconds=bucket_s),
        feature=None,
    )
    threshold = data.status.threshold if data.status is not None else None
    parts = [
        figures.score_figure(data.series, threshold=threshold, alerts=data.alerts, revision=asset_id),
        figures.feature_figure(data.feature_points, feature=data.feature or "", revision=asset_id),
        figures.forecast_figure(data.forecasts, revision=asset_id),
    ]
    tables = [
        pages.asset_alerts_table(data.alerts),
        pages.model_periods_table(data.periods),
        *diagnosis_panel.panels(asset_diagnosis_data(conn, asset_id)),
    ]
    if data.alerts:  # the "why this alert" panel, on the newest alert, as the page opens it
        newest = data.alerts[-1]
        detail = alert_detail(conn, newest.gateway_id, newest.alert_id)
        baselines = feature_baselines(conn, detail) if detail else {}
        snapshots = alert_snapshots(conn, newest.gateway_id, newest.alert_id)
        tables.append(why_panel.panel(detail, baselines, snapshots))
    return _to_json([*parts, *tables])


def _alerts_page(conn: psycopg.Connection[Any]) -> str:
    """What the Alerts page's refresh reads and draws: expired shelves swept, the alerts needing attention
    in their state sections, the alarm-health table and the raises per hour of the health window."""
    end = datetime.now(UTC)
    start = end - timedelta(days=AlertsSettings().health_window_days)
    expire_shelves(conn)
    alerts = list_alerts(conn, states=ATTENTION_STATES, limit=500)
    parts = [
        alert_sections(alerts, list(SHOWN_STATES)),
        health_table(alarm_health(conn, start=start, end=end)),
        rate_figure(raises_per_hour(conn, start=start, end=end), window=(start, end)),
    ]
    return _to_json(parts)


def _copy_ceiling(conn: psycopg.Connection[Any], fleet: Fleet) -> float:
    """Rows per second of binary COPY of one pre-built day of aggregates into an unindexed copy."""
    blocks = aggregate_blocks(fleet, simulate_day(fleet, 0, feature_levels(fleet)), 0)
    data = aggregate_copy_data(blocks, [1] * len(blocks), received_us=0)
    n_rows = sum(len(b) for b in blocks)
    conn.execute("CREATE TABLE copy_ceiling (LIKE aggregates)")
    conn.commit()
    best = 0.0
    for _ in range(3):
        conn.execute("TRUNCATE copy_ceiling")
        conn.commit()
        start = time.perf_counter()
        statement = f"COPY copy_ceiling ({AGGREGATE_BULK_COLUMNS}) FROM STDIN (FORMAT BINARY)"
        with conn.cursor() as cur, cur.copy(statement) as copy:
            copy.write(data)
        conn.commit()
        best = max(best, n_rows / (time.perf_counter() - start))
    conn.execute("DROP TABLE copy_ceiling")
    conn.commit()
    return best


def _page_figures(conn: psycopg.Connection[Any], fleet: Fleet, loads: int) -> dict[str, float]:
    degrading = [i for i in range(fleet.n_assets) if fleet.is_degrading(i)]
    others = [i for i in range(fleet.n_assets) if not fleet.is_degrading(i)]
    assets = [fleet.asset_id(i) for i in (degrading + others)[:loads]]
    return {
        "fleet_page_ms": _median_ms(conn, lambda _: _fleet_page(conn), loads),
        "asset_page_90d_ms": _median_ms(conn, lambda i: _asset_page(conn, assets[i % len(assets)]), loads),
        "alerts_page_ms": _median_ms(conn, lambda _: _alerts_page(conn), loads),
    }


def run(*, quick: bool = False, loads: int = 20) -> dict[str, object]:
    """Seed a throwaway PostgreSQL with a fleet and time the pages on it.

    Args:
        quick: a small fleet (10 assets, 3 days) and 3 loads a page, for tests.
        loads: loads per page (the median is reported).
    """
    if quick:
        fleet = Fleet(gateways=2, assets_per_gateway=5, days=3, period=timedelta(minutes=10))
        loads = 3
    else:
        fleet = Fleet(gateways=50, assets_per_gateway=20, days=90, period=timedelta(minutes=10))
    with temporary_directory("forewarn-bench-pg-") as pg_dir, running(PostgresServer(pg_dir)) as pg:
        pg.create_database("bench")
        migrate(pg.conninfo("bench"))
        with psycopg.connect(pg.conninfo("bench")) as conn:
            ceiling = _copy_ceiling(conn, fleet)
            seeded = seed_fleet(conn, fleet)
            timings = _page_figures(conn, fleet, loads)
    return {
        "assets": fleet.n_assets,
        "gateways": fleet.gateways,
        "days": fleet.days,
        "period_s": fleet.period.total_seconds(),
        "loads": loads,
        **{key: round(value, 1) for key, value in timings.items()},
        "target_ms": TARGET_MS,
        "pages_under_target": all(value < TARGET_MS for value in timings.values()),
        "seed_rows": seeded.total_rows,
        "seed_rows_by_table": seeded.rows,
        "seed_s": round(seeded.seconds, 1),
        "seed_rows_per_s": round(seeded.total_rows / seeded.seconds),
        "copy_ceiling_rows_per_s": round(ceiling),
        "seed_to_copy_ceiling_ratio": round(seeded.total_rows / seeded.seconds / ceiling, 3),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "when": datetime.now(UTC).replace(microsecond=0).isoformat(),
    }
