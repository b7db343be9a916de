-- Retention: the pruner deletes events (and with them their deliveries and
-- attempts) older than the configured age, oldest first, in small batches.
CREATE INDEX events_received ON events (received_at);
