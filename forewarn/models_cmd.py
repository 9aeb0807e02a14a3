"""`forewarn models list|show|approve|deploy|rollback|train|fit|register|schedule`: registry and lifecycle."""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import msgspec
import psycopg

from cloud_service.lifecycle import operations, registry
from cloud_service.lifecycle.service import LifecycleService
from cloud_service.lifecycle.signing import load_private_key
from cloud_service.settings import CloudSettings
from shared.config import load_settings
from shared.errors import StorageError

__all__ = ["register"]


def _settings(args: argparse.Namespace) -> CloudSettings:
    return load_settings(CloudSettings, toml_path=args.config)


def _connect(settings: CloudSettings) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(settings.db.conninfo())
    except psycopg.Error as exc:
        raise StorageError("database", str(exc).strip()) from exc


def _list(args: argparse.Namespace) -> int:
    with _connect(_settings(args)) as conn, conn.transaction():
        models = registry.list_models(conn, target=args.target)
    if args.json:
        print(json.dumps([m.summary() for m in models], default=str))
        return 0
    print(f"{'target':24s} {'ver':>4s} {'type':16s} {'status':10s} {'threshold':>10s} created / reason")
    for m in models:
        line = f"{m.target:24s} {m.version:4d} {m.model_type:16s} {m.status:10s} {m.threshold:10.4g} "
        print(line + f"{m.created_at:%Y-%m-%d %H:%M} {m.reason}")
    return 0


def _show(args: argparse.Namespace) -> int:
    with _connect(_settings(args)) as conn, conn.transaction():
        model = registry.get_model(conn, args.target, args.version)
        if model is None:
            raise StorageError("models", f"no model {args.target} v{args.version}")
        states = registry.gateway_states(conn, args.target, version=args.version)
        drift = registry.drift_history(conn, target=args.target, limit=50)
    summary = model.summary()
    summary["drift"] = [dataclasses.asdict(check) for check in drift if check.version == args.version]
    summary["gateways"] = [
        {
            "gateway_id": s.gateway_id,
            "state": s.state,
            "reason": s.reason,
            "updated_at": s.updated_at.isoformat(),
        }
        for s in states
    ]
    print(json.dumps(summary, indent=None if args.json else 2, default=str))
    return 0


def _approve(args: argparse.Namespace) -> int:
    with _connect(_settings(args)) as conn:
        operations.approve(conn, args.target, args.version, reason=args.reason)
    print(f"approved {args.target} v{args.version}")
    return 0


def _deploy(args: argparse.Namespace) -> int:
    settings = _settings(args)
    key = load_private_key(settings.lifecycle.signing_key)
    with _connect(settings) as conn:
        order = operations.deploy(
            conn,
            settings.mqtt,
            args.target,
            args.version,
            chunk_bytes=settings.lifecycle.chunk_bytes,
            private_key=key,
        )
    print(
        f"deployed {args.target} v{args.version} ({len(order.chunks)} chunk(s)); acks: forewarn models show"
    )
    return 0


def _rollback(args: argparse.Namespace) -> int:
    settings = _settings(args)
    key = load_private_key(settings.lifecycle.signing_key)
    with _connect(settings) as conn:
        order = operations.rollback(
            conn,
            settings.mqtt,
            key,
            args.target,
            to_version=args.to,
            chunk_bytes=settings.lifecycle.chunk_bytes,
        )
    print(f"rollback order sent: {args.target} back to v{order.version}")
    return 0


def _train(args: argparse.Namespace) -> int:
    report = LifecycleService(_settings(args)).train(args.target)
    text = msgspec.json.encode(report)
    print((text if args.json else msgspec.json.format(text, indent=2)).decode())
    return 0 if report.selected is not None else 1


def _schedule(args: argparse.Namespace) -> int:
    service = LifecycleService(_settings(args), runner_id=f"forewarn-{socket.gethostname()}")
    scheduler = service.scheduler()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    scheduler.start()
    try:
        stop.wait()
    finally:
        scheduler.stop()
    return 0


def _fit(args: argparse.Namespace) -> int:
    from edge_agent.settings import EdgeSettings  # noqa: PLC0415 - only `fit` needs the edge settings
    from forewarn.models_fit import fit_recording  # noqa: PLC0415

    edge = load_settings(EdgeSettings, toml_path=args.edge_config)
    results = fit_recording(
        csv_path=args.csv,
        out_dir=args.out,
        settings=edge.pipeline,
        sample_rate_hz=args.sample_rate_hz,
        target=args.target,
        version=args.version,
        seed=args.seed,
        lifecycle=_settings(args).lifecycle,
    )
    for result in results:
        sensors = ", ".join(sorted({name.split(".")[0] for name in result.feature_names}))
        if result.directory is None:
            print(f"forewarn models fit: {result.asset_id}: not written: {result.reason}")
            continue
        print(
            f"forewarn models fit: {result.asset_id}: int8 model on {result.n_rows} healthy windows, "
            f"{len(result.feature_names)} features ({sensors}), "
            f"threshold {result.threshold:.4g}, gates passed; wrote {result.directory} "
            f"(score with: forewarn edge score --model {result.directory} --csv ...)"
        )
    return 0 if all(r.directory is not None for r in results) else 1


def _register(args: argparse.Namespace) -> int:
    from forewarn.models_fit import register_fitted  # noqa: PLC0415 - only `register` needs it

    settings = _settings(args)
    key = load_private_key(settings.lifecycle.signing_key)
    with _connect(settings) as conn, conn.transaction():
        target, version = register_fitted(conn, args.directory, private_key=key, target=args.target)
    print(f"registered {target} v{version} (candidate); next: forewarn models approve {target} {version}")
    return 0


def _add(
    actions: Any, name: str, help_text: str, handler: Any, *, version: bool = True
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = actions.add_parser(name, help=help_text)
    parser.add_argument("--config", type=Path, default=None, help="The cloud service's TOML file.")
    if version:
        parser.add_argument("target", help="Model target (an asset id or an asset type).")
        parser.add_argument("version", type=int, help="Model version.")
    parser.set_defaults(handler=handler)
    return parser


def register(subparsers: Any) -> None:
    """Add `models` to the command line."""
    parser = subparsers.add_parser(
        "models", help="The model registry: list, approve, deploy, roll back, train."
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = _add(actions, "list", "List registered models (newest first).", _list, version=False)
    listing.add_argument("--target", default=None, help="Only this target.")
    listing.add_argument("--json", action="store_true", help="Print JSON.")
    show = _add(actions, "show", "One model: metrics, gates, and each gateway's state.", _show)
    show.add_argument("--json", action="store_true", help="Print one line of JSON.")
    approve = _add(actions, "approve", "Approve a candidate for deployment.", _approve)
    approve.add_argument("--reason", default="approved by an operator", help="Recorded with the approval.")
    _add(actions, "deploy", "Push an approved model to the gateways (signed, retained).", _deploy)
    rollback = _add(
        actions, "rollback", "Send gateways back to an older model (signed order).", _rollback, version=False
    )
    rollback.add_argument("target", help="Model target.")
    rollback.add_argument(
        "--to", type=int, default=None, help="Version to go back to (default: newest retired)."
    )
    train = _add(
        actions, "train", "Train a target now (auto approval deploys the winner).", _train, version=False
    )
    train.add_argument("--target", required=True, help="Model target (an asset id or an asset type).")
    train.add_argument("--json", action="store_true", help="Print one line of JSON.")
    fit = _add(
        actions,
        "fit",
        "Train, quantize and gate an edge model offline from healthy recordings (no database).",
        _fit,
        version=False,
    )
    fit.add_argument(
        "--csv", type=Path, required=True, help="Healthy samples CSV, or a directory of raw_*.csv."
    )
    fit.add_argument("--out", type=Path, required=True, help="Model directory to write.")
    fit.add_argument("--edge-config", type=Path, default=None, help="Gateway TOML (windows, bands, assets).")
    fit.add_argument("--sample-rate-hz", type=float, default=None, help="Vibration rate (default: inferred).")
    fit.add_argument("--target", default=None, help="Model target (default: the asset id).")
    fit.add_argument("--version", type=int, default=1, help="Model version in the manifest.")
    fit.add_argument("--seed", type=int, default=0, help="Seed of the fitting / held-out split.")
    register = _add(
        actions,
        "register",
        "Add a `models fit` directory to the registry as a signed candidate (then approve, deploy).",
        _register,
        version=False,
    )
    register.add_argument("directory", type=Path, help="The directory `forewarn models fit` wrote.")
    register.add_argument("--target", default=None, help="Model target (default: the manifest's).")
    _add(
        actions,
        "schedule",
        "Run the lifecycle scheduler (retraining, drift, push retries, rollups, forecasts) until stopped.",
        _schedule,
        version=False,
    )
