"""Reads of the stored failure forecasts for the dashboard: an asset's forecast history, and the fleet's
risk day by day.

The forecasts' writes (and each asset's latest forecast) are in `cloud_service.forecasting.repository`.
Functions take an open connection, only read, and never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import class_row

from cloud_service.forecasting.repository import ForecastRecord
from cloud_service.rollups import BUCKET_ORIGIN, align_down, align_up
from shared.errors import ContractError

__all__ = [
    "LIKELY_P_FAIL",
    "POSSIBLE_P_FAIL",
    "RiskDay",
    "fleet_latest_forecasts",
    "forecast_history",
    "risk_history",
]

# P(failure within the horizon) from which an asset counts as likely (and possibly) to fail.
LIKELY_P_FAIL = 0.5
POSSIBLE_P_FAIL = 0.1


def forecast_history(
    conn: psycopg.Connection[Any], asset_id: str, *, start: datetime, end: datetime
) -> list[ForecastRecord]:
    """The asset's forecasts computed within `[start, end)`, oldest first."""
    with conn.cursor(row_factory=class_row(ForecastRecord)) as cur:
        return cur.execute(
            "SELECT asset_id, computed_at, as_of, rul_h, rul_low_h, rul_high_h, p_fail, horizon_h, "
            "short_history, forecaster_version FROM forecasts "
            "WHERE asset_id = %s AND computed_at >= %s AND computed_at < %s ORDER BY computed_at",
            (asset_id, start, end),
        ).fetchall()


def fleet_latest_forecasts(conn: psycopg.Connection[Any]) -> list[ForecastRecord]:
    """Each registered asset's most recent forecast: one index lookup per asset, where
    `latest_forecasts` sorts the whole history (the same rows for the assets in `assets`)."""
    with conn.cursor(row_factory=class_row(ForecastRecord)) as cur:
        return cur.execute(
            "SELECT f.asset_id, f.computed_at, f.as_of, f.rul_h, f.rul_low_h, f.rul_high_h, f.p_fail, "
            "f.horizon_h, f.short_history, f.forecaster_version FROM assets a CROSS JOIN LATERAL ("
            "SELECT * FROM forecasts WHERE asset_id = a.asset_id ORDER BY computed_at DESC LIMIT 1) f "
            "ORDER BY f.asset_id"
        ).fetchall()


@dataclass(frozen=True, slots=True)
class RiskDay:
    """The fleet's risk on one day, from each asset's last forecast of the day."""

    day: datetime
    n_assets: int
    n_likely: int
    n_possible: int
    mean_p_fail: float
    max_p_fail: float

    @property
    def n_unlikely(self) -> int:
        """Assets forecast below `possible` that day."""
        return self.n_assets - self.n_likely - self.n_possible


_RISK = """
SELECT day, count(*) AS n_assets,
       count(*) FILTER (WHERE p_fail >= %(likely)s) AS n_likely,
       count(*) FILTER (WHERE p_fail >= %(possible)s AND p_fail < %(likely)s) AS n_possible,
       avg(p_fail)::float8 AS mean_p_fail, max(p_fail)::float8 AS max_p_fail
FROM (
    SELECT DISTINCT ON (asset_id, day) asset_id, day, p_fail
    FROM (SELECT asset_id, computed_at, p_fail, date_bin(%(step)s, computed_at, %(origin)s) AS day
          FROM forecasts WHERE computed_at >= %(start)s AND computed_at < %(end)s) f
    ORDER BY asset_id, day, computed_at DESC
) last_of_day
GROUP BY day ORDER BY day
"""


def risk_history(
    conn: psycopg.Connection[Any],
    *,
    start: datetime,
    end: datetime,
    likely: float = LIKELY_P_FAIL,
    possible: float = POSSIBLE_P_FAIL,
) -> list[RiskDay]:
    """Per UTC day of `[start, end)` (widened to whole days): how many assets were forecast likely
    (p(fail) >= `likely`) or possibly (>= `possible`) to fail within the horizon, from each asset's last
    forecast of the day; days without forecasts are left out.

    Raises:
        ContractError: `possible` is not below `likely`, or either is outside (0, 1].
    """
    if not 0.0 < possible < likely <= 1.0:
        raise ContractError("likely", (possible, likely), "0 < possible < likely <= 1")
    day = timedelta(days=1)
    params = {
        "step": day,
        "origin": BUCKET_ORIGIN,
        "start": align_down(start, day),
        "end": align_up(end, day),
        "likely": likely,
        "possible": possible,
    }
    with conn.cursor(row_factory=class_row(RiskDay)) as cur:
        return cur.execute(_RISK, params).fetchall()
