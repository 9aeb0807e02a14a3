"""A simulated fleet for `forewarn bench dashboard`, written with binary COPY: aggregates, their hourly and
daily rollups, the forecasters' hourly feature means, forecasts, alerts and their diagnoses, advice,
assets out of service, assets and gateways.

Every table is filled from numpy arrays laid out in PostgreSQL's binary COPY format (the aggregates by the
write path's own `aggregate_copy_data`), so the seeding costs about what the database takes to store the
rows. The rollups are computed here from the same arrays, exactly as `refresh_rollups` would compute them
(the test checks that), so that the fleet is seeded at the speed of COPY rather than of the refresh.

The fleet: `assets_per_gateway` assets per gateway, one aggregate per asset and `period`. Healthy assets
score around a third of their threshold; one asset in `_DEGRADING_EVERY` degrades over its last weeks (a
squared ramp of its features and score) and crosses its threshold before the end, raising an alert; the
others raise a few short alerts at random. Forecasts are computed every `_FORECAST_EVERY`. Every alert has
the gateway's diagnosis (the degrading assets' an outer-race defect in zone C, with a cloud diagnosis
beside it; a third of the others imbalance, the rest `unknown`); each degrading asset has an open advice
and a closed one; one asset in `_OUT_OF_SERVICE_EVERY` is out of service.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from cloud_service.copy_encoding import AGGREGATE_BULK_COLUMNS, PG_EPOCH_US, aggregate_copy_data
from cloud_service.forecasting.repository import ForecasterRecord, insert_forecaster
from cloud_service.rollups import record_refreshed_through
from cloud_service.settings import StorageSettings
from shared.features import DEFAULT_SPEC
from shared.messages import AggregateBlock, ModelRef

__all__ = [
    "Fleet",
    "SeedReport",
    "aggregate_blocks",
    "copy_stream",
    "feature_levels",
    "seed_fleet",
    "simulate_day",
]

_THRESHOLD = 1.0
_WINDOWS_PER_PERIOD = 60
_DEGRADING_EVERY = 20
_OUT_OF_SERVICE_EVERY = 50
_FORECAST_EVERY = timedelta(hours=6)
_HORIZON_H = 168.0
_MODEL = ModelRef(version="3", kind="onnx")
_TEXT_OID = 25
_FLOAT8_OID = 701
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = b"\xff\xff"
_DAY = timedelta(days=1)
_HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Fleet:
    """The simulated fleet's shape: gateways, assets per gateway, days of history and the period."""

    gateways: int
    assets_per_gateway: int
    days: int
    period: timedelta
    end: datetime = field(default_factory=lambda: _floor(datetime.now(UTC), _DAY))
    seed: int = 15

    @property
    def n_assets(self) -> int:
        """Assets in the fleet."""
        return self.gateways * self.assets_per_gateway

    @property
    def start(self) -> datetime:
        """The first period's start."""
        return self.end - self.days * _DAY

    @property
    def periods_per_day(self) -> int:
        """Periods in one day (the period divides an hour)."""
        return int(_DAY / self.period)

    def asset_id(self, index: int) -> str:
        """The id of asset `index` (all ids have the same length)."""
        return f"a{index:05d}"

    def gateway_id(self, index: int) -> str:
        """The id of gateway `index`."""
        return f"gw{index:04d}"

    def is_degrading(self, index: int) -> bool:
        """Whether asset `index` degrades towards a failure in the last weeks."""
        return index % _DEGRADING_EVERY == _DEGRADING_EVERY // 2


@dataclass(frozen=True, slots=True)
class SeedReport:
    """Rows written per table and the time the whole seeding took."""

    rows: dict[str, int]
    seconds: float

    @property
    def total_rows(self) -> int:
        """Rows written in all tables."""
        return sum(self.rows.values())


def _floor(ts: datetime, step: timedelta) -> datetime:
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    return epoch + step * ((ts - epoch) // step)


def _pg_us(ts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Unix nanoseconds as PostgreSQL's binary timestamps (µs since 2000-01-01 UTC)."""
    return ts // 1000 - PG_EPOCH_US


def _ns(ts: datetime) -> int:
    return int(ts.timestamp()) * 1_000_000_000


def copy_stream(columns: Sequence[npt.NDArray[Any]]) -> bytes:
    """A binary COPY stream of fixed-width columns, each an array of one value per row already in its
    PostgreSQL binary form (big-endian numbers, or a subarray of bytes)."""
    n_rows = len(columns[0])
    fields: list[tuple[Any, ...]] = [("n_fields", ">i2")]
    for index, column in enumerate(columns):
        fields += [(f"len{index}", ">i4"), (f"value{index}", column.dtype, column.shape[1:])]
    rows = np.zeros(n_rows, dtype=np.dtype(fields))
    rows["n_fields"] = len(columns)
    for index, column in enumerate(columns):
        rows[f"len{index}"] = column.dtype.itemsize * int(np.prod(column.shape[1:], dtype=np.int64))
        rows[f"value{index}"] = column
    return _COPY_SIGNATURE + rows.tobytes() + _COPY_TRAILER


def _text_column(values: Sequence[str]) -> npt.NDArray[np.uint8]:
    """Text values of one byte length as a column of bytes."""
    raw = b"".join(value.encode() for value in values)
    return np.frombuffer(raw, dtype=np.uint8).reshape(len(values), -1)


def _constant_column(value: bytes, n_rows: int) -> npt.NDArray[np.uint8]:
    return np.broadcast_to(np.frombuffer(value, dtype=np.uint8), (n_rows, len(value)))


def _text_array(values: Sequence[str]) -> bytes:
    """A `text[]` value in binary form: header, then each element's length and bytes."""
    parts = [np.array([1, 0, _TEXT_OID, len(values), 1], dtype=">i4").tobytes()]
    for value in values:
        raw = value.encode()
        parts.append(len(raw).to_bytes(4, "big") + raw)
    return b"".join(parts)


def _float8_array_column(values: npt.NDArray[np.float64]) -> npt.NDArray[Any]:
    """Rows of equal-length `float8[]` values in binary form."""
    n = values.shape[1]
    dtype = np.dtype([("header", ">i4", (5,)), ("cells", [("len", ">i4"), ("value", ">f8")], (n,))])
    out = np.zeros(len(values), dtype=dtype)
    out["header"] = (1, 0, _FLOAT8_OID, n, 1)
    out["cells"]["len"] = 8
    out["cells"]["value"] = values
    return out


def _numeric_column(values: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
    """Non-negative integers below 10^12 as `numeric` in binary form: three base-10000 digits (PostgreSQL
    strips the leading zero digits when it reads them)."""
    dtype = np.dtype([("header", ">i2", (4,)), ("digits", ">i2", (3,))])
    out = np.zeros(len(values), dtype=dtype)
    out["header"] = (3, 2, 0, 0)  # ndigits, weight, sign (positive), display scale
    out["digits"][:, 0] = values // 100_000_000
    out["digits"][:, 1] = values // 10_000 % 10_000
    out["digits"][:, 2] = values % 10_000
    return out


def _copy(conn: psycopg.Connection[Any], table: str, columns: str, data: bytes) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(data)


@dataclass(frozen=True, slots=True)
class _Day:
    """One day of the whole fleet: per asset and period, the score and the feature statistics."""

    start_ns: npt.NDArray[np.int64]  # (periods,)
    score_mean: npt.NDArray[np.float32]  # (assets, periods)
    score_max: npt.NDArray[np.float32]
    stats: npt.NDArray[np.float32]  # (assets, periods, 3, features): mean, min, max

    @property
    def n_above(self) -> npt.NDArray[np.int64]:
        """Windows above the threshold per period: all of them when the mean passes it, a tenth when only
        the highest does."""
        above_mean = self.score_mean > _THRESHOLD
        above_max = self.score_max > _THRESHOLD
        return np.where(above_mean, _WINDOWS_PER_PERIOD, np.where(above_max, _WINDOWS_PER_PERIOD // 10, 0))


def _degradation(fleet: Fleet, times_ns: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Per asset and time, 0 while healthy rising to 1.5 at the end for the degrading assets (a squared
    ramp over their last `min(days, 21)` days, so that their scores cross the threshold)."""
    ramp_ns = _ns(fleet.end) - np.int64(min(fleet.days, 21)) * 86_400 * 10**9
    fraction = np.clip((times_ns - ramp_ns) / (_ns(fleet.end) - ramp_ns), 0.0, 1.0) ** 2
    is_degrading = np.array([fleet.is_degrading(i) for i in range(fleet.n_assets)])
    return np.where(is_degrading[:, None], 1.5 * fraction[None, :], 0.0)


def simulate_day(fleet: Fleet, day: int, levels: npt.NDArray[np.float64]) -> _Day:
    """Day `day` of the fleet (its random draws depend on the fleet's seed and the day only)."""
    rng = np.random.default_rng([fleet.seed, day])
    start = _ns(fleet.start + day * _DAY)
    period_ns = int(fleet.period.total_seconds()) * 10**9
    starts = start + np.arange(fleet.periods_per_day, dtype=np.int64) * period_ns
    shape = (fleet.n_assets, fleet.periods_per_day)
    wear = _degradation(fleet, starts)
    score_mean = 0.3 * np.abs(rng.normal(1.0, 0.3, size=shape)) + wear
    score_max = score_mean * (1.0 + np.abs(rng.normal(0.3, 0.1, size=shape)))
    mean = levels[:, None, :] * (
        1.0 + 0.05 * rng.normal(size=(*shape, levels.shape[1])) + 0.5 * wear[..., None]
    )
    spread = np.abs(levels[:, None, :]) * (0.1 + 0.02 * np.abs(rng.normal(size=mean.shape)))
    stats = np.stack([mean, mean - spread, mean + spread], axis=2).astype(np.float32)
    return _Day(starts, score_mean.astype(np.float32), score_max.astype(np.float32), stats)


def aggregate_blocks(fleet: Fleet, day: _Day, day_index: int) -> list[AggregateBlock]:
    """The day's aggregates as each gateway sends them: one block per gateway, period after period."""
    per = fleet.assets_per_gateway
    n_periods = len(day.start_ns)
    period_ns = int(fleet.period.total_seconds()) * 10**9
    names = list(DEFAULT_SPEC.feature_names)
    blocks = []
    n_above = day.n_above
    for g in range(fleet.gateways):
        assets = slice(g * per, (g + 1) * per)
        # rows ordered by period, then asset (as a gateway's forwarder queues them)
        stats = day.stats[assets].transpose(1, 0, 2, 3).reshape(n_periods * per, 3, len(names))
        seq0 = day_index * n_periods * per
        blocks.append(
            AggregateBlock(
                gateway_id=fleet.gateway_id(g),
                feature_spec=DEFAULT_SPEC.spec_id,
                feature_names=names,
                assets=[fleet.asset_id(i) for i in range(g * per, (g + 1) * per)],
                models=[_MODEL],
                asset=np.tile(np.arange(per), n_periods).tolist(),
                model=[0] * (n_periods * per),
                seq=list(range(seq0, seq0 + n_periods * per)),
                period_start_ns=np.repeat(day.start_ns, per).tolist(),
                period_end_ns=np.repeat(day.start_ns + period_ns, per).tolist(),
                score_mean=day.score_mean[assets].T.reshape(-1).astype(np.float64).tolist(),
                score_max=day.score_max[assets].T.reshape(-1).astype(np.float64).tolist(),
                threshold=[_THRESHOLD] * (n_periods * per),
                n_windows=[_WINDOWS_PER_PERIOD] * (n_periods * per),
                n_above_threshold=n_above[assets].T.reshape(-1).tolist(),
                stats=stats.astype("<f4").tobytes(),
            )
        )
    return blocks


def _rollup_columns(
    asset_ids: Sequence[str],
    bucket_ns: npt.NDArray[np.int64],
    score_mean: npt.NDArray[np.float32],
    **sums: Any,
) -> list[npt.NDArray[Any]]:
    """`rollup_hourly`/`rollup_daily` rows of (assets, buckets, periods in a bucket) score arrays."""
    n_assets, n_buckets, _ = score_mean.shape
    return [
        _text_column([a for a in asset_ids for _ in range(n_buckets)]),
        _pg_us(np.tile(bucket_ns, n_assets)).astype(">i8"),
        np.full(n_assets * n_buckets, score_mean.shape[2], dtype=">i8"),
        score_mean.astype(np.float64).sum(axis=2).reshape(-1).astype(">f8"),
        sums["score_max"].max(axis=2).reshape(-1).astype(">f4"),
        _numeric_column(np.full(n_assets * n_buckets, score_mean.shape[2] * _WINDOWS_PER_PERIOD)),
        _numeric_column(sums["n_above"].sum(axis=2).reshape(-1)),
    ]


_ROLLUP_COLUMNS = "asset_id, bucket, n_periods, score_mean_sum, score_max, n_windows, n_above"


def _write_rollups(conn: psycopg.Connection[Any], fleet: Fleet, day: _Day) -> dict[str, int]:
    per_hour = int(_HOUR / fleet.period)
    hours = fleet.periods_per_day // per_hour
    asset_ids = [fleet.asset_id(i) for i in range(fleet.n_assets)]
    hourly = _rollup_columns(
        asset_ids,
        day.start_ns[::per_hour],
        day.score_mean.reshape(fleet.n_assets, hours, per_hour),
        score_max=day.score_max.reshape(fleet.n_assets, hours, per_hour),
        n_above=day.n_above.reshape(fleet.n_assets, hours, per_hour),
    )
    daily = _rollup_columns(
        asset_ids,
        day.start_ns[:1],
        day.score_mean[:, None, :],
        score_max=day.score_max[:, None, :],
        n_above=day.n_above[:, None, :],
    )
    _copy(conn, "rollup_hourly", _ROLLUP_COLUMNS, copy_stream(hourly))
    _copy(conn, "rollup_daily", _ROLLUP_COLUMNS, copy_stream(daily))
    return {"rollup_hourly": len(hourly[0]), "rollup_daily": len(daily[0])}


def _write_forecast_hourly(conn: psycopg.Connection[Any], fleet: Fleet, day: _Day) -> int:
    """The forecasters' hourly means (features by sorted name), as `refresh_hourly` computes them."""
    per_hour = int(_HOUR / fleet.period)
    hours = fleet.periods_per_day // per_hour
    names = list(DEFAULT_SPEC.feature_names)
    order = np.argsort(names)
    means = day.stats[:, :, 0, :].astype(np.float64).reshape(fleet.n_assets, hours, per_hour, len(names))
    period_ns = int(fleet.period.total_seconds()) * 10**9
    n_rows = fleet.n_assets * hours
    hour_ns = day.start_ns[::per_hour]
    columns = [
        _text_column([fleet.asset_id(i) for i in range(fleet.n_assets) for _ in range(hours)]),
        _pg_us(np.tile(hour_ns, fleet.n_assets)).astype(">i8"),
        _constant_column(_text_array([names[i] for i in order]), n_rows),
        _float8_array_column(means.mean(axis=2)[..., order].reshape(n_rows, len(names))),
        day.score_mean.astype(np.float64)
        .reshape(fleet.n_assets, hours, per_hour)
        .mean(axis=2)
        .reshape(-1)
        .astype(">f8"),
        day.score_max.astype(np.float64)
        .reshape(fleet.n_assets, hours, per_hour)
        .max(axis=2)
        .reshape(-1)
        .astype(">f8"),
        np.full(n_rows, per_hour, dtype=">i8"),
        _pg_us(np.tile(hour_ns + per_hour * period_ns, fleet.n_assets)).astype(">i8"),
    ]
    _copy(
        conn,
        "forecast_hourly",
        "asset_id, hour, names, means, score_mean, score_max, n_periods, last_end",
        copy_stream(columns),
    )
    return n_rows


def _write_reference(conn: psycopg.Connection[Any], fleet: Fleet) -> int:
    """Sites, gateways (online, heartbeat just now) and assets; returns the feature set's id."""
    sites = 1 + fleet.gateways // 10
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO sites (site_id, name) VALUES (%s, %s)",
            [(f"site{s}", f"Site {s}") for s in range(sites)],
        )
        cur.executemany(
            "INSERT INTO gateways (gateway_id, site_id, state, status_ts, status_received_at, metrics) "
            "VALUES (%s, %s, 'online', now(), now(), %s::jsonb)",
            [
                (fleet.gateway_id(g), f"site{g // 10}", json.dumps({"queue.depth": 0, "uplink.bytes_out": 0}))
                for g in range(fleet.gateways)
            ],
        )
        cur.executemany(
            "INSERT INTO assets (asset_id, gateway_id, site_id, asset_type, line, criticality) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            [
                (
                    fleet.asset_id(i),
                    fleet.gateway_id(i // fleet.assets_per_gateway),
                    f"site{i // fleet.assets_per_gateway // 10}",
                    ("pump", "fan", "motor", "compressor")[i % 4],
                    f"line {i // fleet.assets_per_gateway % 4 + 1}",
                    ("low", "normal", "high", "critical")[i % 4],
                )
                for i in range(fleet.n_assets)
            ],
        )
        row = cur.execute(
            "INSERT INTO feature_sets (feature_spec, feature_names) VALUES (%s, %s) RETURNING feature_set_id",
            (DEFAULT_SPEC.spec_id, list(DEFAULT_SPEC.feature_names)),
        ).fetchone()
        days = fleet.days + 1
        for week in range(0, days + 7, 7):
            for parent in ("aggregates", "heartbeats"):
                cur.execute(
                    "SELECT forewarn_ensure_partition(%s::regclass, %s)", (parent, fleet.start + week * _DAY)
                )
    if row is None:  # pragma: no cover - RETURNING always yields the row
        raise psycopg.DataError("feature set id not returned")
    return int(row[0])


def _crossings(fleet: Fleet, day: _Day) -> dict[int, tuple[int, float]]:
    """Per degrading asset whose mean passed the threshold this day: when (ns) and at what score first."""
    found: dict[int, tuple[int, float]] = {}
    above = day.score_mean > _THRESHOLD
    for asset in np.flatnonzero(above.any(axis=1)):
        if fleet.is_degrading(int(asset)):
            first = int(np.argmax(above[asset]))
            found[int(asset)] = (int(day.start_ns[first]), float(day.score_mean[asset, first]))
    return found


def _alert_rows(fleet: Fleet, crossings: dict[int, tuple[int, float]]) -> list[tuple[Any, ...]]:
    """The degrading assets' open alerts at their crossings, and the others' short cleared ones."""
    rng = np.random.default_rng([fleet.seed, 1])
    span_ns = _ns(fleet.end) - _ns(fleet.start)
    rows: list[tuple[Any, ...]] = []
    top = json.dumps([{"feature": DEFAULT_SPEC.feature_names[0], "value": 2.0, "baseline": 1.0}])
    for asset in range(fleet.n_assets):
        gateway = fleet.gateway_id(asset // fleet.assets_per_gateway)
        raised = [(*crossings[asset], "open")] if asset in crossings else []
        raised += [
            (_ns(fleet.start) + int(rng.integers(span_ns)), 1.1, "cleared") for _ in range(rng.poisson(1.5))
        ]
        for number, (ns, score, state) in enumerate(raised):
            at = datetime.fromtimestamp(ns / 1e9, tz=UTC)
            cleared = at + _HOUR if state == "cleared" else None
            rows.append(
                (
                    gateway,
                    f"{fleet.asset_id(asset)}-{number}",
                    fleet.asset_id(asset),
                    state,
                    "critical" if state == "open" else "warning",
                    at,
                    cleared,
                    score,
                    _THRESHOLD,
                    _MODEL.version,
                    _MODEL.kind,
                    top,
                    "score above threshold",
                    cleared or at,
                )
            )
    return rows


def _write_alerts(conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]]) -> int:
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY alerts (gateway_id, alert_id, asset_id, state, severity, raised_at, cleared_at, score, "
            "threshold, model_version, model_kind, top_features, message, updated_at) FROM STDIN"
        ) as copy,
    ):
        for row in rows:
            copy.write_row(row)
    return len(rows)


def _diagnosis_of(asset_id: str, number: int, *, is_open: bool) -> tuple[Any, ...]:
    """Mode, confidence, evidence (JSON), shaft Hz, velocity RMS and zone of one seeded alert."""
    if is_open:
        evidence = [
            {
                "name": "bpfo x1",
                "value": 0.031,
                "freq_hz": 176.2,
                "floor": 0.004,
                "baseline": 0.005,
                "is_found": True,
            },
            {
                "name": "bpfo x2",
                "value": 0.012,
                "freq_hz": 352.4,
                "floor": 0.004,
                "baseline": 0.004,
                "is_found": True,
            },
        ]
        return ("outer_race", 0.8, json.dumps(evidence), 24.8, 5.1, "C")
    if (len(asset_id) + number) % 3 == 0:
        evidence = [{"name": "1x", "value": 0.4, "freq_hz": 24.8, "baseline": 0.1, "is_found": True}]
        return ("imbalance", 0.6, json.dumps(evidence), 24.8, 2.1, "B")
    return ("unknown", 0.0, "[]", 24.8, 1.2, "A")


def _write_diagnoses(conn: psycopg.Connection[Any], alerts: list[tuple[Any, ...]]) -> int:
    """Each alert's diagnosis by its gateway, and the cloud's too for the open (degrading) ones."""
    written = 0
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY alert_diagnoses (gateway_id, alert_id, source, asset_id, ts, mode, confidence, evidence, "
            "shaft_hz, velocity_rms_mm_s, iso_zone) FROM STDIN"
        ) as copy,
    ):
        for number, (gateway, alert_id, asset_id, state, _severity, raised_at, *_) in enumerate(alerts):
            is_open = state == "open"
            diagnosis = _diagnosis_of(asset_id, number, is_open=is_open)
            for source in ("edge", "cloud") if is_open else ("edge",):
                copy.write_row((gateway, alert_id, source, asset_id, raised_at, *diagnosis))
                written += 1
    return written


def _write_advice(conn: psycopg.Connection[Any], alerts: list[tuple[Any, ...]], end: datetime) -> int:
    """Per open alert (a degrading asset), an open advice built from its diagnosis, and a closed one."""
    rows: list[tuple[Any, ...]] = []
    for _, alert_id, asset_id, state, _severity, raised_at, *_ in alerts:
        if state != "open":
            continue
        inputs = {
            "asset_type": "pump",
            "lead_time_h": 84.0,
            "diagnosis": {
                "alert_id": alert_id,
                "mode": "outer_race",
                "confidence": 0.8,
                "iso_zone": "C",
                "velocity_rms_mm_s": 5.1,
                "ts": raised_at.isoformat(),
            },
        }
        action = "Inspect the bearing (outer race defect): plan the bearing replacement."
        earlier = raised_at - 30 * _DAY
        rows += [
            (
                asset_id,
                raised_at,
                end,
                "outer_race",
                action,
                "plan",
                raised_at + timedelta(hours=84),
                json.dumps(inputs),
                "open",
                None,
                None,
                "",
            ),
            (
                asset_id,
                earlier,
                earlier + _DAY,
                "imbalance",
                "Balance the rotor.",
                "plan",
                earlier + _DAY,
                "{}",
                "closed",
                earlier + _DAY,
                "imbalance",
                "rotor balanced",
            ),
        ]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO asset_advice (asset_id, created_at, updated_at, mode, action, urgency, due_by, "
            "inputs, state, closed_at, found_mode, closing_note) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s)",
            rows,
        )
    return len(rows)


def _write_out_of_service(conn: psycopg.Connection[Any], fleet: Fleet) -> int:
    """One asset in `_OUT_OF_SERVICE_EVERY` out of service, since a day before the end."""
    assets = [fleet.asset_id(i) for i in range(3, fleet.n_assets, _OUT_OF_SERVICE_EVERY)]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO asset_out_of_service (asset_id, since, set_by, reason) VALUES (%s, %s, 'bench', "
            "'planned maintenance')",
            [(asset_id, fleet.end - _DAY) for asset_id in assets],
        )
    return len(assets)


def _write_forecasts(conn: psycopg.Connection[Any], fleet: Fleet) -> int:
    """A forecast per asset every `_FORECAST_EVERY`: beyond the horizon while healthy; for the degrading
    assets, the time left to the end of their ramp plus two days, with an interval of +-30 %."""
    version = insert_forecaster(
        conn,
        ForecasterRecord(
            train_start=fleet.start,
            train_end=fleet.end,
            n_assets=fleet.n_assets,
            n_rows=0,
            n_failures=0,
            horizon_h=_HORIZON_H,
            columns=[],
            cv_metrics={},
            fit_s=0.0,
            metadata_json="{}",
            estimators=b"",
        ),
    )
    step_ns = int(_FORECAST_EVERY.total_seconds()) * 10**9
    times = np.arange(_ns(fleet.start) + step_ns, _ns(fleet.end) + 1, step_ns, dtype=np.int64)
    failure_ns = _ns(fleet.end) + 2 * 86_400 * 10**9
    wear = _degradation(fleet, times)  # (assets, times)
    rul_h = np.where(wear > 0, (failure_ns - times)[None, :] / 3.6e12, 2 * _HORIZON_H)
    p_fail = np.where(wear > 0, np.clip(1.0 - rul_h / (2 * _HORIZON_H), 0.0, 1.0), 0.01)
    n = rul_h.size
    us = np.tile(_pg_us(times), fleet.n_assets).astype(">i8")
    columns = [
        _text_column([fleet.asset_id(i) for i in range(fleet.n_assets) for _ in range(len(times))]),
        us,
        us,
        rul_h.reshape(-1).astype(">f8"),
        (0.7 * rul_h).reshape(-1).astype(">f8"),
        (1.3 * rul_h).reshape(-1).astype(">f8"),
        p_fail.reshape(-1).astype(">f8"),
        np.full(n, _HORIZON_H, dtype=">f8"),
        np.zeros(n, dtype=np.uint8),
        np.full(n, version, dtype=">i4"),
    ]
    _copy(
        conn,
        "forecasts",
        "asset_id, computed_at, as_of, rul_h, rul_low_h, rul_high_h, p_fail, horizon_h, short_history, "
        "forecaster_version",
        copy_stream(columns),
    )
    return n


def feature_levels(fleet: Fleet) -> npt.NDArray[np.float64]:
    """Each asset's healthy level of each feature (assets, features), in sensor units."""
    shape = (fleet.n_assets, len(DEFAULT_SPEC.feature_names))
    return np.random.default_rng([fleet.seed, 0]).uniform(0.5, 5.0, size=shape)


def seed_fleet(conn: psycopg.Connection[Any], fleet: Fleet) -> SeedReport:
    """Write the whole fleet (in autocommit or the caller's transaction; commits once per day of data).

    Returns:
        The rows written per table and the seconds it took, ANALYZE included.
    """
    begin = time.perf_counter()
    rows = {"aggregates": 0, "rollup_hourly": 0, "rollup_daily": 0, "forecast_hourly": 0}
    feature_set_id = _write_reference(conn, fleet)
    levels = feature_levels(fleet)
    received_us = int(time.time() * 1e6) - PG_EPOCH_US
    crossings: dict[int, tuple[int, float]] = {}
    for index in range(fleet.days):
        day = simulate_day(fleet, index, levels)
        blocks = aggregate_blocks(fleet, day, index)
        data = aggregate_copy_data(blocks, [feature_set_id] * len(blocks), received_us=received_us)
        _copy(conn, "aggregates", AGGREGATE_BULK_COLUMNS, data)
        rows["aggregates"] += sum(len(b) for b in blocks)
        for table, count in _write_rollups(conn, fleet, day).items():
            rows[table] += count
        rows["forecast_hourly"] += _write_forecast_hourly(conn, fleet, day)
        for asset, crossing in _crossings(fleet, day).items():
            crossings.setdefault(asset, crossing)
        conn.commit()
    conn.execute(
        "INSERT INTO forewarn_meta (key, value) VALUES ('forecast_hourly_through', %s) "
        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        (fleet.end.isoformat(),),
    )
    # as `run_upkeep` records it: the pages read the lookback's hours raw
    record_refreshed_through(conn, fleet.end - timedelta(hours=StorageSettings().rollup_lookback_h))
    alerts = _alert_rows(fleet, crossings)
    rows["alerts"] = _write_alerts(conn, alerts)
    rows["alert_diagnoses"] = _write_diagnoses(conn, alerts)
    rows["asset_advice"] = _write_advice(conn, alerts, fleet.end)
    rows["asset_out_of_service"] = _write_out_of_service(conn, fleet)
    rows["forecasts"] = _write_forecasts(conn, fleet)
    conn.commit()
    conn.execute("ANALYZE")
    conn.commit()
    return SeedReport(rows, time.perf_counter() - begin)
