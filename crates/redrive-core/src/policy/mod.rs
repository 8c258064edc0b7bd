//! Policies: what to retry, on what schedule, and when to give up.
//!
//! A policy is plain data. The built-in profiles ([`crate::profiles`]) build one
//! from the seed documents; policy files ([`file`]) build one from TOML. The
//! decision procedure that reads it lives in [`crate::decide`].

use std::borrow::Cow;
use std::time::Duration;

use crate::schedule::Schedule;

pub mod file;
mod rule;

pub use rule::{BadStatus, Condition, Rule, StatusRange};

/// What to do with a retryable outcome that may already have been applied
/// (`network_indeterminate`, or a status the policy calls indeterminate) when the
/// request is not idempotent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndeterminateAction {
    /// Park it with reason `indeterminate` so a person reconciles it (seed 000).
    Park,
    /// Retry it anyway: the receiver is known to tolerate duplicates.
    Retry,
}

/// How a `Retry-After` response header is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryAfter {
    /// When true, the next delay is exactly the header's value (clamped to `cap`).
    pub honour: bool,
    /// The longest wait a `Retry-After` may impose.
    pub cap: Duration,
}

/// Where a policy's non-rule settings come from, for `policy explain`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Notes {
    /// Why this schedule and this number of attempts.
    pub schedule: Cow<'static, str>,
    /// Why requests are (or are not) idempotent under this policy.
    pub idempotency: Cow<'static, str>,
    /// What happens after the last try.
    pub after_last_try: Cow<'static, str>,
}

/// A complete, validated retry policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// The profile or `[policies.NAME]` name.
    pub name: String,
    /// One line for `policy list`.
    pub description: Cow<'static, str>,
    /// Statuses that count as delivered.
    pub success: Vec<Rule>,
    /// Outcomes that are never retried, even if a `retry_on` rule matches.
    pub never_retry: Vec<Rule>,
    /// Outcomes that are retried; everything else parks as `not_retryable`.
    pub retry_on: Vec<Rule>,
    /// Statuses whose outcome is indeterminate (the request may have been applied).
    /// `network_indeterminate` always is.
    pub indeterminate_statuses: Vec<Rule>,
    /// What a non-idempotent request with an indeterminate outcome does.
    pub indeterminate: IndeterminateAction,
    /// Methods that are idempotent by themselves (upper case).
    pub idempotent_methods: Vec<String>,
    /// The header that carries the message's stable key on every attempt, if the
    /// receiver honours one. When set, every request is idempotent.
    pub idempotency_header: Option<String>,
    /// The delays between attempts.
    pub schedule: Schedule,
    /// Attempts in one cycle, the first included.
    pub max_attempts: u32,
    /// The longest a cycle may last, counted from its start.
    pub deadline: Option<Duration>,
    /// How `Retry-After` is treated.
    pub retry_after: RetryAfter,
    /// How long one attempt may take before it is a `timeout`.
    pub attempt_timeout: Duration,
    /// Whether a park should alert an operator (seed 000: "a report of the error
    /// to the PRIVO engineering team").
    pub alert_on_park: bool,
    /// Where the settings come from.
    pub notes: Notes,
}

impl Policy {
    /// True when `method` is idempotent under this policy by itself.
    pub fn method_is_idempotent(&self, method: &str) -> bool {
        self.idempotent_methods
            .iter()
            .any(|m| m.eq_ignore_ascii_case(method))
    }

    /// The largest delay the policy can impose between two attempts.
    pub fn max_delay(&self) -> Duration {
        let schedule = self.schedule.cap();
        if self.retry_after.honour {
            schedule.max(self.retry_after.cap)
        } else {
            schedule
        }
    }
}
