"""Every read (and the few edits) the dashboard, the lifecycle jobs and `forewarn cloud status` make.

One module per table family:

* `alarm_management`: alert states, acknowledge, shelve, out of service and the append-only alert event
  log (`list_alerts`, `acknowledge`, `shelve_alert`, `alert_history`, ...);
* `alarm_health`: the alarm-system health per site computed from that log (`alarm_health`);
* `aggregates`: the time-series aggregates and their rollups (`asset_series`, `feature_matrix`,
  `window_spread`, `latest_period_end`);
* `alerts`: alerts and maintenance/failure events (`open_alerts`, `acknowledge_alert`,
  `maintenance_events`);
* `assets`: assets, sites and gateways (`fleet_status`, `gateway_health`, `register_asset`, `update_asset`,
  `upsert_site`);
* `ingest_stats`: what ingest stored and how it is doing (`ingest_status`, `stored_counts`,
  `sequence_account`);
* `storage_jobs`: TimescaleDB's policy jobs and how their runs went (`storage_jobs`).

The model registry's SQL is in `cloud_service.lifecycle.registry`, the forecasts' in
`cloud_service.forecasting.repository`, the write path's in `cloud_service.writer`. Every function takes an
open connection and never commits: the caller (a job, a CLI command, a test) owns the transaction. The
public names of the modules are re-exported here.
"""

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
from cloud_service.queries.alarm_health import AlarmPoint, SiteAlarmHealth, alarm_health, raises_per_hour
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
from cloud_service.queries.alerts import (
    AlertRecord,
    EventRecord,
    acknowledge_alert,
    maintenance_events,
    open_alerts,
)
from cloud_service.queries.assets import (
    CRITICALITIES,
    AssetStatus,
    GatewayHealth,
    fleet_status,
    gateway_health,
    register_asset,
    update_asset,
    upsert_site,
)
from cloud_service.queries.ingest_stats import (
    IngestStatus,
    SequenceAccount,
    StoredCounts,
    ingest_status,
    latest_gateway_metrics,
    missing_sequences,
    sequence_account,
    stored_counts,
)
from cloud_service.queries.storage_jobs import StorageJob, storage_jobs

__all__ = [
    "ATTENTION_STATES",
    "CRITICALITIES",
    "AlarmPoint",
    "AlarmState",
    "AlertEvent",
    "AlertRecord",
    "AssetStatus",
    "EventRecord",
    "FeatureMatrix",
    "GatewayHealth",
    "IngestStatus",
    "ManagedAlert",
    "SequenceAccount",
    "Series",
    "SeriesPoint",
    "SiteAlarmHealth",
    "StorageJob",
    "StoredCounts",
    "Transition",
    "WindowSpread",
    "acknowledge",
    "acknowledge_alert",
    "alarm_health",
    "alert_history",
    "asset_series",
    "expire_shelves",
    "feature_matrix",
    "fleet_status",
    "gateway_health",
    "ingest_status",
    "known_assets",
    "latest_gateway_metrics",
    "latest_period_end",
    "list_alerts",
    "maintenance_events",
    "missing_sequences",
    "open_alerts",
    "out_of_service_assets",
    "raises_per_hour",
    "record_edge_transition",
    "register_asset",
    "return_to_service",
    "sequence_account",
    "set_out_of_service",
    "shelve_alert",
    "storage_jobs",
    "stored_counts",
    "unshelve_alert",
    "update_asset",
    "upsert_site",
    "window_spread",
]
