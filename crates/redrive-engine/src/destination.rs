//! A destination: where messages go, under which policy, with which headers
//! and limits. Built from configuration by the server; used by the workers.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};
use redrive_core::reconcile::ReconcileProbe;
use redrive_core::Policy;
use tokio::sync::Semaphore;

use crate::breaker::{Breaker, BreakerConfig};
use crate::credentials::TokenSource;
use crate::limits::{Rate, RateLimiter};
use crate::observed::DestinationMetrics;
use crate::signing::SigningSecret;

/// A configured destination.
#[derive(Clone, Debug)]
pub struct Destination {
    /// Its name, as messages refer to it.
    pub name: String,
    /// The base URL; a message's path is appended to it.
    pub url: Uri,
    /// The name of its policy (a profile or a `[policies.*]`).
    pub policy_name: String,
    /// Its policy.
    pub policy: Arc<Policy>,
    /// Headers sent on every attempt (they win over a message's own).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The most attempts in flight at once.
    pub max_in_flight: usize,
    /// The most attempts per unit of time.
    pub rate_limit: Option<Rate>,
    /// Signs each attempt with Standard Webhooks headers when set.
    pub signing: Option<SigningSecret>,
    /// Renewable credentials (OAuth 2.0 client credentials), when set: every
    /// attempt sends their token. Static ones are in `headers`.
    pub credentials: Option<Arc<TokenSource>>,
    /// The probe asked before a message would be parked `indeterminate`.
    pub reconcile: Option<Arc<ReconcileProbe>>,
}

impl Destination {
    /// The full URL of `path` (which starts with `/`) at this destination.
    ///
    /// Every attempt asks for one: the base's scheme and authority are shared
    /// (cheap clones) and only the path is parsed, rather than printing the
    /// base and parsing the whole URL again.
    pub fn url_for(&self, path: &str) -> Result<Uri, http::uri::InvalidUri> {
        if let (Some(scheme), Some(authority), None, true) = (
            self.url.scheme(),
            self.url.authority(),
            self.url.query(),
            path.starts_with('/'),
        ) {
            let prefix = self.url.path().trim_end_matches('/');
            let mut joined = String::with_capacity(prefix.len() + path.len());
            joined.push_str(prefix);
            joined.push_str(path);
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(scheme.clone());
            parts.authority = Some(authority.clone());
            parts.path_and_query = Some(http::uri::PathAndQuery::from_maybe_shared(
                bytes::Bytes::from(joined),
            )?);
            if let Ok(uri) = Uri::from_parts(parts) {
                return Ok(uri);
            }
        }
        let base = self.url.to_string();
        let base = base.trim_end_matches('/');
        format!("{base}{path}").parse()
    }

    /// Header values that are secrets: redacted from attempt records.
    pub fn secrets(&self) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(name, _)| is_secret_header(name.as_str()))
            .filter_map(|(_, v)| v.to_str().ok())
            .flat_map(|v| {
                // Both "Bearer abc" and "abc" may be echoed back.
                let mut parts = vec![v.to_owned()];
                if let Some((_, token)) = v.split_once(' ') {
                    parts.push(token.to_owned());
                }
                parts
            })
            .chain(
                self.credentials
                    .iter()
                    .map(|c| c.client_secret().to_owned()),
            )
            .filter(|s| s.len() >= 6)
            .collect()
    }
}

/// Headers whose values never reach logs or attempt records.
pub fn is_secret_header(lower_name: &str) -> bool {
    matches!(
        lower_name,
        "authorization"
            | "proxy-authorization"
            | "cookie"
            | "x-api-key"
            | "api-key"
            | "x-auth-token"
    )
}

/// A destination with its run-time state: limits and breaker.
#[derive(Debug)]
pub struct DestinationRuntime {
    /// The configuration.
    pub config: Destination,
    /// `max_in_flight` permits: held for the length of an attempt.
    pub in_flight: Arc<Semaphore>,
    /// The claim window: held from the claim to the end of the attempt, so
    /// the scheduler claims for a destination only what it can start soon
    /// (up to four times `max_in_flight`, fewer under a rate limit or with
    /// long attempt timeouts; see `claim_window`) and no lease runs out in a
    /// queue.
    pub window: Arc<Semaphore>,
    /// The window's size.
    pub window_size: usize,
    /// `rate_limit`, when set.
    pub limiter: Option<RateLimiter>,
    breaker: Mutex<Breaker>,
    /// Values to redact from responses.
    pub secrets: Vec<String>,
    metrics: OnceLock<DestinationMetrics>,
    /// Its place in the engine's list (and the scheduler's entries).
    pub(crate) index: usize,
    /// Due, but set aside by the scheduler until its window has room again
    /// or its circuit's probe ends: the end of an attempt puts it back.
    pub(crate) set_aside: AtomicBool,
    /// When it was due as it was set aside (its place when put back).
    pub(crate) set_aside_due: AtomicI64,
    /// Paused by a person: none of its messages is attempted until resumed.
    pub(crate) paused: AtomicBool,
    /// Who paused it, when and why.
    pub(crate) pause: Mutex<Option<redrive_store::Pause>>,
    /// Messages whose last attempt here renewed the token: a second
    /// rejection right after is an `auth` error, not another renewal.
    pub(crate) renewed: Mutex<HashSet<String>>,
}

impl DestinationRuntime {
    /// Its run-time state, fresh. `lease_slack` is how much longer a lease
    /// runs than this destination's attempt timeout (see `claim_window`).
    pub fn new(config: Destination, breaker: BreakerConfig, lease_slack: Duration) -> Self {
        Self::at(0, config, breaker, lease_slack)
    }

    /// [`DestinationRuntime::new`], at `index` in the engine's list.
    pub(crate) fn at(
        index: usize,
        config: Destination,
        breaker: BreakerConfig,
        lease_slack: Duration,
    ) -> Self {
        let window_size = claim_window(&config, lease_slack);
        DestinationRuntime {
            index,
            set_aside: AtomicBool::new(false),
            set_aside_due: AtomicI64::new(0),
            renewed: Mutex::new(HashSet::new()),
            paused: AtomicBool::new(false),
            pause: Mutex::new(None),
            window: Arc::new(Semaphore::new(window_size)),
            window_size,
            in_flight: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            limiter: config.rate_limit.map(RateLimiter::new),
            breaker: Mutex::new(Breaker::new(breaker)),
            secrets: config.secrets(),
            metrics: OnceLock::new(),
            config,
        }
    }

    /// Its metric handles, registered at the first call.
    pub fn metrics(&self) -> &DestinationMetrics {
        self.metrics
            .get_or_init(|| DestinationMetrics::new(&self.config.name))
    }

    /// The breaker, locked.
    pub fn breaker(&self) -> MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How many of a destination's messages may be claimed at once: up to four
/// times `max_in_flight`, and under a rate limit no more than five seconds'
/// worth, so that claimed messages do not wait out their lease behind the
/// limiter.
///
/// The scheduler refills a window once half of it is free, and a claim takes
/// a while (a round trip to the store): the half still held must cover the
/// attempts in flight *and* as many ready to start, or requests stop while
/// the claim runs. With twice `max_in_flight`, the ready ones were gone
/// exactly when the refill began; with four times, ten alternating pairs of
/// drains kept 1.78 cores busy on average instead of 1.71 and reached 0.44
/// of the bare client's rate instead of 0.40 (BENCHMARKS.md).
///
/// A message waits for the attempts queued before it: each set of
/// `max_in_flight` beyond the first may take up to the attempt timeout, and
/// a claimed message whose lease would end before its attempt could is given
/// back unattempted. So the window holds only as many sets beyond the first
/// as `lease_slack` (what the lease leaves after this destination's timeout)
/// has room for, never fewer than one: twice `max_in_flight`, as before,
/// when attempts may take as long as the slack.
fn claim_window(config: &Destination, lease_slack: Duration) -> usize {
    let timeout = config.policy.attempt_timeout.as_secs_f64().max(0.001);
    let sets_behind = (lease_slack.as_secs_f64() / timeout)
        .floor()
        .clamp(1.0, 3.0) as usize;
    let mut window = config.max_in_flight.max(1).saturating_mul(1 + sets_behind);
    if let Some(rate) = config.rate_limit {
        window = window.min((rate.per_second * 5.0).ceil().max(1.0) as usize);
    }
    window
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(url: &str) -> Destination {
        Destination {
            name: "crm".into(),
            url: url.parse().unwrap(),
            policy_name: "standard".into(),
            policy: Arc::new(redrive_core::profiles::builtin("standard").unwrap()),
            headers: vec![(
                HeaderName::from_static("authorization"),
                HeaderValue::from_static("Bearer s3cr3t-token"),
            )],
            max_in_flight: 4,
            rate_limit: None,
            signing: None,
            credentials: None,
            reconcile: None,
        }
    }

    fn with_timeout(max_in_flight: usize, seconds: u64) -> Destination {
        let mut policy = (*dest("http://127.0.0.1:1").policy).clone();
        policy.attempt_timeout = Duration::from_secs(seconds);
        Destination {
            max_in_flight,
            policy: Arc::new(policy),
            ..dest("http://127.0.0.1:1")
        }
    }

    /// When the scheduler refills a window (half of it free), the half still
    /// held covers the attempts in flight and as many ready to start, as long
    /// as the lease leaves room for them to wait; a rate limit caps the
    /// window at five seconds' worth.
    #[test]
    fn a_refill_starts_while_a_full_set_of_attempts_waits_ready() {
        let slack = Duration::from_secs(30);
        for max_in_flight in [1, 2, 7, 64, 1000] {
            let window = claim_window(&with_timeout(max_in_flight, 5), slack);
            let held_at_refill = window - window / 2;
            assert!(
                held_at_refill >= 2 * max_in_flight,
                "max_in_flight {max_in_flight}: window {window}"
            );
        }
        let limited = claim_window(
            &Destination {
                rate_limit: Some(Rate { per_second: 10.0 }),
                ..with_timeout(64, 5)
            },
            slack,
        );
        assert_eq!(limited, 50);
    }

    /// No claimed message waits longer than its lease allows, even if every
    /// attempt before it runs to the timeout: the sets of attempts queued
    /// behind the first fit in the lease's slack (at least one set, as
    /// before this window grew).
    #[test]
    fn the_window_never_queues_more_than_the_lease_can_wait_for() {
        let slack = Duration::from_secs(30);
        for (timeout, factor) in [(5, 4), (10, 4), (15, 3), (30, 2), (60, 2)] {
            assert_eq!(
                claim_window(&with_timeout(64, timeout), slack),
                64 * factor,
                "timeout {timeout} s"
            );
        }
    }

    #[test]
    fn paths_are_appended_to_the_base_url() {
        assert_eq!(
            dest("https://crm.example.com")
                .url_for("/v1/users?x=1")
                .unwrap(),
            "https://crm.example.com/v1/users?x=1"
        );
        assert_eq!(
            dest("https://crm.example.com/api/").url_for("/v1").unwrap(),
            "https://crm.example.com/api/v1"
        );
        assert_eq!(
            dest("http://127.0.0.1:8080/hooks")
                .url_for("/a%20b")
                .unwrap(),
            "http://127.0.0.1:8080/hooks/a%20b"
        );
        assert!(dest("https://crm.example.com").url_for("/a b").is_err());
    }

    #[test]
    fn secret_header_values_are_known_for_redaction() {
        assert_eq!(
            dest("http://x").secrets(),
            vec!["Bearer s3cr3t-token".to_owned(), "s3cr3t-token".to_owned()]
        );
    }
}
