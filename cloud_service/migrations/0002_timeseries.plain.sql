-- Forewarn cloud schema, part 2 (plain PostgreSQL): time series in weekly range partitions.
-- Unique keys of partitioned tables must contain the partition column: a redelivered message carries
-- the same time as the original, so (gateway_id, seq, period_start) deduplicates exactly as (gateway_id, seq).

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
) PARTITION BY RANGE (period_start);
CREATE INDEX IF NOT EXISTS aggregates_asset_time ON aggregates (asset_id, period_start);
CREATE INDEX IF NOT EXISTS aggregates_time_brin ON aggregates USING brin (period_start);

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
) PARTITION BY RANGE (ts);
CREATE INDEX IF NOT EXISTS heartbeats_time_brin ON heartbeats USING brin (ts);

CREATE OR REPLACE VIEW anomaly_scores AS
    SELECT gateway_id, seq, asset_id, period_start, period_end, score_mean, score_max, threshold,
           n_windows, n_above, model_version, model_kind
    FROM aggregates;

-- The weekly partition of `parent` holding `at_ts` (Monday 00:00 UTC to the next), created if missing.
CREATE OR REPLACE FUNCTION forewarn_ensure_partition(parent regclass, at_ts timestamptz)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    lower_bound timestamptz := date_trunc('week', at_ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    upper_bound timestamptz := lower_bound + INTERVAL '7 days';
    part_name text := format('%s_p%s', parent::text, to_char(lower_bound AT TIME ZONE 'UTC', 'YYYYMMDD'));
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(part_name));
    IF to_regclass(part_name) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                       part_name, parent, lower_bound, upper_bound);
    END IF;
    RETURN part_name;
END
$$;

-- Drop the partitions of `parent` that end at or before `cutoff`; returns how many were dropped.
CREATE OR REPLACE FUNCTION forewarn_drop_partitions_before(parent regclass, cutoff timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    part record;
    dropped integer := 0;
BEGIN
    FOR part IN
        SELECT c.oid::regclass AS rel, pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = parent
    LOOP
        IF part.bound LIKE 'FOR VALUES FROM%'
           AND substring(part.bound FROM 'TO \(''([^'']+)''\)')::timestamptz <= cutoff THEN
            EXECUTE format('DROP TABLE %s', part.rel);
            dropped := dropped + 1;
        END IF;
    END LOOP;
    RETURN dropped;
END
$$;
