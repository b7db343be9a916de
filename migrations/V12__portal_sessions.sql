-- Customer portal sessions: a short-lived token (stored as its SHA-256)
-- that opens the console on one tenant, optionally narrowed to some
-- webhooks or event types, optionally read-only. Revoking one (deleting
-- the row) reaches every api within 2 seconds through the trigger.
CREATE TABLE portal_sessions (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    token_hash  bytea NOT NULL UNIQUE,
    -- NULL: every webhook of the tenant.
    webhook_ids uuid[],
    -- NULL: every event type; else the patterns it may see.
    event_types text[],
    read_only   boolean NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX portal_sessions_tenant ON portal_sessions (tenant_id, created_at);
CREATE INDEX portal_sessions_expires ON portal_sessions (expires_at);
CREATE TRIGGER portal_sessions_config_changed AFTER DELETE OR UPDATE
    ON portal_sessions FOR EACH STATEMENT EXECUTE FUNCTION bump_config_version();

-- The system overview sums every webhook's minutes of the last hour.
CREATE INDEX webhook_stats_minutely_minute ON webhook_stats_minutely (minute);
