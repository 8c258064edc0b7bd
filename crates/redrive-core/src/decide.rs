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

/// What the engine can try before a failure stands: renew a rejected token,
/// or ask the destination whether an indeterminate request took effect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The credentials the attempt was sent with.
    pub credentials: Credentials,
    /// True when the destination has a reconciliation probe (DESIGN.md,
    /// "Reconciliation of indeterminate outcomes").
    pub reconcile: bool,
}

impl Recovery {
    /// Nothing to try: static credentials and no probe.
    pub const NONE: Recovery = Recovery {
        credentials: Credentials::Fixed,
        reconcile: false,
    };
}

/// What an attempt's credentials allow when the receiver rejects its token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Credentials {
    /// Static or none: a rejected token is an `auth` error.
    #[default]
    Fixed,
    /// Renewable (OAuth 2.0 client credentials): a rejected token is renewed
    /// and the request sent again at once.
    Renewable,
    /// Renewed for this message right after a rejection: a second rejection
    /// is an `auth` error, so a token URL that hands out bad tokens cannot
    /// loop.
    JustRenewed,
}

/// What a reconciliation probe found out about an indeterminate request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probed {
    /// The request took effect: the message is delivered.
    Applied,
    /// It did not: sending it again is safe.
    NotApplied,
    /// The probe could not tell (another status, a transport failure, or a
    /// probe that could not be built); the text says what happened.
    Unknown(String),
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
    /// A probe found that an indeterminate request did not take effect.
    ReconciledNotApplied,
}

impl RetryReason {
    /// The snake_case name used in the API and the CLI.
    pub const fn as_str(self) -> &'static str {
        match self {
            RetryReason::Schedule => "schedule",
            RetryReason::RetryAfter => "retry_after",
            RetryReason::ReconciledNotApplied => "reconciled_not_applied",
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
    /// The receiver rejected the token: renew it and send again at once,
    /// spending none of the policy's attempts (seed 001, `invalid_token`).
    RenewCredentials,
    /// The outcome is indeterminate: ask the destination whether the request
    /// took effect before parking it (seed 000: "Clients need a way of
    /// reconciling failed requests with a server"); [`Policy::after_probe`]
    /// then decides.
    Probe,
}

impl Decision {
    /// `delivered`, `retry` or `park` (a renewal is recorded as a retry; a
    /// probe is never recorded, the decision after it is).
    pub const fn as_str(&self) -> &'static str {
        match self {
            Decision::Delivered => "delivered",
            Decision::Retry { .. } | Decision::RenewCredentials => "retry",
            Decision::Park { .. } => "park",
            Decision::Probe => "probe",
        }
    }

    /// The reason as it appears in the API: `success`, `schedule`,
    /// `retry_after`, or a park reason.
    pub const fn reason(&self) -> &'static str {
        match self {
            Decision::Delivered => "success",
            Decision::Retry { reason, .. } => reason.as_str(),
            Decision::Park { reason } => reason.as_str(),
            Decision::RenewCredentials => "credentials_renewed",
            Decision::Probe => "probe",
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
    /// The receiver rejected a renewable token.
    TokenRejected,
    /// A reconciliation probe found that the request took effect.
    ReconciledApplied,
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
            Why::NoRetryRule
            | Why::Indeterminate(None)
            | Why::TokenRejected
            | Why::ReconciledApplied => None,
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

    /// The reason recorded with the attempt: the decision's, except that a
    /// delivery found by a probe says so (`reconciled_applied`).
    pub fn reason(&self) -> &'static str {
        match self.why {
            Why::ReconciledApplied => "reconciled_applied",
            _ => self.decision.reason(),
        }
    }

    /// A one-line explanation for people, citing the rule that fired.
    pub fn explain(&self, policy: &Policy, attempt: u32) -> String {
        let class = self.classification.class;
        match (self.decision, self.why) {
            (_, Why::Success(rule)) => format!("delivered: {rule}"),
            (_, Why::TokenRejected) => "the receiver rejected the access token (invalid_token, seed 001): a new token is fetched and the request sent again at once, spending no attempt".to_owned(),
            (_, Why::ReconciledApplied) => "the outcome was indeterminate; the reconciliation probe found that the request took effect: delivered".to_owned(),
            (Decision::Probe, Why::Indeterminate(_)) => "the outcome is indeterminate (the request may have been applied) and the request is not idempotent; the destination is asked whether it took effect before anything else".to_owned(),
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
                    RetryReason::ReconciledNotApplied =>
                        " (the reconciliation probe found it was not applied, so it is safe to send again)",
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

    /// Classifies `outcome` and decides what happens next, with nothing to
    /// try first ([`Recovery::NONE`]).
    pub fn decide<'p, 'a, R: RngCore + ?Sized>(
        &'p self,
        req: &RequestFacts<'_>,
        outcome: &Outcome<'a>,
        ctx: &AttemptContext,
        rng: &mut R,
    ) -> Verdict<'p, 'a> {
        self.decide_with(req, outcome, ctx, Recovery::NONE, rng)
    }

    /// What a reconciliation probe's answer makes of an attempt whose
    /// decision was [`Decision::Probe`]: `applied` delivers it, `not_applied`
    /// decides again as if the request were idempotent (within the policy's
    /// attempts and deadline), anything else parks it `indeterminate`.
    pub fn after_probe<'p, 'a, R: RngCore + ?Sized>(
        &'p self,
        req: &RequestFacts<'_>,
        outcome: &Outcome<'a>,
        ctx: &AttemptContext,
        probed: &Probed,
        rng: &mut R,
    ) -> Verdict<'p, 'a> {
        let mut verdict = self.decide(req, outcome, ctx, rng);
        match probed {
            Probed::Applied => {
                verdict.decision = Decision::Delivered;
                verdict.why = Why::ReconciledApplied;
            }
            Probed::NotApplied => {
                let safe = RequestFacts {
                    marked_idempotent: true,
                    ..*req
                };
                verdict = self.decide(&safe, outcome, ctx, rng);
                if let Decision::Retry { delay, .. } = verdict.decision {
                    verdict.decision = Decision::Retry {
                        delay,
                        reason: RetryReason::ReconciledNotApplied,
                    };
                }
            }
            Probed::Unknown(_) => {}
        }
        verdict
    }

    /// Classifies `outcome` and decides what happens next. Where `recovery`
    /// allows, the decision is to renew a rejected token
    /// ([`Decision::RenewCredentials`]) or to ask whether an indeterminate
    /// request took effect ([`Decision::Probe`]) instead of parking.
    ///
    /// The precedence: success rules; a rejected renewable token; the
    /// `never_retry` rules; the `retry_on` rules (none matched: park
    /// `not_retryable`, or `indeterminate` if the outcome may have been
    /// applied to a non-idempotent request); an indeterminate outcome of a
    /// non-idempotent request under `indeterminate = "park"` parks as
    /// `indeterminate` (or is probed); `attempt >= max_attempts` parks as
    /// `exhausted`; the delay is `Retry-After` (if honoured, clamped to its
    /// cap) else the schedule's; a retry landing past the deadline parks as
    /// `expired`.
    pub fn decide_with<'p, 'a, R: RngCore + ?Sized>(
        &'p self,
        req: &RequestFacts<'_>,
        outcome: &Outcome<'a>,
        ctx: &AttemptContext,
        recovery: Recovery,
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
        // An indeterminate outcome is parked, unless a probe can settle it.
        let unsettled = if recovery.reconcile {
            Decision::Probe
        } else {
            park(ParkReason::Indeterminate)
        };

        if let Some(rule) = first_match(&self.success, c).filter(|_| c.class == ErrorClass::Success)
        {
            verdict.why = Why::Success(rule);
            return verdict;
        }
        // Seed 001: an expired token is answered `invalid_token`; a renewable
        // token is renewed before any rule sees the failure.
        if recovery.credentials == Credentials::Renewable && c.token_rejected() {
            verdict.why = Why::TokenRejected;
            verdict.decision = Decision::RenewCredentials;
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
                verdict.decision = unsettled;
            } else {
                verdict.why = Why::NoRetryRule;
                verdict.decision = park(ParkReason::NotRetryable);
            }
            return verdict;
        };
        if blocks_retry {
            verdict.why = Why::Indeterminate(Some(rule));
            verdict.decision = unsettled;
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
