-- Forewarn alarm management (ISA-18.2 / IEC 62682): an append-only log of every alert transition, the
-- shelving of alarm points and the out-of-service state of assets. Plain SQL, identical on plain
-- PostgreSQL and on TimescaleDB (small tables).
--
-- An alarm point is an asset and the rule that fired (`alerts.model_kind`: which detector's k-of-n);
-- each raise of a point is a new alert (`alerts.alert_id`). `active` (not cleared) and `acknowledged`
-- stay two facts of an alert (`cleared_at IS NULL`, `acknowledged_at IS NOT NULL`), so an alert that
-- cleared before anyone acknowledged it is "returned, unacknowledged".

CREATE TABLE IF NOT EXISTS alert_events (
    event_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    asset_id     text NOT NULL,
    -- The alarm point's rule; NULL for the asset-wide out-of-service transitions.
    rule         text,
    -- The alert the transition belongs to; NULL for the asset-wide out-of-service transitions.
    gateway_id   text,
    alert_id     text,
    transition   text NOT NULL CHECK (transition IN (
                     'raised', 'cleared', 'acknowledged', 'shelved', 'unshelved',
                     'out_of_service', 'returned_to_service')),
    -- When the transition happened: the gateway's time for raised/cleared, the shelve's end for an
    -- automatic unshelve, the database's time for an operator's action.
    ts           timestamptz NOT NULL,
    -- Who: a user name, `gateway:<id>` for raised/cleared, `system` for an automatic unshelve.
    actor        text NOT NULL CHECK (btrim(actor) <> ''),
    comment      text NOT NULL DEFAULT '',
    -- Until when a `shelved` transition shelved its alarm point; NULL for every other transition.
    shelved_until timestamptz,
    -- False when the transition was recorded but not shown to operators: its asset was out of service,
    -- or its alarm point shelved, at the time it was recorded.
    annunciated  boolean NOT NULL DEFAULT true,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((transition IN ('out_of_service', 'returned_to_service'))
           = (alert_id IS NULL AND gateway_id IS NULL AND rule IS NULL)),
    CHECK ((transition = 'shelved') = (shelved_until IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS alert_events_alert ON alert_events (gateway_id, alert_id, ts);
CREATE INDEX IF NOT EXISTS alert_events_asset_ts ON alert_events (asset_id, ts);
CREATE INDEX IF NOT EXISTS alert_events_raised_ts ON alert_events (ts) WHERE transition = 'raised';
-- An alert is raised once and cleared once: a replayed gateway message adds no second event.
CREATE UNIQUE INDEX IF NOT EXISTS alert_events_edge_once
    ON alert_events (gateway_id, alert_id, transition) WHERE transition IN ('raised', 'cleared');

-- Append-only, enforced here and not by convention: any UPDATE, DELETE or TRUNCATE is refused.
CREATE OR REPLACE FUNCTION alert_events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'alert_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
DROP TRIGGER IF EXISTS alert_events_append_only ON alert_events;
CREATE TRIGGER alert_events_append_only BEFORE UPDATE OR DELETE ON alert_events
    FOR EACH ROW EXECUTE FUNCTION alert_events_refuse_change();
DROP TRIGGER IF EXISTS alert_events_no_truncate ON alert_events;
CREATE TRIGGER alert_events_no_truncate BEFORE TRUNCATE ON alert_events
    FOR EACH STATEMENT EXECUTE FUNCTION alert_events_refuse_change();

-- Shelved alarm points: hidden from operators until `shelved_until`, for a reason. A row whose
-- `shelved_until` has passed is no longer shelved when read; the next sweep deletes it and logs the
-- automatic unshelve at `shelved_until`.
CREATE TABLE IF NOT EXISTS alert_shelves (
    asset_id          text NOT NULL,
    rule              text NOT NULL,
    gateway_id        text NOT NULL,
    alert_id          text NOT NULL,
    shelved_by        text NOT NULL CHECK (btrim(shelved_by) <> ''),
    shelved_at        timestamptz NOT NULL DEFAULT now(),
    shelved_until     timestamptz NOT NULL,
    reason            text NOT NULL CHECK (btrim(reason) <> ''),
    PRIMARY KEY (asset_id, rule),
    CHECK (shelved_until > shelved_at)
);
CREATE INDEX IF NOT EXISTS alert_shelves_until ON alert_shelves (shelved_until);

-- Assets out of service (under maintenance): their alerts are recorded but not annunciated.
CREATE TABLE IF NOT EXISTS asset_out_of_service (
    asset_id   text PRIMARY KEY,
    since      timestamptz NOT NULL DEFAULT now(),
    set_by     text NOT NULL CHECK (btrim(set_by) <> ''),
    reason     text NOT NULL CHECK (btrim(reason) <> '')
);

-- The alerts that need an operator: active, or cleared but not yet acknowledged.
CREATE INDEX IF NOT EXISTS alerts_needing_attention ON alerts (raised_at)
    WHERE cleared_at IS NULL OR acknowledged_at IS NULL;

-- The log starts with what the alerts table already knows (a database migrated with alerts in it).
INSERT INTO alert_events (asset_id, rule, gateway_id, alert_id, transition, ts, actor)
SELECT asset_id, model_kind, gateway_id, alert_id, 'raised', raised_at, 'gateway:' || gateway_id
FROM alerts WHERE raised_at IS NOT NULL
ON CONFLICT DO NOTHING;
INSERT INTO alert_events (asset_id, rule, gateway_id, alert_id, transition, ts, actor)
SELECT asset_id, model_kind, gateway_id, alert_id, 'cleared', cleared_at, 'gateway:' || gateway_id
FROM alerts WHERE cleared_at IS NOT NULL
ON CONFLICT DO NOTHING;
INSERT INTO alert_events (asset_id, rule, gateway_id, alert_id, transition, ts, actor, comment)
SELECT asset_id, model_kind, gateway_id, alert_id, 'acknowledged', acknowledged_at, acknowledged_by, comment
FROM alerts WHERE acknowledged_at IS NOT NULL AND btrim(coalesce(acknowledged_by, '')) <> '';
