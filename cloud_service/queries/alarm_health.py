"""Alarm-system health per site, computed from the alert event log (ISA-18.2 section 16, EEMUA 191).

The definitions, each counted over the alert raises that were annunciated (not those of an asset out of
service or of a shelved point) within a window `[start, end)`:

* **alerts per asset-week**: raises / (the site's assets x the window in weeks);
* **stale**: alerts still active (no clear logged by `end`) that were raised more than `STALE_AFTER`
  (24 h) before `end`; every active alert counts here, annunciated or not, since a standing alarm stands
  whether or not it is shown;
* **chattering (EEMUA 191 three-in-a-minute)**: an alarm point (asset and rule) raised at least
  `CHATTER_RAISES` (3) times within any `CHATTER_WINDOW` (60 s, both ends included);
* **flood periods (ISA-18.2)**: fixed 10-minute periods, aligned to the hour, in which the site raised
  more than `FLOOD_RAISES` (10) alerts;
* **top-ten share**: the share of the site's raises that came from its `TOP_POINTS` (10) most frequently
  raised alarm points (ISA-18.2 suggests at most 1 % to 5 % on a well-run plant).

Functions take an open connection, only read, and never commit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import psycopg

from shared.errors import ContractError

__all__ = [
    "CHATTER_RAISES",
    "CHATTER_WINDOW",
    "FLOOD_PERIOD",
    "FLOOD_RAISES",
    "STALE_AFTER",
    "TOP_POINTS",
    "AlarmPoint",
    "SiteAlarmHealth",
    "alarm_health",
    "raises_per_hour",
]

STALE_AFTER: Final = timedelta(hours=24)
CHATTER_RAISES: Final = 3
CHATTER_WINDOW: Final = timedelta(seconds=60)
FLOOD_RAISES: Final = 10
FLOOD_PERIOD: Final = timedelta(minutes=10)
TOP_POINTS: Final = 10
_WEEK: Final = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class AlarmPoint:
    """An asset and the rule that fired on it."""

    asset_id: str
    rule: str


@dataclass(frozen=True, slots=True)
class SiteAlarmHealth:
    """One site's alarm-system health over a window (`site_id` is empty for assets without a site)."""

    site_id: str
    assets: int
    raised: int
    points: int  # alarm points raised at least once
    alerts_per_asset_week: float
    stale: int
    chattering: tuple[AlarmPoint, ...]
    flood_periods: int
    periods: int
    top_ten_share: float | None  # None when nothing was raised


_SITE = "coalesce(a.site_id, '')"
_RAISES = f"""
SELECT {_SITE} AS site, e.asset_id, e.rule, e.ts FROM alert_events e LEFT JOIN assets a USING (asset_id)
WHERE e.transition = 'raised' AND e.annunciated AND e.ts >= %(start)s AND e.ts < %(end)s
"""
_ASSETS = f"SELECT {_SITE} AS site, count(*) FROM assets a GROUP BY 1"
_RAISED = f"WITH raises AS ({_RAISES}) SELECT site, count(*) FROM raises GROUP BY site"
_STALE = f"""
SELECT {_SITE} AS site, count(*) FROM alert_events e LEFT JOIN assets a USING (asset_id)
WHERE e.transition = 'raised' AND e.ts < %(end)s - %(stale_after)s
  AND NOT EXISTS (SELECT 1 FROM alert_events c
                  WHERE c.gateway_id = e.gateway_id AND c.alert_id = e.alert_id
                    AND c.transition = 'cleared' AND c.ts < %(end)s)
GROUP BY 1
"""
_CHATTERING = f"""
WITH raises AS ({_RAISES}), counted AS (
    SELECT site, asset_id, rule,
           count(*) OVER (PARTITION BY asset_id, rule ORDER BY ts
                          RANGE BETWEEN %(chatter_window)s PRECEDING AND CURRENT ROW) AS in_window
    FROM raises
)
SELECT site, asset_id, rule FROM counted GROUP BY site, asset_id, rule
HAVING max(in_window) >= %(chatter_raises)s ORDER BY site, asset_id, rule
"""
_FLOODS = f"""
WITH raises AS ({_RAISES})
SELECT site, count(*) FROM (
    SELECT site FROM raises
    GROUP BY site, date_bin(%(flood_period)s, ts, TIMESTAMPTZ '2000-01-01 00:00:00+00')
    HAVING count(*) > %(flood_raises)s
) floods GROUP BY site
"""
_TOP_SHARE = f"""
WITH raises AS ({_RAISES}), per_point AS (
    SELECT site, count(*) AS n,
           row_number() OVER (PARTITION BY site ORDER BY count(*) DESC, asset_id, rule) AS rank
    FROM raises GROUP BY site, asset_id, rule
)
SELECT site, (sum(n) FILTER (WHERE rank <= %(top)s))::float8 / sum(n), count(*) FROM per_point GROUP BY site
"""


_PER_HOUR = f"""
WITH raises AS ({_RAISES})
SELECT site, date_trunc('hour', ts, 'UTC') AS hour, count(*) FROM raises GROUP BY 1, 2 ORDER BY 1, 2
"""


def _by_site(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any]) -> dict[str, Any]:
    return {str(site): value for site, value in conn.execute(sql, params).fetchall()}


def alarm_health(conn: psycopg.Connection[Any], *, start: datetime, end: datetime) -> list[SiteAlarmHealth]:
    """Every site's alarm health over `[start, end)` (see the module's definitions), by site id.

    Args:
        conn: an open connection.
        start: the first time counted.
        end: the first time not counted; "now" for the stale count.

    Raises:
        ContractError: `end` is not after `start`.
    """
    if end <= start:
        raise ContractError("end", end, f"after start ({start})")
    params: dict[str, Any] = {
        "start": start,
        "end": end,
        "stale_after": STALE_AFTER,
        "chatter_window": CHATTER_WINDOW,
        "chatter_raises": CHATTER_RAISES,
        "flood_period": FLOOD_PERIOD,
        "flood_raises": FLOOD_RAISES,
        "top": TOP_POINTS,
    }
    assets = _by_site(conn, _ASSETS, params)
    raised = _by_site(conn, _RAISED, params)
    stale = _by_site(conn, _STALE, params)
    floods = _by_site(conn, _FLOODS, params)
    shares = {str(site): (share, points) for site, share, points in conn.execute(_TOP_SHARE, params)}
    chattering: dict[str, list[AlarmPoint]] = {}
    for site, asset_id, rule in conn.execute(_CHATTERING, params).fetchall():
        chattering.setdefault(str(site), []).append(AlarmPoint(str(asset_id), str(rule)))
    weeks = (end - start) / _WEEK
    periods = math.ceil((end - start) / FLOOD_PERIOD)
    sites = sorted(set(assets) | set(raised) | set(stale))
    return [
        SiteAlarmHealth(
            site_id=site,
            assets=int(assets.get(site, 0)),
            raised=int(raised.get(site, 0)),
            points=int(shares[site][1]) if site in shares else 0,
            alerts_per_asset_week=(
                int(raised.get(site, 0)) / (int(assets[site]) * weeks) if assets.get(site) else 0.0
            ),
            stale=int(stale.get(site, 0)),
            chattering=tuple(chattering.get(site, ())),
            flood_periods=int(floods.get(site, 0)),
            periods=periods,
            top_ten_share=float(shares[site][0]) if site in shares else None,
        )
        for site in sites
    ]


def raises_per_hour(
    conn: psycopg.Connection[Any], *, start: datetime, end: datetime
) -> dict[str, list[tuple[datetime, int]]]:
    """Annunciated raises per site and UTC hour within `[start, end)` (hours without a raise left out)."""
    counts: dict[str, list[tuple[datetime, int]]] = {}
    rows = conn.execute(_PER_HOUR, {"start": start, "end": end}).fetchall()
    for site, hour, n in rows:
        counts.setdefault(str(site), []).append((hour, int(n)))
    return counts
