"""Every read (and the few edits) the dashboard, the lifecycle jobs and `forewarn cloud status` make.

One module per table family:

* `aggregates`: the time-series aggregates and their rollups (`asset_series`, `feature_matrix`,
  `window_spread`);
* `alerts`: alerts and maintenance/failure events (`open_alerts`, `acknowledge_alert`,
  `maintenance_events`);
* `assets`: assets, sites and gateways (`fleet_status`, `gateway_health`, `update_asset`, `upsert_site`);
* `ingest_stats`: what ingest stored and how it is doing (`ingest_status`, `stored_counts`);
* `diagnoses`: alerts' diagnoses (`store_diagnosis`, `alert_diagnoses`, `latest_diagnoses`);
* `advice`: maintenance advice (`open_advice`, `upsert_open_advice`, `close_advice_after_maintenance`).

The model registry's SQL is in `cloud_service.lifecycle.registry`, the forecasts' in
`cloud_service.forecasting.repository`, the write path's in `cloud_service.writer`. Every function takes an
open connection and never commits: the caller (a job, a CLI command, a test) owns the transaction. The
public names of the modules are re-exported here.
"""

from cloud_service.queries.advice import (
    AdviceRecord,
    close_advice_after_maintenance,
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
    update_asset,
    upsert_site,
)
from cloud_service.queries.diagnoses import (
    DiagnosisRecord,
    alert_diagnoses,
    latest_diagnoses,
    store_diagnosis,
)
from cloud_service.queries.ingest_stats import IngestStatus, StoredCounts, ingest_status, stored_counts

__all__ = [
    "CRITICALITIES",
    "AdviceRecord",
    "AlertRecord",
    "AssetStatus",
    "DiagnosisRecord",
    "EventRecord",
    "FeatureMatrix",
    "GatewayHealth",
    "IngestStatus",
    "Series",
    "SeriesPoint",
    "StoredCounts",
    "WindowSpread",
    "acknowledge_alert",
    "alert_diagnoses",
    "asset_series",
    "close_advice_after_maintenance",
    "feature_matrix",
    "fleet_status",
    "gateway_health",
    "ingest_status",
    "latest_diagnoses",
    "maintenance_events",
    "open_advice",
    "open_alerts",
    "store_diagnosis",
    "stored_counts",
    "update_asset",
    "upsert_open_advice",
    "upsert_site",
    "window_spread",
]
