-- Herald's initial schema: tenants and their tokens, webhooks, events,
-- deliveries and delivery attempts. Every row belongs to one tenant.

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_tokens (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         text NOT NULL DEFAULT '',
    -- SHA-256 of the token; the token itself is shown once and never stored.
    token_hash   bytea NOT NULL UNIQUE,
    -- First characters of the token, so people can tell tokens apart.
    prefix       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz
);
CREATE INDEX api_tokens_tenant ON api_tokens (tenant_id);

CREATE TABLE webhooks (
    id                     uuid PRIMARY KEY,
    tenant_id              uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name                   text NOT NULL,
    description            text NOT NULL DEFAULT '',
    url                    text NOT NULL,
    event_types            text[] NOT NULL,
    -- AES-256-GCM sealed `whsec_…` secret (nonce || ciphertext).
    secret_sealed          bytea NOT NULL,
    headers                jsonb NOT NULL DEFAULT '{}',
    timeout_seconds        integer NOT NULL,
    retry_attempts         integer NOT NULL,
    retry_backoff_seconds  integer NOT NULL,
    verify_ssl             boolean NOT NULL DEFAULT true,
    is_active              boolean NOT NULL DEFAULT true,
    disabled_reason        text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    last_triggered_at      timestamptz,
    delivery_success_count bigint NOT NULL DEFAULT 0,
    delivery_failure_count bigint NOT NULL DEFAULT 0,
    UNIQUE (tenant_id, name)
);
CREATE INDEX webhooks_tenant_created ON webhooks (tenant_id, created_at, id);

-- Bumped by every change that cached configuration depends on; each process
-- polls it and drops its caches when it moves (changes visible within 2 s).
CREATE TABLE config_version (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version   bigint NOT NULL
);
INSERT INTO config_version (version) VALUES (0);

CREATE FUNCTION bump_config_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE config_version SET version = version + 1;
    RETURN NULL;
END $$;

-- Counters and last_triggered_at change on every delivery and are not
-- configuration, so only the columns caches read fire the trigger.
CREATE TRIGGER webhooks_config_changed
    AFTER INSERT OR DELETE OR UPDATE OF url, event_types, secret_sealed, headers,
        timeout_seconds, retry_attempts, retry_backoff_seconds, verify_ssl, is_active, name
    ON webhooks FOR EACH STATEMENT EXECUTE FUNCTION bump_config_version();
CREATE TRIGGER api_tokens_config_changed AFTER INSERT OR DELETE OR UPDATE OF token_hash, tenant_id
    ON api_tokens FOR EACH STATEMENT EXECUTE FUNCTION bump_config_version();
CREATE TRIGGER tenants_config_changed AFTER INSERT OR DELETE
    ON tenants FOR EACH STATEMENT EXECUTE FUNCTION bump_config_version();

CREATE TABLE events (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- The producer's id (at most 255 of A-Z a-z 0-9 _ . : -) or a UUIDv7.
    id          text NOT NULL,
    event_type  text NOT NULL,
    data        jsonb NOT NULL,
    severity    text,
    source      text,
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX events_tenant_received ON events (tenant_id, received_at DESC);

CREATE TABLE deliveries (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL,
    event_id        text NOT NULL,
    webhook_id      uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_type      text NOT NULL,
    -- pending | retrying | success | failed
    status          text NOT NULL DEFAULT 'pending',
    attempt_count   integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- Redeliveries of one event never make a second delivery per webhook.
    UNIQUE (tenant_id, event_id, webhook_id),
    FOREIGN KEY (tenant_id, event_id) REFERENCES events (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX deliveries_tenant_created ON deliveries (tenant_id, created_at DESC);
CREATE INDEX deliveries_webhook_created ON deliveries (webhook_id, created_at DESC);

CREATE TABLE delivery_attempts (
    id            uuid PRIMARY KEY,
    delivery_id   uuid NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt       integer NOT NULL,
    attempted_at  timestamptz NOT NULL,
    duration_ms   integer NOT NULL,
    status_code   integer,
    -- First 1,000 characters of the response body.
    response_body text,
    error         text
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, attempted_at);
