//! A tenant's event-type catalog and its `catalog_mode`.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::Json;
use uuid::Uuid;

use super::{DbError, DbResult};
use crate::catalog::CatalogMode;

/// One catalogued event type.
#[derive(Debug, Clone)]
pub struct EventTypeRow {
    pub name: String,
    pub description: String,
    /// A JSON Schema (draft 2020-12) for the events' `data`.
    pub schema: Option<serde_json::Value>,
    pub examples: Vec<serde_json::Value>,
    pub deprecated: bool,
    pub group: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "name, description, schema, examples, deprecated, group_name, created_at, updated_at";

fn from_row(row: &Row) -> DbResult<EventTypeRow> {
    let examples: Json<serde_json::Value> = row.try_get("examples")?;
    let examples = match examples.0 {
        serde_json::Value::Array(items) => items,
        other => vec![other],
    };
    Ok(EventTypeRow {
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        schema: row
            .try_get::<_, Option<Json<serde_json::Value>>>("schema")?
            .map(|j| j.0),
        examples,
        deprecated: row.try_get("deprecated")?,
        group: row.try_get("group_name")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// What a create or replace writes.
#[derive(Debug, Clone)]
pub struct EventTypeFields {
    pub description: String,
    pub schema: Option<serde_json::Value>,
    pub examples: Vec<serde_json::Value>,
    pub deprecated: bool,
    pub group: Option<String>,
}

/// Runs an insert or update whose parameters are the tenant, the name and
/// the fields in [`EventTypeFields`] order (`$1` to `$7`).
async fn write(
    client: &impl GenericClient,
    sql: &str,
    tenant_id: Uuid,
    name: &str,
    f: &EventTypeFields,
) -> DbResult<Option<EventTypeRow>> {
    let row = client
        .query_opt(
            &format!("{sql} RETURNING {COLUMNS}"),
            &[
                &tenant_id,
                &name,
                &f.description,
                &f.schema.as_ref().map(Json),
                &Json(&f.examples),
                &f.deprecated,
                &f.group,
            ],
        )
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Adds a type to the catalog.
///
/// # Errors
/// [`DbError::Conflict`] when the tenant already has a type of that name.
pub async fn create(
    client: &impl GenericClient,
    tenant_id: Uuid,
    name: &str,
    f: &EventTypeFields,
) -> DbResult<EventTypeRow> {
    write(
        client,
        "INSERT INTO event_types (tenant_id, name, description, schema, examples, deprecated, group_name)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        tenant_id,
        name,
        f,
    )
    .await?
    .ok_or_else(|| DbError::Decode("an insert returned no row".to_owned()))
}

/// Writes every field of an existing type; `None` when there is none.
///
/// # Errors
/// A database error.
pub async fn update(
    client: &impl GenericClient,
    tenant_id: Uuid,
    name: &str,
    f: &EventTypeFields,
) -> DbResult<Option<EventTypeRow>> {
    write(
        client,
        "UPDATE event_types SET description = $3, schema = $4, examples = $5,
                deprecated = $6, group_name = $7, updated_at = now()
         WHERE tenant_id = $1 AND name = $2",
        tenant_id,
        name,
        f,
    )
    .await
}

/// One type of the tenant's catalog; `lock` takes a row lock for a
/// read-modify-write inside a transaction.
///
/// # Errors
/// A database error.
pub async fn get(
    client: &impl GenericClient,
    tenant_id: Uuid,
    name: &str,
    lock: bool,
) -> DbResult<Option<EventTypeRow>> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM event_types WHERE tenant_id = $1 AND name = $2{}",
                if lock { " FOR UPDATE" } else { "" }
            ),
            &[&tenant_id, &name],
        )
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The tenant's whole catalog, by group then name.
///
/// # Errors
/// A database error.
pub async fn list(client: &impl GenericClient, tenant_id: Uuid) -> DbResult<Vec<EventTypeRow>> {
    client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM event_types WHERE tenant_id = $1
                 ORDER BY group_name NULLS LAST, name"
            ),
            &[&tenant_id],
        )
        .await?
        .iter()
        .map(from_row)
        .collect()
}

/// How many types the tenant has catalogued.
///
/// # Errors
/// A database error.
pub async fn count(client: &impl GenericClient, tenant_id: Uuid) -> DbResult<i64> {
    let row = client
        .query_one(
            "SELECT count(*) FROM event_types WHERE tenant_id = $1",
            &[&tenant_id],
        )
        .await?;
    Ok(row.get(0))
}

/// Removes a type; false when there was none.
///
/// # Errors
/// A database error.
pub async fn delete(client: &impl GenericClient, tenant_id: Uuid, name: &str) -> DbResult<bool> {
    let n = client
        .execute(
            "DELETE FROM event_types WHERE tenant_id = $1 AND name = $2",
            &[&tenant_id, &name],
        )
        .await?;
    Ok(n > 0)
}

/// The tenant's mode, `None` for no such (live) tenant.
///
/// # Errors
/// A database error, or a stored mode this Herald does not know.
pub async fn mode(client: &impl GenericClient, tenant_id: Uuid) -> DbResult<Option<CatalogMode>> {
    let row = client
        .query_opt(
            "SELECT catalog_mode FROM tenants WHERE id = $1 AND deleted_at IS NULL",
            &[&tenant_id],
        )
        .await?;
    row.map(|r| {
        let text: String = r.get(0);
        CatalogMode::parse(&text)
            .ok_or_else(|| DbError::Decode(format!("unknown catalog_mode {text:?}")))
    })
    .transpose()
}

/// Sets the tenant's mode; false for no such (live) tenant.
///
/// # Errors
/// A database error.
pub async fn set_mode(
    client: &impl GenericClient,
    tenant_id: Uuid,
    mode: CatalogMode,
) -> DbResult<bool> {
    let n = client
        .execute(
            "UPDATE tenants SET catalog_mode = $2 WHERE id = $1 AND deleted_at IS NULL",
            &[&tenant_id, &mode.as_str()],
        )
        .await?;
    Ok(n > 0)
}

/// The catalogued names.
///
/// # Errors
/// A database error.
pub async fn names(client: &impl GenericClient, tenant_id: Uuid) -> DbResult<Vec<String>> {
    Ok(client
        .query(
            "SELECT name FROM event_types WHERE tenant_id = $1",
            &[&tenant_id],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The names and schemas the ingest checks use.
///
/// # Errors
/// A database error.
pub async fn schemas(
    client: &impl GenericClient,
    tenant_id: Uuid,
) -> DbResult<Vec<(String, Option<serde_json::Value>)>> {
    client
        .query(
            "SELECT name, schema FROM event_types WHERE tenant_id = $1",
            &[&tenant_id],
        )
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get("name")?,
                r.try_get::<_, Option<Json<serde_json::Value>>>("schema")?
                    .map(|j| j.0),
            ))
        })
        .collect()
}
