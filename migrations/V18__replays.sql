-- Replays: every stored event in a window that a webhook matches now and
-- has no successful or pending delivery of, delivered to it again, a batch
-- at a time by the dispatchers (`dispatcher/src/replayer.rs`). The cursor
-- (received_at, id) is the last event looked at; progress moves in the
-- transaction that creates the batch's deliveries, so a crash repeats
-- nothing and skips nothing.
CREATE TABLE replays (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    webhook_id  uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    since       timestamptz NOT NULL,
    until       timestamptz NOT NULL,
    -- Narrows the webhook's own types (patterns as webhooks take them).
    event_types text[],
    state       text NOT NULL DEFAULT 'running'
                CHECK (state IN ('running', 'done', 'cancelled')),
    -- Events in the window when the replay began.
    total       bigint NOT NULL,
    processed   bigint NOT NULL DEFAULT 0,
    queued      bigint NOT NULL DEFAULT 0,
    cursor_at   timestamptz,
    cursor_id   text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX replays_running ON replays (updated_at) WHERE state = 'running';
CREATE INDEX replays_tenant ON replays (tenant_id, created_at DESC);
