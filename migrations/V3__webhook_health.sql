-- How a webhook's endpoint is doing: when its current run of failed
-- attempts began and how long it is. A success resets both; a run that
-- lasts long enough disables the webhook.
ALTER TABLE webhooks
    ADD COLUMN failing_since timestamptz,
    ADD COLUMN consecutive_failures integer NOT NULL DEFAULT 0;
