-- Each tenant's catalog of event types: what its events are called and, if
-- it says, what their `data` must look like (a JSON Schema, draft
-- 2020-12). `catalog_mode` says what ingest does with an event the catalog
-- does not know or whose data fails its schema: `open` nothing (no check),
-- `warn` accepts it and says so, `strict` refuses it (422 over HTTP, parked
-- in the invalid-events queue over AMQP). A change bumps the configuration
-- version, so every process sees it within the version poll interval.
ALTER TABLE tenants ADD COLUMN catalog_mode text NOT NULL DEFAULT 'open'
    CHECK (catalog_mode IN ('open', 'warn', 'strict'));

CREATE TABLE event_types (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    schema      jsonb,
    examples    jsonb NOT NULL DEFAULT '[]',
    deprecated  boolean NOT NULL DEFAULT false,
    group_name  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);

CREATE TRIGGER event_types_config_changed AFTER INSERT OR DELETE OR UPDATE
    ON event_types FOR EACH STATEMENT EXECUTE FUNCTION bump_config_version();
