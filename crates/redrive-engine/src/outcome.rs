//! What an attempt came to: the core's decision turned into the store's
//! attempt record and next state, and the metrics and log line of it.

use std::time::{Duration, UNIX_EPOCH};

use rand::SeedableRng;
use redrive_core::{AttemptContext, Decision, ErrorClass, Probed, Recovery, RequestFacts};
use redrive_store::{AttemptRecord, Message, NextState};

use crate::client::Attempted;
use crate::destination::DestinationRuntime;
use crate::redact;

/// What an attempt came to.
pub(crate) struct Decided {
    /// The record to store.
    pub record: AttemptRecord,
    /// The next state; `None` when the decision is to probe first.
    pub next: Option<NextState>,
    /// The error class.
    pub class: ErrorClass,
    /// Whether the receiver looked healthy (for the breaker).
    pub healthy: bool,
    /// The core's decision.
    pub decision: Decision,
}

/// What the decision may try first, and what a probe found.
#[derive(Clone, Copy, Default)]
pub(crate) struct Before<'a> {
    /// What recovery the destination allows.
    pub recovery: Recovery,
    /// A probe's answer: decide after it.
    pub probed: Option<&'a Probed>,
    /// The token the attempt sent, redacted from the record.
    pub token: Option<&'a str>,
}

/// The core's decision on an attempt, as a record and the next state.
#[allow(clippy::too_many_arguments)]
pub(crate) fn decide(
    dest: &DestinationRuntime,
    m: &Message,
    attempted: &Attempted,
    started: i64,
    done: i64,
    excerpt_limit: usize,
    jitter_seed: u64,
    before: Before<'_>,
) -> Decided {
    let policy = &dest.config.policy;
    let to_time = |ms: i64| UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    let ctx = AttemptContext {
        attempt: m.attempts + 1,
        now: to_time(done),
        cycle_started_at: to_time(m.cycle_started_at),
    };
    let facts = RequestFacts {
        method: &m.method,
        idempotency_key: false,
        marked_idempotent: m.marked_idempotent,
    };
    let mut rng = rand::rngs::SmallRng::seed_from_u64(jitter_seed);
    let (decision, reason, class, rule, links) = attempted.with_outcome(|outcome| {
        let v = match before.probed {
            Some(probed) => policy.after_probe(&facts, outcome, &ctx, probed, &mut rng),
            None => policy.decide_with(&facts, outcome, &ctx, before.recovery, &mut rng),
        };
        (
            v.decision,
            v.reason(),
            v.class(),
            v.explain(policy, ctx.attempt),
            v.classification
                .signals
                .link_identities
                .as_ref()
                .map(|l| l.to_string()),
        )
    });
    let (next, delay_ms) = match decision {
        Decision::Delivered => (Some(NextState::Delivered), None),
        Decision::Retry { delay, .. } => (
            Some(NextState::Retry {
                at: done + delay.as_millis() as i64,
            }),
            Some(delay.as_millis() as u64),
        ),
        Decision::Park { reason } => (
            Some(NextState::Parked {
                reason: reason.as_str().to_owned(),
            }),
            None,
        ),
        Decision::RenewCredentials => (Some(NextState::Again { at: done }), Some(0)),
        Decision::Probe => (None, None),
    };
    let (status, transport, excerpt, detail) = match &attempted.result {
        Ok(r) => (
            Some(r.status),
            None,
            // The destination's static secrets, then the attempt's token
            // whole and in the pieces a receiver echoes.
            redact::excerpt(&r.body, excerpt_limit, &dest.secrets).map(|e| match before.token {
                Some(t) => redact::fragments(&e.replace(t, "[redacted]"), t),
                None => e,
            }),
            Some(rule),
        ),
        Err(e) => (
            None,
            Some(e.kind.as_str().to_owned()),
            None,
            Some(format!("{}; {rule}", e.detail)),
        ),
    };
    let healthy = matches!(
        class,
        ErrorClass::Success
            | ErrorClass::Content
            | ErrorClass::Auth
            | ErrorClass::NotFound
            | ErrorClass::Conflict
    );
    let record = AttemptRecord {
        started_at: started,
        latency_ms: attempted.latency.as_millis() as u64,
        status,
        transport,
        class: class.as_str().to_owned(),
        decision: decision.as_str().to_owned(),
        reason: reason.to_owned(),
        delay_ms,
        response_excerpt: excerpt,
        detail,
        link_identities: links,
        revision: m.revision,
        ..AttemptRecord::default()
    };
    Decided {
        record,
        next,
        class,
        healthy,
        decision,
    }
}

/// One structured line per failed attempt, WARN for a park, and the metrics.
pub(crate) fn observe(
    dest: &DestinationRuntime,
    m: &Message,
    r: &AttemptRecord,
    attempted: &Attempted,
) {
    let metrics = dest.metrics();
    metrics.attempts(&r.class, &r.decision).increment(1);
    metrics.latency.record(attempted.latency.as_secs_f64());
    let attempt = m.attempts + 1;
    match r.decision.as_str() {
        "delivered" => {
            // From acceptance to delivery, over every cycle.
            let seconds =
                ((r.started_at + r.latency_ms as i64 - m.created_at).max(0) as f64) / 1000.0;
            metrics.delivery.record(seconds);
            tracing::debug!(message_id = %m.id, destination = %m.destination, attempt, latency_ms = r.latency_ms, "delivered");
        }
        "retry" => tracing::info!(
            message_id = %m.id, destination = %m.destination, attempt, class = %r.class,
            status = r.status, transport = r.transport.as_deref(), latency_ms = r.latency_ms,
            delay_ms = r.delay_ms, "attempt failed; will retry"
        ),
        _ => {
            metrics::counter!("redrive_parked_total", "destination" => m.destination.clone(), "reason" => r.reason.clone()).increment(1);
            tracing::warn!(
                message_id = %m.id, destination = %m.destination, attempt, class = %r.class,
                status = r.status, transport = r.transport.as_deref(), latency_ms = r.latency_ms,
                reason = %r.reason, "attempt failed; message parked"
            );
        }
    }
}
