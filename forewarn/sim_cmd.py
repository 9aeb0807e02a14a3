"""`forewarn sim`: run a simulated plant live over MQTT, export it to CSV, or replay a CSV recording."""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from pathlib import Path
from typing import Any

from shared.config import load_settings
from shared.errors import ConfigError
from shared.timebase import iso_time, now_ns
from simulators import (
    Publisher,
    PublishStats,
    ReplayStats,
    Scenario,
    SimSettings,
    TruthRecord,
    bundled_scenarios,
    export_scenario,
    iter_messages,
    load_scenario,
    messages_from_recording,
    publish_stream,
)
from simulators.scenario import parse_time

__all__ = ["broker_overrides", "register"]


def broker_overrides(url: str | None) -> dict[str, Any]:
    """Settings overrides from `--broker mqtt://HOST:PORT` (empty without one)."""
    if url is None:
        return {}
    parsed = urllib.parse.urlsplit(url)
    try:
        port = parsed.port or 1883
    except ValueError:
        port = -1
    if parsed.scheme != "mqtt" or not parsed.hostname or port < 1:
        raise ConfigError("sim.mqtt", url, "a broker URL like mqtt://127.0.0.1:1883", "--broker")
    return {"mqtt": {"host": parsed.hostname, "port": port}}


def _settings(args: argparse.Namespace) -> SimSettings:
    return load_settings(SimSettings, toml_path=args.config, overrides=broker_overrides(args.broker))


def _scenario(args: argparse.Namespace) -> Scenario:
    scenario = load_scenario(args.scenario)
    start = getattr(args, "start", None)
    start_ns: int | None = None
    if start == "now":
        start_ns = now_ns() // 1_000_000 * 1_000_000
    elif start is not None:
        start_ns = parse_time("--start", start, "the command line")
    return scenario.with_changes(seed=args.seed, start_ns=start_ns)


def _speed(value: float) -> float:
    if not value >= 0.0 or value == float("inf"):
        raise ConfigError(
            "--speed", value, "a finite factor >= 0 (0: as fast as possible)", "the command line"
        )
    return value


def _progress_line(label: str, stats: PublishStats, fraction: float | None) -> None:
    done = f"{100 * fraction:5.1f}% " if fraction is not None else ""
    at = iso_time(stats.last_ts_ns) if stats.last_ts_ns else "-"
    print(
        f"{label}: {done}at {at}, {stats.messages} messages, {stats.samples} samples,"
        f" {stats.samples_per_s / 1e6:.2f} M samples/s",
        file=sys.stderr,
    )


def _summary(label: str, stats: PublishStats) -> None:
    faults = ", ".join(f"{kind}={count}" for kind, count in sorted(stats.faults.items())) or "none"
    print(
        f"{label}: done: {stats.messages} messages ({stats.events} events), {stats.samples} samples,"
        f" {stats.bytes} bytes in {stats.elapsed_s:.1f} s ({stats.samples_per_s / 1e6:.2f} M samples/s);"
        f" dropped while disconnected: {stats.not_connected + stats.lost_on_disconnect};"
        f" transport faults injected: {faults}",
        file=sys.stderr,
    )


def _run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    scenario = _scenario(args)
    scenario.check_not_future()
    speed = scenario.spec.time.speed if args.speed is None else _speed(args.speed)
    span_ns = max(1, scenario.end_ns - scenario.start_ns)
    truth_file = args.truth.open("w", encoding="utf-8") if args.truth else None

    def on_truth(record: TruthRecord) -> None:
        if truth_file is not None:
            truth_file.write(
                f"{record.asset_id},{iso_time(record.ts_ns)},{record.event},{record.mode},{record.detail}\n"
            )

    def progress(stats: PublishStats) -> None:
        if not args.quiet:
            _progress_line("sim run", stats, (stats.last_ts_ns - scenario.start_ns) / span_ns)

    print(
        f"sim run: scenario {scenario.name} ({len(scenario.asset_ids)} assets, {scenario.n_steps} steps,"
        f" {iso_time(scenario.start_ns)} to {iso_time(scenario.end_ns)}), speed {speed:g}x"
        f" -> {settings.mqtt.host}:{settings.mqtt.port}",
        file=sys.stderr,
    )
    try:
        if truth_file is not None:
            truth_file.write("asset_id,time,event,mode,detail\n")
        with Publisher(
            settings=settings.mqtt,
            client_id=f"forewarn-sim-{scenario.name}",
            max_unpublished=settings.max_unpublished,
            connect_timeout_s=settings.connect_timeout_s,
        ) as publisher:
            messages = iter_messages(scenario, on_truth=on_truth)
            stats = publish_stream(
                messages,
                publisher,
                speed=speed,
                progress=progress,
                progress_interval_s=settings.progress_interval_s,
            )
    finally:
        if truth_file is not None:
            truth_file.close()
    _summary("sim run", stats)
    return 0


def _export(args: argparse.Namespace) -> int:
    scenario = _scenario(args)
    scenario.check_not_future()
    raw_assets = tuple(a for a in args.raw_assets.split(",") if a) if args.raw_assets is not None else None
    for asset_id in raw_assets or ():
        if asset_id not in scenario.asset_ids:
            raise ConfigError("--raw-assets", asset_id, "an asset of the scenario", "the command line")
    every = max(1, scenario.n_steps // 20)

    def progress(index: int, total: int) -> None:
        if not args.quiet and (index % every == 0 or index == total - 1):
            print(f"sim export: step {index + 1}/{total}", file=sys.stderr)

    result = export_scenario(scenario, args.out, raw_assets=raw_assets, progress=progress)
    print(
        f"sim export: {result.feature_rows} feature rows, {result.raw_rows} raw rows, {result.events} events,"
        f" {result.truth_records} ground-truth records ({result.samples_simulated} samples simulated)"
        f" -> {result.out_dir}",
        file=sys.stderr,
    )
    return 0


def _replay(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not args.file.is_file():
        raise ConfigError("FILE", str(args.file), "an existing CSV file", "the command line")
    replay_stats = ReplayStats()

    def progress(stats: PublishStats) -> None:
        if not args.quiet:
            _progress_line("sim replay", stats, None)

    with Publisher(
        settings=settings.mqtt,
        client_id="forewarn-sim-replay",
        max_unpublished=settings.max_unpublished,
        connect_timeout_s=settings.connect_timeout_s,
    ) as publisher:
        messages = messages_from_recording(args.file, batch_samples=args.batch_samples, stats=replay_stats)
        stats = publish_stream(
            messages,
            publisher,
            speed=_speed(args.speed),
            progress=progress,
            progress_interval_s=settings.progress_interval_s,
        )
    _summary("sim replay", stats)
    rejected = ", ".join(f"{k}={v}" for k, v in sorted(replay_stats.rejected.items())) or "none"
    print(f"sim replay: {replay_stats.rows} rows read; rejected: {rejected}", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    del args
    for name in bundled_scenarios():
        scenario = load_scenario(name)
        print(f"{name:10s} {scenario.spec.description}")
    return 0


def _add_broker(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", default=None, help="Broker URL mqtt://HOST:PORT (overrides sim.mqtt).")
    parser.add_argument("--config", type=Path, default=None, help="The sim component's TOML settings file.")
    parser.add_argument("--quiet", action="store_true", help="No progress lines.")


def _add_scenario(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario", required=True, help=f"A bundled scenario ({', '.join(bundled_scenarios())}) or a file."
    )
    parser.add_argument("--seed", type=int, default=None, help="Override the scenario's seed.")


def register(subparsers: Any) -> None:
    """Add `sim` to the command line."""
    parser = subparsers.add_parser("sim", help="Simulate a plant: run live, export to CSV, replay CSV.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    run = actions.add_parser("run", help="Publish a scenario's raw batches and events to a broker.")
    _add_scenario(run)
    _add_broker(run)
    run.add_argument(
        "--speed", type=float, default=None, help="Simulated s per wall s (default: the scenario's; 0: max)."
    )
    run.add_argument(
        "--start", default=None, help="Simulated start: `now` or ISO 8601 (default: the scenario's)."
    )
    run.add_argument("--truth", type=Path, default=None, help="Also write the ground truth to this CSV.")
    run.set_defaults(handler=_run)

    export = actions.add_parser("export", help="Write a scenario's features, raw samples and truth as CSV.")
    _add_scenario(export)
    export.add_argument("--out", type=Path, required=True, help="Output directory.")
    export.add_argument(
        "--raw-assets",
        default=None,
        help="Comma-separated assets to write raw samples of (default: scenario).",
    )
    export.add_argument("--quiet", action="store_true", help="No progress lines.")
    export.set_defaults(handler=_export)

    replay = actions.add_parser(
        "replay", help="Publish a CSV recording (asset_id,time,<sensors>) as batches."
    )
    replay.add_argument("file", type=Path, metavar="FILE.csv", help="Samples or events CSV file.")
    _add_broker(replay)
    replay.add_argument("--speed", type=float, default=0.0, help="Recorded s per wall s (0: max, default).")
    replay.add_argument("--batch-samples", type=int, default=4096, help="Most samples per batch.")
    replay.set_defaults(handler=_replay)

    listing = actions.add_parser("list", help="List the bundled scenarios.")
    listing.set_defaults(handler=_list)
