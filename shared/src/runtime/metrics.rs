//! Prometheus metrics. One `Registry` per process object (not the global
//! default), so several apps can run in one test process. No per-tenant or
//! per-webhook labels: their cardinality is unbounded.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Every Herald metric; each process updates the ones that concern it.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Events accepted, by `via` (`http` or `amqp`).
    pub events_received: IntCounterVec,
    pub deliveries_created: IntCounter,
    /// HTTP attempts by `outcome` (`success`, `http_error`, `network_error`, `timeout`, `blocked`).
    pub delivery_attempts: IntCounterVec,
    /// Deliveries that reached a final status, by `status`.
    pub deliveries_completed: IntCounterVec,
    /// One HTTP attempt, request sent to response read.
    pub delivery_duration: Histogram,
    /// Event accepted to delivered.
    pub event_to_delivery: Histogram,
    pub retries_scheduled: IntCounter,
    /// Deliveries whose retries ran out (dead-lettered to the failed queue).
    pub deliveries_exhausted: IntCounter,
    pub inflight_deliveries: IntGauge,
    /// Of those, the ones to slow or unproven endpoints (the slow lane).
    pub slow_lane_deliveries: IntGauge,
    pub queue_messages: IntGaugeVec,
    pub webhooks_disabled: IntCounter,
    /// Messages parked in the invalid-events queue.
    pub events_invalid: IntCounter,
    /// Events their tenant's catalog does not describe, by `mode` (`warn`:
    /// accepted; `strict`: refused or parked) and `finding`
    /// (`unknown_type` or `schema`).
    pub events_off_catalog: IntCounterVec,
    /// Delivery messages parked in the failed queue because they could not
    /// be processed (not exhausted retries: those are counted apart).
    pub deliveries_parked: IntCounter,
    /// How late the latest deliveries were taken up: the longest wait past
    /// their due time among those a worker took in the last few seconds.
    pub delivery_backlog_age: Gauge,
    /// The configuration version this process works under (-1 while the
    /// database is away); replicas that agree have seen the same changes.
    pub config_version: IntGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics(..)")
    }
}

/// Webhook latencies: 5 ms to 60 s (and below, for the local fast path).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

impl Metrics {
    /// # Panics
    /// Never in practice: names are constants and the registry is new.
    #[must_use]
    #[allow(clippy::expect_used)]
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let histogram = |name: &str, help: &str| {
            let h = Histogram::with_opts(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
            )
            .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("registered once");
            h
        };
        let inflight = IntGauge::new(
            "herald_inflight_deliveries",
            "Deliveries being attempted now",
        )
        .expect("valid metric");
        registry
            .register(Box::new(inflight.clone()))
            .expect("registered once");
        let slow_lane = IntGauge::new(
            "herald_slow_lane_deliveries",
            "Deliveries being attempted to slow or unproven endpoints (the slow lane)",
        )
        .expect("valid metric");
        registry
            .register(Box::new(slow_lane.clone()))
            .expect("registered once");
        let queue_messages = IntGaugeVec::new(
            Opts::new("herald_queue_messages", "Messages ready in a queue"),
            &["queue"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(queue_messages.clone()))
            .expect("registered once");
        let backlog_age = Gauge::new(
            "herald_delivery_backlog_age_seconds",
            "Longest wait past its due time of the deliveries taken up in the last 10 s",
        )
        .expect("valid metric");
        registry
            .register(Box::new(backlog_age.clone()))
            .expect("registered once");
        let config_version = IntGauge::new(
            "herald_config_version",
            "The configuration version this process works under (-1: unknown)",
        )
        .expect("valid metric");
        registry
            .register(Box::new(config_version.clone()))
            .expect("registered once");
        Self {
            config_version,
            delivery_backlog_age: backlog_age,
            events_received: counter_vec(
                "herald_events_received_total",
                "Events accepted",
                &["via"],
            ),
            deliveries_created: counter("herald_deliveries_created_total", "Deliveries created"),
            delivery_attempts: counter_vec(
                "herald_delivery_attempts_total",
                "HTTP delivery attempts",
                &["outcome"],
            ),
            deliveries_completed: counter_vec(
                "herald_deliveries_completed_total",
                "Deliveries that reached a final status",
                &["status"],
            ),
            delivery_duration: histogram(
                "herald_delivery_duration_seconds",
                "Duration of one HTTP attempt",
            ),
            event_to_delivery: histogram(
                "herald_event_to_delivery_seconds",
                "Event received to delivered",
            ),
            retries_scheduled: counter("herald_retries_scheduled_total", "Retries scheduled"),
            deliveries_exhausted: counter(
                "herald_deliveries_exhausted_total",
                "Deliveries whose retries ran out, parked in the failed queue",
            ),
            inflight_deliveries: inflight,
            slow_lane_deliveries: slow_lane,
            queue_messages,
            webhooks_disabled: counter(
                "herald_webhooks_disabled_total",
                "Webhooks disabled automatically",
            ),
            events_invalid: counter("herald_events_invalid_total", "Events parked as invalid"),
            events_off_catalog: counter_vec(
                "herald_events_off_catalog_total",
                "Events their tenant's catalog does not describe, by catalog mode and finding",
                &["mode", "finding"],
            ),
            deliveries_parked: counter(
                "herald_deliveries_parked_total",
                "Delivery messages parked in the failed queue because they could not be processed",
            ),
            registry,
        }
    }

    /// The text exposition format.
    #[must_use]
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
