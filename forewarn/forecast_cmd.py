"""`forewarn forecast fit|predict|evaluate|live`: the failure forecaster on CSV files, and its live jobs.

The logic lives in `cloud_service.forecasting`; this module parses arguments, shows progress on stderr and
prints results. Bad files end in one line naming the file, row and column, with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import psycopg

from cloud_service.forecasting import ForecastConfig, fit, live, predict
from cloud_service.forecasting.csvio import (
    read_events,
    read_header,
    read_predictions,
    read_telemetry,
    read_truth,
    write_predictions,
)
from cloud_service.forecasting.data import History
from cloud_service.forecasting.errors import DataFileError
from cloud_service.forecasting.metrics import evaluate_predictions
from cloud_service.forecasting.store import load_model, save_model
from cloud_service.settings import CloudSettings
from shared.config import load_settings
from shared.errors import ConfigError, StorageError

__all__ = ["register"]

_DEFAULTS = ForecastConfig()


def _progress(args: argparse.Namespace) -> Any:
    if args.quiet:
        return None

    def show(message: str) -> None:
        print(f"forecast: {message}", file=sys.stderr, flush=True)

    return show


def _columns(text: str | None, option: str) -> tuple[str, ...]:
    if not text:
        return ()
    names = tuple(name.strip() for name in text.split(","))
    if any(not name for name in names):
        raise ConfigError(option, text, "a comma-separated list of column names", "the command line")
    return names


def _interval(text: str) -> tuple[float, float]:
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        low, high = -1.0, -1.0
    if not 0.0 < low < high < 1.0:
        raise ConfigError(
            "--interval", text, "two quantiles LOW,HIGH with 0 < LOW < HIGH < 1", "the command line"
        )
    return low, high


def _regime_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= 1")
    return value


def _fit(args: argparse.Namespace) -> int:
    progress = _progress(args)
    if args.horizon <= 0:
        raise ConfigError(
            "--horizon", args.horizon, "must be > 0 (in the data's time unit)", "the command line"
        )
    config = ForecastConfig(
        condition_columns=_columns(args.condition_columns, "--condition-columns"),
        horizon=args.horizon,
        interval=_interval(args.interval),
        min_history_rows=args.min_history_rows,
        n_regimes=args.regimes,
        cv_folds=args.cv_folds,
        seed=args.seed,
    )
    ignored = set(_columns(args.ignore_columns, "--ignore-columns"))
    header = read_header(args.telemetry)
    for name in sorted(ignored - set(header)):
        raise DataFileError(args.telemetry, 1, name, "column to ignore (--ignore-columns) not in the header")
    keep = [name for name in header if name not in {args.id_column, args.time_column, *ignored}]
    telemetry = read_telemetry(
        args.telemetry,
        id_column=args.id_column,
        time_column=args.time_column,
        columns=keep,
        progress=progress,
    )
    for name in config.condition_columns:
        if name not in telemetry.columns:
            raise DataFileError(
                args.telemetry, 1, name, "condition column (--condition-columns) not in the header"
            )
    events = read_events(
        args.events, time_kind=telemetry.time_kind, id_column=args.id_column, time_column=args.time_column
    )
    history = History(
        telemetry.columns, telemetry.assets, tuple(events), telemetry.time_kind, telemetry.source
    )
    model = fit(history, config, progress=progress)
    save_model(model, args.out)
    cv = model.summary["cv"]
    print(
        f"model written to {args.out}: {model.summary['n_assets']} assets, "
        f"{model.summary['n_failures']} failures, "
        f"{model.normalizer.n_regimes_} regime(s) ({model.normalizer.criterion}), "
        f"RUL cap {model.rul_cap:g} ({model.cap_reason}), "
        f"out-of-fold RMSE {cv['rmse']:.4g}, interval coverage {cv['interval_coverage']:.3f}, "
        f"horizon {model.horizon:g}"
    )
    return 0


def _predict(args: argparse.Namespace) -> int:
    progress = _progress(args)
    model = load_model(args.model)
    telemetry = read_telemetry(
        args.telemetry,
        id_column=args.id_column,
        time_column=args.time_column,
        columns=[*model.sensor_columns, *model.condition_columns],
        time_kind=model.time_kind,
        progress=progress,
    )
    events = (
        read_events(
            args.events, time_kind=model.time_kind, id_column=args.id_column, time_column=args.time_column
        )
        if args.events
        else []
    )
    history = History(
        telemetry.columns, telemetry.assets, tuple(events), telemetry.time_kind, telemetry.source
    )
    forecasts = predict(model, history, all_times=args.all_times, progress=progress)
    write_predictions(args.out, forecasts)
    short = len({row.asset_id for row in forecasts if row.short_history})
    note = (
        f" ({short} assets with too little history: flagged short_history=1, wide interval)" if short else ""
    )
    print(f"wrote {len(forecasts)} forecasts for {len(history.assets)} assets to {args.out}{note}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    predictions = read_predictions(args.predictions)
    truth = read_truth(args.truth)
    figures = evaluate_predictions(
        predictions, truth, horizon=args.horizon, alarm_threshold=args.alarm_threshold
    )
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:24s} {value}")
    return 0


def _live(args: argparse.Namespace) -> int:
    """Run a live job now: `refit` (exit 1 if skipped) or `recompute` (exit 1 without a forecaster)."""
    settings = load_settings(CloudSettings, toml_path=args.config)
    try:
        conn = psycopg.connect(settings.db.conninfo(), autocommit=True)
    except psycopg.Error as exc:
        raise StorageError("database", str(exc).strip()) from exc
    with conn:
        if args.live_action == "refit":
            refit_report = live.refit(conn, settings.forecast)
            figures, ok = refit_report.as_dict(), refit_report.version is not None
            text = (
                f"forecaster v{refit_report.version} stored: {refit_report.n_assets} assets, "
                f"{refit_report.n_rows} hours, {refit_report.n_failures} failures, {refit_report.fit_s:.1f} s"
                if ok
                else f"refit skipped: {refit_report.skipped_reason}; kept forecaster "
                f"{refit_report.kept_version if refit_report.kept_version is not None else '(none yet)'}"
            )
        else:
            recompute_report = live.recompute(conn, settings.forecast)
            figures = recompute_report.as_dict()
            ok = recompute_report.forecaster_version is not None
            text = (
                f"{recompute_report.n_forecasts} forecasts stored with forecaster "
                f"v{recompute_report.forecaster_version} ({recompute_report.n_short_history} short history)"
                if ok
                else "no forecaster yet: run `forewarn forecast live refit` first"
            )
    print(json.dumps(figures) if args.json else text)
    return 0 if ok else 1


def _add_columns(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--id-column", default="asset_id", help="Asset id column (default: asset_id).")
    parser.add_argument("--time-column", default="time", help="Time column (default: time).")
    parser.add_argument("--quiet", action="store_true", help="No progress lines on stderr.")


def register(subparsers: Any) -> None:
    """Add `forecast` to the command line."""
    parser = subparsers.add_parser("forecast", help="Forecast remaining useful life and failure probability.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    fit_parser = actions.add_parser(
        "fit", help="Learn a forecaster from telemetry and failure/maintenance events."
    )
    fit_parser.add_argument(
        "--telemetry", type=Path, required=True, help="CSV: asset_id,time,<numeric columns>."
    )
    fit_parser.add_argument(
        "--events", type=Path, required=True, help="CSV: asset_id,time,event (failure|maintenance)."
    )
    fit_parser.add_argument(
        "--condition-columns", default="", help="Operating-condition columns, comma-separated."
    )
    fit_parser.add_argument(
        "--ignore-columns", default="", help="Columns to leave out (e.g. text columns), comma-separated."
    )
    fit_parser.add_argument(
        "--horizon",
        type=float,
        default=_DEFAULTS.horizon,
        help="P(failure) horizon in the data's time unit; ISO 8601 time is in hours (default: 168 = 7 days).",
    )
    fit_parser.add_argument(
        "--interval", default="0.1,0.9", help="RUL interval quantiles (default: 0.1,0.9)."
    )
    fit_parser.add_argument(
        "--min-history-rows",
        type=int,
        default=_DEFAULTS.min_history_rows,
        help="Fewer rows: too short (default: 5).",
    )
    fit_parser.add_argument(
        "--cv-folds",
        type=int,
        default=_DEFAULTS.cv_folds,
        help="Folds of whole assets: fold models and cross-conformal calibration (default: 3).",
    )
    fit_parser.add_argument(
        "--regimes",
        type=_regime_count,
        default=None,
        help="Operating regimes to use (default: chosen by BIC over Gaussian mixtures, printed).",
    )
    fit_parser.add_argument("--seed", type=int, default=0, help="Random seed (default: 0).")
    fit_parser.add_argument("--out", type=Path, required=True, help="Model directory to write.")
    _add_columns(fit_parser)
    fit_parser.set_defaults(handler=_fit)

    predict_parser = actions.add_parser(
        "predict", help="Forecast each asset at its last time (or every time)."
    )
    predict_parser.add_argument("--model", type=Path, required=True, help="Model directory from `fit`.")
    predict_parser.add_argument("--telemetry", type=Path, required=True, help="CSV with the model's columns.")
    predict_parser.add_argument(
        "--events", type=Path, default=None, help="Optional events CSV (restarts lives)."
    )
    predict_parser.add_argument("--out", type=Path, required=True, help="Predictions CSV to write.")
    predict_parser.add_argument(
        "--all-times", action="store_true", help="A forecast at every row, not only the last."
    )
    _add_columns(predict_parser)
    predict_parser.set_defaults(handler=_predict)

    evaluate_parser = actions.add_parser("evaluate", help="Score predictions against the true RUL.")
    evaluate_parser.add_argument(
        "--predictions", type=Path, required=True, help="Predictions CSV from `predict`."
    )
    evaluate_parser.add_argument(
        "--truth", type=Path, required=True, help="CSV: asset_id,rul (at the last time)."
    )
    evaluate_parser.add_argument(
        "--horizon", type=float, default=None, help="Override the predictions' horizon."
    )
    evaluate_parser.add_argument(
        "--alarm-threshold", type=float, default=0.5, help="p_fail alarm level (0.5)."
    )
    evaluate_parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    evaluate_parser.set_defaults(handler=_evaluate)

    live_parser = actions.add_parser(
        "live", help="Run the live forecaster's jobs now, on the cloud database (see [forecast] settings)."
    )
    live_parser.add_argument(
        "live_action",
        choices=("refit", "recompute"),
        help="refit: fit a forecaster on the stored history; recompute: forecast every asset.",
    )
    live_parser.add_argument("--config", type=Path, default=None, help="The cloud service's TOML file.")
    live_parser.add_argument("--json", action="store_true", help="Print the job's report as JSON.")
    live_parser.set_defaults(handler=_live)
