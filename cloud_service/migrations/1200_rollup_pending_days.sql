-- Days whose aggregates arrived after the rollup refresh's lookback had passed them (a gateway back after a
-- long outage, a replayed recording, a compressed-time demo): `run_upkeep` refreshes exactly these days
-- beside its recent lookback, so late data shows in long ranges too. Rows are few: recent days are never
-- marked (the lookback refreshes them), and a refreshed day's row is deleted.
CREATE TABLE IF NOT EXISTS rollup_pending_days (
    day        timestamptz PRIMARY KEY,
    marked_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
