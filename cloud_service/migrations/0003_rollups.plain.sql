-- Forewarn cloud schema, part 3 (plain PostgreSQL): hourly and daily rollups per asset, as tables that
-- `cloud_service.rollups.refresh_rollups` recomputes over a time range (delete and insert, per bucket).
-- Sums and counts, not means, so coarser buckets can be computed from them exactly.

CREATE TABLE IF NOT EXISTS rollup_hourly (
    asset_id        text NOT NULL,
    bucket          timestamptz NOT NULL,
    n_periods       bigint NOT NULL,
    score_mean_sum  double precision NOT NULL,
    score_max       real NOT NULL,
    n_windows       numeric NOT NULL,
    n_above         numeric NOT NULL,
    PRIMARY KEY (asset_id, bucket)
);
CREATE INDEX IF NOT EXISTS rollup_hourly_bucket_brin ON rollup_hourly USING brin (bucket);

CREATE TABLE IF NOT EXISTS rollup_daily (
    asset_id        text NOT NULL,
    bucket          timestamptz NOT NULL,
    n_periods       bigint NOT NULL,
    score_mean_sum  double precision NOT NULL,
    score_max       real NOT NULL,
    n_windows       numeric NOT NULL,
    n_above         numeric NOT NULL,
    PRIMARY KEY (asset_id, bucket)
);
