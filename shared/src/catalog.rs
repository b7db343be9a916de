//! Each tenant's event-type catalog as ingest checks it: the mode, the
//! catalogued names, and each type's schema compiled once (draft 2020-12)
//! and cached until the configuration version moves.
//!
//! Schemas are hostile input too. They are compiled with no way to fetch
//! anything (a `$ref` outside the schema fails to compile), with Rust's
//! `regex` engine for `pattern` (linear time: no pattern can backtrack
//! without bound), and within a size limit; the api refuses a schema that
//! does not compile, naming the field.

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::Pool;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::db::config_version::{VersionWatch, VersionedCache};
use crate::db::{DbResult, event_types};

/// What ingest does with an event its tenant's catalog does not know, or
/// whose data fails its type's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatalogMode {
    /// No check (the default).
    #[default]
    Open,
    /// Accepted, with a warning in the answer and a metric.
    Warn,
    /// Refused: 422 over HTTP, parked over AMQP.
    Strict,
}

impl CatalogMode {
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(Self::Open),
            "warn" => Some(Self::Warn),
            "strict" => Some(Self::Strict),
            _ => None,
        }
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Warn => "warn",
            Self::Strict => "strict",
        }
    }
}

/// A schema's serialized size, at most.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Regular expressions of a schema, compiled size at most.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Errors reported for one event, at most.
const MAX_FINDINGS: usize = 10;
/// One finding's detail, in characters at most.
const MAX_DETAIL_CHARS: usize = 200;

/// A compiled schema.
pub type Schema = Arc<jsonschema::Validator>;

/// Compiles a schema for `data`.
///
/// # Errors
/// The schema is not a valid draft 2020-12 schema, refers outside itself,
/// or is too large; the message says why.
pub fn compile(schema: &serde_json::Value) -> Result<Schema, String> {
    let size = serde_json::to_vec(schema).map_or(usize::MAX, |v| v.len());
    if size > MAX_SCHEMA_BYTES {
        return Err(format!("is larger than {MAX_SCHEMA_BYTES} bytes"));
    }
    jsonschema::draft202012::options()
        .with_pattern_options(jsonschema::PatternOptions::regex().size_limit(REGEX_SIZE_LIMIT))
        .build(schema)
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

/// Why an event does not fit the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The field at fault: `event_type`, or `data` and a JSON pointer into
    /// it (`data/amount`).
    pub field: String,
    pub detail: String,
}

impl Finding {
    /// The metric label: `unknown_type` or `schema`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        if self.field == "event_type" {
            "unknown_type"
        } else {
            "schema"
        }
    }
}

/// Counts an event's findings (once per event, by its first finding).
pub fn count(metrics: &crate::runtime::metrics::Metrics, mode: CatalogMode, findings: &[Finding]) {
    if let Some(first) = findings.first() {
        metrics
            .events_off_catalog
            .with_label_values(&[mode.as_str(), first.kind()])
            .inc();
    }
}

/// Checks `data` against a compiled schema: every failure (up to ten),
/// each naming the place in `data`.
#[must_use]
pub fn check_data(schema: &jsonschema::Validator, data: &serde_json::Value) -> Vec<Finding> {
    schema
        .iter_errors(data)
        .take(MAX_FINDINGS)
        .map(|e| Finding {
            field: format!("data{}", e.instance_path()),
            // The message quotes the value, which may be as long as the
            // data: bounded, so that a 422 or a park reason stays small.
            detail: crate::text::excerpt(e.to_string().as_bytes(), MAX_DETAIL_CHARS),
        })
        .collect()
}

/// A tenant's catalog as ingest needs it.
#[derive(Debug, Default)]
pub struct Catalog {
    /// False when no such tenant exists.
    pub exists: bool,
    pub mode: CatalogMode,
    /// Catalogued names, with their schemas.
    types: HashMap<String, Option<Schema>>,
}

impl Catalog {
    /// Why the event does not fit, if it does not; nothing in `open` mode.
    /// A type with no schema takes any data.
    #[must_use]
    pub fn check(&self, event_type: &str, data: &RawValue) -> Vec<Finding> {
        if self.mode == CatalogMode::Open {
            return Vec::new();
        }
        match self.types.get(event_type) {
            None => vec![Finding {
                field: "event_type".to_owned(),
                detail: format!("{event_type:?} is not in the tenant's event-type catalog"),
            }],
            Some(None) => Vec::new(),
            Some(Some(schema)) => match serde_json::from_str::<serde_json::Value>(data.get()) {
                Ok(value) => check_data(schema, &value),
                Err(e) => vec![Finding {
                    field: "data".to_owned(),
                    detail: format!("is not JSON: {e}"),
                }],
            },
        }
    }

    /// Is this type catalogued?
    #[must_use]
    pub fn knows(&self, event_type: &str) -> bool {
        self.types.contains_key(event_type)
    }

    /// The catalogued names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.types.keys().map(String::as_str)
    }
}

/// Catalogs cached at most (tenants).
const CACHED_TENANTS: usize = 10_000;

/// Each tenant's [`Catalog`], loaded on first use and kept while the
/// configuration version stands.
#[derive(Debug, Clone)]
pub struct CatalogCache {
    pool: Pool,
    cache: VersionedCache<Uuid, Arc<Catalog>>,
}

impl CatalogCache {
    #[must_use]
    pub fn new(pool: Pool, watch: VersionWatch) -> Self {
        Self {
            pool,
            cache: VersionedCache::new(watch, CACHED_TENANTS),
        }
    }

    /// The tenant's catalog (one read of the mode, and of the types unless
    /// the mode is `open`, on a miss).
    ///
    /// # Errors
    /// A database error.
    pub async fn get(&self, tenant_id: Uuid) -> DbResult<Arc<Catalog>> {
        let version = match self.cache.lookup(&tenant_id) {
            Ok(catalog) => return Ok(catalog),
            Err(version) => version,
        };
        let catalog = Arc::new(self.load(tenant_id).await?);
        self.cache.store(version, tenant_id, Arc::clone(&catalog));
        Ok(catalog)
    }

    async fn load(&self, tenant_id: Uuid) -> DbResult<Catalog> {
        let client = self.pool.get().await?;
        let Some(mode) = event_types::mode(&client, tenant_id).await? else {
            return Ok(Catalog::default());
        };
        let mut catalog = Catalog {
            exists: true,
            mode,
            types: HashMap::new(),
        };
        if mode == CatalogMode::Open {
            return Ok(catalog);
        }
        for (name, schema) in event_types::schemas(&client, tenant_id).await? {
            // Stored schemas compiled when they were saved; one that no
            // longer does (a newer validator) checks nothing rather than
            // refusing every event.
            let compiled = schema.and_then(|s| match compile(&s) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(%tenant_id, event_type = %name, error.message = %e,
                        "a stored schema no longer compiles; its events are not checked");
                    None
                }
            });
            catalog.types.insert(name, compiled);
        }
        Ok(catalog)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog(mode: CatalogMode, schema: serde_json::Value) -> Catalog {
        let mut types = HashMap::new();
        types.insert("invoice.paid".to_owned(), Some(compile(&schema).unwrap()));
        types.insert("invoice.sent".to_owned(), None);
        Catalog {
            exists: true,
            mode,
            types,
        }
    }

    fn raw(v: &serde_json::Value) -> Box<RawValue> {
        RawValue::from_string(v.to_string()).unwrap()
    }

    #[test]
    fn findings_name_the_field_at_fault() {
        let schema = json!({
            "type": "object",
            "required": ["amount", "currency"],
            "properties": {"amount": {"type": "number", "minimum": 0},
                           "currency": {"enum": ["EUR", "USD"]}}
        });
        let c = catalog(CatalogMode::Strict, schema);
        assert!(
            c.check(
                "invoice.paid",
                &raw(&json!({"amount": 5, "currency": "EUR"}))
            )
            .is_empty()
        );
        let bad = c.check(
            "invoice.paid",
            &raw(&json!({"amount": -1, "currency": "EUR"})),
        );
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].field, "data/amount");
        let missing = c.check("invoice.paid", &raw(&json!({"amount": 1})));
        assert_eq!(missing[0].field, "data");
        assert!(missing[0].detail.contains("currency"), "{missing:?}");
        // A finding quoting a huge value stays small.
        let long = c.check(
            "invoice.paid",
            &raw(&json!({"amount": 1, "currency": "E".repeat(100_000)})),
        );
        assert!(
            long[0].detail.chars().count() <= 200,
            "{}",
            long[0].detail.len()
        );
        // No schema: any data; not catalogued: the type is at fault.
        assert!(c.check("invoice.sent", &raw(&json!([1, 2]))).is_empty());
        assert_eq!(
            c.check("invoce.paid", &raw(&json!({})))[0].field,
            "event_type"
        );
        // Open mode checks nothing.
        let open = catalog(CatalogMode::Open, json!(false));
        assert!(open.check("anything", &raw(&json!(1))).is_empty());
    }

    #[test]
    fn hostile_schemas_do_not_compile_or_cannot_backtrack() {
        // Nothing is fetched: a remote or file reference fails to compile.
        assert!(compile(&json!({"$ref": "https://example.com/s.json"})).is_err());
        assert!(compile(&json!({"$ref": "file:///etc/passwd"})).is_err());
        // Not a schema.
        assert!(compile(&json!({"type": "no-such-type"})).is_err());
        assert!(compile(&json!({"minimum": "zero"})).is_err());
        // Too large.
        let big = json!({"description": "x".repeat(MAX_SCHEMA_BYTES)});
        assert!(compile(&big).unwrap_err().contains("larger"));
        // A pattern that backtracks exponentially elsewhere runs in linear
        // time here (the `regex` engine): this returns at once.
        let s = compile(&json!({"type": "string", "pattern": "^(a+)+$"})).unwrap();
        let evil = json!(format!("{}!", "a".repeat(50_000)));
        assert!(!s.is_valid(&evil));
        // A pattern the linear engine cannot run is refused, not run.
        assert!(compile(&json!({"pattern": "(a)\\1"})).is_err());
        // References that go round in circles end (refused or answered),
        // whatever they are checked against.
        for cyclic in [
            json!({"$ref": "#"}),
            json!({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}),
            json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"allOf": [{"$ref": "#/$defs/a"}]}},
                   "$ref": "#/$defs/a"}),
        ] {
            if let Ok(s) = compile(&cyclic) {
                let _ = s.is_valid(&json!({"a": [1, {"b": 2}]}));
            }
        }
    }
}
