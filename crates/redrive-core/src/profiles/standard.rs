//! `standard`: redrive's default for an API that documents nothing special.
//!
//! Not from a seed: the common ground of the five (network failures, 408, 429
//! and the gateway 5xx are temporary; other 4xx are the caller's to fix), with an
//! idempotency key on every attempt so retrying a POST is safe.

use std::borrow::Cow;

use crate::class::ErrorClass;
use crate::policy::{Policy, Rule, StatusRange};

pub(super) fn policy() -> Policy {
    let mut p = super::skeleton(
        "standard",
        "network, 408, 429, 500, 502-504 retried with exponential backoff; an Idempotency-Key on every attempt",
    );
    p.retry_on = vec![
        Rule::class(
            ErrorClass::NetworkUnsent,
            "the request never left: always safe to resend",
        ),
        Rule::class(
            ErrorClass::NetworkIndeterminate,
            "safe to resend: the Idempotency-Key dedupes it",
        ),
        Rule::status(408, "408 Request Timeout is temporary"),
        Rule::status(
            429,
            "429 Too Many Requests: the request was refused, not applied",
        ),
        Rule::status(500, "500 Internal Server Error is usually temporary"),
        Rule::statuses(
            StatusRange { lo: 502, hi: 504 },
            "gateway and availability errors are temporary",
        ),
    ];
    // seed 000: "The result of a 5xx request should be treated as indeterminate."
    // It only matters if a policy extending `standard` stops sending the key.
    p.indeterminate_statuses = vec![Rule::statuses(
        StatusRange::hundreds(5),
        "seed 000: the result of a 5xx request should be treated as indeterminate",
    )];
    p.idempotency_header = Some("Idempotency-Key".to_owned());
    p.notes.schedule = Cow::Borrowed(
        "redrive's default: exponential from 1 s, doubling, capped at 1 h, full jitter; 8 attempts",
    );
    p.notes.idempotency =
        Cow::Borrowed("every attempt carries the message's stable Idempotency-Key, so every request is idempotent");
    p.notes.after_last_try = Cow::Borrowed("parked as exhausted, with every attempt kept");
    p
}
