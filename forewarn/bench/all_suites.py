"""`forewarn bench all`: every suite in one run, one JSON document, and the table in docs/benchmarks.md."""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from forewarn.bench.targets import TARGETS

__all__ = ["BEGIN_MARK", "END_MARK", "flatten", "render_table", "run_all", "update_document"]

logger = logging.getLogger(__name__)

BEGIN_MARK = "<!-- forewarn bench all: begin (generated, do not edit) -->"
END_MARK = "<!-- forewarn bench all: end -->"


def run_all(
    suites: Iterable[str], run_suite: Callable[..., dict[str, Any]], *, quick: bool = False
) -> dict[str, Any]:
    """Run `suites` one after the other; a suite that fails is reported with its error, the rest still run."""
    results: dict[str, Any] = {}
    for name in suites:
        print(f"bench all: {name} ...", file=sys.stderr, flush=True)
        try:
            results[name] = run_suite(name, quick=quick)
        except Exception as exc:  # one suite's failure must not lose the others' figures
            logger.exception("bench suite %s failed", name)
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return results


def flatten(figures: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested figures as `a.b.c` keys (lists stay values)."""
    flat: dict[str, Any] = {}
    for key, value in figures.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def _format(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value).replace("|", "/")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.4g}" if isinstance(value, float) else f"{value:,}"


def render_table(results: Mapping[str, Any], machine: str) -> str:
    """The markdown table: figure, value, target and whether it is met, with the machine it ran on."""
    lines = [f"Machine: {machine}.", "", "| figure | value | target | met |", "|---|---|---|---|"]
    for suite, figures in results.items():
        for key, value in flatten(figures).items():
            if key in ("suite", "machine"):
                continue
            name = f"{suite}.{key}"
            target = TARGETS.get(name)
            met = ""
            if target is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
                met = "yes" if target.met(float(value)) else "**no**"
            lines.append(f"| `{name}` | {_format(value)} | {target or ''} | {met} |")
    return "\n".join(lines) + "\n"


def update_document(path: Path, table: str) -> None:
    """Put `table` between the generated-section marks of `path` (appended with them if absent)."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    block = f"{BEGIN_MARK}\n{table}{END_MARK}\n"
    if BEGIN_MARK in text and END_MARK in text:
        before, _, rest = text.partition(BEGIN_MARK)
        _, _, after = rest.partition(END_MARK)
        text = before + block + after.lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n## Latest `forewarn bench all`\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
