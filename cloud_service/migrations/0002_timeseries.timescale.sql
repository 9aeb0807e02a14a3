-- Forewarn cloud schema, part 2 (TimescaleDB 2.x): time series in hypertables with compression.
-- Unique keys of hypertables must contain the time column: a redelivered message carries the same
-- time as the original, so (gateway_id, seq, period_start) deduplicates exactly as (gateway_id, seq).
-- Compression and retention policies are (re)applied from the settings by the service at start.

CREATE TABLE IF NOT EXISTS aggregates (
    gateway_id      text NOT NULL,
    seq             bigint NOT NULL,
    asset_id        text NOT NULL,
    period_start    timestamptz NOT NULL,
    period_end      timestamptz NOT NULL,
    feature_set_id  integer NOT NULL,
    feature_mean    real[] NOT NULL,
    feature_min     real[] NOT NULL,
    feature_max     real[] NOT NULL,
    score_mean      real NOT NULL,
    score_max       real NOT NULL,
    threshold       real NOT NULL,
    n_windows       bigint NOT NULL,
    n_above         bigint NOT NULL,
    model_version   text NOT NULL,
    model_kind      text NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway_id, seq, period_start)
);
SELECT create_hypertable('aggregates', 'period_start',
                         chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE);
CREATE INDEX IF NOT EXISTS aggregates_asset_time ON aggregates (asset_id, period_start DESC);
-- Every column of the unique key is segmented or ordered by, so the duplicate check of a redelivered
-- aggregate against a compressed chunk narrows to one segment by its min/max metadata instead of
-- decompressing the chunk (TimescaleDB warns otherwise). An asset sits behind one gateway, so segmenting
-- by gateway as well adds no segments.
ALTER TABLE aggregates SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'asset_id, gateway_id',
    timescaledb.compress_orderby = 'period_start DESC, seq'
);

CREATE TABLE IF NOT EXISTS heartbeats (
    gateway_id      text NOT NULL,
    ts              timestamptz NOT NULL,
    state           text NOT NULL,
    seq             bigint,
    uptime_s        double precision NOT NULL,
    cpu_percent     real NOT NULL,
    memory_bytes    numeric(20, 0) NOT NULL,
    metrics         jsonb NOT NULL,
    model_versions  jsonb NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway_id, ts)
);
SELECT create_hypertable('heartbeats', 'ts',
                         chunk_time_interval => INTERVAL '7 days', if_not_exists => TRUE);
ALTER TABLE heartbeats SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'gateway_id',
    timescaledb.compress_orderby = 'ts DESC'
);

CREATE OR REPLACE VIEW anomaly_scores AS
    SELECT gateway_id, seq, asset_id, period_start, period_end, score_mean, score_max, threshold,
           n_windows, n_above, model_version, model_kind
    FROM aggregates;
