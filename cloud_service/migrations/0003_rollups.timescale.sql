-- Forewarn cloud schema, part 3 (TimescaleDB 2.x): hourly and daily rollups per asset as continuous
-- aggregates, refreshed by TimescaleDB's own policies. Same columns as the plain-PostgreSQL tables.

CREATE MATERIALIZED VIEW rollup_hourly
WITH (timescaledb.continuous) AS
SELECT asset_id,
       time_bucket(INTERVAL '1 hour', period_start) AS bucket,
       count(*) AS n_periods,
       sum(score_mean::double precision) AS score_mean_sum,
       max(score_max) AS score_max,
       sum(n_windows) AS n_windows,
       sum(n_above) AS n_above
FROM aggregates
GROUP BY asset_id, time_bucket(INTERVAL '1 hour', period_start)
WITH NO DATA;

CREATE MATERIALIZED VIEW rollup_daily
WITH (timescaledb.continuous) AS
SELECT asset_id,
       time_bucket(INTERVAL '1 day', period_start) AS bucket,
       count(*) AS n_periods,
       sum(score_mean::double precision) AS score_mean_sum,
       max(score_max) AS score_max,
       sum(n_windows) AS n_windows,
       sum(n_above) AS n_above
FROM aggregates
GROUP BY asset_id, time_bucket(INTERVAL '1 day', period_start)
WITH NO DATA;

SELECT add_continuous_aggregate_policy('rollup_hourly',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes', if_not_exists => TRUE);
SELECT add_continuous_aggregate_policy('rollup_daily',
    start_offset => INTERVAL '7 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '1 hour', if_not_exists => TRUE);
