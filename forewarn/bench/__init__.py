"""Benchmarks: `forewarn bench SUITE --json` prints one JSON object of measured figures.

Each suite is a function returning a dict of named figures; ratios are computed against their ceilings
within the same run, because the machines are shared and noisy.
"""

from __future__ import annotations

__all__ = ["SUITES"]

# Suite name -> "module:function" returning dict[str, object]; a part adds its line when it is built.
SUITES: dict[str, str] = {
    "contracts": "forewarn.bench.contracts:run",
    "ingest": "forewarn.bench.ingest:run",
    "sim": "forewarn.bench.sim:run",
    "edge": "forewarn.bench.edge:run",
    "retrain": "forewarn.bench.retrain:run",
    "forecast": "forewarn.bench.forecast:run",
    "forecast-live": "forewarn.bench.forecast_live:run",
    "connectors": "forewarn.bench.connectors:run",
    "fuzz": "forewarn.bench.fuzz:run",
    "dashboard": "forewarn.bench.dashboard:run",
    "diagnosis": "forewarn.bench.diagnosis:run",
    "scaling": "forewarn.bench.scaling:run",
}
