"""Reads of the stored failure forecasts for the dashboard: an asset's forecast history.

The forecasts' writes (and each asset's latest forecast) are in `cloud_service.forecasting.repository`.
Functions take an open connection, only read, and never commit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

from cloud_service.forecasting.repository import ForecastRecord

__all__ = ["forecast_history"]


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
