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
