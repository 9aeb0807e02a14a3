-- Dashboard sessions kept on the server, so that logging out, a new password or removing the user ends a
-- session for good (a copied session cookie stops working), and each user's chosen time zone.
-- Plain SQL, identical on plain PostgreSQL and on TimescaleDB (small tables).

CREATE TABLE IF NOT EXISTS dashboard_sessions (
    -- SHA-256 of the random session id the browser holds: a copy of this table logs nobody in.
    id_sha256    bytea PRIMARY KEY CHECK (length(id_sha256) = 32),
    username     text NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS dashboard_sessions_username ON dashboard_sessions (username);

-- An IANA zone name (`Europe/Berlin`), or NULL: the browser's own zone.
ALTER TABLE users ADD COLUMN IF NOT EXISTS time_zone text
    CHECK (time_zone IS NULL OR time_zone ~ '^[A-Za-z0-9_+/-]{1,64}$');
