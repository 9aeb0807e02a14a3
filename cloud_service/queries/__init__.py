"""Every read (and the few edits) the dashboard, the lifecycle jobs and `forewarn cloud status` make.

One module per table family:

* `advice`: the stored maintenance advice per asset, with the inputs it came from (`open_advice`,
  `closed_advice`, `advised_modes`);
* `aggregates`: the time-series aggregates and their rollups (`asset_series`, `feature_matrix`,
  `window_spread`, `latest_period_end`);
* `alarm_health`: the alarm-system health per site computed from the alert event log (`alarm_health`);
* `alarm_management`: alert states, acknowledge, shelve, out of service and the append-only alert event
  log (`list_alerts`, `acknowledge`, `shelve_alert`, `alert_history`, ...);
* `alert_context`: why an alert fired: its stored detail, its top features' baselines and its raw
  snapshots (`alert_detail`, `feature_baselines`, `alert_snapshots`);
* `alerts`: alerts and maintenance/failure events (`open_alerts`, `last_alerts`, `asset_alerts`,
  `acknowledge_alert`, `maintenance_events`);
* `asset_history`: an asset's feature series and model periods, from the aggregates or their hourly
  rollups (`feature_series`, `model_periods`, `asset_feature_names`);
* `assets`: assets, sites and gateways (`fleet_status`, `asset_status`, `gateway_health`, `register_asset`,
  `update_asset`, `upsert_site`, `recent_clock_skews`, `clock_skew_flags`);
* `costs`: bandwidth per gateway, storage per table, lifecycle job durations (`gateway_traffic`,
  `storage_use`, `job_durations`);
* `diagnoses`: the diagnoses of each alert (mode, confidence, evidence), from the edge as the alert arrives
  and from the cloud's re-diagnosis of its snapshot (`alert_diagnoses`, `latest_diagnoses`,
  `best_diagnoses`, `fleet_diagnoses`, `pending_snapshots`), and the edge's diagnoses of an alert in
  the order sent (`diagnosis_history`);
* `forecasts`: the stored forecasts' history per asset and the fleet's risk per day (`forecast_history`,
  `risk_history`);
* `ingest_stats`: what ingest stored and how it is doing (`ingest_status`, `stored_counts`,
  `sequence_account`, `missing_sequences`, `latest_gateway_metrics`, `latest_gateway_model`);
* `storage_jobs`: TimescaleDB's policy jobs and how their runs went (`storage_jobs`).

The model registry's SQL is in `cloud_service.lifecycle.registry`, the forecasters' in
`cloud_service.forecasting.repository`, the write path's in `cloud_service.writer`. Every function takes an
open connection and never commits: the caller (a job, a CLI command, a test) owns the transaction. The
public names of the modules are re-exported here.
"""

from cloud_service.queries.advice import (
    AdviceRecord,
    advised_modes,
    asset_types,
    close_advice_after_maintenance,
    closed_advice,
    last_maintenance,
    open_advice,
    upsert_open_advice,
)
from cloud_service.queries.aggregates import (
    FeatureMatrix,
    Series,
    SeriesPoint,
    WindowSpread,
    asset_series,
    feature_matrix,
    latest_period_end,
    window_spread,
)
from cloud_service.queries.alarm_health import (
    CHATTER_RAISES,
    CHATTER_WINDOW,
    FLOOD_PERIOD,
    FLOOD_RAISES,
    STALE_AFTER,
    TOP_POINTS,
    AlarmPoint,
    SiteAlarmHealth,
    alarm_health,
    raises_per_hour,
)
from cloud_service.queries.alarm_management import (
    ATTENTION_STATES,
    AlarmState,
    AlertEvent,
    ManagedAlert,
    Transition,
    acknowledge,
    alert_history,
    expire_shelves,
    known_assets,
    list_alerts,
    out_of_service_assets,
    record_edge_transition,
    return_to_service,
    set_out_of_service,
    shelve_alert,
    unshelve_alert,
)
from cloud_service.queries.alert_context import (
    BASELINE_SPAN,
    AlertDetail,
    FeatureBaseline,
    SnapshotRecord,
    TopFeature,
    alert_detail,
    alert_snapshots,
    feature_baselines,
)
from cloud_service.queries.alerts import (
    AlertRecord,
    EventRecord,
    acknowledge_alert,
    asset_alerts,
    last_alerts,
    maintenance_events,
    open_alerts,
)
from cloud_service.queries.asset_history import (
    DEFAULT_ROLLUP_FROM,
    FeaturePoint,
    ModelPeriod,
    asset_feature_names,
    feature_series,
    model_periods,
)
from cloud_service.queries.assets import (
    CRITICALITIES,
    AssetStatus,
    GatewayHealth,
    asset_status,
    clock_skew_flags,
    fleet_status,
    gateway_health,
    recent_clock_skews,
    register_asset,
    update_asset,
    upsert_site,
)
from cloud_service.queries.costs import (
    EXACT_COUNT_BELOW_BYTES,
    GatewayTraffic,
    JobDuration,
    StorageUse,
    TableStorage,
    gateway_traffic,
    job_durations,
    storage_use,
)
from cloud_service.queries.diagnoses import (
    DiagnosisRecord,
    DiagnosisStep,
    PendingSnapshot,
    alert_diagnoses,
    best_diagnoses,
    diagnosis_history,
    fleet_diagnoses,
    latest_diagnoses,
    mark_snapshot_diagnosed,
    pending_snapshots,
    store_diagnosis,
)
from cloud_service.queries.forecasts import (
    LIKELY_P_FAIL,
    POSSIBLE_P_FAIL,
    RiskDay,
    fleet_latest_forecasts,
    forecast_history,
    risk_history,
)
from cloud_service.queries.ingest_stats import (
    IngestStatus,
    SequenceAccount,
    StoredCounts,
    ingest_status,
    latest_gateway_metrics,
    latest_gateway_model,
    missing_sequences,
    sequence_account,
    stored_counts,
)
from cloud_service.queries.storage_jobs import (
    StorageJob,
    storage_jobs,
)

__all__ = [
    "ATTENTION_STATES",
    "BASELINE_SPAN",
    "CHATTER_RAISES",
    "CHATTER_WINDOW",
    "CRITICALITIES",
    "DEFAULT_ROLLUP_FROM",
    "EXACT_COUNT_BELOW_BYTES",
    "FLOOD_PERIOD",
    "FLOOD_RAISES",
    "LIKELY_P_FAIL",
    "POSSIBLE_P_FAIL",
    "STALE_AFTER",
    "TOP_POINTS",
    "AdviceRecord",
    "AlarmPoint",
    "AlarmState",
    "AlertDetail",
    "AlertEvent",
    "AlertRecord",
    "AssetStatus",
    "DiagnosisRecord",
    "DiagnosisStep",
    "EventRecord",
    "FeatureBaseline",
    "FeatureMatrix",
    "FeaturePoint",
    "GatewayHealth",
    "GatewayTraffic",
    "IngestStatus",
    "JobDuration",
    "ManagedAlert",
    "ModelPeriod",
    "PendingSnapshot",
    "RiskDay",
    "SequenceAccount",
    "Series",
    "SeriesPoint",
    "SiteAlarmHealth",
    "SnapshotRecord",
    "StorageJob",
    "StorageUse",
    "StoredCounts",
    "TableStorage",
    "TopFeature",
    "Transition",
    "WindowSpread",
    "acknowledge",
    "acknowledge_alert",
    "advised_modes",
    "alarm_health",
    "alert_detail",
    "alert_diagnoses",
    "alert_history",
    "alert_snapshots",
    "asset_alerts",
    "asset_feature_names",
    "asset_series",
    "asset_status",
    "asset_types",
    "best_diagnoses",
    "clock_skew_flags",
    "close_advice_after_maintenance",
    "closed_advice",
    "diagnosis_history",
    "expire_shelves",
    "feature_baselines",
    "feature_matrix",
    "feature_series",
    "fleet_diagnoses",
    "fleet_latest_forecasts",
    "fleet_status",
    "forecast_history",
    "gateway_health",
    "gateway_traffic",
    "ingest_status",
    "job_durations",
    "known_assets",
    "last_alerts",
    "last_maintenance",
    "latest_diagnoses",
    "latest_gateway_metrics",
    "latest_gateway_model",
    "latest_period_end",
    "list_alerts",
    "maintenance_events",
    "mark_snapshot_diagnosed",
    "missing_sequences",
    "model_periods",
    "open_advice",
    "open_alerts",
    "out_of_service_assets",
    "pending_snapshots",
    "raises_per_hour",
    "recent_clock_skews",
    "record_edge_transition",
    "register_asset",
    "return_to_service",
    "risk_history",
    "sequence_account",
    "set_out_of_service",
    "shelve_alert",
    "storage_jobs",
    "storage_use",
    "store_diagnosis",
    "stored_counts",
    "unshelve_alert",
    "update_asset",
    "upsert_open_advice",
    "upsert_site",
    "window_spread",
]
