//! Domain values shared by the three processes: event types and
//! subscription patterns, event ids, and the JSON messages that travel
//! through RabbitMQ.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

/// A uuid that names one kind of row, so that a webhook id cannot be
/// passed where a delivery id is meant. The same on the wire (a uuid
/// string) and in Postgres (`uuid`).
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            #[must_use]
            pub const fn get(self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl tokio_postgres::types::ToSql for $name {
            fn to_sql(
                &self,
                ty: &tokio_postgres::types::Type,
                out: &mut bytes::BytesMut,
            ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
                self.0.to_sql(ty, out)
            }

            fn accepts(ty: &tokio_postgres::types::Type) -> bool {
                <Uuid as tokio_postgres::types::ToSql>::accepts(ty)
            }

            tokio_postgres::types::to_sql_checked!();
        }

        impl<'a> tokio_postgres::types::FromSql<'a> for $name {
            fn from_sql(
                ty: &tokio_postgres::types::Type,
                raw: &'a [u8],
            ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
                Uuid::from_sql(ty, raw).map(Self)
            }

            fn accepts(ty: &tokio_postgres::types::Type) -> bool {
                <Uuid as tokio_postgres::types::FromSql>::accepts(ty)
            }
        }
    };
}

id_type!(
    /// A tenant's id.
    TenantId
);
id_type!(
    /// A webhook's id.
    WebhookId
);
id_type!(
    /// A delivery's id (one event to one webhook).
    DeliveryId
);

/// Longest event type, pattern or event id accepted.
pub const MAX_NAME_LEN: usize = 255;

/// Why a name was refused; the text is shown to API users as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidName(pub &'static str);

/// Whether an (already checked) event type is one of Herald's own
/// operational events (`webhook.*`, `delivery.*`).
#[must_use]
pub fn is_operational(event_type: &str) -> bool {
    event_type.starts_with("webhook.") || event_type.starts_with("delivery.")
}

/// An event type such as `invoice.created`: dot-separated segments of
/// `A-Z a-z 0-9 _ -` (and `:`), at most 255 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct EventType(String);

impl EventType {
    /// # Errors
    /// An empty segment, a character outside the set, or too long.
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        if s.is_empty() {
            return Err(InvalidName("must not be empty"));
        }
        if s.len() > MAX_NAME_LEN {
            return Err(InvalidName("must be at most 255 characters"));
        }
        if s.split('.')
            .any(|seg| seg.is_empty() || !seg.chars().all(is_type_char))
        {
            return Err(InvalidName(
                "must be dot-separated segments of letters, digits, '_', '-' or ':'",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// Herald's own operational events (`webhook.*`, `delivery.*`) reach only
    /// webhooks that name them explicitly.
    #[must_use]
    pub fn is_operational(&self) -> bool {
        is_operational(&self.0)
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_type_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':')
}

/// What a webhook subscribes to: `*` (every type), `invoice.*` (every type
/// under `invoice.` at any depth) or an exact type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventPattern {
    All,
    Prefix(String),
    Exact(String),
}

impl EventPattern {
    /// # Errors
    /// Anything that is not `*`, `<type>.*` or `<type>`.
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        if s == "*" {
            return Ok(Self::All);
        }
        if let Some(stem) = s.strip_suffix(".*") {
            EventType::parse(stem).map_err(|_| {
                InvalidName("a pattern is '*', an event type, or an event type followed by '.*'")
            })?;
            return Ok(Self::Prefix(format!("{stem}.")));
        }
        EventType::parse(s).map(|t| Self::Exact(t.0)).map_err(|_| {
            InvalidName("a pattern is '*', an event type, or an event type followed by '.*'")
        })
    }

    #[must_use]
    pub fn matches(&self, event_type: &EventType) -> bool {
        match self {
            // `*` never picks up Herald's own operational events.
            Self::All => !event_type.is_operational(),
            Self::Prefix(p) => event_type.0.starts_with(p.as_str()),
            Self::Exact(t) => *t == event_type.0,
        }
    }
}

/// An event id: the producer's (at most 255 of `A-Z a-z 0-9 _ . : -`, since
/// it travels in the `webhook-id` header) or a UUIDv7 Herald assigns.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct EventId(String);

impl EventId {
    /// # Errors
    /// Empty, too long, or a character outside the set.
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        if s.is_empty() {
            return Err(InvalidName("must not be empty"));
        }
        if s.len() > MAX_NAME_LEN {
            return Err(InvalidName("must be at most 255 characters"));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
        {
            return Err(InvalidName("may contain only A-Z a-z 0-9 _ . : -"));
        }
        Ok(Self(s.to_owned()))
    }

    /// A fresh, time-ordered id.
    #[must_use]
    pub fn generate() -> Self {
        Self(Uuid::now_v7().to_string())
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Years an event's `occurred_at` may fall in (RFC 3339 has four-digit
/// years; Postgres's own range is wider).
pub const OCCURRED_YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

/// Checks an event's `source`: 1 to 255 characters, none of them control
/// characters.
///
/// # Errors
/// Empty, too long, or holding a control character (such as NUL).
pub fn check_source(source: &str) -> Result<(), InvalidName> {
    if source.is_empty() || source.chars().count() > MAX_NAME_LEN {
        return Err(InvalidName("must be 1 to 255 characters"));
    }
    if source.chars().any(char::is_control) {
        return Err(InvalidName("must not contain control characters"));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

impl Severity {
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "info" => Some(Self::Info),
            "warning" => Some(Self::Warning),
            "error" => Some(Self::Error),
            "critical" => Some(Self::Critical),
            _ => None,
        }
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Critical => "critical",
        }
    }
}

/// An event as producers publish it to the `events` exchange (and as the api
/// publishes it for them). Unknown fields are ignored, so producers may add
/// their own.
#[derive(Debug, Serialize, Deserialize)]
pub struct EventMessage {
    pub tenant_id: Uuid,
    pub event_type: String,
    pub data: Box<RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// One (event, webhook) pair on its way to a worker. It carries the event so
/// the worker renders the request without reading the event back.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeliveryMessage {
    pub delivery_id: DeliveryId,
    pub tenant_id: TenantId,
    pub webhook_id: WebhookId,
    pub event_id: String,
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    /// When the event was accepted, for the event-to-delivery histogram.
    pub received_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub data: Box<RawValue>,
    /// The attempt this message is for (1 for a new delivery). A worker
    /// drops a message whose attempt the delivery has already had, so a
    /// duplicate message costs no duplicate POST.
    #[serde(default = "first_attempt")]
    pub attempt: i32,
    /// Not to be attempted before this; a message that comes back from a
    /// retry queue early is parked again for the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<DateTime<Utc>>,
    /// A manual retry: sent whatever the delivery's status.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub manual: bool,
    /// A delivery that had failed, sent again: its success is announced as
    /// `delivery.recovered`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reopened: bool,
    /// Published again from Postgres after the broker lost messages: the
    /// worker looks where the delivery stands before sending it, since the
    /// first message may have been delivered after all.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub republished: bool,
}

fn first_attempt() -> i32 {
    1
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Retrying,
    Success,
    Failed,
}

impl DeliveryStatus {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Retrying => "retrying",
            Self::Success => "success",
            Self::Failed => "failed",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "retrying" => Some(Self::Retrying),
            "success" => Some(Self::Success),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// A text column read as one of a few names: an unknown name is an error,
/// never a silent default.
macro_rules! text_enum_sql {
    ($t:ty, $what:literal) => {
        impl<'a> tokio_postgres::types::FromSql<'a> for $t {
            fn from_sql(
                ty: &tokio_postgres::types::Type,
                raw: &'a [u8],
            ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
                let s = <&str as tokio_postgres::types::FromSql>::from_sql(ty, raw)?;
                Self::parse(s).ok_or_else(|| format!(concat!("unknown ", $what, " {:?}"), s).into())
            }

            fn accepts(ty: &tokio_postgres::types::Type) -> bool {
                <&str as tokio_postgres::types::FromSql>::accepts(ty)
            }
        }
    };
}

text_enum_sql!(DeliveryStatus, "delivery status");
text_enum_sql!(Severity, "severity");

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> EventType {
        EventType::parse(s).unwrap()
    }

    #[test]
    fn event_types_are_checked() {
        assert!(EventType::parse("invoice.created").is_ok());
        assert!(EventType::parse("CertificateCreated").is_ok());
        assert!(EventType::parse("").is_err());
        assert!(EventType::parse("a..b").is_err());
        assert!(EventType::parse("a.*").is_err());
        assert!(EventType::parse("has space").is_err());
        assert!(EventType::parse(&"a".repeat(256)).is_err());
    }

    #[test]
    fn patterns_match_as_documented() {
        let all = EventPattern::parse("*").unwrap();
        let invoice = EventPattern::parse("invoice.*").unwrap();
        let exact = EventPattern::parse("invoice.created").unwrap();
        assert!(all.matches(&t("anything.at.all")));
        assert!(invoice.matches(&t("invoice.created")));
        assert!(invoice.matches(&t("invoice.line.added")));
        assert!(!invoice.matches(&t("invoice")));
        assert!(!invoice.matches(&t("invoices.created")));
        assert!(exact.matches(&t("invoice.created")));
        assert!(!exact.matches(&t("invoice.created.v2")));
        assert!(EventPattern::parse("invoice.*.x").is_err());
        assert!(EventPattern::parse("**").is_err());
        assert!(EventPattern::parse("").is_err());
    }

    #[test]
    fn operational_events_need_an_explicit_subscription() {
        let all = EventPattern::parse("*").unwrap();
        assert!(!all.matches(&t("webhook.disabled")));
        assert!(!all.matches(&t("delivery.exhausted")));
        assert!(
            EventPattern::parse("webhook.*")
                .unwrap()
                .matches(&t("webhook.disabled"))
        );
        assert!(
            EventPattern::parse("delivery.exhausted")
                .unwrap()
                .matches(&t("delivery.exhausted"))
        );
    }

    #[test]
    fn event_ids_are_header_safe() {
        assert!(EventId::parse("msg_p5jXN8AQM9LWM0D4loKWxJek").is_ok());
        assert!(EventId::parse("order:42.v1-a").is_ok());
        assert!(EventId::parse("").is_err());
        assert!(EventId::parse("a b").is_err());
        assert!(EventId::parse("a\nb").is_err());
        assert!(EventId::parse(&"x".repeat(256)).is_err());
        assert_eq!(EventId::generate().as_str().len(), 36);
    }
}
