"""A small synthetic run-to-failure fleet, for tests and as the bench's fallback data.

Each life degrades along a noisy power curve after a random onset; sensors read a regime-dependent offset
(operating conditions), a unit-specific offset, a share of the degradation (some sensors none), and noise.
Some assets are maintained mid-life (the degradation restarts), and some histories are cut before their
failure (right-censored, like a test set whose true RUL is known only to the generator).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cloud_service.forecasting.data import Event, EventKind, History

__all__ = ["SyntheticFleet", "make_fleet", "write_csv"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class SyntheticFleet:
    """A generated fleet; `true_rul` maps each asset to its true RUL at its last row."""

    history: History
    true_rul: dict[str, float]
    condition_columns: tuple[str, ...]


def make_fleet(
    n_assets: int = 30,
    *,
    n_sensors: int = 6,
    n_regimes: int = 3,
    mean_life: float = 150.0,
    censored_fraction: float = 0.0,
    maintained_fraction: float = 0.0,
    seed: int = 0,
    machine_seed: int = 0,
    id_prefix: str = "unit",
) -> SyntheticFleet:
    """Generate `n_assets` assets with time in cycles (1, 2, ...).

    Args:
        n_assets: assets to generate.
        n_sensors: sensor columns `s0..`; a third of them carry no degradation signal.
        n_regimes: operating regimes (0: no condition columns); conditions are `c0`, `c1`.
        mean_life: the mean life in cycles.
        censored_fraction: share of assets whose history stops before failure (no failure event).
        maintained_fraction: share of assets maintained once mid-life (their degradation restarts).
        seed: the random seed of the units (lives, noise, censoring).
        machine_seed: the random seed of the machine type (regime offsets, sensor gains): fleets with the
            same machine seed are the same kind of machine.
        id_prefix: asset ids are `{id_prefix}-{n:03d}`.
    """
    machine = np.random.default_rng(machine_seed)
    regime_conditions = machine.uniform(0, 10, size=(max(n_regimes, 1), 2))
    regime_offset = machine.normal(0, 8, size=(max(n_regimes, 1), n_sensors))
    gain = machine.uniform(2.0, 5.0, size=n_sensors) * machine.choice([-1.0, 1.0], size=n_sensors)
    rng = np.random.default_rng(seed)
    gain[: n_sensors // 3] = 0.0
    columns = tuple(f"s{j}" for j in range(n_sensors)) + (("c0", "c1") if n_regimes else ())
    ids: list[str] = []
    times: list[int] = []
    rows: list[FloatArray] = []
    events: list[Event] = []
    truth: dict[str, float] = {}
    for unit in range(n_assets):
        asset_id = f"{id_prefix}-{unit:03d}"
        unit_offset = rng.normal(0, 0.5, size=n_sensors)
        degradation: list[float] = []
        if rng.random() < maintained_fraction:
            first = _life_length(rng, mean_life)
            maintained_at = int(first * rng.uniform(0.3, 0.8))
            degradation.extend(_degradation(rng, first)[:maintained_at])
            events.append(Event(asset_id, float(maintained_at), EventKind.MAINTENANCE))
        life = _life_length(rng, mean_life)
        degradation.extend(_degradation(rng, life))
        total = len(degradation)
        last = total
        if rng.random() < censored_fraction:
            last = int(rng.integers(max(5, total - life), total))
        else:
            events.append(Event(asset_id, float(total), EventKind.FAILURE))
        truth[asset_id] = float(total - last)
        health = np.asarray(degradation[:last])
        regime = rng.integers(0, max(n_regimes, 1), size=last)
        values = (
            regime_offset[regime]
            + unit_offset
            + health[:, None] * gain
            + rng.normal(0, 0.6, (last, n_sensors))
        )
        if n_regimes:
            values = np.hstack([values, regime_conditions[regime] + rng.normal(0, 0.05, (last, 2))])
        ids.extend([asset_id] * last)
        times.extend(range(1, last + 1))
        rows.append(values)
    history = History.from_arrays(
        ids, np.asarray(times, dtype=np.float64), np.vstack(rows), columns=columns, events=events
    )
    return SyntheticFleet(history, truth, ("c0", "c1") if n_regimes else ())


def _life_length(rng: np.random.Generator, mean_life: float) -> int:
    return max(30, int(rng.normal(mean_life, 0.25 * mean_life)))


def _degradation(rng: np.random.Generator, life: int) -> list[float]:
    onset = rng.uniform(0.2, 0.6) * life
    exponent = rng.uniform(1.5, 2.5)
    t = np.arange(1, life + 1, dtype=np.float64)
    progress = np.clip((t - onset) / (life - onset), 0.0, None)
    return [float(v) for v in progress**exponent]


def write_csv(fleet: SyntheticFleet, directory: str | Path) -> tuple[Path, Path, Path]:
    """Write `telemetry.csv`, `events.csv` and `truth.csv` (`asset_id,rul`) into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    telemetry, events, truth = directory / "telemetry.csv", directory / "events.csv", directory / "truth.csv"
    history = fleet.history
    with telemetry.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["asset_id", "time", *history.columns])
        for asset in history.assets:
            for i in range(len(asset)):
                writer.writerow([asset.asset_id, asset.label(i), *(f"{v:.5g}" for v in asset.values[i])])
    with events.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["asset_id", "time", "event"])
        for event in history.events:
            writer.writerow([event.asset_id, f"{event.time:g}", event.kind.value])
    with truth.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["asset_id", "rul"])
        for asset_id, rul in fleet.true_rul.items():
            writer.writerow([asset_id, f"{rul:g}"])
    return telemetry, events, truth
