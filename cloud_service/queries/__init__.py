"""Every read (and the few edits) the dashboard, the lifecycle jobs and `forewarn cloud status` make.

One module per table family:

* `aggregates`: the time-series aggregates and their rollups (`asset_series`, `feature_matrix`,
  `window_spread`);
* `alert_context`: why an alert fired: its stored detail, its top features' baselines and its raw
  snapshots (`alert_detail`, `feature_baselines`, `alert_snapshots`);
* `asset_history`: an asset's feature series and model periods, from the aggregates or their hourly
  rollups (`feature_series`, `model_periods`, `asset_feature_names`);
* `alerts`: alerts and maintenance/failure events (`open_alerts`, `last_alerts`, `asset_alerts`,
  `acknowledge_alert`, `maintenance_events`);
* `assets`: assets, sites and gateways (`fleet_status`, `asset_status`, `gateway_health`, `update_asset`,
  `upsert_site`);
* `costs`: bandwidth per gateway, storage per table, lifecycle job durations (`gateway_traffic`,
  `storage_use`, `job_durations`);
* `forecasts`: the stored forecasts' history per asset and the fleet's risk per day (`forecast_history`,
  `risk_history`);
* `ingest_stats`: what ingest stored and how it is doing (`ingest_status`, `stored_counts`).

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
    window_spread,
)
from cloud_service.queries.alert_context import (
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
    fleet_status,
    gateway_health,
    update_asset,
    upsert_site,
)
from cloud_service.queries.costs import (
    GatewayTraffic,
    JobDuration,
    StorageUse,
    TableStorage,
    gateway_traffic,
    job_durations,
    storage_use,
)
from cloud_service.queries.forecasts import (
    LIKELY_P_FAIL,
    POSSIBLE_P_FAIL,
    RiskDay,
    fleet_latest_forecasts,
    forecast_history,
    risk_history,
)
from cloud_service.queries.ingest_stats import IngestStatus, StoredCounts, ingest_status, stored_counts

__all__ = [
    "CRITICALITIES",
    "LIKELY_P_FAIL",
    "POSSIBLE_P_FAIL",
    "AlertDetail",
    "AlertRecord",
    "AssetStatus",
    "EventRecord",
    "FeatureBaseline",
    "FeatureMatrix",
    "FeaturePoint",
    "GatewayHealth",
    "GatewayTraffic",
    "IngestStatus",
    "JobDuration",
    "ModelPeriod",
    "RiskDay",
    "Series",
    "SeriesPoint",
    "SnapshotRecord",
    "StorageUse",
    "StoredCounts",
    "TableStorage",
    "TopFeature",
    "WindowSpread",
    "acknowledge_alert",
    "alert_detail",
    "alert_snapshots",
    "asset_alerts",
    "asset_feature_names",
    "asset_series",
    "asset_status",
    "feature_baselines",
    "feature_matrix",
    "feature_series",
    "fleet_latest_forecasts",
    "fleet_status",
    "forecast_history",
    "gateway_health",
    "gateway_traffic",
    "ingest_status",
    "job_durations",
    "last_alerts",
    "maintenance_events",
    "model_periods",
    "open_alerts",
    "risk_history",
    "storage_use",
    "stored_counts",
    "update_asset",
    "upsert_site",
    "window_spread",
]
