-- Clock skew: each gateway's clock offset from the cloud's, measured by ingest from its heartbeats
-- (cloud_service.clock_skew), and, on the rows a gateway sent while its |skew| exceeded
-- `ingest.max_clock_skew_s`, the skew in seconds at ingest. NULL means "not flagged" (or, on gateways,
-- "not measured yet"). Timestamps are never shifted: the flag tells a reader how far off they may be.
--
-- Adding a nullable column without a default rewrites no table on PostgreSQL (only the catalog changes),
-- so this is instant on the big time-series tables, plain or partitioned. TimescaleDB documents
-- `ALTER TABLE <hypertable> ADD COLUMN <name> <type>` (nullable, no constraint) as supported on
-- hypertables with compression enabled from 2.1 on ("Modify a schema" of compressed hypertables:
-- nullable column from 2.1, NOT NULL with a default from 2.6), and the column is written without the
-- redundant `NULL` keyword, which versions before the fix of timescale/timescaledb#5151 (2.9) rejected
-- on compressed hypertables.

ALTER TABLE gateways ADD COLUMN IF NOT EXISTS clock_skew_s double precision;
ALTER TABLE gateways ADD COLUMN IF NOT EXISTS clock_skew_measured_at timestamptz;

ALTER TABLE aggregates ADD COLUMN IF NOT EXISTS clock_skew_s real;
ALTER TABLE alert_messages ADD COLUMN IF NOT EXISTS clock_skew_s real;
