-- Forewarn live failure forecasting: fitted forecasters (versioned, stored in the database so any cloud
-- process can predict) and the forecasts computed with them, per asset.
-- Plain SQL, identical on plain PostgreSQL and on TimescaleDB (small tables: no hypertables).

-- The forecaster's input: per asset and hour, the mean of each aggregate feature mean (`means`, aligned with
-- `names`, sorted by name), the score mean and max, the periods and the last period end. Maintained
-- incrementally from `aggregates` by the refit and recompute jobs (recent hours recomputed for late data).
CREATE TABLE IF NOT EXISTS forecast_hourly (
    asset_id    text NOT NULL,
    hour        timestamptz NOT NULL,
    names       text[] NOT NULL,
    means       double precision[] NOT NULL,
    score_mean  double precision NOT NULL,
    score_max   double precision NOT NULL,
    n_periods   bigint NOT NULL,
    last_end    timestamptz NOT NULL,
    PRIMARY KEY (asset_id, hour)
);
CREATE INDEX IF NOT EXISTS forecast_hourly_hour ON forecast_hourly (hour);

-- Every fitted forecaster. The model directory is stored as its two files: `metadata_json` (metadata.json)
-- and `estimators` (model.joblib); loading checks the estimators' SHA-256 recorded in the metadata.
CREATE TABLE IF NOT EXISTS forecasters (
    version         integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    fitted_at       timestamptz NOT NULL DEFAULT now(),
    train_start     timestamptz NOT NULL,
    train_end       timestamptz NOT NULL,
    n_assets        integer NOT NULL,
    n_rows          integer NOT NULL,
    n_failures      integer NOT NULL,
    horizon_h       double precision NOT NULL,
    columns         text[] NOT NULL,
    cv_metrics      jsonb NOT NULL DEFAULT '{}',
    fit_s           double precision NOT NULL DEFAULT 0,
    metadata_json   text NOT NULL,
    estimators      bytea NOT NULL,
    status          text NOT NULL CHECK (status IN ('active', 'retired')),
    CHECK (train_end >= train_start)
);
-- At most one forecaster is current: the one recompute uses.
CREATE UNIQUE INDEX IF NOT EXISTS forecasters_one_active ON forecasters (status) WHERE status = 'active';

-- Forecasts: one row per asset and recompute run.
CREATE TABLE IF NOT EXISTS forecasts (
    asset_id            text NOT NULL,
    computed_at         timestamptz NOT NULL,
    as_of               timestamptz NOT NULL,
    rul_h               double precision NOT NULL CHECK (rul_h >= 0),
    rul_low_h           double precision NOT NULL CHECK (rul_low_h >= 0),
    rul_high_h          double precision NOT NULL,
    p_fail              double precision NOT NULL CHECK (p_fail >= 0 AND p_fail <= 1),
    horizon_h           double precision NOT NULL,
    short_history       boolean NOT NULL DEFAULT false,
    forecaster_version  integer NOT NULL REFERENCES forecasters (version),
    PRIMARY KEY (asset_id, computed_at)
);
-- "Latest forecast per asset": DISTINCT ON (asset_id) ... ORDER BY asset_id, computed_at DESC.
CREATE INDEX IF NOT EXISTS forecasts_asset_latest ON forecasts (asset_id, computed_at DESC);
CREATE INDEX IF NOT EXISTS forecasts_computed_at ON forecasts (computed_at);
CREATE INDEX IF NOT EXISTS forecasts_version ON forecasts (forecaster_version);
