-- Diagnoses of alerts: the probable failure mode, its confidence and evidence, and the ISO 20816-3 zone.
-- One row per alert and source: `edge` (carried in the raised alert) or `cloud` (from the raw snapshots).
CREATE TABLE IF NOT EXISTS alert_diagnoses (
    gateway_id         text NOT NULL,
    alert_id           text NOT NULL,
    source             text NOT NULL CHECK (source IN ('edge', 'cloud')),
    asset_id           text NOT NULL,
    ts                 timestamptz NOT NULL,
    mode               text NOT NULL,
    confidence         real NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    evidence           jsonb NOT NULL DEFAULT '[]',
    shaft_hz           double precision,
    velocity_rms_mm_s  double precision,
    iso_zone           text CHECK (iso_zone IN ('A', 'B', 'C', 'D')),
    stored_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway_id, alert_id, source)
);
CREATE INDEX IF NOT EXISTS alert_diagnoses_asset_ts ON alert_diagnoses (asset_id, ts DESC);

-- Advice per asset: what to inspect or replace and by when, with the inputs it came from. At most one open
-- advice per asset; a maintenance event after it closes it and records the mode found (a label).
CREATE TABLE IF NOT EXISTS asset_advice (
    advice_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    asset_id      text NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    mode          text NOT NULL,
    action        text NOT NULL,
    urgency       text NOT NULL CHECK (urgency IN ('monitor', 'plan', 'urgent')),
    due_by        timestamptz NOT NULL,
    inputs        jsonb NOT NULL DEFAULT '{}',
    state         text NOT NULL CHECK (state IN ('open', 'closed')),
    closed_at     timestamptz,
    found_mode    text,
    closing_note  text NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX IF NOT EXISTS asset_advice_one_open ON asset_advice (asset_id) WHERE state = 'open';
