//! Configuration: built-in defaults < optional file < `HERALD__SECTION__KEY`.
//!
//! The defaults live in `herald.default.toml`, compiled into every binary, so
//! a bare `herald-api` talks to the local Postgres and RabbitMQ and is still
//! safe for production (no admin token, no plain-http or private targets).
//! [`Settings::load`] reads the process environment; tests use
//! [`Settings::load_from`] with an explicit map so they never mutate the
//! process-global environment.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use config::{Config, Environment, File, FileFormat};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

const DEFAULTS: &str = include_str!("../../herald.default.toml");

/// Every setting of every process; each process reads the sections it needs.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub amqp: AmqpSettings,
    pub api: ApiSettings,
    pub dispatcher: DispatcherSettings,
    pub worker: WorkerSettings,
    pub security: SecuritySettings,
    /// The section may be left out: nothing in it is required.
    #[serde(default)]
    pub delivery: DeliverySettings,
    pub retention: RetentionSettings,
    pub fairness: FairnessSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RetentionSettings {
    /// Days whose events, deliveries and attempts are all older than this
    /// are dropped.
    pub max_age_days: u64,
    /// How often the dispatchers prune.
    #[serde(deserialize_with = "duration::seconds")]
    pub prune_interval_seconds: Duration,
    /// How often the dispatchers look for deleted tenants' data to remove.
    #[serde(deserialize_with = "duration::seconds")]
    pub purge_interval_seconds: Duration,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// libpq-style URL; its password never reaches a log (`SecretString`).
    pub url: SecretString,
    /// Connections in this process's pool.
    pub pool_size: usize,
    #[serde(deserialize_with = "duration::millis")]
    pub connect_timeout_ms: Duration,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AmqpSettings {
    pub url: SecretString,
    /// Several brokers of one cluster, comma-separated; when given, `url`
    /// is not used. A process connects to the first that answers and, on
    /// losing it, to the next.
    #[serde(default, deserialize_with = "comma_secrets")]
    pub urls: Vec<SecretString>,
    /// The type of the hot queues (dispatch, deliveries) and the parking
    /// queues: `classic` (one node holds each) or `quorum` (replicated
    /// across a cluster). The retry queues are always quorum.
    #[serde(default)]
    pub queue_type: QueueType,
    /// How the dispatcher publishes a new delivery's message: `transient`
    /// (kept in the broker's memory) or `persistent` (written to its
    /// disk). The delivery is already stored in Postgres, so a transient
    /// message is not the durable copy: after a broker restart the
    /// dispatcher's sweeper publishes again every delivery still pending.
    /// Transient applies to classic queues on one broker (one URL); on a
    /// cluster, or with quorum queues (which write every message to disk
    /// whatever its mode), messages are persistent.
    #[serde(default)]
    pub delivery_messages: DeliveryMessages,
    /// Every exchange and queue name starts with this, so several Herald
    /// installations (or tests) can share one broker.
    pub prefix: String,
    pub invalid_max_length: u32,
    pub failed_max_length: u32,
    /// The TTLs of the retry queues, shortest first, from a comma-separated
    /// list (`1s,5s,30s,2m,…`).
    #[serde(deserialize_with = "duration::tiers")]
    pub retry_tiers: Vec<Duration>,
    /// The pause before a message that failed goes back to its queue; it
    /// doubles with each counted try (up to 10 s).
    #[serde(deserialize_with = "duration::millis")]
    pub requeue_pause_ms: Duration,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiSettings {
    pub listen: SocketAddr,
    /// Admin calls are refused while this is unset.
    pub admin_token: Option<SecretString>,
    pub max_event_bytes: usize,
    /// How long a rotated-out secret keeps signing beside the new one.
    #[serde(deserialize_with = "duration::seconds")]
    pub secret_rotation_overlap_seconds: Duration,
    /// How often tokens' `last_used_at` is written.
    #[serde(deserialize_with = "duration::seconds")]
    pub token_use_flush_seconds: Duration,
    /// Requests per second each tenant may make to one api replica; 0: no
    /// limit.
    pub rate_limit_per_second: u32,
    /// Connections held open at once.
    pub max_connections: usize,
    /// Time a client has to send a request's headers.
    #[serde(deserialize_with = "duration::seconds")]
    pub header_read_timeout_seconds: Duration,
    /// Time a client has to send a request's body.
    #[serde(deserialize_with = "duration::seconds")]
    pub body_read_timeout_seconds: Duration,
    /// Test calls in flight per tenant on one replica.
    pub max_concurrent_tests_per_tenant: usize,
    /// Origins that may show the console in a frame (space-separated, for
    /// the customer portal); empty: none may.
    #[serde(default)]
    pub portal_frame_ancestors: String,
    /// How long a portal session lasts unless its creator says otherwise.
    #[serde(deserialize_with = "duration::seconds")]
    pub portal_session_ttl_seconds: Duration,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DispatcherSettings {
    pub listen: SocketAddr,
    pub concurrency: u16,
    /// How often the sweeper looks for retries whose message was lost.
    #[serde(deserialize_with = "duration::seconds")]
    pub sweep_interval_seconds: Duration,
    /// How far past due a retry must be to be republished.
    #[serde(deserialize_with = "duration::seconds")]
    pub sweep_grace_seconds: Duration,
    /// An event id seen within this many hours is a repeat.
    pub idempotency_window_hours: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WorkerSettings {
    pub listen: SocketAddr,
    pub concurrency: u16,
    /// Name of the `sha256=<hex>` signature header.
    pub signature_header: String,
    /// The `host` of `splunk_hec` bodies; empty: this machine's name.
    #[serde(default)]
    pub splunk_host: String,
    #[serde(deserialize_with = "duration::seconds")]
    pub shutdown_timeout_seconds: Duration,
    /// No retry waits longer than this, `Retry-After` included.
    #[serde(deserialize_with = "duration::seconds")]
    pub max_retry_delay_seconds: Duration,
    /// Deliveries to one webhook in flight at once in one worker; the
    /// excess waits briefly, so a slow endpoint cannot take every slot.
    pub max_inflight_per_webhook: u16,
    /// The part of `concurrency` that slow and unproven endpoints share.
    pub slow_lane_share: f64,
    /// An attempt or request in flight longer than this makes its endpoint
    /// slow.
    #[serde(deserialize_with = "duration::millis")]
    pub slow_threshold_ms: Duration,
    /// Failed attempts in a row that open an endpoint's breaker.
    pub breaker_threshold: u32,
    /// How long a breaker first stays open (doubling while probes fail).
    #[serde(deserialize_with = "duration::seconds")]
    pub breaker_open_seconds: Duration,
    /// A webhook whose every attempt has failed for this long …
    #[serde(deserialize_with = "duration::seconds")]
    pub disable_after_failing_seconds: Duration,
    /// … and at least this many times is disabled.
    pub disable_after_failures: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SecuritySettings {
    pub allow_http: bool,
    pub allow_insecure_tls: bool,
    pub allow_private_targets: bool,
    /// Base64 of 32 bytes; webhook secrets are sealed with it at rest.
    pub encryption_key: Option<SecretString>,
}

/// How deliveries leave the network.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DeliverySettings {
    /// An HTTP proxy (`http://[user:pass@]host:port`) every delivery goes
    /// through, tunnelled with CONNECT to the address Herald resolved and
    /// checked; unset (or empty): deliveries connect directly. It may carry
    /// credentials, so it is kept secret and never logged.
    #[serde(default, deserialize_with = "non_empty_secret")]
    pub proxy_url: Option<SecretString>,
}

impl DeliverySettings {
    /// Checks `proxy_url`: http, with a host and an explicit port. The
    /// error never quotes the URL (it may carry credentials).
    fn validate(&self) -> anyhow::Result<()> {
        let Some(raw) = &self.proxy_url else {
            return Ok(());
        };
        let raw = raw.expose_secret().trim();
        let usable = url::Url::parse(raw)
            .is_ok_and(|u| u.scheme() == "http" && u.host_str().is_some_and(|h| !h.is_empty()))
            && has_explicit_port(raw);
        if !usable {
            bail!(
                "delivery.proxy_url must be an http:// URL with a host and a port, such as http://user:pass@proxy.internal:3128"
            );
        }
        Ok(())
    }
}

/// Whether a URL's authority ends in `:<port>` (`Url` forgets a port that
/// is the scheme's default, so the text is read).
fn has_explicit_port(raw: &str) -> bool {
    let rest = raw.split_once("://").map_or(raw, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    host_port.rsplit_once(':').is_some_and(|(host, port)| {
        !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && (!host.starts_with('[') || host.ends_with(']'))
    })
}

/// An optional secret where an empty string means none (so
/// `HERALD__DELIVERY__PROXY_URL=` turns the proxy off).
fn non_empty_secret<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<SecretString>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    Ok(text
        .filter(|t| !t.trim().is_empty())
        .map(SecretString::from))
}

/// What kind of RabbitMQ queue carries Herald's messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    /// On one node, with priorities (fair scheduling between tenants).
    #[default]
    Classic,
    /// Replicated by Raft across the cluster's nodes; survives losing a
    /// minority of them. RabbitMQ 3.10's quorum queues have no priorities.
    Quorum,
}

/// How new deliveries' messages are published (see
/// [`AmqpSettings::delivery_messages`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryMessages {
    /// Written to disk by the broker before it confirms.
    Persistent,
    /// Kept in the broker's memory; republished from Postgres after a
    /// broker restart.
    #[default]
    Transient,
}

impl AmqpSettings {
    /// The broker URLs to try, in order: `urls`, else `url`.
    #[must_use]
    pub fn broker_urls(&self) -> Vec<SecretString> {
        if self.urls.is_empty() {
            vec![self.url.clone()]
        } else {
            self.urls.clone()
        }
    }
}

/// A comma-separated list of secrets (or a list), blanks skipped.
fn comma_secrets<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<SecretString>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given {
        Text(String),
        List(Vec<String>),
    }
    let items = match Option::<Given>::deserialize(d)? {
        None => Vec::new(),
        Some(Given::Text(text)) => text.split(',').map(str::to_owned).collect(),
        Some(Given::List(list)) => list,
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .map(SecretString::from)
        .collect())
}

/// Fair scheduling between tenants (the shaper in `amqp::fairness`).
#[derive(Debug, Clone, Deserialize)]
pub struct FairnessSettings {
    /// Messages a second each tenant sends at interactive priority, per
    /// api replica (events) and per dispatcher (deliveries).
    pub tenant_rate: u32,
    /// How many it may send at once before the rate applies.
    pub tenant_burst: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

impl Settings {
    /// Loads defaults, then `HERALD_CONFIG` (or `./herald.toml` if present),
    /// then the `HERALD__…` environment.
    ///
    /// # Errors
    /// A file that does not parse, or a value of the wrong type.
    pub fn load() -> anyhow::Result<Self> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::load_from(&env)
    }

    /// As [`Settings::load`], with the environment given as a map.
    ///
    /// # Errors
    /// A file that does not parse, or a value of the wrong type.
    pub fn load_from(env: &HashMap<String, String>) -> anyhow::Result<Self> {
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
        builder = match env.get("HERALD_CONFIG") {
            Some(path) => builder.add_source(File::with_name(path).required(true)),
            None => builder.add_source(File::with_name("herald.toml").required(false)),
        };
        let herald_env: HashMap<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("HERALD__"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        builder = builder.add_source(
            Environment::with_prefix("HERALD")
                .separator("__")
                .source(Some(herald_env)),
        );
        let settings: Settings = builder
            .build()
            .context("reading configuration")?
            .try_deserialize()
            .context("configuration has a value of the wrong type")?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.amqp.prefix.is_empty()
            || !self
                .amqp
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            bail!("amqp.prefix must be non-empty ASCII letters, digits, '_', '-' or '.'");
        }
        if self.retention.max_age_days == 0
            || self.retention.prune_interval_seconds.is_zero()
            || self.retention.purge_interval_seconds.is_zero()
        {
            bail!(
                "retention.max_age_days, retention.prune_interval_seconds and retention.purge_interval_seconds must be above 0"
            );
        }
        if self.dispatcher.idempotency_window_hours == 0
            || u64::from(self.dispatcher.idempotency_window_hours)
                > self.retention.max_age_days.saturating_mul(24)
        {
            bail!(
                "dispatcher.idempotency_window_hours must be above 0 and at most retention.max_age_days × 24"
            );
        }
        if self.api.max_connections == 0
            || self.api.header_read_timeout_seconds.is_zero()
            || self.api.body_read_timeout_seconds.is_zero()
            || self.api.max_concurrent_tests_per_tenant == 0
        {
            bail!(
                "api.max_connections, api.header_read_timeout_seconds, api.body_read_timeout_seconds and api.max_concurrent_tests_per_tenant must be at least 1"
            );
        }
        if self.api.token_use_flush_seconds.is_zero() {
            bail!("api.token_use_flush_seconds must be at least 1 second");
        }
        if self.dispatcher.sweep_interval_seconds.is_zero() {
            bail!("dispatcher.sweep_interval_seconds must be at least 1");
        }
        if !(self.worker.slow_lane_share > 0.0 && self.worker.slow_lane_share <= 1.0) {
            bail!("worker.slow_lane_share must be above 0 and at most 1");
        }
        if self.worker.max_inflight_per_webhook == 0 {
            bail!("worker.max_inflight_per_webhook must be at least 1");
        }
        if self.worker.concurrency == 0 || self.dispatcher.concurrency == 0 {
            bail!("worker.concurrency and dispatcher.concurrency must be at least 1");
        }
        if let Some(token) = &self.api.admin_token
            && token.expose_secret().len() < 16
        {
            bail!("api.admin_token must be at least 16 characters");
        }
        self.delivery.validate()?;
        Ok(())
    }
}

impl DatabaseSettings {
    /// A pool over this database; connections are made lazily.
    ///
    /// # Errors
    /// An unparsable URL.
    pub fn pool(&self) -> anyhow::Result<deadpool_postgres::Pool> {
        self.pool_for(self.url.expose_secret())
    }

    /// A pool over another database of the same server (used to create the
    /// database itself, or a test database).
    ///
    /// # Errors
    /// An unparsable URL.
    pub fn pool_for(&self, url: &str) -> anyhow::Result<deadpool_postgres::Pool> {
        let pg: tokio_postgres::Config = url.parse().context("database.url is not a valid URL")?;
        let manager = deadpool_postgres::Manager::from_config(
            pg,
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let timeout = Some(self.connect_timeout_ms);
        deadpool_postgres::Pool::builder(manager)
            .max_size(self.pool_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(timeout)
            .create_timeout(timeout)
            .recycle_timeout(timeout)
            .build()
            .context("building the database pool")
    }
}

/// Durations in configuration: a number in the unit the setting's name
/// says (`_seconds`, `_ms`), or a string with its units (`500ms`, `30s`,
/// `2m`, `1h 30m`, `1d`), read once when the configuration loads.
mod duration {
    use std::fmt;
    use std::time::Duration;

    use serde::Deserializer;
    use serde::de::{self, Visitor};

    /// A setting whose bare numbers are seconds.
    pub(super) fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(InUnit(Duration::from_secs(1)))
    }

    /// A setting whose bare numbers are milliseconds.
    pub(super) fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(InUnit(Duration::from_millis(1)))
    }

    /// A comma-separated list of non-zero durations, sorted, without repeats.
    pub(super) fn tiers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let text: String = serde::Deserialize::deserialize(d)?;
        let mut tiers = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| match humantime::parse_duration(s) {
                Ok(d) if !d.is_zero() => Ok(d),
                Ok(_) => Err(de::Error::custom(format!("{s:?} is zero"))),
                Err(e) => Err(de::Error::custom(format!("{s:?}: {e}"))),
            })
            .collect::<Result<Vec<_>, D::Error>>()?;
        if tiers.is_empty() {
            return Err(de::Error::custom("at least one retry tier is needed"));
        }
        tiers.sort();
        tiers.dedup();
        Ok(tiers)
    }

    struct InUnit(Duration);

    impl Visitor<'_> for InUnit {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a whole number, or a duration such as \"30s\" or \"2m\"")
        }

        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Duration, E> {
            let n = u32::try_from(n).map_err(|_| E::custom("is too long"))?;
            self.0
                .checked_mul(n)
                .ok_or_else(|| E::custom("is too long"))
        }

        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Duration, E> {
            let n = u64::try_from(n).map_err(|_| E::custom("cannot be negative"))?;
            self.visit_u64(n)
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
            let s = s.trim();
            match s.parse::<u64>() {
                Ok(n) => self.visit_u64(n),
                Err(_) => {
                    humantime::parse_duration(s).map_err(|e| E::custom(format!("{s:?}: {e}")))
                }
            }
        }
    }
}

/// The name a retry queue carries for its TTL (`1s`, `2m`, `6h`).
#[must_use]
pub fn duration_name(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_are_safe_for_production() {
        let s = Settings::load_from(&env(&[])).unwrap();
        assert_eq!(s.amqp.prefix, "herald");
        assert_eq!(s.api.listen.port(), 8080);
        assert_eq!(s.worker.concurrency, 256);
        assert!(s.api.admin_token.is_none());
        assert!(!s.security.allow_http);
        assert!(!s.security.allow_private_targets);
        assert!(s.security.encryption_key.is_none());
    }

    #[test]
    fn environment_overrides_defaults() {
        let s = Settings::load_from(&env(&[
            ("HERALD__AMQP__PREFIX", "t_1"),
            ("HERALD__WORKER__CONCURRENCY", "8"),
            ("HERALD__SECURITY__ALLOW_HTTP", "true"),
            ("HERALD__API__ADMIN_TOKEN", "1e5-looks-like-a-number"),
        ]))
        .unwrap();
        assert_eq!(s.amqp.prefix, "t_1");
        assert_eq!(s.worker.concurrency, 8);
        assert!(s.security.allow_http);
        assert_eq!(
            s.api.admin_token.unwrap().expose_secret(),
            "1e5-looks-like-a-number"
        );
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Settings::load_from(&env(&[("HERALD__WORKER__CONCURRENCY", "many")])).is_err());
        assert!(Settings::load_from(&env(&[("HERALD__AMQP__PREFIX", "a b")])).is_err());
        assert!(Settings::load_from(&env(&[("HERALD__AMQP__RETRY_TIERS", "5x")])).is_err());
    }

    #[test]
    fn the_delivery_proxy_is_off_by_default_and_checked_when_set() {
        assert!(
            Settings::load_from(&env(&[]))
                .unwrap()
                .delivery
                .proxy_url
                .is_none()
        );
        assert!(
            Settings::load_from(&env(&[("HERALD__DELIVERY__PROXY_URL", "")]))
                .unwrap()
                .delivery
                .proxy_url
                .is_none()
        );
        for good in [
            "http://proxy.internal:3128",
            "http://user:p%40ss@proxy.internal:3128/",
            "http://10.0.0.7:8080",
            "http://[fd00::7]:3128",
            "http://proxy.internal:80",
        ] {
            let s = Settings::load_from(&env(&[("HERALD__DELIVERY__PROXY_URL", good)]))
                .unwrap_or_else(|e| panic!("{good}: {e:#}"));
            assert_eq!(s.delivery.proxy_url.unwrap().expose_secret(), good);
        }
        for bad in [
            "https://proxy.internal:3128",
            "socks5://proxy.internal:1080",
            "http://proxy.internal",
            "http://user:secret@proxy.internal",
            "http://[fd00::7]",
            "http://:3128",
            "proxy.internal:3128",
            "not a url",
        ] {
            let e =
                Settings::load_from(&env(&[("HERALD__DELIVERY__PROXY_URL", bad)])).expect_err(bad);
            let text = format!("{e:#}");
            assert!(text.contains("delivery.proxy_url"), "{bad}: {text}");
            assert!(!text.contains("secret"), "{bad}: {text}");
        }
    }

    #[test]
    fn durations_round_trip_through_names() {
        for s in ["1s", "5s", "30s", "2m", "10m", "1h", "6h", "250ms"] {
            let tiers = Settings::load_from(&env(&[("HERALD__AMQP__RETRY_TIERS", s)]))
                .unwrap()
                .amqp
                .retry_tiers;
            assert_eq!(tiers.len(), 1);
            assert_eq!(duration_name(tiers[0]), s);
        }
    }

    #[test]
    fn durations_are_numbers_in_their_unit_or_strings_with_units() {
        let s = Settings::load_from(&env(&[])).unwrap();
        assert_eq!(s.api.body_read_timeout_seconds, Duration::from_secs(30));
        assert_eq!(s.amqp.requeue_pause_ms, Duration::from_millis(500));
        assert_eq!(s.amqp.retry_tiers[0], Duration::from_secs(1));
        let s = Settings::load_from(&env(&[
            ("HERALD__API__BODY_READ_TIMEOUT_SECONDS", "45"),
            ("HERALD__AMQP__REQUEUE_PAUSE_MS", "2s"),
            ("HERALD__WORKER__MAX_RETRY_DELAY_SECONDS", "1h 30m"),
            ("HERALD__AMQP__RETRY_TIERS", "5m, 1s,1s"),
        ]))
        .unwrap();
        assert_eq!(s.api.body_read_timeout_seconds, Duration::from_secs(45));
        assert_eq!(s.amqp.requeue_pause_ms, Duration::from_secs(2));
        assert_eq!(s.worker.max_retry_delay_seconds, Duration::from_secs(5400));
        assert_eq!(
            s.amqp.retry_tiers,
            [Duration::from_secs(1), Duration::from_secs(300)]
        );
        for (key, value) in [
            ("HERALD__API__BODY_READ_TIMEOUT_SECONDS", "soon"),
            ("HERALD__API__BODY_READ_TIMEOUT_SECONDS", "-3"),
            ("HERALD__API__BODY_READ_TIMEOUT_SECONDS", "0"),
            ("HERALD__AMQP__RETRY_TIERS", "0s"),
            ("HERALD__AMQP__RETRY_TIERS", ","),
        ] {
            assert!(
                Settings::load_from(&env(&[(key, value)])).is_err(),
                "{key}={value}"
            );
        }
    }

    #[test]
    fn delivery_messages_are_transient_by_default_and_can_be_persistent() {
        let s = Settings::load_from(&env(&[])).unwrap();
        assert_eq!(s.amqp.delivery_messages, DeliveryMessages::Transient);
        let s = Settings::load_from(&env(&[("HERALD__AMQP__DELIVERY_MESSAGES", "persistent")]))
            .unwrap();
        assert_eq!(s.amqp.delivery_messages, DeliveryMessages::Persistent);
        assert!(
            Settings::load_from(&env(&[("HERALD__AMQP__DELIVERY_MESSAGES", "sometimes")])).is_err()
        );
    }
}
