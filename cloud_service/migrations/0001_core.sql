-- Forewarn cloud schema, part 1: reference data, low-volume message tables and the dead-letter table.
-- Identical on plain PostgreSQL and on TimescaleDB.

CREATE TABLE IF NOT EXISTS sites (
    site_id     text PRIMARY KEY,
    name        text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS gateways (
    gateway_id      text PRIMARY KEY,
    site_id         text REFERENCES sites (site_id) ON DELETE SET NULL,
    first_seen      timestamptz NOT NULL DEFAULT now(),
    state           text NOT NULL DEFAULT 'unknown',
    status_ts       timestamptz,
    status_seq      bigint,
    uptime_s        double precision,
    cpu_percent     real,
    memory_bytes    numeric(20, 0),
    metrics         jsonb NOT NULL DEFAULT '{}',
    model_versions  jsonb NOT NULL DEFAULT '{}',
    status_received_at timestamptz
);

CREATE TABLE IF NOT EXISTS assets (
    asset_id     text PRIMARY KEY,
    gateway_id   text,
    site_id      text REFERENCES sites (site_id) ON DELETE SET NULL,
    asset_type   text NOT NULL DEFAULT '',
    line         text NOT NULL DEFAULT '',
    criticality  text NOT NULL DEFAULT 'normal'
                 CHECK (criticality IN ('low', 'normal', 'high', 'critical')),
    first_seen   timestamptz NOT NULL DEFAULT now()
);

-- Aggregates store feature statistics as real[] aligned with the names of their feature set.
CREATE TABLE IF NOT EXISTS feature_sets (
    feature_set_id  serial PRIMARY KEY,
    feature_spec    text NOT NULL,
    feature_names   text[] NOT NULL,
    UNIQUE (feature_spec, feature_names)
);

-- Every alert message as received (idempotent on gateway_id, seq) ...
CREATE TABLE IF NOT EXISTS alert_messages (
    gateway_id     text NOT NULL,
    seq            bigint NOT NULL,
    alert_id       text NOT NULL,
    asset_id       text NOT NULL,
    state          text NOT NULL,
    severity       text NOT NULL,
    ts             timestamptz NOT NULL,
    score          real NOT NULL,
    threshold      real NOT NULL,
    model_version  text NOT NULL,
    model_kind     text NOT NULL,
    top_features   jsonb NOT NULL DEFAULT '[]',
    message        text NOT NULL DEFAULT '',
    received_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway_id, seq)
);

-- ... and each alert's lifecycle: open -> acknowledged -> cleared.
CREATE TABLE IF NOT EXISTS alerts (
    gateway_id       text NOT NULL,
    alert_id         text NOT NULL,
    asset_id         text NOT NULL,
    state            text NOT NULL CHECK (state IN ('open', 'acknowledged', 'cleared')),
    severity         text NOT NULL,
    raised_at        timestamptz,
    cleared_at       timestamptz,
    score            real,
    threshold        real,
    model_version    text NOT NULL DEFAULT '',
    model_kind       text NOT NULL DEFAULT '',
    top_features     jsonb NOT NULL DEFAULT '[]',
    message          text NOT NULL DEFAULT '',
    acknowledged_by  text,
    acknowledged_at  timestamptz,
    comment          text NOT NULL DEFAULT '',
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway_id, alert_id)
);
CREATE INDEX IF NOT EXISTS alerts_not_cleared ON alerts (asset_id) WHERE state <> 'cleared';

CREATE TABLE IF NOT EXISTS snapshots (
    gateway_id      text NOT NULL,
    seq             bigint NOT NULL,
    asset_id        text NOT NULL,
    sensor          text NOT NULL,
    alert_id        text NOT NULL,
    start_at        timestamptz NOT NULL,
    sample_rate_hz  double precision NOT NULL,
    samples         real[] NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway_id, seq)
);
CREATE INDEX IF NOT EXISTS snapshots_alert ON snapshots (alert_id);

CREATE TABLE IF NOT EXISTS deployment_acks (
    gateway_id   text NOT NULL,
    seq          bigint NOT NULL,
    target       text NOT NULL,
    version      integer NOT NULL,
    ok           boolean NOT NULL,
    reason       text NOT NULL,
    ts           timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway_id, seq)
);

-- Events carry no sequence number: a replay has the same asset, time and kind.
CREATE TABLE IF NOT EXISTS maintenance_events (
    asset_id     text NOT NULL,
    ts           timestamptz NOT NULL,
    event        text NOT NULL CHECK (event IN ('failure', 'maintenance')),
    mode         text NOT NULL DEFAULT '',
    source       text NOT NULL DEFAULT '',
    note         text NOT NULL DEFAULT '',
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (asset_id, ts, event)
);

CREATE TABLE IF NOT EXISTS dead_letters (
    dead_letter_id  bigserial PRIMARY KEY,
    topic           text NOT NULL,
    payload         bytea NOT NULL,
    reason          text NOT NULL,
    field           text NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS dead_letters_received ON dead_letters (received_at);

-- Each ingest worker's counters, written every few seconds (read by `forewarn cloud status`).
CREATE TABLE IF NOT EXISTS ingest_workers (
    worker_id   text PRIMARY KEY,
    started_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    metrics     jsonb NOT NULL
);
