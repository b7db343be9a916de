-- Delivery options per webhook: the body format (with a template for
-- `custom`), which signature schemes sign, and outbound authentication.
-- `options` holds what is not secret; credentials and the ed25519 private
-- key are sealed like the secret; the public key is stored in clear so the
-- api can show it without the encryption key.
ALTER TABLE webhooks
    ADD COLUMN options jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN auth_sealed bytea,
    ADD COLUMN signing_key_sealed bytea,
    ADD COLUMN public_key text;

DROP TRIGGER webhooks_config_changed ON webhooks;
CREATE TRIGGER webhooks_config_changed
    AFTER INSERT OR DELETE OR UPDATE OF url, event_types, secret_sealed, headers,
        timeout_seconds, retry_attempts, retry_backoff_seconds, verify_ssl, is_active, name,
        rate_limit, previous_secret_sealed, previous_secret_expires_at,
        options, auth_sealed, signing_key_sealed
    ON webhooks FOR EACH STATEMENT EXECUTE FUNCTION bump_config_version();
