"""A bursty scenario (a vibration burst and a minute of slow readings per step) is scored by the edge."""

from __future__ import annotations

import tomllib
from pathlib import Path

from edge_agent.offline import score_csv
from edge_agent.pipeline import Pipeline
from edge_agent.settings import BaselineSettings, EdgeSettings, PipelineSettings
from forewarn.demo.configs import write_gateway_config
from shared.config import MqttSettings, load_settings
from simulators import export_scenario, iter_batches, parse_scenario
from simulators.stream import burst_offset_ns

PLANT = Path(__file__).parents[1] / "simulators" / "scenarios" / "plant.toml"


def _bursty_scenario(steps: int) -> object:
    data = tomllib.loads(PLANT.read_text(encoding="utf-8"))
    data["time"]["duration_h"] = steps * data["time"]["step_s"] / 3600
    data["assets"] = [{"type": "centrifugal_pump", "count": 1, "id_prefix": "pump"}]
    data.setdefault("export", {})["raw_every"] = 1
    data["failures"], data["sensor_faults"], data["transport_faults"] = [], [], []
    data["random_failures"]["rate_per_asset_year"] = 0.0
    return parse_scenario(data, source="plant-bursts")


def test_each_vibration_burst_ends_with_its_steps_slow_samples() -> None:
    scenario = _bursty_scenario(3)
    signals = scenario.spec.signals  # type: ignore[attr-defined]
    vibration = [b for b in iter_batches(scenario) if b.sensor == "vibration"]  # type: ignore[arg-type]
    slow = [b for b in iter_batches(scenario) if b.sensor == "temperature"]  # type: ignore[arg-type]
    assert burst_offset_ns(scenario) > 0  # type: ignore[arg-type]
    for burst, readings in zip(vibration, slow, strict=True):
        assert burst.start_ns > readings.start_ns
        assert abs(burst.end_ns - readings.end_ns) < 1e9 / signals.vibration_rate_hz * 2


def test_the_edge_joins_slow_readings_to_every_burst_of_a_bursty_recording(tmp_path: Path) -> None:
    scenario = _bursty_scenario(12)
    export_scenario(scenario, tmp_path / "export")  # type: ignore[arg-type]
    settings = PipelineSettings(baseline=BaselineSettings(warmup_windows=4))
    summary = score_csv(
        csv_path=tmp_path / "export", out_path=tmp_path / "scores.csv", model_path=None, settings=settings
    )
    assert summary.windows == 12 * 4
    assert "incomplete" not in summary.windows_unscored, "a burst lacked the slow readings joined to it"
    warmup = summary.windows_unscored.get("warmup", 0)
    assert summary.windows_scored + warmup >= summary.windows - 4  # the first burst is a start transient


def test_the_live_pipeline_joins_slow_readings_to_bursts_arriving_in_simulator_order(tmp_path: Path) -> None:
    scenario = _bursty_scenario(12)
    config = write_gateway_config(
        tmp_path / "gateway.toml",
        scenario=scenario,  # type: ignore[arg-type]
        gateway_id="gw-bursts",
        mqtt_settings=MqttSettings(),
        workdir=tmp_path,
        warmup_windows=4,
    )
    settings = load_settings(EdgeSettings, toml_path=config, environ={})
    pipeline = Pipeline(
        settings=settings.pipeline, gateway_id="gw-bursts", models=None, on_reject=lambda *_: None
    )
    for batch in iter_batches(scenario):  # type: ignore[arg-type]
        pipeline.process(batch)
    pipeline.flush()
    metrics = pipeline.metrics
    assert metrics.windows_cut == 12 * 4
    assert metrics.windows_unscored.get("incomplete", 0) == 0, metrics.windows_unscored
