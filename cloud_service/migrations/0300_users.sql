-- Forewarn dashboard users: who may log in, with which role, and the bookkeeping that slows repeated
-- failed logins. Plain SQL, identical on plain PostgreSQL and on TimescaleDB (a small table).

CREATE TABLE IF NOT EXISTS users (
    username          text PRIMARY KEY CHECK (username ~ '^[a-z0-9][a-z0-9_.@-]{0,63}$'),
    role              text NOT NULL CHECK (role IN ('viewer', 'engineer', 'admin')),
    -- An argon2id hash in its PHC string form ($argon2id$v=19$m=...,t=...,p=...$salt$hash).
    password_hash     text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    password_set_at   timestamptz NOT NULL DEFAULT now(),
    last_login_at     timestamptz,
    -- Failed logins since the last success; a login is refused until `locked_until` after repeated ones.
    failed_logins     integer NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
    last_failed_at    timestamptz,
    locked_until      timestamptz
);
