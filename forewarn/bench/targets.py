"""The targets the issues set for benchmark figures, so `forewarn bench all` can put each figure beside it.

Keys are `SUITE.FIGURE` (nested figures joined with dots). A target is a comparison and a value; a figure
without a target is reported with none.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["TARGETS", "Target"]


@dataclass(frozen=True, slots=True)
class Target:
    """`figure OP value`, e.g. `< 1000` for a page time in ms."""

    op: str
    value: float

    def met(self, figure: float) -> bool:
        """Whether `figure` meets the target."""
        compare: Callable[[float, float], bool] = _OPERATORS[self.op]
        return compare(figure, self.value)

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"


_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
}

TARGETS: dict[str, Target] = {
    "forecast.cmapss_fd001_rmse": Target("<=", 12.0),
    "forecast.plant_coverage": Target(">=", 0.75),
    "forecast.synthetic_coverage": Target(">=", 0.75),
    "forecast.cmapss_fd001_coverage": Target(">=", 0.75),
    "dashboard.fleet_page_ms": Target("<", 1000.0),
    "dashboard.asset_page_90d_ms": Target("<", 1000.0),
    "dashboard.alerts_page_ms": Target("<", 1000.0),
    "connectors.files_samples_per_s.wav": Target(">=", 10e6),
    "connectors.files_samples_per_s.tdms": Target(">=", 10e6),
    "diagnosis.false_mode_rate_on_healthy": Target("<=", 0.01),
    # Issue #16: at least 0.8 for the bearing modes, imbalance and misalignment.
    **{
        f"diagnosis.per_mode_recall.{mode}": Target(">=", 0.8)
        for mode in ("outer_race", "inner_race", "rolling_element", "cage", "imbalance", "misalignment")
    },
}
