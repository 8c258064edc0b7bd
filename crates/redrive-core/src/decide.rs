//! The decision: delivered, retry after a delay, or park with a reason.
//!
//! This is the one place that turns a classified outcome into what happens next.
//! It is a pure function of the policy, the request, the outcome, the attempt
//! number, the current time and a random source.

use std::fmt;
use std::time::{Duration, SystemTime};

use rand_core::RngCore;

use crate::class::ErrorClass;
use crate::classify::{classify, Classification};
use crate::duration::HumanDuration;
use crate::outcome::{Outcome, RequestFacts};
use crate::policy::{IndeterminateAction, Policy, Rule};
use crate::retry_after::parse_retry_after;

/// Where in its cycle the attempt being decided was.
#[derive(Clone, Copy, Debug)]
pub struct AttemptContext {
    /// The attempt's number in its cycle, counted from 1.
    pub attempt: u32,
    /// The time the outcome was seen.
    pub now: SystemTime,
    /// When the cycle started (enqueue, or the last redrive): the deadline counts
    /// from here.
    pub cycle_started_at: SystemTime,
}

/// Why a message is parked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParkReason {
    /// The policy never retries this outcome.
    NotRetryable,
    /// The last allowed attempt failed.
    Exhausted,
    /// The next attempt would fall after the deadline.
    Expired,
    /// It may have been applied; a person must reconcile it (seed 000).
    Indeterminate,
}

impl ParkReason {
    /// The snake_case name used in the API and the CLI.
    pub const fn as_str(self) -> &'static str {
        match self {
            ParkReason::NotRetryable => "not_retryable",
            ParkReason::Exhausted => "exhausted",
            ParkReason::Expired => "expired",
            ParkReason::Indeterminate => "indeterminate",
        }
    }
}

impl fmt::Display for ParkReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a retry's delay came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryReason {
    /// The policy's schedule.
    Schedule,
    /// The response's `Retry-After` header.
    RetryAfter,
}

impl RetryReason {
    /// The snake_case name used in the API and the CLI.
    pub const fn as_str(self) -> &'static str {
        match self {
            RetryReason::Schedule => "schedule",
            RetryReason::RetryAfter => "retry_after",
        }
    }
}

/// What happens next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The receiver accepted the message.
    Delivered,
    /// Try again after `delay`.
    Retry {
        /// How long to wait.
        delay: Duration,
        /// Where the delay came from.
        reason: RetryReason,
    },
    /// Stop and park the message for a person.
    Park {
        /// Why.
        reason: ParkReason,
    },
}

impl Decision {
    /// `delivered`, `retry` or `park`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Decision::Delivered => "delivered",
            Decision::Retry { .. } => "retry",
            Decision::Park { .. } => "park",
        }
    }

    /// The reason as it appears in the API: `success`, `schedule`,
    /// `retry_after`, or a park reason.
    pub const fn reason(&self) -> &'static str {
        match self {
            Decision::Delivered => "success",
            Decision::Retry { reason, .. } => reason.as_str(),
            Decision::Park { reason } => reason.as_str(),
        }
    }
}

/// Which rule, or the lack of one, led to the decision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Why<'p> {
    /// A success rule matched.
    Success(&'p Rule),
    /// A `never_retry` rule matched.
    NeverRetry(&'p Rule),
    /// No `retry_on` rule matched.
    NoRetryRule,
    /// A retry rule matched (or none did), but the outcome is indeterminate and
    /// the request is not idempotent.
    Indeterminate(Option<&'p Rule>),
    /// A retry rule matched but it was the last attempt.
    Exhausted(&'p Rule),
    /// A retry rule matched but the next attempt would miss the deadline.
    Expired(&'p Rule),
    /// A retry rule matched.
    Retry(&'p Rule),
}

impl Why<'_> {
    /// The rule that fired, if one did.
    pub fn rule(&self) -> Option<&Rule> {
        match *self {
            Why::Success(r)
            | Why::NeverRetry(r)
            | Why::Exhausted(r)
            | Why::Expired(r)
            | Why::Retry(r)
            | Why::Indeterminate(Some(r)) => Some(r),
            Why::NoRetryRule | Why::Indeterminate(None) => None,
        }
    }
}

/// A decision with everything needed to explain and record it.
#[derive(Clone, Debug)]
pub struct Verdict<'p, 'a> {
    /// The classified outcome.
    pub classification: Classification<'a>,
    /// What happens next.
    pub decision: Decision,
    /// Which rule led there.
    pub why: Why<'p>,
    /// Whether the request counted as idempotent.
    pub idempotent: bool,
    /// Whether the outcome was indeterminate (it may have been applied).
    pub indeterminate: bool,
}

impl Verdict<'_, '_> {
    /// The error class.
    pub fn class(&self) -> ErrorClass {
        self.classification.class
    }

    /// A one-line explanation for people, citing the rule that fired.
    pub fn explain(&self, policy: &Policy, attempt: u32) -> String {
        let class = self.classification.class;
        match (self.decision, self.why) {
            (_, Why::Success(rule)) => format!("delivered: {rule}"),
            (_, Why::NeverRetry(rule)) => format!("never retried: {rule}"),
            (_, Why::NoRetryRule) => format!(
                "no retry rule of policy `{}` matches class {class}: not retried",
                policy.name
            ),
            (_, Why::Indeterminate(_)) => format!(
                "the outcome is indeterminate (the request may have been applied) and the request is not idempotent{}; policy `{}` parks it for a person to reconcile",
                if policy.idempotency_header.is_none() {
                    " (no idempotency key is sent and the method is not idempotent)"
                } else {
                    ""
                },
                policy.name
            ),
            (_, Why::Exhausted(rule)) => format!(
                "retryable ({rule}), but attempt {attempt} was the last of {}",
                policy.max_attempts
            ),
            (_, Why::Expired(rule)) => format!(
                "retryable ({rule}), but the next attempt would come after the deadline of {}",
                policy.deadline.map(HumanDuration).map_or_else(String::new, |d| d.to_string())
            ),
            (Decision::Retry { delay, reason }, Why::Retry(rule)) => format!(
                "retryable ({rule}); attempt {} of {} in {}{}",
                attempt + 1,
                policy.max_attempts,
                HumanDuration(delay),
                match reason {
                    RetryReason::RetryAfter => " as Retry-After asks",
                    RetryReason::Schedule => "",
                }
            ),
            (_, Why::Retry(rule)) => format!("retryable ({rule})"),
        }
    }
}

impl Policy {
    /// True when a repeat of this request cannot apply it twice.
    ///
    /// DESIGN.md, Idempotency: by method, by an idempotency key the receiver
    /// honours, or by the caller's word that the content blocks duplicates.
    pub fn is_idempotent(&self, req: &RequestFacts<'_>) -> bool {
        req.idempotency_key
            || req.marked_idempotent
            || self.idempotency_header.is_some()
            || self.method_is_idempotent(req.method)
    }

    /// Classifies `outcome` and decides what happens next.
    pub fn decide<'p, 'a, R: RngCore + ?Sized>(
        &'p self,
        req: &RequestFacts<'_>,
        outcome: &Outcome<'a>,
        ctx: &AttemptContext,
        rng: &mut R,
    ) -> Verdict<'p, 'a> {
        let classification = classify(outcome, &self.success);
        let idempotent = self.is_idempotent(req);
        let indeterminate = classification.class == ErrorClass::NetworkIndeterminate
            || self
                .indeterminate_statuses
                .iter()
                .any(|r| r.when.matches(&classification));
        let mut verdict = Verdict {
            classification,
            decision: Decision::Delivered,
            why: Why::NoRetryRule,
            idempotent,
            indeterminate,
        };
        let c = &verdict.classification;
        let park = |reason| Decision::Park { reason };

        if let Some(rule) = first_match(&self.success, c).filter(|_| c.class == ErrorClass::Success)
        {
            verdict.why = Why::Success(rule);
            return verdict;
        }
        let blocks_retry =
            indeterminate && !idempotent && self.indeterminate == IndeterminateAction::Park;
        if let Some(rule) = first_match(&self.never_retry, c) {
            verdict.why = Why::NeverRetry(rule);
            verdict.decision = park(ParkReason::NotRetryable);
            return verdict;
        }
        let Some(rule) = first_match(&self.retry_on, c) else {
            // Not retried. If it may have been applied, a person must reconcile
            // it rather than merely fix and resend it.
            if indeterminate && !idempotent {
                verdict.why = Why::Indeterminate(None);
                verdict.decision = park(ParkReason::Indeterminate);
            } else {
                verdict.why = Why::NoRetryRule;
                verdict.decision = park(ParkReason::NotRetryable);
            }
            return verdict;
        };
        if blocks_retry {
            verdict.why = Why::Indeterminate(Some(rule));
            verdict.decision = park(ParkReason::Indeterminate);
            return verdict;
        }
        let attempt = ctx.attempt.max(1);
        if attempt >= self.max_attempts {
            verdict.why = Why::Exhausted(rule);
            verdict.decision = park(ParkReason::Exhausted);
            return verdict;
        }
        let retry_after = match outcome {
            Outcome::Response(r) if self.retry_after.honour => r
                .header("retry-after")
                .and_then(|v| parse_retry_after(v, ctx.now))
                .map(|d| d.min(self.retry_after.cap)),
            _ => None,
        };
        let (delay, reason) = match retry_after {
            Some(d) => (d, RetryReason::RetryAfter),
            None => (self.schedule.delay(attempt, rng), RetryReason::Schedule),
        };
        if let Some(deadline) = self.deadline {
            let end = ctx.cycle_started_at.checked_add(deadline);
            let next = ctx.now.checked_add(delay);
            if matches!((end, next), (Some(end), Some(next)) if next > end) {
                verdict.why = Why::Expired(rule);
                verdict.decision = park(ParkReason::Expired);
                return verdict;
            }
        }
        verdict.why = Why::Retry(rule);
        verdict.decision = Decision::Retry { delay, reason };
        verdict
    }
}

fn first_match<'p>(rules: &'p [Rule], c: &Classification<'_>) -> Option<&'p Rule> {
    rules.iter().find(|r| r.when.matches(c))
}
