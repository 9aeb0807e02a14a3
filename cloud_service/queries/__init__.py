"""Every read (and the few edits) the dashboard, the lifecycle jobs and `forewarn cloud status` make.

One module per table family:

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
    sequence_account,
    stored_counts,
)
from cloud_service.queries.storage_jobs import StorageJob, storage_jobs

__all__ = [
    "CRITICALITIES",
    "AlertRecord",
    "AssetStatus",
    "EventRecord",
    "FeatureMatrix",
    "GatewayHealth",
    "IngestStatus",
    "SequenceAccount",
    "Series",
    "SeriesPoint",
    "StorageJob",
    "StoredCounts",
    "WindowSpread",
    "acknowledge_alert",
    "asset_series",
    "feature_matrix",
    "fleet_status",
    "gateway_health",
    "ingest_status",
    "latest_gateway_metrics",
    "latest_period_end",
    "maintenance_events",
    "open_alerts",
    "register_asset",
    "sequence_account",
    "storage_jobs",
    "stored_counts",
    "update_asset",
    "upsert_site",
    "window_spread",
]
