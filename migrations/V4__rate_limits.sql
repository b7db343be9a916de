-- Per-webhook rate limits, shared by every worker replica: each worker
-- beats its heart here, and takes its share of a webhook's limit by the
-- number of live workers.
ALTER TABLE webhooks ADD COLUMN rate_limit integer;

DROP TRIGGER webhooks_config_changed ON webhooks;
CREATE TRIGGER webhooks_config_changed
    AFTER INSERT OR DELETE OR UPDATE OF url, event_types, secret_sealed, headers,
        timeout_seconds, retry_attempts, retry_backoff_seconds, verify_ssl, is_active, name,
        rate_limit
    ON webhooks FOR EACH STATEMENT EXECUTE FUNCTION bump_config_version();

CREATE TABLE worker_heartbeats (
    id      uuid PRIMARY KEY,
    seen_at timestamptz NOT NULL
);
