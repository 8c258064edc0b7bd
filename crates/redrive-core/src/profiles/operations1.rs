//! `operations1`: calling the Operations1 API.
//!
//! Seed 003 (003_7503dfbdfb3ddf6d.txt).

use std::borrow::Cow;
use std::time::Duration;

use crate::class::ErrorClass;
use crate::policy::{Policy, RetryAfter, Rule};
use crate::schedule::{Jitter, Schedule};

pub(super) fn policy() -> Policy {
    let mut p = super::skeleton(
        "operations1",
        "Operations1 (seed 003): 429 and 503 retried at 1, 2, 4, 8 s; 5 attempts; 5 s timeout",
    );
    p.retry_on = vec![
        // seed 003: "For temporary errors (i.e. 429 Too Many Requests, 503 Service
        // Unavailable), implement retries with exponential backoff."
        Rule::status(429, "seed 003: 429 Too Many Requests is temporary"),
        Rule::status(503, "seed 003: 503 Service Unavailable is temporary"),
        // seed 003's loop retries `requests.exceptions.RequestException`, which
        // includes connection errors and timeouts.
        Rule::class(
            ErrorClass::NetworkUnsent,
            "seed 003: connection errors are retried",
        ),
        Rule::class(
            ErrorClass::NetworkIndeterminate,
            "seed 003: timeouts are retried (only for idempotent requests)",
        ),
    ];
    // seed 003: `for attempt in range(5)` ... `time.sleep(2 ** attempt)`:
    // 5 attempts, waits of 1, 2, 4 and 8 s, exactly (no jitter).
    p.max_attempts = 5;
    p.schedule = Schedule::Exponential {
        base: Duration::from_secs(1),
        factor: 2.0,
        cap: Duration::from_secs(8),
        jitter: Jitter::None,
    };
    // The seed's exact delays: Retry-After is not consulted.
    p.retry_after = RetryAfter {
        honour: false,
        cap: Duration::from_secs(8),
    };
    // seed 003: `requests.get(..., timeout=5)`.
    p.attempt_timeout = Duration::from_secs(5);
    p.notes.schedule =
        Cow::Borrowed("seed 003: 5 attempts, sleeping 2 ** attempt seconds: 1, 2, 4, 8 s");
    p.notes.idempotency =
        Cow::Borrowed("HTTP semantics (GET, HEAD, OPTIONS, PUT, DELETE); no key documented");
    p.notes.after_last_try =
        Cow::Borrowed("parked as exhausted (seed 003: \"Failed after 5 attempts\", logged)");
    p
}
