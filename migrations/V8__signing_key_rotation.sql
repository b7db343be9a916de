-- ed25519 key rotation: the previous key keeps signing (a second v1a
-- signature) until it expires, like a rotated HMAC secret.
ALTER TABLE webhooks
    ADD COLUMN previous_signing_key_sealed bytea,
    ADD COLUMN previous_signing_key_expires_at timestamptz,
    ADD COLUMN previous_public_key text;

DROP TRIGGER webhooks_config_changed ON webhooks;
CREATE TRIGGER webhooks_config_changed
    AFTER INSERT OR DELETE OR UPDATE OF url, event_types, secret_sealed, headers,
        timeout_seconds, retry_attempts, retry_backoff_seconds, verify_ssl, is_active, name,
        rate_limit, previous_secret_sealed, previous_secret_expires_at,
        options, auth_sealed, signing_key_sealed, previous_signing_key_sealed,
        previous_signing_key_expires_at
    ON webhooks FOR EACH STATEMENT EXECUTE FUNCTION bump_config_version();
