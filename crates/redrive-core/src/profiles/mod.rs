//! The built-in profiles: one per platform of the seed documents, plus
//! `standard`.
//!
//! Each rule carries a note naming the seed file it comes from, and every profile
//! module cites its seed next to each rule, so a reader can check the code
//! against the text. Numbers a seed does not give (a schedule's base, say) are
//! marked as redrive's own choice.

use std::borrow::Cow;
use std::time::Duration;

use crate::policy::{IndeterminateAction, Notes, Policy, RetryAfter, Rule, StatusRange};
use crate::schedule::{Jitter, Schedule};

mod intentplatform;
mod operations1;
mod privo;
mod privo_webhook;
mod standard;
mod synchive;

/// The names of the built-in profiles, in the order `policy list` shows them.
pub const NAMES: [&str; 6] = [
    "standard",
    "privo",
    "privo-webhook",
    "synchive",
    "operations1",
    "intentplatform",
];

/// The built-in profile called `name`, if there is one.
pub fn builtin(name: &str) -> Option<Policy> {
    Some(match name {
        "standard" => standard::policy(),
        "privo" => privo::policy(),
        "privo-webhook" => privo_webhook::policy(),
        "synchive" => synchive::policy(),
        "operations1" => operations1::policy(),
        "intentplatform" => intentplatform::policy(),
        _ => return None,
    })
}

/// Every built-in profile, in [`NAMES`] order.
pub fn all() -> Vec<Policy> {
    NAMES.iter().filter_map(|n| builtin(n)).collect()
}

/// Methods that are idempotent by HTTP semantics (RFC 9110 §9.2.2), the
/// default of DESIGN.md's Idempotency section.
pub(crate) fn http_idempotent_methods() -> Vec<String> {
    ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]
        .map(String::from)
        .to_vec()
}

/// `2xx` counts as delivered.
pub(crate) fn success_2xx(note: &'static str) -> Vec<Rule> {
    vec![Rule::statuses(StatusRange::hundreds(2), note)]
}

/// The exponential schedule of `standard` (redrive's numbers where a seed says
/// "exponential backoff" without numbers): 1 s, doubling, at most 1 h, full jitter.
pub(crate) fn standard_backoff() -> Schedule {
    Schedule::Exponential {
        base: Duration::from_secs(1),
        factor: 2.0,
        cap: Duration::from_secs(3600),
        jitter: Jitter::Full,
    }
}

/// A policy skeleton with the fields every profile sets the same way; each
/// profile module overrides what its seed says.
pub(crate) fn skeleton(name: &str, description: &'static str) -> Policy {
    Policy {
        name: name.to_owned(),
        description: Cow::Borrowed(description),
        success: success_2xx("2xx: the request was accepted"),
        never_retry: Vec::new(),
        retry_on: Vec::new(),
        indeterminate_statuses: Vec::new(),
        indeterminate: IndeterminateAction::Park,
        idempotent_methods: http_idempotent_methods(),
        idempotency_header: None,
        schedule: standard_backoff(),
        max_attempts: 8,
        deadline: None,
        retry_after: RetryAfter {
            honour: true,
            cap: Duration::from_secs(3600),
        },
        attempt_timeout: Duration::from_secs(30),
        alert_on_park: false,
        notes: Notes::default(),
    }
}
