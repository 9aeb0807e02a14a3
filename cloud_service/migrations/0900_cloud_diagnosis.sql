-- The cloud re-diagnoses the raw snapshots the edge sends around an alert (cloud_service.snapshot_diagnosis).
-- A snapshot carries its asset's diagnosis configuration (JSON, `shared.asset_config.encode_asset_config`;
-- empty: none); the scheduler's job diagnoses each snapshot once and records when, and why not if it could
-- not (a bad configuration, too few samples), so no snapshot is retried forever and none is skipped.
ALTER TABLE snapshots ADD COLUMN IF NOT EXISTS diagnosis_config text NOT NULL DEFAULT '';
ALTER TABLE snapshots ADD COLUMN IF NOT EXISTS cloud_diagnosed_at timestamptz;
ALTER TABLE snapshots ADD COLUMN IF NOT EXISTS cloud_diagnosis_error text NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS snapshots_cloud_pending ON snapshots (received_at)
    WHERE cloud_diagnosed_at IS NULL AND diagnosis_config <> '';
