//! `privo`: calling the PRIVO Platform API.
//!
//! Seed 000 (000_5da3dfe82e83dc70.txt: error handling and idempotency) and seed 001
//! (001_148219df6d5fd025.txt: status codes, the OAuth error and the response wrapper).

use std::borrow::Cow;

use crate::class::ErrorClass;
use crate::policy::{IndeterminateAction, Policy, Rule, StatusRange};

pub(super) fn policy() -> Policy {
    let mut p = super::skeleton(
        "privo",
        "PRIVO API (seeds 000, 001): 5xx is indeterminate, retried only for idempotent requests; 429 backs off",
    );
    p.success = vec![
        // seed 001: "200 - Ok", "201 - Created", "208 - Already Reported".
        Rule::statuses(
            StatusRange::hundreds(2),
            "seed 001: 200 Ok, 201 Created, 208 Already Reported",
        ),
        // seed 001: "302 - Found - URL redirection was successful."
        Rule::status(302, "seed 001: 302 Found, URL redirection was successful"),
    ];
    p.retry_on = vec![
        // seed 000 (Network Errors): connectivity problems; a request that never
        // left cannot have been applied.
        Rule::class(ErrorClass::NetworkUnsent, "seed 000: network error before the request was sent"),
        // seed 000: "For GET or DELETE requests it is safe to simply retry the request."
        Rule::class(
            ErrorClass::NetworkIndeterminate,
            "seed 000: network error; safe to retry for GET, DELETE or a request whose content blocks duplicates",
        ),
        // seed 001: "429 - Too Many Requests ... We recommend an exponential backoff."
        // A 429 was refused, not applied, so it is retried for every method.
        Rule::status(429, "seed 001: 429 Too Many Requests, back off exponentially"),
        // seed 001: "5xx - Server Errors - Something went wrong on PRIVO's end."
        Rule::statuses(StatusRange::hundreds(5), "seed 001: 5xx server error"),
    ];
    // seed 000: "The result of a 5xx request should be treated as indeterminate."
    p.indeterminate_statuses = vec![Rule::statuses(
        StatusRange::hundreds(5),
        "seed 000: the result of a 5xx request should be treated as indeterminate",
    )];
    // seed 000: "PRIVO engineers examine failed requests and try to appropriately
    // reconcile the results of any mutations that resulted in server errors."
    p.indeterminate = IndeterminateAction::Park;
    // seed 000: "The Platform API guarantees the idempotency of 'GET' and 'DELETE'
    // requests." HEAD and OPTIONS are safe by HTTP semantics (RFC 9110 §9.2.1);
    // PUT is not listed by PRIVO, so it is not assumed idempotent here.
    p.idempotent_methods = ["GET", "HEAD", "OPTIONS", "DELETE"]
        .map(String::from)
        .to_vec();
    // seed 000/001 document no idempotency header.
    p.idempotency_header = None;
    p.notes.schedule = Cow::Borrowed(
        "seed 001 recommends exponential backoff without numbers: redrive's 1 s, doubling, cap 1 h, full jitter; 8 attempts",
    );
    p.notes.idempotency = Cow::Borrowed(
        "seed 000: GET and DELETE are idempotent; a POST only when its content blocks duplicates (mark it idempotent) or it carries a key PRIVO honours",
    );
    p.notes.after_last_try = Cow::Borrowed(
        "parked; a 5xx or network error on a non-idempotent request parks as indeterminate for a person to reconcile (seed 000)",
    );
    p
}
