//! `synchive`: calling SyncHive, or a connector answering it.
//!
//! Seed 002 (002_1b80dde5662858d4.txt).

use std::borrow::Cow;

use crate::bodies::synchive::{RETRY_LATER_CODE, RETRY_LATER_TYPE};
use crate::class::ErrorClass;
use crate::policy::{Condition, Policy, Rule, StatusRange};

pub(super) fn policy() -> Policy {
    let mut p = super::skeleton(
        "synchive",
        "SyncHive (seed 002): RETRY_LATER problems, 502-504 and retryable=true are retried; linkIdentities kept",
    );
    // seed 002: "If the failure is retryable, the property retryable populated
    // with true": an explicit false is a connector saying "do not retry".
    p.never_retry = vec![Rule::new(
        Condition::Retryable(false),
        "seed 002: the error body says retryable: false",
    )];
    p.retry_on = vec![
        // seed 002: "Messages with a type of http://www.meaningful.co.nz/limber-sync/retry-later
        // should be treated as retryable", whatever the status.
        Rule::new(
            Condition::ProblemType(RETRY_LATER_TYPE.to_owned()),
            "seed 002: retry-later problem type",
        ),
        // seed 002: the same problem carries "typeCode": "RETRY_LATER".
        Rule::new(
            Condition::TypeCode(RETRY_LATER_CODE.to_owned()),
            "seed 002: typeCode RETRY_LATER",
        ),
        // seed 002: "HTTP requests with the following status codes should also be
        // treated as retryable: 502 Bad Gateway, 503 Service Unavailable, 504 Gateway Timeout".
        Rule::statuses(
            StatusRange { lo: 502, hi: 504 },
            "seed 002: 502, 503, 504 are retryable",
        ),
        // seed 002: "If the failure is retryable, the property retryable populated with true."
        Rule::new(
            Condition::Retryable(true),
            "seed 002: the error body says retryable: true",
        ),
        // DESIGN.md, Vocabulary: network_unsent "is always safe to retry";
        // network_indeterminate only for idempotent requests (seed 000's rule).
        Rule::class(
            ErrorClass::NetworkUnsent,
            "the request never left: always safe to resend",
        ),
        Rule::class(
            ErrorClass::NetworkIndeterminate,
            "network error after sending: retried only for idempotent requests",
        ),
    ];
    p.notes.schedule = Cow::Borrowed(
        "seed 002 names no schedule: redrive's exponential 1 s, doubling, cap 1 h, full jitter; 8 attempts",
    );
    p.notes.idempotency = Cow::Borrowed(
        "HTTP semantics (GET, HEAD, OPTIONS, PUT, DELETE); SyncHive's own calls are PUTs",
    );
    p.notes.after_last_try = Cow::Borrowed(
        "parked; linkIdentities from the error body are kept on the attempt (seed 002: Linking External IDs)",
    );
    p
}
