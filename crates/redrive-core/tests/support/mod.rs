//! Helpers shared by the integration tests: decide an outcome under a profile
//! with a fixed clock and a seeded random source.

#![allow(dead_code)]

use std::time::{Duration, SystemTime};

use rand::rngs::SmallRng;
use rand::SeedableRng;
use redrive_core::{
    profiles, AttemptContext, Decision, ErrorClass, Outcome, ParkReason, Policy, RequestFacts,
    Response, TransportFailure,
};

/// A fixed "now": 2026-01-01T00:00:00Z.
pub fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

pub fn profile(name: &str) -> Policy {
    profiles::builtin(name).unwrap_or_else(|| panic!("no profile {name}"))
}

/// The request side of a test case.
#[derive(Clone, Copy)]
pub struct Req {
    pub method: &'static str,
    pub key: bool,
    pub marked: bool,
    pub attempt: u32,
    pub elapsed: Duration,
}

pub const fn req(method: &'static str) -> Req {
    Req {
        method,
        key: false,
        marked: false,
        attempt: 1,
        elapsed: Duration::ZERO,
    }
}

impl Req {
    pub const fn attempt(mut self, n: u32) -> Self {
        self.attempt = n;
        self
    }
    pub const fn with_key(mut self) -> Self {
        self.key = true;
        self
    }
    pub const fn marked_idempotent(mut self) -> Self {
        self.marked = true;
        self
    }
    pub const fn elapsed(mut self, d: Duration) -> Self {
        self.elapsed = d;
        self
    }
}

/// What a decision came to, owned so tests can compare it.
#[derive(Debug, Clone, PartialEq)]
pub struct Got {
    pub class: ErrorClass,
    pub decision: Decision,
    pub rule: Option<String>,
    pub link_identities: Option<serde_json::Value>,
}

impl Got {
    pub fn parked(&self) -> Option<ParkReason> {
        match self.decision {
            Decision::Park { reason } => Some(reason),
            _ => None,
        }
    }
    pub fn delay(&self) -> Option<Duration> {
        match self.decision {
            Decision::Retry { delay, .. } => Some(delay),
            _ => None,
        }
    }
    pub fn retried(&self) -> bool {
        matches!(self.decision, Decision::Retry { .. })
    }
}

pub fn decide_outcome(policy: &Policy, r: Req, outcome: Outcome<'_>) -> Got {
    let ctx = AttemptContext {
        attempt: r.attempt,
        now: now(),
        cycle_started_at: now() - r.elapsed,
    };
    let facts = RequestFacts {
        method: r.method,
        idempotency_key: r.key,
        marked_idempotent: r.marked,
    };
    let mut rng = SmallRng::seed_from_u64(7);
    let v = policy.decide(&facts, &outcome, &ctx, &mut rng);
    Got {
        class: v.class(),
        decision: v.decision,
        rule: v.why.rule().map(|r| r.note.to_string()),
        link_identities: v.classification.signals.link_identities.clone(),
    }
}

pub fn status(policy: &Policy, r: Req, status: u16) -> Got {
    response(policy, r, status, &[], "")
}

pub fn response(policy: &Policy, r: Req, status: u16, headers: &[(&str, &str)], body: &str) -> Got {
    decide_outcome(
        policy,
        r,
        Outcome::Response(Response {
            status,
            headers,
            body: body.as_bytes(),
        }),
    )
}

pub fn transport(policy: &Policy, r: Req, kind: TransportFailure) -> Got {
    decide_outcome(policy, r, Outcome::Transport(kind))
}

/// The delays of a whole cycle in which every attempt fails with `status`.
pub fn delays_until_parked(
    policy: &Policy,
    r: Req,
    status_code: u16,
) -> (Vec<Duration>, Option<ParkReason>) {
    let mut delays = Vec::new();
    for n in 1..=policy.max_attempts + 1 {
        let got = status(policy, r.attempt(n), status_code);
        match got.decision {
            Decision::Retry { delay, .. } => delays.push(delay),
            Decision::Park { reason } => return (delays, Some(reason)),
            Decision::Delivered | Decision::RenewCredentials | Decision::Probe => {
                return (delays, None)
            }
        }
    }
    (delays, None)
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
