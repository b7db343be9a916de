-- Retries: the sweeper looks for deliveries whose retry is long overdue,
-- and recovery for a webhook's failed deliveries in a time window.
CREATE INDEX deliveries_retry_due ON deliveries (next_attempt_at) WHERE status = 'retrying';
CREATE INDEX deliveries_webhook_failed ON deliveries (webhook_id, created_at) WHERE status = 'failed';
