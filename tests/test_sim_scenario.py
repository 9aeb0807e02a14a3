"""Scenario files: the bundled ones load, bad ones are rejected naming the key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from shared.errors import ConfigError
from simulators import bundled_scenarios, load_scenario, parse_scenario

BASE: dict[str, Any] = {
    "name": "t",
    "seed": 1,
    "time": {"duration_h": 1.0, "step_s": 60.0},
    "assets": [{"type": "electric_motor", "count": 2}, {"type": "centrifugal_pump", "id_prefix": "p"}],
}


def _with(path: str, value: object) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    node: Any = data
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    last = parts[-1]
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return data


def test_bundled_scenarios_load_and_have_the_promised_size() -> None:
    assert set(bundled_scenarios()) >= {"smoke", "plant", "stress"}
    smoke = load_scenario("smoke")
    assert len(smoke.asset_ids) == 3
    assert {f.asset for f in smoke.spec.failures} == {"pump-001"}
    plant = load_scenario("plant")
    assert len(plant.asset_ids) >= 50
    assert set(plant.asset_types) == {"centrifugal_pump", "electric_motor", "fan", "compressor"}
    assert (plant.end_ns - plant.start_ns) / 1e9 / 86400 >= 60  # months
    assert plant.spec.random_failures.rate_per_asset_year > 0
    stress = load_scenario("stress")
    assert stress.spec.time.speed == 0.0
    for scenario in (smoke, plant, stress):
        scenario.check_not_future()


def test_asset_ids_come_from_the_prefix_and_count() -> None:
    scenario = parse_scenario(BASE)
    assert scenario.asset_ids == ("electric-motor-001", "electric-motor-002", "p-001")
    assert scenario.n_steps == 60


@pytest.mark.parametrize(
    ("data", "key"),
    [
        (_with("assets.0.type", "turbine"), "scenario.assets[0].type"),
        (_with("time.bogus", 1), "scenario.time.bogus"),
        (_with("time.duration_h", -1), "scenario.time.duration_h"),
        (_with("time.start", "yesterday"), "scenario.time.start"),
        (_with("time.start", "2026-01-01T00:00:00"), "scenario.time.start"),
        (_with("signals.burst_samples", 1500), "scenario.signals.burst_samples"),
        (_with("signals.burst_samples", 1024 * 1000), "scenario.signals.burst_samples"),
        (_with("operation.loads", [0.5, 3.0]), "scenario.operation.loads[1]"),
        (
            _with("failures", [{"asset": "nope", "mode": "imbalance", "onset_h": 0, "time_to_failure_h": 1}]),
            "scenario.failures[0].asset",
        ),
        (
            _with(
                "failures",
                [{"asset": "electric-motor-001", "mode": "cavitation", "onset_h": 0, "time_to_failure_h": 1}],
            ),
            "scenario.failures[0].mode",
        ),
        (
            _with("failures", [{"asset": "p-001", "mode": "rust", "onset_h": 0, "time_to_failure_h": 1}]),
            "scenario.failures[0].mode",
        ),
        (_with("failures", [{"asset": "p-001", "mode": "imbalance", "onset_h": 0}]), "scenario.failures[0]"),
        (
            _with(
                "sensor_faults",
                [
                    {
                        "asset": "electric-motor-001",
                        "sensor": "pressure",
                        "kind": "stuck",
                        "start_h": 0,
                        "duration_h": 1,
                    }
                ],
            ),
            "scenario.sensor_faults[0].sensor",
        ),
        (
            _with(
                "sensor_faults",
                [{"asset": "p-001", "sensor": "flow", "kind": "melted", "start_h": 0, "duration_h": 1}],
            ),
            "scenario.sensor_faults[0].kind",
        ),
        (
            _with("transport_faults", [{"kind": "duplicate", "duration_h": 1, "asset": "x"}]),
            "transport_faults",
        ),
        (_with("export.raw_assets", ["ghost"]), "scenario.export.raw_assets[0]"),
        (_with("random_failures.rate_per_asset_year", 1.0), "scenario.random_failures.modes"),
        (_with("name", "bad name!"), "scenario.name"),
    ],
)
def test_bad_scenarios_name_the_key(data: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_scenario(data, source="test.toml")
    assert info.value.key.startswith(key) or key in info.value.key, str(info.value)
    assert "test.toml" in str(info.value)


def test_missing_assets_and_bad_files_are_clear_errors(workdir: Path) -> None:
    with pytest.raises(ConfigError, match=r"scenario\.assets"):
        parse_scenario({"name": "x"})
    bad = workdir / "bad.toml"
    bad.write_text("name = [unclosed\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_scenario(bad)
    with pytest.raises(ConfigError, match="bundled scenario"):
        load_scenario("no-such-scenario")


def test_a_scenario_ending_far_in_the_future_is_refused() -> None:
    scenario = parse_scenario(_with("time.start", "2099-01-01T00:00:00Z"))
    with pytest.raises(ConfigError, match="24 h"):
        scenario.check_not_future()
