-- Forewarn model lifecycle: the model registry, per-gateway deployment state, drift checks, scheduled jobs.
-- Plain SQL, identical on plain PostgreSQL and on TimescaleDB (no hypertables: these tables are small).

-- Every trained model, deployed or not: rejected candidates are kept with the reason.
CREATE TABLE IF NOT EXISTS models (
    target          text NOT NULL,
    version         integer NOT NULL CHECK (version >= 1),
    model_type      text NOT NULL,
    sha256          text NOT NULL,
    artifact        bytea NOT NULL,
    manifest_json   text NOT NULL,
    signature_b64   text NOT NULL,
    feature_spec    text NOT NULL,
    feature_names   text[] NOT NULL,
    threshold       double precision NOT NULL,
    assets          text[] NOT NULL DEFAULT '{}',
    train_start     timestamptz,
    train_end       timestamptz,
    n_train_rows    integer NOT NULL DEFAULT 0,
    metrics         jsonb NOT NULL DEFAULT '{}',
    gates           jsonb NOT NULL DEFAULT '{}',
    reference       jsonb NOT NULL DEFAULT '{}',
    status          text NOT NULL
                    CHECK (status IN ('candidate', 'approved', 'deployed', 'rejected', 'retired')),
    reason          text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deployed_at     timestamptz,
    PRIMARY KEY (target, version)
);
CREATE UNIQUE INDEX IF NOT EXISTS models_one_deployed ON models (target) WHERE status = 'deployed';

-- The last version handed out per target: versions only ever grow, even past rejected candidates.
CREATE TABLE IF NOT EXISTS model_versions (
    target        text PRIMARY KEY,
    last_version  integer NOT NULL
);

-- Per gateway and model version, the latest acknowledgement. The ingest service stores every
-- DeploymentAck in `deployment_acks`; this view reads them, so acknowledgements are kept once.
CREATE OR REPLACE VIEW model_gateway_state AS
    SELECT DISTINCT ON (target, version, gateway_id)
           target, version, gateway_id,
           CASE WHEN ok THEN 'active'
                WHEN reason LIKE 'probation:%' THEN 'rolled_back'
                ELSE 'refused' END AS state,
           reason,
           ts AS updated_at
    FROM deployment_acks
    ORDER BY target, version, gateway_id, ts DESC, seq DESC;

-- Drift checks per asset: recent features (and scores) against the training data of the deployed model.
CREATE TABLE IF NOT EXISTS drift (
    asset_id       text NOT NULL,
    checked_at     timestamptz NOT NULL,
    target         text NOT NULL,
    version        integer NOT NULL,
    n_recent       integer NOT NULL,
    max_psi        double precision NOT NULL,
    worst_feature  text NOT NULL,
    score_psi      double precision,
    feature_psi    jsonb NOT NULL,
    is_drifted     boolean NOT NULL,
    PRIMARY KEY (asset_id, checked_at)
);
CREATE INDEX IF NOT EXISTS drift_target ON drift (target, checked_at);

-- Scheduled lifecycle jobs: when each runs next (kept across restarts) and how its last run went.
CREATE TABLE IF NOT EXISTS lifecycle_jobs (
    job_id            text PRIMARY KEY,
    trigger           text NOT NULL,
    next_run_at       timestamptz NOT NULL,
    last_started_at   timestamptz,
    last_finished_at  timestamptz,
    last_status       text NOT NULL DEFAULT '',
    last_error        text NOT NULL DEFAULT '',
    runs              bigint NOT NULL DEFAULT 0,
    last_runner       text NOT NULL DEFAULT ''
);
