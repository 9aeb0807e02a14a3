"""`forewarn bench scaling --quick`: every figure docs/scaling.md uses is measured and emitted."""

from __future__ import annotations

import pytest

from forewarn.bench import SUITES
from forewarn.bench.all_suites import flatten

_PER_WORKERS = (
    "backlog_rows_per_s",
    "backlog_messages_per_s",
    "live_rows_per_s",
    "publisher_rows_per_s",
    "worker_cpu_us_per_row",
    "backlog_to_one_worker_ratio",
    "backlog_per_worker_to_one_worker_ratio",
    "backlog_to_write_path_ratio",
    "publisher_to_backlog_ratio",
)
_PER_CALLBACK = ("rps", "p50_ms", "p95_ms", "server_cpu_ms_per_request", "to_client_ceiling_ratio")
_KEYS = (
    "ingest.raw_copy_rows_per_s",
    "ingest.write_path_rows_per_s",
    *(f"ingest.workers_{n}.{key}" for n in (1, 2, 3) for key in _PER_WORKERS),
    "training.one_process_s_per_target",
    "training.one_process_targets_per_h",
    "training.two_processes_s_per_target",
    "training.two_processes_targets_per_h",
    "training.two_to_one_process_ratio",
    "dashboard.client_ceiling_rps",
    *(f"dashboard.{name}.{key}" for name in ("fleet_table", "fleet_risk") for key in _PER_CALLBACK),
)


@pytest.mark.slow
def test_bench_scaling_quick_emits_every_figure() -> None:
    from forewarn.bench.scaling import run  # noqa: PLC0415 - imported where it is exercised

    assert SUITES["scaling"] == "forewarn.bench.scaling:run"
    figures = flatten(run(quick=True))
    missing = [key for key in _KEYS if key not in figures]
    assert not missing, missing
    not_positive = [key for key in _KEYS if not (isinstance(figures[key], int | float) and figures[key] > 0)]
    assert not not_positive, {key: figures[key] for key in not_positive}
    assert figures["ingest.workers_1.backlog_to_one_worker_ratio"] == 1.0
    assert len(figures["load_average"]) == 3
