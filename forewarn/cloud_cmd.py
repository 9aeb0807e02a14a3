"""`forewarn cloud [run|migrate|status]`: the cloud ingest service, its schema, and how it is doing."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import psycopg

from cloud_service.database import open_pool
from cloud_service.lifecycle.service import LifecycleService
from cloud_service.migrate import migrate
from cloud_service.queries import ingest_status
from cloud_service.service import POOL_NAME, prepare_database, run_service
from cloud_service.settings import CloudSettings
from shared.config import load_settings
from shared.errors import StorageError

__all__ = ["register"]


def _settings(args: argparse.Namespace) -> CloudSettings:
    overrides: dict[str, Any] = {}
    if getattr(args, "workers", None) is not None:
        overrides["ingest"] = {"workers": args.workers}
    return load_settings(CloudSettings, toml_path=args.config, overrides=overrides)


def _run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if not settings.lifecycle.scheduler:
        run_service(settings, stop)  # opens the pool of its upkeep timer and closes it on shutdown
        return 0
    # The scheduler's job table must exist before it starts; prepare_database is idempotent.
    prepare_database(settings)
    with open_pool(settings.db, name=POOL_NAME) as pool:  # the scheduled jobs share it; closed on shutdown
        service = LifecycleService(
            settings, runner_id=f"cloud-{socket.gethostname()}-{os.getpid()}", pool=pool
        )
        service.refresh_rollups()  # storage upkeep at start (partitions ahead), then on the scheduler's timer
        scheduler = service.scheduler()
        scheduler.start()
        try:
            run_service(settings, stop, upkeep_loop=False)  # the scheduler's `rollups` job does the upkeep
        finally:
            scheduler.stop()
    return 0


def _migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    report = migrate(settings.db.conninfo(), allow_timescale=settings.storage.timescaledb == "auto")
    prepare_database(settings)
    applied = ", ".join(report.applied) or "none (up to date)"
    print(f"backend: {report.backend.value}; applied: {applied}; already applied: {report.already_applied}")
    return 0


def _status(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        with psycopg.connect(settings.db.conninfo(), autocommit=True) as conn:
            status = ingest_status(conn)
    except psycopg.Error as exc:
        raise StorageError("database", str(exc).strip()) from exc
    figures = dataclasses.asdict(status)
    if args.json:
        print(json.dumps(figures, default=str))
        return 0
    for key, value in figures.items():
        if key not in ("workers", "storage_jobs"):
            print(f"{key:24s} {value}")
    for worker in status.workers:
        print(f"worker {worker.pop('worker_id')}: {json.dumps(worker, default=str)}")
    for job in status.storage_jobs:
        outcome = job.last_run_status or "not run yet"
        error = f"; last error: {job.last_error}" if job.last_error else ""
        print(
            f"storage job {job.job_id} {job.policy} on {job.table or '-'}: last run {outcome} at "
            f"{job.last_run_started_at or '-'}, {job.total_failures} of {job.total_runs} runs failed{error}"
        )
    return 0


def register(subparsers: Any) -> None:
    """Add `cloud` to the command line."""
    parser = subparsers.add_parser("cloud", help="Run the cloud ingest service, migrate, or show status.")
    parser.add_argument(
        "action",
        nargs="?",
        default="run",
        choices=["run", "migrate", "status"],
        help="What to do (default: run).",
    )
    parser.add_argument("--config", type=Path, default=None, help="The cloud service's TOML file.")
    parser.add_argument("--workers", type=int, default=None, help="Override ingest.workers.")
    parser.add_argument("--json", action="store_true", help="status: print one JSON object.")
    handlers = {"run": _run, "migrate": _migrate, "status": _status}
    parser.set_defaults(handler=lambda args: handlers[args.action](args))


def main(argv: list[str] | None = None) -> int:
    """Run `forewarn cloud` alone (`python -m forewarn.cloud_cmd ...`), e.g. as a supervised subprocess."""
    from forewarn.logs import configure_logging  # noqa: PLC0415 - only this entry point configures logging

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    options, rest = pre.parse_known_args(argv or [])
    parser = argparse.ArgumentParser(prog="forewarn-cloud")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["cloud", *rest])
    configure_logging(options.log_level, "text")
    return int(args.handler(args))


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
