//! The body a webhook's receiver gets, in the webhook's `format`:
//!
//! * `json` (the default): the envelope of the design, `severity` and
//!   `source` included when the event has them;
//! * `splunk_hec`: a Splunk HTTP Event Collector event (`time`, `host`,
//!   `source`, `sourcetype = herald:<type>`, `event`);
//! * `datadog`: a Datadog event (`title`, `text`, `alert_type`,
//!   `source_type_name`, `tags`, `date_happened`);
//! * `elastic`: an Elastic Common Schema document (`@timestamp`,
//!   `event.*`, `message`, the data under `herald.data`);
//! * `custom`: a minijinja template over `id`, `type`, `timestamp`,
//!   `tenant_id`, `webhook_id`, `severity`, `source`, `data`, and `event`
//!   (every field the seeds' envelopes use: `event.timestamp_unix`…);
//! * `vaultls`, `securebase`, `vaulytica`, `webnet`: the envelopes of
//!   those systems (see [`seeds`]).

mod seeds;
pub use seeds::python_dumps;

use std::sync::{Arc, LazyLock};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::json;
use serde_json::value::RawValue;
use uuid::Uuid;

use herald_shared::models::Severity;

pub use herald_shared::delivery::options::{CustomBody, Format, JSON_CONTENT_TYPE, is_json};

/// One event as a body is rendered from it.
#[derive(Debug, Clone, Copy)]
pub struct EventView<'a> {
    pub id: &'a str,
    pub event_type: &'a str,
    pub timestamp: DateTime<Utc>,
    pub tenant_id: Uuid,
    pub webhook_id: Uuid,
    pub severity: Option<Severity>,
    pub source: Option<&'a str>,
    pub data: &'a RawValue,
    /// Splunk's `host`: `worker.splunk_host`, else this machine's name.
    pub host: &'a str,
}

/// Why a body could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the template does not render: {0}")]
    Template(String),
    #[error("the template rendered invalid JSON for {content_type}: {detail}")]
    InvalidJson {
        content_type: String,
        detail: String,
    },
    #[error("cannot render the body: {0}")]
    Json(#[from] serde_json::Error),
}

/// A webhook's format, ready to render (a custom template parsed once).
#[derive(Debug, Clone)]
pub enum Renderer {
    Json,
    SplunkHec,
    Datadog,
    Elastic,
    Custom(Arc<CompiledTemplate>),
    VaulTls,
    SecureBase,
    Vaulytica,
    Webnet,
}

impl Renderer {
    /// # Errors
    /// A custom template that does not parse.
    pub fn new(format: Format, custom: Option<&CustomBody>) -> Result<Self, RenderError> {
        Ok(match format {
            Format::Json => Self::Json,
            Format::SplunkHec => Self::SplunkHec,
            Format::Datadog => Self::Datadog,
            Format::Elastic => Self::Elastic,
            Format::VaulTls => Self::VaulTls,
            Format::SecureBase => Self::SecureBase,
            Format::Vaulytica => Self::Vaulytica,
            Format::Webnet => Self::Webnet,
            Format::Custom => {
                let custom = custom.ok_or_else(|| {
                    RenderError::Template("format custom needs a template".to_owned())
                })?;
                Self::Custom(Arc::new(CompiledTemplate::new(custom)?))
            }
        })
    }

    #[must_use]
    pub fn content_type(&self) -> &str {
        match self {
            Self::Custom(t) => &t.content_type,
            _ => JSON_CONTENT_TYPE,
        }
    }

    /// The request body for one event.
    ///
    /// # Errors
    /// A custom template that fails on this event or renders invalid JSON
    /// for a JSON content type.
    pub fn render(&self, e: &EventView<'_>) -> Result<Vec<u8>, RenderError> {
        Ok(match self {
            Self::Json => serde_json::to_vec(&Envelope::from(e))?,
            Self::SplunkHec => serde_json::to_vec(&splunk_hec(e)?)?,
            Self::Datadog => serde_json::to_vec(&datadog(e)?)?,
            Self::Elastic => serde_json::to_vec(&elastic(e)?)?,
            Self::Custom(t) => t.render(e)?,
            Self::VaulTls => serde_json::to_vec(&seeds::vaultls(e)?)?,
            Self::SecureBase => serde_json::to_vec(&seeds::securebase(e)?)?,
            Self::Vaulytica => seeds::vaulytica(e)?,
            Self::Webnet => serde_json::to_vec(&seeds::webnet(e)?)?,
        })
    }
}

/// The `json` format: the design's envelope.
#[derive(Serialize)]
struct Envelope<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    timestamp: DateTime<Utc>,
    tenant_id: Uuid,
    webhook_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<Severity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    data: &'a RawValue,
}

impl<'a> From<&EventView<'a>> for Envelope<'a> {
    fn from(e: &EventView<'a>) -> Self {
        Self {
            id: e.id,
            event_type: e.event_type,
            timestamp: e.timestamp,
            tenant_id: e.tenant_id,
            webhook_id: e.webhook_id,
            severity: e.severity,
            source: e.source,
            data: e.data,
        }
    }
}

/// The name this machine goes by, for Splunk's `host`.
pub static HOST: LazyLock<String> = LazyLock::new(|| {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "herald".to_owned())
});

fn data_value(e: &EventView<'_>) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::from_str(e.data.get())
}

/// Seconds since the epoch with milliseconds, as Splunk's `time` wants.
fn epoch_seconds(t: DateTime<Utc>) -> serde_json::Value {
    let millis = t.timestamp_millis();
    // Exact as a decimal: whole seconds and three digits.
    let text = format!("{}.{:03}", millis.div_euclid(1000), millis.rem_euclid(1000));
    serde_json::from_str(&text).unwrap_or_else(|_| json!(t.timestamp()))
}

fn splunk_hec(e: &EventView<'_>) -> Result<serde_json::Value, serde_json::Error> {
    let mut event = json!({
        "id": e.id,
        "type": e.event_type,
        "tenant_id": e.tenant_id,
        "webhook_id": e.webhook_id,
        "data": data_value(e)?,
    });
    if let Some(s) = e.severity {
        event["severity"] = json!(s.as_str());
    }
    if let Some(s) = e.source {
        event["source"] = json!(s);
    }
    Ok(json!({
        "time": epoch_seconds(e.timestamp),
        "host": e.host,
        "source": e.source.unwrap_or("herald"),
        "sourcetype": format!("herald:{}", e.event_type),
        "event": event,
    }))
}

/// Datadog keeps at most 4,000 characters of an event's text.
const DATADOG_TEXT_CHARS: usize = 4000;

fn datadog(e: &EventView<'_>) -> Result<serde_json::Value, serde_json::Error> {
    let alert_type = match e.severity {
        None | Some(Severity::Info) => "info",
        Some(Severity::Warning) => "warning",
        Some(Severity::Error | Severity::Critical) => "error",
    };
    let mut tags = vec![
        format!("event_type:{}", e.event_type),
        format!("tenant_id:{}", e.tenant_id),
        format!("webhook_id:{}", e.webhook_id),
    ];
    if let Some(s) = e.severity {
        tags.push(format!("severity:{}", s.as_str()));
    }
    if let Some(s) = e.source {
        tags.push(format!("source:{s}"));
    }
    let text: String = e.data.get().chars().take(DATADOG_TEXT_CHARS).collect();
    Ok(json!({
        "title": e.event_type,
        "text": text,
        "alert_type": alert_type,
        "priority": "normal",
        "source_type_name": "herald",
        "aggregation_key": e.id,
        "tags": tags,
        "date_happened": e.timestamp.timestamp(),
    }))
}

fn elastic(e: &EventView<'_>) -> Result<serde_json::Value, serde_json::Error> {
    // ECS `event.severity` is a number; the syslog scale, with the name in
    // `log.level`.
    let severity = e.severity.map(|s| match s {
        Severity::Critical => 2,
        Severity::Error => 3,
        Severity::Warning => 4,
        Severity::Info => 6,
    });
    let failed = matches!(e.severity, Some(Severity::Error | Severity::Critical));
    let mut doc = json!({
        "@timestamp": e.timestamp.to_rfc3339_opts(SecondsFormat::Millis, true),
        "message": format!("{} {}", e.event_type, e.id),
        "event": {
            "id": e.id,
            "kind": "event",
            "category": ["api"],
            "type": [if failed { "error" } else { "info" }],
            "action": e.event_type,
            "provider": e.source.unwrap_or("herald"),
            "dataset": "herald.events",
        },
        "labels": {
            "tenant_id": e.tenant_id,
            "webhook_id": e.webhook_id,
        },
        "herald": {
            "event_type": e.event_type,
            "data": data_value(e)?,
        },
    });
    if let Some(s) = e.severity {
        doc["event"]["severity"] = json!(severity);
        doc["log"] = json!({ "level": s.as_str() });
    }
    Ok(doc)
}

/// A custom body template, parsed.
#[derive(Debug)]
pub struct CompiledTemplate {
    env: minijinja::Environment<'static>,
    content_type: String,
}

const TEMPLATE_NAME: &str = "body";
/// Instructions one render may take (a loop over 10,000 items fits).
const TEMPLATE_FUEL: u64 = 200_000;
/// The largest body a template may render.
pub const MAX_RENDERED_BYTES: usize = 4 * 1024 * 1024;

/// How a value prints in a JSON body: strings JSON-escaped (so
/// `"{{ data.name }}"` stays valid whatever the name holds), a missing or
/// null value as `null`, numbers and booleans as JSON, objects and lists as
/// JSON; what `tojson` made is written as it is.
fn json_formatter(
    out: &mut minijinja::Output<'_>,
    _state: &minijinja::State<'_, '_>,
    value: &minijinja::Value,
) -> Result<(), minijinja::Error> {
    let text = if value.is_undefined() || value.is_none() {
        "null".to_owned()
    } else if value.is_safe() {
        value.to_string()
    } else if let Some(s) = value.as_str() {
        let quoted = serde_json::to_string(s).map_err(|e| {
            minijinja::Error::new(minijinja::ErrorKind::BadSerialization, e.to_string())
        })?;
        quoted[1..quoted.len() - 1].to_owned()
    } else {
        serde_json::to_string(value).map_err(|e| {
            minijinja::Error::new(minijinja::ErrorKind::BadSerialization, e.to_string())
        })?
    };
    out.write_str(&text).map_err(minijinja::Error::from)
}

/// Collects a render, refusing to grow past [`MAX_RENDERED_BYTES`].
struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_RENDERED_BYTES {
            return Err(std::io::Error::other("too large"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CompiledTemplate {
    /// # Errors
    /// A template that does not parse.
    pub fn new(custom: &CustomBody) -> Result<Self, RenderError> {
        let mut env = minijinja::Environment::new();
        // A missing field of the data renders as nothing (or `null` through
        // `tojson`) instead of failing every delivery of that event.
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        // A template is the tenant's code: bounded work per render.
        env.set_fuel(Some(TEMPLATE_FUEL));
        if is_json(&custom.content_type) {
            env.set_formatter(json_formatter);
        }
        env.add_template_owned(TEMPLATE_NAME, custom.template.clone())
            .map_err(|e| RenderError::Template(describe(&e)))?;
        Ok(Self {
            env,
            content_type: custom.content_type.clone(),
        })
    }

    /// # Errors
    /// The template fails on this event, or renders invalid JSON for a
    /// JSON content type.
    pub fn render(&self, e: &EventView<'_>) -> Result<Vec<u8>, RenderError> {
        let data = data_value(e)?;
        let timestamp = e.timestamp.to_rfc3339_opts(SecondsFormat::Millis, true);
        let event = minijinja::context! {
            id => e.id,
            type => e.event_type,
            event => e.event_type,
            event_type => e.event_type,
            timestamp => &timestamp,
            timestamp_unix => e.timestamp.timestamp(),
            timestamp_ms => e.timestamp.timestamp_millis(),
            timestamp_iso => e.timestamp.to_rfc3339_opts(SecondsFormat::Secs, true),
            event_timestamp => e.timestamp.to_rfc3339_opts(SecondsFormat::Secs, true),
            tenant_id => e.tenant_id.to_string(),
            webhook_id => e.webhook_id.to_string(),
            severity => e.severity.map(Severity::as_str),
            source => e.source,
        };
        let ctx = minijinja::context! {
            id => e.id,
            type => e.event_type,
            timestamp => timestamp,
            tenant_id => e.tenant_id.to_string(),
            webhook_id => e.webhook_id.to_string(),
            severity => e.severity.map(Severity::as_str),
            source => e.source,
            data => minijinja::Value::from_serialize(&data),
            event => event,
        };
        let mut out = Capped(Vec::new());
        self.env
            .get_template(TEMPLATE_NAME)
            .and_then(|t| t.render_captured_to(ctx, &mut out).map(drop))
            .map_err(|e| {
                // Only the cap fails a write into memory.
                if e.kind() == minijinja::ErrorKind::WriteFailure {
                    RenderError::Template(format!(
                        "the body would be larger than {MAX_RENDERED_BYTES} bytes"
                    ))
                } else {
                    RenderError::Template(describe(&e))
                }
            })?;
        if is_json(&self.content_type)
            && let Err(err) = serde_json::from_slice::<serde::de::IgnoredAny>(&out.0)
        {
            return Err(RenderError::InvalidJson {
                content_type: self.content_type.clone(),
                detail: err.to_string(),
            });
        }
        Ok(out.0)
    }
}

/// A minijinja error with its line, e.g. "syntax error: unexpected end of
/// input (line 1)".
fn describe(e: &minijinja::Error) -> String {
    let mut text = e.kind().to_string();
    if let Some(detail) = e.detail() {
        text.push_str(": ");
        text.push_str(detail);
    }
    if let Some(line) = e.line() {
        text.push_str(&format!(" (line {line})"));
    }
    text
}

/// The event a template is tried on when a webhook is saved.
#[must_use]
pub fn sample_event<'a>(webhook_id: Uuid, tenant_id: Uuid, data: &'a RawValue) -> EventView<'a> {
    EventView {
        id: "evt_sample",
        event_type: "webhook.test",
        timestamp: Utc::now(),
        tenant_id,
        webhook_id,
        severity: Some(Severity::Info),
        source: Some("herald"),
        data,
        host: "herald",
    }
}

/// Parses and renders a custom template on a sample event, as a webhook is
/// saved, so a broken template is refused then rather than failing every
/// delivery.
///
/// # Errors
/// The reason, for a 422.
pub fn check_template(custom: &CustomBody) -> Result<(), String> {
    let template = CompiledTemplate::new(custom).map_err(|e| e.to_string())?;
    let data = serde_json::value::to_raw_value(&json!({}))
        .map_err(|e| format!("cannot build the sample event: {e}"))?;
    template
        .render(&sample_event(Uuid::nil(), Uuid::nil(), &data))
        .map(drop)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: &RawValue, severity: Option<Severity>) -> EventView<'_> {
        EventView {
            id: "evt_1",
            event_type: "invoice.paid",
            timestamp: DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678Z")
                .expect("a valid time")
                .with_timezone(&Utc),
            tenant_id: Uuid::nil(),
            webhook_id: Uuid::max(),
            severity,
            source: Some("billing"),
            data,
            host: "h1",
        }
    }

    fn render(r: &Renderer, e: &EventView<'_>) -> serde_json::Value {
        serde_json::from_slice(&r.render(e).expect("renders")).expect("valid JSON")
    }

    #[test]
    fn splunk_time_is_seconds_with_milliseconds() {
        let data = RawValue::from_string(r#"{"n":1}"#.to_owned()).expect("raw");
        let v = render(
            &Renderer::SplunkHec,
            &event(&data, Some(Severity::Critical)),
        );
        assert_eq!(v["time"], json!(1_767_323_045.678));
        assert_eq!(v["sourcetype"], "herald:invoice.paid");
        assert_eq!(v["event"]["severity"], "critical");
        assert_eq!(v["event"]["data"], json!({"n": 1}));
    }

    #[test]
    fn datadog_maps_critical_to_error() {
        let data = RawValue::from_string("{}".to_owned()).expect("raw");
        let v = render(&Renderer::Datadog, &event(&data, Some(Severity::Critical)));
        assert_eq!(v["alert_type"], "error");
        assert_eq!(v["date_happened"], 1_767_323_045);
    }

    #[test]
    fn custom_template_renders_and_checks_json() {
        let custom = CustomBody {
            template: r#"{"text": {{ data.message | tojson }}, "kind": "{{ type }}", "missing": {{ data.nope.deeper | tojson }}}"#.to_owned(),
            content_type: JSON_CONTENT_TYPE.to_owned(),
        };
        let r = Renderer::new(Format::Custom, Some(&custom)).expect("parses");
        let data = RawValue::from_string(r#"{"message":"say \"hi\""}"#.to_owned()).expect("raw");
        let v = render(&r, &event(&data, None));
        assert_eq!(
            v,
            json!({"text": "say \"hi\"", "kind": "invoice.paid", "missing": null})
        );

        // A missing field prints as null in a JSON body.
        let sparse = CustomBody {
            template: r#"{"n": {{ data.n }}, "s": "{{ data.s }}"}"#.to_owned(),
            content_type: JSON_CONTENT_TYPE.to_owned(),
        };
        check_template(&sparse).expect("missing fields render as null");
        // Strings are escaped inside quotes; objects print as JSON.
        let r = Renderer::new(Format::Custom, Some(&sparse)).expect("parses");
        let data =
            RawValue::from_string(r#"{"n": {"a": [1, true]}, "s": "say \"hi\"\n"}"#.to_owned())
                .expect("raw");
        assert_eq!(
            render(&r, &event(&data, None)),
            json!({"n": {"a": [1, true]}, "s": "say \"hi\"\n"})
        );
        // Endless work and huge bodies are cut short.
        for template in [
            "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
            "{% for a in range(100) %}{{ 'x' * 100000 }}{% endfor %}",
        ] {
            let err = check_template(&CustomBody {
                template: template.to_owned(),
                content_type: "text/plain".to_owned(),
            })
            .expect_err("bounded");
            assert!(err.contains("fuel") || err.contains("larger than"), "{err}");
        }
        let broken = CustomBody {
            template: r#"{"text": {{ data.message }}"#.to_owned(),
            content_type: JSON_CONTENT_TYPE.to_owned(),
        };
        let err = check_template(&broken).expect_err("invalid JSON is refused");
        assert!(err.contains("invalid JSON"), "{err}");
        let unparsable = CustomBody {
            template: "{{ data.message ".to_owned(),
            content_type: "text/plain".to_owned(),
        };
        let err = check_template(&unparsable).expect_err("a syntax error is refused");
        assert!(err.contains("syntax error"), "{err}");
        let plain = CustomBody {
            template: "{{ type }} happened".to_owned(),
            content_type: "text/plain".to_owned(),
        };
        check_template(&plain).expect("plain text needs no JSON");
    }
}
