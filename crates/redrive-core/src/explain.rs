//! `policy explain`: a policy as a person reads it, the schedule as a timeline
//! and a table of what each kind of failure leads to.
//!
//! The table is not written by hand: it runs [`Policy::decide`] on a
//! representative outcome of each class, so it cannot drift from the code.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::decide::{AttemptContext, Decision};
use crate::duration::HumanDuration;
use crate::outcome::{Outcome, RequestFacts, Response, TransportFailure};
use crate::policy::{IndeterminateAction, Policy, Rule};

/// One step of the timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimelineStep {
    /// The attempt's number, from 1.
    pub attempt: u32,
    /// When it happens, measured from the first attempt (an upper bound when
    /// the schedule is jittered).
    pub at: Duration,
    /// The wait before it (zero for the first).
    pub wait: Duration,
}

/// The attempts of one cycle when every attempt fails with a retryable outcome
/// and no `Retry-After` is given; cut at the deadline.
pub fn timeline(policy: &Policy) -> Vec<TimelineStep> {
    let mut steps = vec![TimelineStep {
        attempt: 1,
        at: Duration::ZERO,
        wait: Duration::ZERO,
    }];
    let mut at = Duration::ZERO;
    for n in 1..policy.max_attempts {
        let wait = policy.schedule.nominal_delay(n);
        at = at.saturating_add(wait);
        if policy.deadline.is_some_and(|d| at > d) {
            break;
        }
        steps.push(TimelineStep {
            attempt: n + 1,
            at,
            wait,
        });
    }
    steps
}

/// The outcomes the table shows, one or more per class.
const SAMPLES: [(&str, Sample); 14] = [
    ("400 Bad Request", Sample::Status(400)),
    ("401 Unauthorized", Sample::Status(401)),
    ("403 Forbidden", Sample::Status(403)),
    ("404 Not Found", Sample::Status(404)),
    ("408 Request Timeout", Sample::Status(408)),
    ("409 Conflict", Sample::Status(409)),
    ("429 Too Many Requests", Sample::Status(429)),
    ("500 Internal Server Error", Sample::Status(500)),
    ("502 Bad Gateway", Sample::Status(502)),
    ("503 Service Unavailable", Sample::Status(503)),
    ("504 Gateway Timeout", Sample::Status(504)),
    (
        "connection refused",
        Sample::Transport(TransportFailure::Refused),
    ),
    (
        "timeout after sending",
        Sample::Transport(TransportFailure::Timeout),
    ),
    (
        "connection reset",
        Sample::Transport(TransportFailure::Reset),
    ),
];

#[derive(Clone, Copy)]
enum Sample {
    Status(u16),
    Transport(TransportFailure),
}

/// A multi-line explanation of `policy`.
pub fn explain(policy: &Policy) -> String {
    let mut out = String::new();
    let p = policy;
    let _ = writeln!(out, "policy {}: {}", p.name, p.description);
    let _ = writeln!(out);

    let jittered = p.schedule.is_jittered();
    let _ = writeln!(
        out,
        "schedule: {}; {} attempts",
        p.schedule.describe(),
        p.max_attempts
    );
    if !p.notes.schedule.is_empty() {
        let _ = writeln!(out, "  ({})", p.notes.schedule);
    }
    let steps = timeline(p);
    for s in &steps {
        if s.attempt == 1 {
            let _ = writeln!(out, "  attempt {:<3} at 0s", s.attempt);
        } else {
            let _ = writeln!(
                out,
                "  attempt {:<3} at +{:<12} {}wait {}",
                s.attempt,
                HumanDuration(s.at).to_string(),
                if jittered { "up to " } else { "" },
                HumanDuration(s.wait)
            );
        }
    }
    let last = steps.last().copied();
    let cut_by_deadline = last.is_some_and(|s| s.attempt < p.max_attempts);
    let span = last.map_or(Duration::ZERO, |s| s.at);
    let after = &p.notes.after_last_try;
    if !cut_by_deadline && after.starts_with("parked as exhausted") {
        // The note says it already (the built-in profiles' notes do).
        let _ = writeln!(out, "  then        {after}");
    } else {
        let _ = writeln!(
            out,
            "  then        parked as {}: {after}",
            if cut_by_deadline {
                "expired"
            } else {
                "exhausted"
            }
        );
    }
    let _ = writeln!(
        out,
        "  total span  {}{}",
        if jittered { "up to " } else { "" },
        HumanDuration(span)
    );
    let _ = writeln!(
        out,
        "  (the earliest times: while a destination's circuit breaker is open, after failures \
         in a row of any of its messages, every due message of it waits, and an attempt held \
         says so in its message's timeline)"
    );
    let _ = writeln!(
        out,
        "  attempt timeout {}; deadline {}; Retry-After {}",
        HumanDuration(p.attempt_timeout),
        p.deadline
            .map_or_else(|| "none".to_owned(), |d| HumanDuration(d).to_string()),
        if p.retry_after.honour {
            format!("honoured, up to {}", HumanDuration(p.retry_after.cap))
        } else {
            "ignored (the schedule's delays are exact)".to_owned()
        }
    );
    let _ = writeln!(out);

    let rules = |out: &mut String, title: &str, rules: &[Rule]| {
        for (i, r) in rules.iter().enumerate() {
            let _ = writeln!(out, "  {:<15} {}", if i == 0 { title } else { "" }, r);
        }
    };
    let _ = writeln!(out, "rules, in the order they are checked:");
    rules(&mut out, "delivered", &p.success);
    rules(&mut out, "never retried", &p.never_retry);
    rules(&mut out, "retried", &p.retry_on);
    let _ = writeln!(
        out,
        "  {:<15} anything else: parked as not_retryable",
        "parked"
    );
    let _ = writeln!(out);

    let _ = writeln!(out, "idempotency: {}", p.notes.idempotency);
    let _ = writeln!(
        out,
        "  idempotent methods {}; idempotency header {}",
        p.idempotent_methods.join(", "),
        p.idempotency_header.as_deref().unwrap_or("none")
    );
    let indeterminate: Vec<String> = p
        .indeterminate_statuses
        .iter()
        .map(|r| r.when.to_string())
        .chain(std::iter::once("network_indeterminate".to_owned()))
        .collect();
    let _ = writeln!(
        out,
        "  indeterminate outcomes ({}) of a non-idempotent request: {}",
        indeterminate.join(", "),
        match p.indeterminate {
            IndeterminateAction::Park => "parked as indeterminate for a person to reconcile",
            IndeterminateAction::Retry => "retried anyway",
        }
    );
    if p.alert_on_park {
        let _ = writeln!(out, "  a park alerts the operator");
    }
    let _ = writeln!(out);

    let _ = writeln!(out, "what each failure leads to (first attempt):");
    let _ = writeln!(out, "  {:<27} {:<36} POST without a key", "outcome", "GET");
    for (label, sample) in SAMPLES {
        let get = sample_decision(p, sample, "GET");
        let post = sample_decision(p, sample, "POST");
        let _ = writeln!(out, "  {label:<27} {get:<36} {post}");
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "before a failure stands (on a destination that configures it):"
    );
    let _ = writeln!(
        out,
        "  a token the receiver rejects (invalid_token, seed 001), with auth = {{ oauth2 = ... }}:\n    a new token is fetched and the request sent again at once, spending no attempt;\n    a second rejection right after is an auth error as above"
    );
    let _ = writeln!(
        out,
        "  an indeterminate outcome, with [destinations.NAME.reconcile]:\n    the destination is asked whether the request took effect (seed 000: \"reconciling\n    failed requests with a server\"); applied: delivered (reconciled); not applied:\n    retried as if idempotent, within max_attempts; no clear answer: parked indeterminate"
    );
    out
}

fn sample_decision(p: &Policy, sample: Sample, method: &str) -> String {
    let now = SystemTime::UNIX_EPOCH;
    let ctx = AttemptContext {
        attempt: 1,
        now,
        cycle_started_at: now,
    };
    let outcome = match sample {
        Sample::Status(status) => Outcome::Response(Response {
            status,
            headers: &[],
            body: b"",
        }),
        Sample::Transport(kind) => Outcome::Transport(kind),
    };
    let v = p.decide(&RequestFacts::new(method), &outcome, &ctx, &mut Constant);
    let class = v.class();
    match v.decision {
        Decision::Delivered => format!("delivered ({class})"),
        Decision::Retry { .. } => format!("retry ({class})"),
        Decision::Park { reason } => format!("park {reason} ({class})"),
        Decision::RenewCredentials => format!("renew the token ({class})"),
        Decision::Probe => format!("probe, then decide ({class})"),
    }
}

/// A random source for the table, which shows no delays.
struct Constant;

impl rand_core::RngCore for Constant {
    fn next_u32(&mut self) -> u32 {
        0
    }
    fn next_u64(&mut self) -> u64 {
        0
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        dst.fill(0);
    }
}
