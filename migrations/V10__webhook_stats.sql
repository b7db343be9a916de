-- What deliveries tell about a webhook (its counters, when it was last
-- triggered, its run of failures) changes on every delivery and is not
-- configuration: it moves to a table of its own, so that any change of a
-- webhooks row is a configuration change and the trigger needs no column
-- list that every migration must remember to rewrite.
CREATE TABLE webhook_stats (
    webhook_id             uuid PRIMARY KEY REFERENCES webhooks (id) ON DELETE CASCADE,
    last_triggered_at      timestamptz,
    delivery_success_count bigint NOT NULL DEFAULT 0,
    delivery_failure_count bigint NOT NULL DEFAULT 0,
    failing_since          timestamptz,
    consecutive_failures   integer NOT NULL DEFAULT 0
);

INSERT INTO webhook_stats (webhook_id, last_triggered_at, delivery_success_count,
                           delivery_failure_count, failing_since, consecutive_failures)
SELECT id, last_triggered_at, delivery_success_count, delivery_failure_count,
       failing_since, consecutive_failures
FROM webhooks;

DROP TRIGGER webhooks_config_changed ON webhooks;

ALTER TABLE webhooks
    DROP COLUMN last_triggered_at,
    DROP COLUMN delivery_success_count,
    DROP COLUMN delivery_failure_count,
    DROP COLUMN failing_since,
    DROP COLUMN consecutive_failures;

CREATE TRIGGER webhooks_config_changed
    AFTER INSERT OR DELETE OR UPDATE ON webhooks
    FOR EACH STATEMENT EXECUTE FUNCTION bump_config_version();
