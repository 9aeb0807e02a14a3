"""`forewarn edge` command line: the example configuration, `edge score`, and a bad configuration."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from edge_agent.settings import EdgeSettings
from forewarn.cli import main
from shared.config import load_settings
from simulators.engine import fleet_units
from simulators.export import export_scenario
from simulators.scenario import load_scenario, parse_scenario
from tests.test_edge_agent_helpers import scenario_assets

REPO = Path(__file__).resolve().parents[1]


def test_example_gateway_config_loads_and_matches_the_smoke_scenario() -> None:
    settings = load_settings(EdgeSettings, toml_path=REPO / "examples" / "gateway.toml", environ={})
    assert settings.gateway_id == "gw-01"
    assert settings.queue.synchronous == "FULL"
    scenario = load_scenario("smoke")
    assert {a.asset_id for a in settings.pipeline.assets} == {u.asset_id for u in fleet_units(scenario)}
    assert settings.pipeline.assets == scenario_assets(scenario)


def test_environment_overrides_a_nested_key_and_a_bad_value_names_it(tmp_path: Path) -> None:
    settings = load_settings(EdgeSettings, environ={"FOREWARN_EDGE_QUEUE__MAX_BYTES": "50000"})
    assert settings.queue.max_bytes == 50_000
    bad = tmp_path / "bad.toml"
    bad.write_text("[queue]\nwindow = 100000\n")
    assert main(["edge", "--config", str(bad)]) == 2  # one-line error naming edge.queue.window, no traceback


@pytest.mark.slow
def test_edge_score_scores_a_simulator_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tomllib.loads((REPO / "simulators" / "scenarios" / "smoke.toml").read_text(encoding="utf-8"))
    data["time"]["duration_h"] = 0.05
    data.setdefault("export", {})["raw_every"] = 1
    data["failures"], data["sensor_faults"] = [], []
    export_scenario(parse_scenario(data, source="smoke-short"), tmp_path / "export", raw_assets=("pump-001",))
    out = tmp_path / "scores.csv"
    assert main(["edge", "score", "--csv", str(tmp_path / "export"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "windows scored (pump-001) with baseline" in printed
    assert out.read_text().count("\n") > 50
