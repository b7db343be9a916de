-- Deleting a tenant: the tenant is marked first (its tokens go and its
-- webhooks stop at once), then its data is removed in small batches by the
-- dispatchers' purger, and the tenant row last. The trigger now also fires
-- on updates, so every process sees the mark within 2 seconds.
ALTER TABLE tenants ADD COLUMN deleted_at timestamptz;
DROP TRIGGER tenants_config_changed ON tenants;
CREATE TRIGGER tenants_config_changed AFTER INSERT OR DELETE OR UPDATE
    ON tenants FOR EACH STATEMENT EXECUTE FUNCTION bump_config_version();

-- Per-webhook statistics, one row per webhook and minute, written with the
-- attempts they count (in the same statement), so that a chart over 7 days
-- reads at most 10,080 rows whatever the number of deliveries.
-- `latency` counts attempts by duration: at most 10, 25, 50, 100, 250, 500,
-- 1000, 2500, 5000, 10000 ms, and longer.
CREATE TABLE webhook_stats_minutely (
    webhook_id uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    minute     timestamptz NOT NULL,
    succeeded  bigint NOT NULL DEFAULT 0,
    retried    bigint NOT NULL DEFAULT 0,
    failed     bigint NOT NULL DEFAULT 0,
    latency    bigint[] NOT NULL,
    PRIMARY KEY (webhook_id, minute)
);

-- The last 8 days of attempts recorded before this release, counted once.
INSERT INTO webhook_stats_minutely (webhook_id, minute, succeeded, retried, failed, latency)
SELECT d.webhook_id, date_trunc('minute', a.attempted_at),
       count(*) FILTER (WHERE a.status_code BETWEEN 200 AND 299),
       count(*) FILTER (WHERE NOT coalesce(a.status_code BETWEEN 200 AND 299, false)
                          AND (a.attempt < d.attempt_count OR d.status <> 'failed')),
       count(*) FILTER (WHERE NOT coalesce(a.status_code BETWEEN 200 AND 299, false)
                          AND a.attempt = d.attempt_count AND d.status = 'failed'),
       ARRAY[count(*) FILTER (WHERE a.duration_ms <= 10),
             count(*) FILTER (WHERE a.duration_ms > 10 AND a.duration_ms <= 25),
             count(*) FILTER (WHERE a.duration_ms > 25 AND a.duration_ms <= 50),
             count(*) FILTER (WHERE a.duration_ms > 50 AND a.duration_ms <= 100),
             count(*) FILTER (WHERE a.duration_ms > 100 AND a.duration_ms <= 250),
             count(*) FILTER (WHERE a.duration_ms > 250 AND a.duration_ms <= 500),
             count(*) FILTER (WHERE a.duration_ms > 500 AND a.duration_ms <= 1000),
             count(*) FILTER (WHERE a.duration_ms > 1000 AND a.duration_ms <= 2500),
             count(*) FILTER (WHERE a.duration_ms > 2500 AND a.duration_ms <= 5000),
             count(*) FILTER (WHERE a.duration_ms > 5000 AND a.duration_ms <= 10000),
             count(*) FILTER (WHERE a.duration_ms > 10000)]
FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
WHERE a.attempted_at > now() - interval '8 days'
GROUP BY 1, 2;
