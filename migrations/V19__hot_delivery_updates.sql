-- A delivery's first attempt that succeeds changes its status, attempt
-- count and updated_at, none of them indexed: with no index naming
-- `status` (in its key or its predicate) and room left on the page, that
-- update is heap-only (HOT) and writes no index entry at all, where it
-- wrote one in each of the table's four full indexes before.
--
-- The retry sweeper's index keeps its rows by due time alone (only
-- deliveries waiting for a retry have one); the failed deliveries of a
-- webhook are found through the webhook's index by time, which the
-- recovery reads in order.
DROP INDEX deliveries_retry_due;
CREATE INDEX deliveries_retry_due ON deliveries (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
DROP INDEX deliveries_webhook_failed;

-- Room for the updated row on its page: a fifth of each page stays free.
DO $$
DECLARE
    p regclass;
BEGIN
    FOR p IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'deliveries'::regclass LOOP
        EXECUTE format('ALTER TABLE %s SET (fillfactor = 80)', p);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION herald_ensure_partitions(first date, last date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    d date;
    day text;
    created integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('herald_partitions'));
    FOR d IN SELECT generate_series(first, last, interval '1 day')::date LOOP
        day := to_char(d, 'YYYYMMDD');
        CONTINUE WHEN to_regclass('events_p' || day) IS NOT NULL;
        EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
                       'events_p' || day,
                       d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
        EXECUTE format('CREATE TABLE %I PARTITION OF deliveries FOR VALUES FROM (%L) TO (%L)
                        WITH (fillfactor = 80)',
                       'deliveries_p' || day, herald_day_uuid(d), herald_day_uuid(d + 1));
        EXECUTE format('CREATE TABLE %I PARTITION OF delivery_attempts FOR VALUES FROM (%L) TO (%L)',
                       'delivery_attempts_p' || day, herald_day_uuid(d), herald_day_uuid(d + 1));
        created := created + 1;
    END LOOP;
    RETURN created;
END
$$;
