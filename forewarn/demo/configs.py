"""The demo's configuration: its scenario's timing and the TOML files its processes read.

Secrets (the database password) never go into these files; they reach the children through their
`FOREWARN_*` environment variables.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from cloud_service.settings import CloudSettings
from dashboard.settings import DashboardSettings
from edge_agent.settings import EdgeSettings
from shared.asset_config import AssetDiagnosisConfig
from shared.config import ComponentSettings, DatabaseSettings, MqttSettings, load_settings, render_settings
from shared.timebase import NS_PER_S
from simulators import Scenario, fleet_units
from simulators.assets import AssetType, asset_config_for_type

__all__ = [
    "demo_scenario",
    "secret_environment",
    "split_assets",
    "write_cloud_config",
    "write_dashboard_config",
    "write_gateway_config",
]


def demo_scenario(scenario: Scenario, *, step_s: float, end_ns: int) -> Scenario:
    """`scenario` sampled every `step_s` simulated seconds (0: its own step), ending at `end_ns`.

    The physics is continuous in time, so a coarser step only samples it less often: the same
    degradations and failures, fewer raw bursts to publish. Ending at `end_ns` (now) keeps every
    timestamp in the past, where the contracts accept it.
    """
    if step_s > 0 and not math.isclose(step_s, scenario.spec.time.step_s):
        time_section = scenario.spec.time.model_copy(update={"step_s": step_s})
        spec = scenario.spec.model_copy(update={"time": time_section})
        n_steps = max(1, int(spec.time.duration_h * 3600 / step_s))
        scenario = replace(scenario, spec=spec, step_ns=round(step_s * NS_PER_S), n_steps=n_steps)
    span_ns = scenario.n_steps * scenario.step_ns
    return scenario.with_changes(start_ns=end_ns - span_ns)


def _merged(base: Mapping[str, object], changes: Mapping[str, object]) -> dict[str, object]:
    """`base` with `changes` laid over it, key by key into nested mappings."""
    merged = dict(base)
    for key, value in changes.items():
        below = merged.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            merged[key] = _merged(below, value)
        else:
            merged[key] = value
    return merged


def split_assets(scenario: Scenario, n_gateways: int) -> list[list[str]]:
    """The scenario's assets dealt to `n_gateways` gateways in turn, so each serves every asset type."""
    shares: list[list[str]] = [[] for _ in range(n_gateways)]
    for i, asset_id in enumerate(scenario.asset_ids):
        shares[i % n_gateways].append(asset_id)
    return shares


def _mqtt_values(mqtt_settings: MqttSettings) -> dict[str, object]:
    return {"host": mqtt_settings.host, "port": mqtt_settings.port}


def _db_values(db: DatabaseSettings) -> dict[str, object]:
    return {"host": db.host, "port": db.port, "dbname": db.dbname, "user": db.user}


def secret_environment(db: DatabaseSettings) -> dict[str, str]:
    """The database password as the cloud's and the dashboard's variables (never in a file)."""
    password = db.password.get_secret_value()
    if not password:
        return {}
    return {"FOREWARN_CLOUD_DB__PASSWORD": password, "FOREWARN_DASHBOARD_DB__PASSWORD": password}


def _write_settings(path: Path, settings: ComponentSettings) -> Path:
    path.write_text(
        "# Written by `forewarn demo`; secrets come from the environment, not this file.\n"
        + render_settings(settings)
    )
    return path


def write_cloud_config(
    path: Path,
    *,
    mqtt_settings: MqttSettings,
    db: DatabaseSettings,
    signing_key: Path | None = None,
    targets: Sequence[str] = (),
) -> Path:
    """A cloud service configuration for the demo: one ingest worker on the demo's broker and database.

    With a signing key and targets, the scheduler retrains each target every minute and pushes a winner
    at once (auto approval), refits and recomputes the forecasts every minute, refreshes the advice every
    5 s and diagnoses the alerts' snapshots every 20 s, all measured from the newest stored data
    (`reference_time = "latest_data"`): the demo's time runs thousands of times faster than the clock.
    """
    overrides: dict[str, object] = {
        "mqtt": _mqtt_values(mqtt_settings),
        "db": _db_values(db),
        "ingest": {"workers": 1, "group": "demo", "shared_subscription": False},
        # Data days old arrives within minutes: refresh the rollups that long ranges read every 20 s, not
        # every 5 minutes, or the asset page's score chart stays empty for the demo's first minutes.
        "storage": {"rollup_refresh_s": 20.0},
    }
    if signing_key is not None:
        overrides["lifecycle"] = {
            "signing_key": signing_key,
            "approval": "auto",
            "targets": tuple(targets),
            "retrain_cron": "* * * * *",
            "push_retry_interval_s": 20.0,
            "reference_time": "latest_data",
        }
        overrides["forecast"] = {"refit_cron": "* * * * *", "recompute_interval_s": 20.0}
        # A day of data arrives every 2 s or so: the advice is refreshed every 5 s, within the 72 h
        # (`diagnosis_max_age_h`) that a diagnosis is acted on; the alerts' snapshots are diagnosed
        # every 20 s.
        overrides["advice"] = {"refresh_interval_s": 5.0}
        overrides["diagnosis"] = {"interval_s": 20.0}
    settings = load_settings(CloudSettings, environ={}, overrides=overrides)
    return _write_settings(path, settings)


def _diagnosis(
    asset_type: AssetType, scenario: Scenario, baseline_interval_s: float | None
) -> AssetDiagnosisConfig:
    """The type's datasheet configuration. A diagnosis reads one simulator burst: the longest contiguous
    run of samples the gateway receives (the simulator sends bursts `time.step_s` apart)."""
    config = asset_config_for_type(asset_type, scenario.spec.operation.speed_factors)
    signals = scenario.spec.signals
    changes: dict[str, float] = {"window_s": signals.burst_samples / signals.vibration_rate_hz}
    if baseline_interval_s is not None:
        changes["baseline_interval_s"] = baseline_interval_s
    return AssetDiagnosisConfig.model_validate(config.model_dump() | changes)


def write_gateway_config(
    path: Path,
    *,
    scenario: Scenario,
    gateway_id: str,
    mqtt_settings: MqttSettings,
    workdir: Path,
    asset_ids: Sequence[str] | None = None,
    public_key: Path | None = None,
    warmup_windows: int | None = None,
    upstream_mqtt: MqttSettings | None = None,
    aggregation_period_s: float | None = None,
    heartbeat_interval_s: float = 2.0,
    changes: Mapping[str, object] | None = None,
    diagnosis: bool = False,
    diagnosis_baseline_interval_s: float | None = None,
) -> Path:
    """An edge agent configuration serving `asset_ids` (default: every asset) of `scenario`.

    It reads raw data from `mqtt_settings` and sends upstream to `upstream_mqtt` (default: the same
    broker). Its state goes under `workdir/GATEWAY_ID`. Each asset's model target is its type, so one model
    trained on the fleet's assets of a type serves them on every gateway. With `public_key`, the agent
    accepts models signed by its private key. With `diagnosis`, each asset has a diagnosis section from its
    type's datasheet (`simulators.assets.asset_config_for_type`: nominal speed, the drive's speed range
    over the scenario's speed setpoints, the bearing's geometry, ISO group and foundation), so its alerts
    carry a diagnosis; `diagnosis_baseline_interval_s` replaces its `baseline_interval_s`. `changes`
    (section -> key -> value, nested for sub-sections) override what this function sets.
    """
    wanted = set(scenario.asset_ids if asset_ids is None else asset_ids)
    rates = {"vibration": scenario.spec.signals.vibration_rate_hz}
    assets = [
        {
            "asset_id": unit.asset_id,
            "model_target": unit.type.name,
            "sensors": [
                {
                    "name": sensor,
                    "kind": "vibration" if sensor == "vibration" else "slow",
                    "sample_rate_hz": rates.get(sensor, scenario.spec.signals.slow_rate_hz),
                }
                for sensor in unit.type.sensors
            ],
        }
        | ({"diagnosis": _diagnosis(unit.type, scenario, diagnosis_baseline_interval_s)} if diagnosis else {})
        for unit in fleet_units(scenario)
        if unit.asset_id in wanted
    ]
    state = workdir / gateway_id
    pipeline: dict[str, object] = {"assets": assets}
    if warmup_windows is not None:
        pipeline["baseline"] = {"warmup_windows": warmup_windows}
    if aggregation_period_s is not None:
        pipeline["aggregation"] = {"period_s": aggregation_period_s}
    overrides: dict[str, object] = {
        "gateway_id": gateway_id,
        "heartbeat_interval_s": heartbeat_interval_s,
        "plant_mqtt": _mqtt_values(mqtt_settings),
        "upstream_mqtt": _mqtt_values(upstream_mqtt or mqtt_settings),
        "queue": {"dir": state / "queue"},
        "quarantine": {"dir": state / "quarantine"},
        "models": {"store_dir": state / "models"},
        "pipeline": pipeline,
    }
    if public_key is not None:
        overrides["deployment"] = {"public_key": public_key, "state_file": state / "deployments.json"}
    settings = load_settings(EdgeSettings, environ={}, overrides=_merged(overrides, changes or {}))
    return _write_settings(path, settings)


def write_dashboard_config(path: Path, *, db: DatabaseSettings, port: int, workdir: Path) -> Path:
    """A dashboard configuration on the demo's database, on 127.0.0.1:`port`, refreshing every 5 s."""
    settings = load_settings(
        DashboardSettings,
        environ={},
        overrides={
            "port": port,
            "refresh_s": 5.0,
            "db": _db_values(db),
            "session": {"secret_key_file": workdir / "dashboard" / "secret_key"},
        },
    )
    return _write_settings(path, settings)
