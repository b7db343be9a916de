-- Secret rotation: the previous secret keeps signing beside the new one
-- until it expires (24 h by default), so receivers can switch without
-- dropping a delivery.
ALTER TABLE webhooks
    ADD COLUMN previous_secret_sealed bytea,
    ADD COLUMN previous_secret_expires_at timestamptz;

DROP TRIGGER webhooks_config_changed ON webhooks;
CREATE TRIGGER webhooks_config_changed
    AFTER INSERT OR DELETE OR UPDATE OF url, event_types, secret_sealed, headers,
        timeout_seconds, retry_attempts, retry_backoff_seconds, verify_ssl, is_active, name,
        rate_limit, previous_secret_sealed, previous_secret_expires_at
    ON webhooks FOR EACH STATEMENT EXECUTE FUNCTION bump_config_version();
