//! `privo-webhook`: PRIVO calling *your* webhook, or you replaying its rules.
//!
//! Seed 000 (000_5da3dfe82e83dc70.txt), last paragraph of Server Errors.

use std::borrow::Cow;
use std::time::Duration;

use crate::class::ErrorClass;
use crate::policy::{IndeterminateAction, Policy, RetryAfter, Rule, StatusRange};
use crate::schedule::Schedule;

pub(super) fn policy() -> Policy {
    let mut p = super::skeleton(
        "privo-webhook",
        "PRIVO webhooks (seed 000): 5xx and network failures retried 3 times within a minute, then an alert",
    );
    p.retry_on = vec![
        // seed 000: "It is also possible for server errors to occur on the
        // Client-side of the integration as well, for example during a webhook
        // response ... PRIVO will attempt the request up to 3 times."
        Rule::statuses(
            StatusRange::hundreds(5),
            "seed 000: client-side server error during a webhook",
        ),
        Rule::class(
            ErrorClass::NetworkUnsent,
            "seed 000: network error during a webhook",
        ),
        Rule::class(
            ErrorClass::NetworkIndeterminate,
            "seed 000: network error during a webhook",
        ),
    ];
    // seed 000: PRIVO re-attempts webhook calls whatever their outcome may have
    // done; the receiver dedupes.
    p.indeterminate = IndeterminateAction::Retry;
    // seed 000: "up to 3 times over the course of the proceeding minute".
    p.max_attempts = 3;
    p.schedule = Schedule::Fixed(vec![Duration::from_secs(20), Duration::from_secs(20)]);
    p.deadline = Some(Duration::from_secs(60));
    p.retry_after = RetryAfter {
        honour: false,
        cap: Duration::from_secs(20),
    };
    p.attempt_timeout = Duration::from_secs(10);
    // seed 000: "the monitoring system delivers a report of the error to the PRIVO
    // engineering team."
    p.alert_on_park = true;
    p.notes.schedule = Cow::Borrowed(
        "seed 000: up to 3 attempts over the following minute (redrive spaces them 20 s apart)",
    );
    p.notes.idempotency =
        Cow::Borrowed("seed 000: webhook calls are re-attempted whatever the method");
    p.notes.after_last_try = Cow::Borrowed(
        "parked and an alert sent (seed 000: a report of the error to the engineering team)",
    );
    p
}
