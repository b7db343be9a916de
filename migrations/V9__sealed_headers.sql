-- Custom header values are sealed at rest like credentials: headers_sealed
-- holds the sealed JSON of the values; headers keeps the names with masked
-- values, which is what the API answers. Rows from before keep their values
-- in headers until the api seals them at start.
ALTER TABLE webhooks ADD COLUMN headers_sealed bytea;

DROP TRIGGER webhooks_config_changed ON webhooks;
CREATE TRIGGER webhooks_config_changed
    AFTER INSERT OR DELETE OR UPDATE OF url, event_types, secret_sealed, headers, headers_sealed,
        timeout_seconds, retry_attempts, retry_backoff_seconds, verify_ssl, is_active, name,
        rate_limit, previous_secret_sealed, previous_secret_expires_at,
        options, auth_sealed, signing_key_sealed, previous_signing_key_sealed,
        previous_signing_key_expires_at
    ON webhooks FOR EACH STATEMENT EXECUTE FUNCTION bump_config_version();
