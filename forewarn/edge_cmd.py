"""`forewarn edge --config gateway.toml` (the edge agent) and `forewarn edge score` (offline scoring)."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from shared.config import load_settings

if TYPE_CHECKING:
    from edge_agent.offline import OfflineSummary

__all__ = ["register"]


def _run_agent(args: argparse.Namespace) -> int:
    from edge_agent.agent import EdgeAgent  # noqa: PLC0415 - keep `forewarn --help` fast
    from edge_agent.settings import EdgeSettings  # noqa: PLC0415

    settings = load_settings(EdgeSettings, toml_path=args.config)
    agent = EdgeAgent(settings)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        del frame
        print(f"forewarn edge: {signal.Signals(signum).name}, stopping", flush=True)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    print(f"forewarn edge: gateway {settings.gateway_id} running (SIGTERM or Ctrl-C stops)", flush=True)
    agent.run(stop)
    return 0


def _baseline_line(summary: OfflineSummary) -> str:
    """How the baseline learned: its warm-up, the windows it learned and the shifts that paused it."""
    if summary.learn_first_s:
        warmup = f"warm-up on the first {summary.learn_first_s:g} s of the recording (--learn-first)"
    elif summary.learn_interval_s:
        warmup = (
            f"warm-up on {summary.warmup_windows} windows, one per {summary.learn_interval_s:g} s of data"
        )
    else:
        warmup = f"warm-up on the first {summary.warmup_windows} windows"
    line = f"{warmup}; {summary.baseline_learned} window(s) learned in all"
    if summary.baseline_shifts:
        line += (
            f"; learning paused {summary.baseline_shifts} time(s) by a level shift not confirmed as a new "
            "operating state"
        )
    return line


def _score(args: argparse.Namespace) -> int:
    from edge_agent.offline import score_csv, warmup_advice  # noqa: PLC0415 - keep `forewarn --help` fast
    from edge_agent.settings import EdgeSettings  # noqa: PLC0415

    settings = load_settings(EdgeSettings, toml_path=args.config)
    summary = score_csv(
        csv_path=args.csv,
        out_path=args.out,
        model_path=args.model,
        settings=settings.pipeline,
        sample_rate_hz=args.sample_rate_hz,
        intra_op_threads=settings.models.intra_op_threads,
        learn_first_s=args.learn_first,
    )
    unscored = ", ".join(f"{count} {reason}" for reason, count in sorted(summary.windows_unscored.items()))
    print(
        f"forewarn edge score: {summary.windows_scored} of {summary.windows} windows scored "
        f"({', '.join(summary.assets)}) with {summary.model_version}"
        + (f"; not scored: {unscored}" if unscored else "")
        + f"; {summary.alerts_raised} alert(s) raised, {summary.alerts_cleared} cleared; "
        f"wrote {summary.out_path}"
    )
    if summary.model_version == "baseline":
        print(f"forewarn edge score: baseline: {_baseline_line(summary)}")
    if advice := warmup_advice(summary):
        print(f"forewarn edge score: {advice}")
    if summary.rejected:
        print(f"forewarn edge score: batches flagged by stream checks: {dict(summary.rejected)}")
    return 0


def _handler(args: argparse.Namespace) -> int:
    if getattr(args, "edge_action", None) == "score":
        return _score(args)
    if args.config is None:
        args.parser.error("--config is required to run the agent")
    return _run_agent(args)


def register(subparsers: Any) -> None:
    """Add `edge` (run the agent) and `edge score` to the command line."""
    parser = subparsers.add_parser(
        "edge",
        help="Run the edge agent (`forewarn edge --config gateway.toml`), or score a CSV offline.",
        description="Run the edge agent until SIGTERM/SIGINT, or `score` a recorded CSV offline.",
    )
    parser.add_argument("--config", type=Path, default=None, help="The gateway's TOML file.")
    parser.set_defaults(handler=_handler, parser=parser, edge_action=None)
    actions = parser.add_subparsers(dest="edge_action", metavar="ACTION")
    run = actions.add_parser("run", help="Run the agent (the same as `forewarn edge --config ...`).")
    run.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="The gateway's TOML file.")
    score = actions.add_parser("score", help="Score a recorded raw CSV with the edge pipeline, offline.")
    score.add_argument(
        "--model", type=Path, default=None, help="A model directory or .onnx file (default: the baseline)."
    )
    score.add_argument("--csv", type=Path, required=True, help="A samples CSV, or a directory of raw_*.csv.")
    score.add_argument(
        "--sample-rate-hz",
        type=float,
        default=None,
        help="Vibration rate if not configured (default: inferred).",
    )
    score.add_argument("--out", type=Path, required=True, help="Where to write per-window scores (CSV).")
    score.add_argument(
        "--learn-first",
        type=float,
        default=None,
        metavar="S",
        help=(
            "Baseline: learn every window of the first S seconds (they must be healthy), then score "
            "(default: `pipeline.baseline.learn_first_s`, else the warm-up of `warmup_windows`)."
        ),
    )
    score.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help="Gateway TOML for the pipeline settings (optional).",
    )
