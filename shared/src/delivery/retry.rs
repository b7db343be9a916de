//! When to try again: how an attempt's result is classified, how long to
//! wait before the next one, and which retry queue carries a message for
//! how long. Pure functions, unit-tested here; the worker applies them.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::delivery::options::RetrySpacing;
use crate::models::DeliveryStatus;

/// What one HTTP attempt came to.
#[derive(Debug, Default)]
pub struct Attempt {
    pub status_code: Option<u16>,
    pub body: Option<String>,
    pub error: Option<String>,
    pub duration: Duration,
    /// How it went, as the attempts counter labels it.
    pub outcome: Outcome,
    /// The endpoint's `Retry-After`, if it sent one.
    pub retry_after: Option<Duration>,
}

/// What one HTTP attempt's result means for the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: delivered.
    Delivered,
    /// Worth another try: connection errors, timeouts, 3xx, 408, 425, 429,
    /// 5xx. `retry_after` is the endpoint's own `Retry-After`, if any.
    Retry { retry_after: Option<Duration> },
    /// 410 Gone: the endpoint asks never to be called again.
    Gone,
    /// Any other 4xx, or a request Herald refuses to send: fails at once.
    Fail,
}

/// How one HTTP attempt went, as the attempts counter labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Outcome {
    /// A 2xx answer.
    Success,
    /// Any other answer.
    HttpError,
    /// No answer within the webhook's timeout.
    Timeout,
    /// No connection, a reset, a TLS failure, or a token that could not be
    /// had.
    #[default]
    NetworkError,
    /// Not sent: the target is refused, or the body cannot be rendered. No
    /// retry would go differently.
    Blocked,
}

impl Outcome {
    /// The `outcome` label of `herald_delivery_attempts_total`.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::HttpError => "http_error",
            Self::Timeout => "timeout",
            Self::NetworkError => "network_error",
            Self::Blocked => "blocked",
        }
    }
}

/// What becomes of a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub verdict: Verdict,
    pub status: DeliveryStatus,
    /// When the next attempt is due (the status is `retrying`).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// It failed in a way worth retrying but the retries are spent: it goes
    /// to the failed queue and `delivery.exhausted` is announced.
    pub exhausted: bool,
}

/// Decides, after attempt number `attempt` (1-based) made at
/// `attempted_at`, the delivery's new status, when it is due again, and
/// whether its retries ran out. `jitter` in [-1, 1] places a jittered
/// delay (see [`Policy::next_delay`]). Pure: everything it depends on is an
/// argument.
#[must_use]
pub fn decide(
    outcome: Outcome,
    status_code: Option<u16>,
    retry_after: Option<Duration>,
    policy: &Policy,
    attempt: u32,
    attempted_at: DateTime<Utc>,
    jitter: f64,
) -> Decision {
    let verdict = if outcome == Outcome::Blocked {
        Verdict::Fail
    } else {
        classify(status_code, retry_after)
    };
    let (status, next_attempt_at, exhausted) = match verdict {
        Verdict::Delivered => (DeliveryStatus::Success, None, false),
        Verdict::Retry { retry_after } => match policy.next_delay(attempt, retry_after, jitter) {
            Some(delay) => {
                let due = attempted_at + chrono::Duration::from_std(delay).unwrap_or_default();
                (DeliveryStatus::Retrying, Some(due), false)
            }
            None => (DeliveryStatus::Failed, None, true),
        },
        Verdict::Gone | Verdict::Fail => (DeliveryStatus::Failed, None, false),
    };
    Decision {
        verdict,
        status,
        next_attempt_at,
        exhausted,
    }
}

/// Classifies an attempt by its status code (`None`: no answer — a
/// connection error or a timeout).
#[must_use]
pub fn classify(status: Option<u16>, retry_after: Option<Duration>) -> Verdict {
    match status {
        None => Verdict::Retry { retry_after: None },
        Some(200..=299) => Verdict::Delivered,
        Some(410) => Verdict::Gone,
        Some(408 | 425 | 429) | Some(300..=399) | Some(500..=599) => Verdict::Retry { retry_after },
        Some(_) => Verdict::Fail,
    }
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP date (any of the
/// three forms HTTP allows).
#[must_use]
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at: DateTime<Utc> = httpdate::parse_http_date(value).ok()?.into();
    Some((at - now).to_std().unwrap_or_default())
}

/// The webhook's retry policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Retries after the first attempt (0–10).
    pub retry_attempts: u32,
    /// How the retries are spaced.
    pub spacing: RetrySpacing,
    /// No delay is longer than this, `Retry-After` included.
    pub max_delay: Duration,
}

impl Policy {
    /// The delay before retry number `retry` (1-based), before jitter:
    /// the schedule's entry (the last repeating), or `first × base^(retry-1)`
    /// within the webhook's own cap; always within `max_delay`.
    #[must_use]
    pub fn backoff(&self, retry: u32) -> Duration {
        let index = usize::try_from(retry.saturating_sub(1)).unwrap_or(usize::MAX);
        let ms = match &self.spacing {
            RetrySpacing::Schedule { delays_ms } => delays_ms
                .get(index)
                .or(delays_ms.last())
                .copied()
                .unwrap_or_default(),
            RetrySpacing::Exponential {
                first_ms,
                base,
                max_ms,
                ..
            } => {
                let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
                // Non-finite or huge products saturate at the cap.
                #[allow(clippy::cast_precision_loss)]
                let grown = *first_ms as f64 * base.powi(exponent);
                let cap = max_ms.unwrap_or(u64::MAX);
                #[allow(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    clippy::cast_precision_loss
                )]
                if grown.is_finite() && grown < cap as f64 {
                    grown.max(0.0) as u64
                } else {
                    cap
                }
            }
        };
        Duration::from_millis(ms).min(self.max_delay)
    }

    /// After attempt number `attempt` failed in a retryable way: how long
    /// to wait, or `None` when the retries are spent. `Retry-After` is
    /// honoured as given (within `max_delay`). `jitter` in [-1, 1] picks
    /// where in its upper half an exponential delay with `jitter` on falls
    /// (from half the delay at -1 to all of it at 1), so that deliveries
    /// failed together do not all come back together; other delays are
    /// taken as they are.
    #[must_use]
    pub fn next_delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        if attempt > self.retry_attempts {
            return None;
        }
        if let Some(after) = retry_after {
            return Some(after.min(self.max_delay));
        }
        let base = self.backoff(attempt);
        match self.spacing {
            RetrySpacing::Exponential { jitter: true, .. } => {
                let share = 0.75 + 0.25 * jitter.clamp(-1.0, 1.0);
                Some(base.mul_f64(share))
            }
            _ => Some(base),
        }
    }
}

/// How a message that must wait `remaining` is parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Park {
    /// Due (or as good as due): process now.
    Now,
    /// Less than the shortest tier and at most a second: wait in place.
    Sleep(Duration),
    /// Into the retry queue of this tier; when it comes back early, it is
    /// parked again for the rest (tiers chain to any delay).
    Tier(Duration),
}

/// Messages due within this are processed at once.
const DUE_SLACK: Duration = Duration::from_millis(50);
/// Waits up to this long are slept in place rather than parked.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// Picks where a message waits: the longest tier that does not overshoot,
/// so the last hop lands within the shortest tier of the due time.
#[must_use]
pub fn park(remaining: Duration, tiers: &[Duration]) -> Park {
    if remaining <= DUE_SLACK {
        return Park::Now;
    }
    match tiers.iter().rev().find(|t| **t <= remaining) {
        Some(tier) => Park::Tier(*tier),
        None if remaining <= MAX_SLEEP => Park::Sleep(remaining),
        // Shorter than every tier, but too long to hold a slot for: the
        // shortest tier overshoots by less than its own length.
        None => tiers
            .first()
            .map_or(Park::Sleep(remaining), |t| Park::Tier(*t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn classifies_like_the_design_says() {
        assert_eq!(classify(Some(200), None), Verdict::Delivered);
        assert_eq!(classify(Some(204), None), Verdict::Delivered);
        for code in [408, 425, 429, 500, 502, 503, 504, 301, 302] {
            assert!(
                matches!(classify(Some(code), None), Verdict::Retry { .. }),
                "{code}"
            );
        }
        assert_eq!(classify(None, None), Verdict::Retry { retry_after: None });
        for code in [400, 401, 403, 404, 422] {
            assert_eq!(classify(Some(code), None), Verdict::Fail, "{code}");
        }
        assert_eq!(classify(Some(410), None), Verdict::Gone);
        assert_eq!(
            classify(Some(429), Some(S(2))),
            Verdict::Retry {
                retry_after: Some(S(2))
            }
        );
    }

    #[test]
    fn parses_retry_after_in_both_forms() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after("2", now), Some(S(2)));
        assert_eq!(parse_retry_after(" 120 ", now), Some(S(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(S(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(S(0))
        );
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-15 07:28:10 GMT", now),
            Some(S(10)),
            "the obsolete RFC 850 form"
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    fn exponential(first: u64, base: f64, max: Option<u64>, jitter: bool) -> RetrySpacing {
        RetrySpacing::Exponential {
            first_ms: first * 1000,
            base,
            max_ms: max.map(|m| m * 1000),
            jitter,
        }
    }

    #[test]
    fn exponential_backoff_grows_by_its_base_and_stops_at_the_budget() {
        let p = Policy {
            retry_attempts: 3,
            spacing: exponential(60, 2.0, None, false),
            max_delay: S(150),
        };
        assert_eq!(p.next_delay(1, None, 0.0), Some(S(60)));
        assert_eq!(p.next_delay(2, None, 0.0), Some(S(120)));
        assert_eq!(p.next_delay(3, None, 0.0), Some(S(150)), "capped");
        assert_eq!(p.next_delay(4, None, 0.0), None, "three retries spent");
        assert_eq!(p.next_delay(1, None, 1.0), Some(S(60)), "no jitter asked");
        assert_eq!(
            p.next_delay(1, Some(S(2)), 1.0),
            Some(S(2)),
            "Retry-After as given"
        );
        assert_eq!(
            p.next_delay(1, Some(S(3600)), 0.0),
            Some(S(150)),
            "within the cap"
        );
        let none = Policy {
            retry_attempts: 0,
            ..p.clone()
        };
        assert_eq!(none.next_delay(1, None, 0.0), None);
        assert_eq!(p.backoff(40), S(150), "no overflow");
        assert_eq!(p.backoff(u32::MAX), S(150), "no overflow");

        let tripling = Policy {
            retry_attempts: 10,
            spacing: exponential(1, 3.0, Some(20), false),
            max_delay: S(3600),
        };
        let delays: Vec<_> = (1..=5).map(|n| tripling.backoff(n)).collect();
        assert_eq!(
            delays,
            [S(1), S(3), S(9), S(20), S(20)],
            "the webhook's own cap"
        );
    }

    #[test]
    fn jitter_draws_from_the_upper_half_as_vaulytica_documents() {
        // Vaulytica: initial 1 s, base 2, max 60 s; with jitter attempt 3
        // waits 2–4 s and attempt 7 30–60 s.
        let p = Policy {
            retry_attempts: 7,
            spacing: exponential(1, 2.0, Some(60), true),
            max_delay: S(86_400),
        };
        assert_eq!(p.next_delay(3, None, -1.0), Some(S(2)));
        assert_eq!(p.next_delay(3, None, 1.0), Some(S(4)));
        assert_eq!(p.next_delay(3, None, 0.0), Some(S(3)));
        assert_eq!(p.next_delay(7, None, -1.0), Some(S(30)));
        assert_eq!(p.next_delay(7, None, 1.0), Some(S(60)));
        for j in [-1.0, -0.3, 0.0, 0.6, 1.0, 7.0, -7.0] {
            let d = p.next_delay(5, None, j).unwrap();
            assert!((S(8)..=S(16)).contains(&d), "{j}: {d:?}");
        }
    }

    #[test]
    fn a_schedule_is_taken_as_given_and_its_last_delay_repeats() {
        let standard = Policy {
            retry_attempts: 7,
            spacing: RetrySpacing::standard(),
            max_delay: S(86_400),
        };
        let delays: Vec<_> = (1..=7)
            .map(|n| standard.next_delay(n, None, 1.0).unwrap())
            .collect();
        assert_eq!(
            delays,
            [
                S(5),
                S(300),
                S(1800),
                S(7200),
                S(18_000),
                S(36_000),
                S(36_000)
            ]
        );
        let total: Duration = delays.iter().sum();
        assert_eq!(total, S(27 * 3600 + 35 * 60 + 5), "about 28 hours");
        assert_eq!(standard.next_delay(8, None, 0.0), None);

        let longer = Policy {
            retry_attempts: 9,
            ..standard.clone()
        };
        assert_eq!(longer.next_delay(9, None, 0.0), Some(S(36_000)));
        let capped = Policy {
            max_delay: S(3600),
            ..standard
        };
        assert_eq!(capped.next_delay(6, None, 0.0), Some(S(3600)));
        let empty = Policy {
            retry_attempts: 2,
            spacing: RetrySpacing::Schedule { delays_ms: vec![] },
            max_delay: S(60),
        };
        assert_eq!(empty.next_delay(1, None, 0.0), Some(S(0)));
    }

    #[test]
    fn parks_in_the_longest_tier_that_fits() {
        let tiers = [S(1), S(5), S(30), S(120)];
        assert_eq!(park(Duration::from_millis(10), &tiers), Park::Now);
        assert_eq!(
            park(Duration::from_millis(400), &tiers),
            Park::Sleep(Duration::from_millis(400))
        );
        assert_eq!(park(S(7), &tiers), Park::Tier(S(5)));
        assert_eq!(park(S(2), &tiers), Park::Tier(S(1)));
        assert_eq!(park(S(1), &tiers), Park::Tier(S(1)));
        assert_eq!(park(S(10_000), &tiers), Park::Tier(S(120)));
        let coarse = [S(5)];
        assert_eq!(park(S(3), &coarse), Park::Tier(S(5)));
    }

    mod decide {
        use super::super::*;

        fn policy() -> Policy {
            Policy {
                retry_attempts: 2,
                spacing: RetrySpacing::Exponential {
                    first_ms: 60_000,
                    base: 2.0,
                    max_ms: None,
                    jitter: true,
                },
                max_delay: Duration::from_secs(3600),
            }
        }

        fn at() -> DateTime<Utc> {
            DateTime::from_timestamp(1_800_000_000, 0).unwrap()
        }

        fn after(seconds: i64) -> Option<DateTime<Utc>> {
            Some(at() + chrono::Duration::seconds(seconds))
        }

        fn d(
            outcome: Outcome,
            code: Option<u16>,
            retry_after: Option<u64>,
            attempt: u32,
            jitter: f64,
        ) -> Decision {
            decide(
                outcome,
                code,
                retry_after.map(Duration::from_secs),
                &policy(),
                attempt,
                at(),
                jitter,
            )
        }

        #[test]
        fn a_2xx_is_delivered() {
            let x = d(Outcome::Success, Some(204), None, 1, 0.0);
            assert_eq!(
                (x.status, x.next_attempt_at, x.exhausted),
                (DeliveryStatus::Success, None, false)
            );
        }

        #[test]
        fn a_retryable_failure_waits_the_backoff_with_its_jitter() {
            let x = d(Outcome::HttpError, Some(503), None, 1, 1.0);
            assert_eq!(
                (x.status, x.next_attempt_at),
                (DeliveryStatus::Retrying, after(60))
            );
            assert_eq!(
                d(Outcome::HttpError, Some(503), None, 2, 1.0).next_attempt_at,
                after(120)
            );
            assert_eq!(
                d(Outcome::Timeout, None, None, 1, 0.0).next_attempt_at,
                after(45)
            );
            assert_eq!(
                d(Outcome::NetworkError, None, None, 1, -1.0).next_attempt_at,
                after(30)
            );
        }

        #[test]
        fn retry_after_is_honoured_within_the_cap() {
            assert_eq!(
                d(Outcome::HttpError, Some(429), Some(7), 1, 1.0).next_attempt_at,
                after(7)
            );
            assert_eq!(
                d(Outcome::HttpError, Some(429), Some(99_999), 1, 0.0).next_attempt_at,
                after(3600)
            );
        }

        #[test]
        fn spent_retries_are_exhausted() {
            let x = d(Outcome::HttpError, Some(500), None, 3, 0.0);
            assert_eq!(
                (x.status, x.next_attempt_at, x.exhausted),
                (DeliveryStatus::Failed, None, true)
            );
        }

        #[test]
        fn client_errors_gone_and_blocked_fail_at_once_without_exhaustion() {
            for (outcome, code, verdict) in [
                (Outcome::HttpError, Some(400), Verdict::Fail),
                (Outcome::HttpError, Some(404), Verdict::Fail),
                (Outcome::HttpError, Some(410), Verdict::Gone),
                (Outcome::Blocked, None, Verdict::Fail),
            ] {
                let x = d(outcome, code, None, 1, 0.0);
                assert_eq!(x.verdict, verdict);
                assert_eq!(
                    (x.status, x.next_attempt_at, x.exhausted),
                    (DeliveryStatus::Failed, None, false)
                );
            }
        }

        #[test]
        fn outcomes_have_their_metric_labels() {
            let labels: Vec<&str> = [
                Outcome::Success,
                Outcome::HttpError,
                Outcome::Timeout,
                Outcome::NetworkError,
                Outcome::Blocked,
            ]
            .into_iter()
            .map(Outcome::label)
            .collect();
            assert_eq!(
                labels,
                [
                    "success",
                    "http_error",
                    "timeout",
                    "network_error",
                    "blocked"
                ]
            );
        }
    }
}
