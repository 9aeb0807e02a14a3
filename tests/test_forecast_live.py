"""The live forecaster on a real PostgreSQL: refit from stored history, recompute, versions, scheduling."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest

from cloud_service.forecasting import live
from cloud_service.forecasting.repository import (
    active_forecaster,
    import_hourly_history,
    latest_forecasts,
    list_forecasters,
)
from cloud_service.forecasting.settings import ForecastSettings
from cloud_service.forecasting.synthetic import make_fleet
from cloud_service.lifecycle.service import LifecycleService
from cloud_service.settings import CloudSettings
from forewarn.cli import main
from shared.config import load_settings

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
FAST = {"cv_folds": 2, "min_history_h": 5}


def store_fleet(
    conninfo: str, prefix: str, *, n_assets: int, censored_fraction: float, seed: int = 0
) -> list[str]:
    """Store a synthetic fleet as one-hour aggregates ending an hour before NOW; its asset ids."""
    fleet = make_fleet(
        n_assets,
        n_sensors=4,
        n_regimes=0,
        mean_life=80.0,
        censored_fraction=censored_fraction,
        seed=seed,
        id_prefix=prefix,
    )
    end_hour = int(NOW.timestamp()) // 3600 - 1
    ids: list[str] = []
    hours: list[int] = []
    rows: list[np.ndarray] = []
    for asset in fleet.history.assets:
        # each asset's last row is one hour before NOW: a running fleet (or one that just failed)
        offset = end_hour - int(asset.time[-1])
        ids.extend([asset.asset_id] * len(asset))
        hours.extend(int(t) + offset for t in asset.time)
        rows.append(asset.values)
    last = {a.asset_id: int(a.time[-1]) for a in fleet.history.assets}
    events = [
        (e.asset_id, int(e.time) + end_hour - last[e.asset_id], e.kind.value) for e in fleet.history.events
    ]
    values = np.vstack(rows)
    scores = np.abs(values[:, -1]) / 10.0
    with psycopg.connect(conninfo, autocommit=True) as conn:
        import_hourly_history(
            conn,
            asset_ids=ids,
            hours=np.asarray(hours, dtype=np.int64),
            features=values,
            feature_names=[f"sim.{c}" for c in fleet.history.columns],
            scores=scores,
            events=events,
        )
    return [a.asset_id for a in fleet.history.assets]


def test_refit_then_recompute_stores_a_versioned_forecast_for_every_asset(
    db: str, unique_id: Callable[[str], str]
) -> None:
    assets = store_fleet(db, unique_id("pump"), n_assets=14, censored_fraction=0.4)
    settings = ForecastSettings.model_validate(FAST)
    with psycopg.connect(db, autocommit=True) as conn:
        report = live.refit(conn, settings, now=NOW)
        assert report.version is not None, report.skipped_reason
        assert report.n_failures >= 3
        (stored,) = list_forecasters(conn)
        assert (stored.version, stored.status) == (report.version, "active")
        assert stored.horizon_h == 168.0
        assert stored.n_assets == len(assets)
        assert "rmse" in stored.cv_metrics
        # The failure probability's base rate and out-of-fold skill are stored with the forecaster. Every
        # life here (about 80 h) is shorter than the 168 h horizon, so each known row is followed by a
        # failure; the censored assets' rows are not known (not counted as survivals).
        assert stored.cv_metrics["p_fail_base_rate"] == 1.0
        assert {"p_fail_brier", "p_fail_base_rate_brier", "p_fail_shrunk_to_base_rate"} <= set(
            stored.cv_metrics
        )

        done = live.recompute(conn, settings, now=NOW)
        assert done.forecaster_version == report.version
        forecasts = latest_forecasts(conn)
    assert sorted(f.asset_id for f in forecasts) == sorted(assets)
    for f in forecasts:
        assert f.forecaster_version == report.version
        assert f.computed_at == NOW
        assert NOW - timedelta(hours=2) <= f.as_of <= NOW
        assert 0.0 <= f.rul_low_h <= f.rul_h <= f.rul_high_h
        assert 0.0 <= f.p_fail <= 1.0
        assert f.horizon_h == 168.0


def test_too_few_failures_skip_the_refit_and_keep_the_previous_forecaster(
    db: str, unique_id: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    store_fleet(db, unique_id("fan"), n_assets=10, censored_fraction=0.3)
    settings = ForecastSettings.model_validate(FAST)
    later = NOW + timedelta(hours=1)
    with psycopg.connect(db, autocommit=True) as conn:
        first = live.refit(conn, settings, now=NOW)
        assert first.version is not None
        strict = ForecastSettings.model_validate({**FAST, "min_failures": 1000})
        with caplog.at_level("WARNING", logger="cloud_service.forecasting.live"):
            skipped = live.refit(conn, strict, now=later)
        assert skipped.version is None
        assert skipped.kept_version == first.version
        assert "at least 1000 needed" in skipped.skipped_reason
        assert f"keeping forecaster v{first.version}" in caplog.text
        current = active_forecaster(conn)
        assert current is not None
        assert current.version == first.version
        # data the forecaster refuses (an unknown condition feature) is skipped the same way
        refused = live.refit(
            conn, ForecastSettings.model_validate({**FAST, "condition_features": ["no.such"]}), now=later
        )
        assert refused.version is None
        assert "no.such" in refused.skipped_reason
        assert refused.kept_version == first.version
        assert len(list_forecasters(conn)) == 1
        # forecasts still come from the kept forecaster
        done = live.recompute(conn, settings, now=later)
        assert done.forecaster_version == first.version
        assert {f.forecaster_version for f in latest_forecasts(conn)} == {first.version}


def test_a_fleet_without_enough_failures_gets_no_forecaster_and_no_forecasts(
    db: str, unique_id: Callable[[str], str]
) -> None:
    store_fleet(db, unique_id("mill"), n_assets=3, censored_fraction=1.0)
    settings = ForecastSettings.model_validate(FAST)
    with psycopg.connect(db, autocommit=True) as conn:
        report = live.refit(conn, settings, now=NOW)
        assert report.version is None
        assert report.kept_version is None
        assert report.n_failures == 0
        assert active_forecaster(conn) is None
        done = live.recompute(conn, settings, now=NOW)
        assert done.forecaster_version is None
        assert done.n_forecasts == 0
        assert latest_forecasts(conn) == []


def test_history_is_hourly_with_scores_merged_feature_sets_and_gaps_carried_forward(db: str) -> None:
    hour0 = int(NOW.timestamp()) // 3600 - 10
    settings = ForecastSettings()
    with psycopg.connect(db, autocommit=True) as conn:
        import_hourly_history(
            conn,
            asset_ids=["a-1", "a-1", "a-1"],
            hours=np.array([hour0, hour0 + 1, hour0 + 2], dtype=np.int64),
            features=np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),
            feature_names=["x.one", "x.two"],
            scores=np.array([0.1, 0.2, 0.3]),
            events=[("a-1", hour0 + 1, "maintenance")],
        )
        assert live.refresh_input(conn, settings, end=NOW) == 3
        # late data from a gateway with another feature set (no x.two): hour0 + 2 gets a second period,
        # hour0 + 3 carries x.two forward
        import_hourly_history(
            conn,
            asset_ids=["a-1", "a-1"],
            hours=np.array([hour0 + 2, hour0 + 3], dtype=np.int64),
            features=np.array([[9.0], [7.0]]),
            feature_names=["x.one"],
            scores=np.array([0.5, 0.4]),
            feature_spec="other/1",
            gateway_id="import2",
        )
        assert live.refresh_input(conn, settings, end=NOW) == 4  # the late-data window covers them
        result = live.build_history(conn, settings, end=NOW)
    history = result.history
    assert history.columns == ("x.one", "x.two", "score.mean", "score.max")
    (asset,) = history.assets
    assert asset.time.tolist() == [float(hour0 + h) for h in range(4)]
    assert asset.values[:, 0].tolist() == [1.0, 3.0, 7.0, 7.0]  # (5 + 9) / 2 in hour0 + 2
    assert asset.values[:, 1].tolist() == [2.0, 4.0, 6.0, 6.0]
    assert np.allclose(asset.values[:, 2], [0.1, 0.2, 0.4, 0.4])
    assert np.allclose(asset.values[:, 3], [0.1, 0.2, 0.5, 0.4])
    assert [(e.asset_id, e.time, e.kind.value) for e in history.events] == [
        ("a-1", float(hour0 + 1), "maintenance")
    ]
    assert result.as_of["a-1"] == datetime.fromtimestamp((hour0 + 4) * 3600, tz=UTC)


def test_hours_stored_after_a_refresh_that_found_no_data_are_still_summarised(db: str) -> None:
    """A cloud started before its gateways (or a replay of old data) refreshes at the clock first."""
    settings = ForecastSettings()
    old_hour = int(NOW.timestamp()) // 3600 - 24 * 20  # far older than the late-data window
    with psycopg.connect(db, autocommit=True) as conn:
        assert live.refresh_input(conn, settings, end=NOW) == 0
        import_hourly_history(
            conn,
            asset_ids=["a-1", "a-1"],
            hours=np.array([old_hour, old_hour + 1], dtype=np.int64),
            features=np.array([[1.0], [2.0]]),
            feature_names=["x.one"],
            scores=np.array([0.1, 0.2]),
        )
        assert live.refresh_input(conn, settings, end=NOW) == 2
        assert live.refresh_input(conn, settings, end=NOW) == 2  # the watermark stops at the data


def _cloud_settings(conninfo: str, *, enabled: bool) -> CloudSettings:
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    return load_settings(
        CloudSettings,
        environ={},
        overrides={
            "db": {"host": params["host"], "port": int(str(params["port"])), "dbname": params["dbname"]},
            "forecast": {"enabled": enabled, **FAST},
        },
    )


def test_the_scheduler_runs_the_forecast_jobs_with_their_state_in_the_job_table(db: str) -> None:
    assert {"forecast-refit", "forecast-recompute"}.isdisjoint(
        LifecycleService(_cloud_settings(db, enabled=False)).scheduler().jobs
    )
    service = LifecycleService(_cloud_settings(db, enabled=True), runner_id="test")
    scheduler = service.scheduler()
    assert {"forecast-refit", "forecast-recompute"} <= set(scheduler.jobs)
    scheduler.start()
    try:
        assert {"forecast-refit", "forecast-recompute"} <= set(scheduler.next_run_times())
    finally:
        scheduler.stop()
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("UPDATE lifecycle_jobs SET next_run_at = now() - interval '1 minute'")
    assert scheduler.run_job("forecast-refit")  # an empty database: skipped, which is not a failure
    assert scheduler.run_job("forecast-recompute")
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT job_id, last_status, runs, last_runner, next_run_at > now() FROM lifecycle_jobs "
            "WHERE job_id LIKE 'forecast-%' ORDER BY job_id"
        ).fetchall()
    assert rows == [
        ("forecast-recompute", "ok", 1, "test", True),
        ("forecast-refit", "ok", 1, "test", True),
    ]


def test_forewarn_forecast_live_runs_refit_and_recompute_now(
    db: str, unique_id: Callable[[str], str], workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = psycopg.conninfo.conninfo_to_dict(db)
    config = workdir / "cloud.toml"
    config.write_text(
        f'[db]\nhost = "{params["host"]}"\nport = {params["port"]}\ndbname = "{params["dbname"]}"\n'
        "[forecast]\ncv_folds = 2\n"
    )
    assert main(["forecast", "live", "recompute", "--config", str(config)]) == 1  # no forecaster yet
    assert "no forecaster yet" in capsys.readouterr().out
    assets = store_fleet(db, unique_id("press"), n_assets=10, censored_fraction=0.3)
    assert main(["forecast", "live", "refit", "--config", str(config), "--json"]) == 0
    refit = json.loads(capsys.readouterr().out)
    assert refit["version"] == 1
    assert main(["forecast", "live", "recompute", "--config", str(config)]) == 0
    assert f"{len(assets)} forecasts stored with forecaster v1" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_forecast_live_quick_stores_a_consistent_forecast_for_every_asset() -> None:
    from forewarn.bench.forecast_live import run  # noqa: PLC0415 - imported where it is exercised

    figures = run(quick=True)
    assert figures["forecaster_version"] == 1, figures["refit_skipped"]
    assert figures["refit_failures"] >= 3
    assert figures["forecasts_stored"] == figures["forecasts_consistent"] == figures["assets"]
    assert figures["dropped_assets"] == []
    assert figures["import_rows"] > 0
    # The live p(fail) scored against what happened: refit and recompute as of two earlier cutoffs.
    assert figures["rolling_cutoffs"] == 2
    assert figures["rolling_forecasts"] == 2 * figures["assets"]
    assert sum(row["forecasts"] for row in figures["rolling_reliability"]) == figures["rolling_forecasts"]
    rate = figures["rolling_failure_rate"]
    assert figures["rolling_hindsight_base_rate_brier"] == pytest.approx(rate * (1 - rate), abs=1e-4)
    assert 0.0 <= figures["rolling_brier"] <= 1.0
    assert figures["rolling_p_fail_quantiles"] == sorted(figures["rolling_p_fail_quantiles"])
