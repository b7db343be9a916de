-- Events, deliveries and attempts partitioned by day (UTC), so that
-- retention drops a whole day at once instead of deleting rows.
--
-- One day's partitions hold together: the events received that day
-- (events by received_at); the deliveries whose id carries a time in that
-- day (deliveries by id: a delivery id is a UUIDv7 whose time is its
-- event's received_at, so `WHERE id = $1` reaches one partition); and the
-- attempts of those deliveries (delivery_attempts by delivery_id).
--
-- The idempotency key (tenant, event id) cannot be a unique index across
-- partitions in Postgres; the key includes the partition column
-- (tenant_id, id, received_at), and the dispatcher checks the key against
-- the events received within the idempotency window under a transaction
-- lock on the key (see db::deliveries::insert_events).
--
-- The hot tables reference each other by value, not by foreign key: a
-- foreign key into a partitioned table makes dropping a partition check
-- every referencing row. Tenant and webhook deletion remove what they own
-- explicitly.

-- The first UUID of a UTC day: its UUIDv7 time (48 bits of milliseconds
-- since the epoch) at midnight, the rest zero.
CREATE FUNCTION herald_day_uuid(d date) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT encode(substring(int8send((extract(epoch FROM d::timestamp) * 1000)::bigint) FROM 3)
                  || '\x00000000000000000000'::bytea, 'hex')::uuid
$$;

-- A random UUIDv7 carrying the time `at` (for backfills and tests; Herald
-- makes its ids in Rust).
CREATE FUNCTION herald_uuid_v7(at timestamptz) RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(set_byte(overlay(uuid_send(gen_random_uuid())
                                   PLACING substring(int8send(floor(extract(epoch FROM at) * 1000)::bigint) FROM 3)
                                   FROM 1 FOR 6),
                           6, (get_byte(uuid_send(gen_random_uuid()), 6) & 15) | 112), 'hex')::uuid
$$;

-- Creates the day partitions of `first` through `last` that do not exist
-- yet; answers how many days it created. Safe to call from several
-- processes at once.
CREATE FUNCTION herald_ensure_partitions(first date, last date) RETURNS integer
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
        EXECUTE format('CREATE TABLE %I PARTITION OF deliveries FOR VALUES FROM (%L) TO (%L)',
                       'deliveries_p' || day, herald_day_uuid(d), herald_day_uuid(d + 1));
        EXECUTE format('CREATE TABLE %I PARTITION OF delivery_attempts FOR VALUES FROM (%L) TO (%L)',
                       'delivery_attempts_p' || day, herald_day_uuid(d), herald_day_uuid(d + 1));
        created := created + 1;
    END LOOP;
    RETURN created;
END
$$;

-- The days that have partitions, oldest first.
CREATE FUNCTION herald_partition_days() RETURNS SETOF date
LANGUAGE sql STABLE AS $$
    SELECT to_date(substring(c.relname FROM 9), 'YYYYMMDD') AS day
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'events'::regclass AND c.relname ~ '^events_p[0-9]{8}$'
    ORDER BY day
$$;

-- The tables as they were, out of the way: their index names are freed
-- for the new ones.
ALTER TABLE delivery_attempts RENAME TO delivery_attempts_old;
ALTER TABLE deliveries RENAME TO deliveries_old;
ALTER TABLE events RENAME TO events_old;
ALTER INDEX events_pkey RENAME TO events_old_pkey;
ALTER INDEX deliveries_pkey RENAME TO deliveries_old_pkey;
ALTER INDEX delivery_attempts_pkey RENAME TO delivery_attempts_old_pkey;
ALTER TABLE deliveries_old DROP CONSTRAINT deliveries_tenant_id_event_id_webhook_id_key;
DROP INDEX events_tenant_received, events_received, deliveries_tenant_created,
    deliveries_webhook_created, deliveries_retry_due, deliveries_webhook_failed,
    delivery_attempts_delivery;

CREATE TABLE events (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- The producer's id (at most 255 of A-Z a-z 0-9 _ . : -) or a UUIDv7.
    id          text NOT NULL,
    event_type  text NOT NULL,
    data        jsonb NOT NULL,
    severity    text,
    source      text,
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id, received_at)
) PARTITION BY RANGE (received_at);
CREATE INDEX events_tenant_received ON events (tenant_id, received_at DESC);
-- The operators' overview counts the last hour's arrivals: rows arrive in
-- received_at order, which a BRIN index summarizes for almost nothing.
CREATE INDEX events_received ON events USING brin (received_at);

CREATE TABLE deliveries (
    -- A UUIDv7 whose time is the event's received_at (the partition key).
    id                uuid NOT NULL,
    tenant_id         uuid NOT NULL,
    event_id          text NOT NULL,
    -- With (tenant_id, event_id), the event's key.
    event_received_at timestamptz NOT NULL,
    webhook_id        uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_type        text NOT NULL,
    -- pending | retrying | success | failed
    status            text NOT NULL DEFAULT 'pending',
    attempt_count     integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id)
) PARTITION BY RANGE (id);
CREATE INDEX deliveries_event ON deliveries (tenant_id, event_id);
CREATE INDEX deliveries_tenant_created ON deliveries (tenant_id, created_at DESC);
CREATE INDEX deliveries_webhook_created ON deliveries (webhook_id, created_at DESC);
CREATE INDEX deliveries_retry_due ON deliveries (next_attempt_at) WHERE status = 'retrying';
CREATE INDEX deliveries_webhook_failed ON deliveries (webhook_id, created_at) WHERE status = 'failed';

CREATE TABLE delivery_attempts (
    delivery_id   uuid NOT NULL,
    id            uuid NOT NULL,
    attempt       integer NOT NULL,
    attempted_at  timestamptz NOT NULL,
    duration_ms   integer NOT NULL,
    status_code   integer,
    -- First 1,000 characters of the response body.
    response_body text,
    error         text,
    PRIMARY KEY (delivery_id, id)
) PARTITION BY RANGE (delivery_id);

-- Partitions for every day that holds a row, and the week ahead.
SELECT herald_ensure_partitions(
    least((SELECT min(received_at AT TIME ZONE 'UTC')::date FROM events_old),
          (SELECT min(to_timestamp(('x' || left(replace(id::text, '-', ''), 12))::bit(48)::bigint / 1000.0)
                      AT TIME ZONE 'UTC')::date FROM deliveries_old),
          (now() AT TIME ZONE 'UTC')::date),
    greatest((SELECT max(received_at AT TIME ZONE 'UTC')::date FROM events_old),
             (SELECT max(to_timestamp(('x' || left(replace(id::text, '-', ''), 12))::bit(48)::bigint / 1000.0)
                         AT TIME ZONE 'UTC')::date FROM deliveries_old),
             (now() AT TIME ZONE 'UTC')::date) + 7);

INSERT INTO events (tenant_id, id, event_type, data, severity, source, occurred_at, received_at)
SELECT tenant_id, id, event_type, data, severity, source, occurred_at, received_at FROM events_old;
INSERT INTO deliveries (id, tenant_id, event_id, event_received_at, webhook_id, event_type, status,
                        attempt_count, next_attempt_at, created_at, updated_at)
SELECT d.id, d.tenant_id, d.event_id, e.received_at, d.webhook_id, d.event_type, d.status,
       d.attempt_count, d.next_attempt_at, d.created_at, d.updated_at
FROM deliveries_old d JOIN events_old e ON e.tenant_id = d.tenant_id AND e.id = d.event_id;
INSERT INTO delivery_attempts (delivery_id, id, attempt, attempted_at, duration_ms, status_code,
                               response_body, error)
SELECT delivery_id, id, attempt, attempted_at, duration_ms, status_code, response_body, error
FROM delivery_attempts_old;

DROP TABLE delivery_attempts_old, deliveries_old, events_old;
