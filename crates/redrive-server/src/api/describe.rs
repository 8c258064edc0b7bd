//! What the API describes rather than changes: the destinations, a
//! policy's timeline and rules, and the report of failures.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use redrive_store::Store;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse_since, query_of, QueryOf, Shared};
use crate::problem::Problem;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DestinationsQuery {
    cursor: Option<String>,
    limit: Option<usize>,
}

/// The configured destinations by name, a page at a time (a deployment may
/// have thousands): `next_cursor` asks for the next page.
pub(super) async fn destinations<S: Store>(
    State(state): State<Shared<S>>,
    query: QueryOf<DestinationsQuery>,
) -> Result<Response, Problem> {
    let q = query_of(query)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::bad_request("limit must be between 1 and 1000"));
    }
    let after = q.cursor.as_deref().filter(|c| !c.is_empty());
    let (page, next) = state.engine.destinations_page(after, limit);
    let now = state.engine.now_ms();
    let list: Vec<Value> = page
        .iter()
        .map(|(d, circuit)| {
            let mut v = json!({
                "name": d.name,
                "url": d.url.to_string(),
                "policy": d.policy_name,
                "max_in_flight": d.max_in_flight,
                "rate_limit_per_second": d.rate_limit.map(|r| r.per_second),
                "signed": d.signing.is_some(),
                "circuit": circuit.as_str(),
                "credentials": crate::credentials::view(d, now),
                "reconcile": d.reconcile.as_ref().map(|r| json!({
                    "method": r.method,
                    "path": r.path.to_string(),
                    "after_ms": r.after.as_millis() as u64,
                })),
            });
            // `paused`, and who paused it, when and why.
            let pause = super::people::pause_json(state.engine.pause_of(&d.name).as_ref());
            if let (Value::Object(o), Value::Object(p)) = (&mut v, pause) {
                o.extend(p);
            }
            v
        })
        .collect();
    Ok(Json(json!({
        "destinations": list,
        "next_cursor": next,
        "total": state.engine.destination_count(),
    }))
    .into_response())
}

pub(super) async fn policy<S: Store>(
    State(state): State<Shared<S>>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    let policy = redrive_core::profiles::builtin(&name)
        .map(Arc::new)
        .or_else(|| {
            state
                .engine
                .destinations()
                .iter()
                .find(|d| d.policy_name == name)
                .map(|d| Arc::clone(&d.policy))
        })
        .ok_or_else(|| {
            Problem::not_found(format!(
                "no policy `{name}` (built in, or used by a destination)"
            ))
        })?;
    let timeline: Vec<Value> = redrive_core::explain::timeline(&policy)
        .iter()
        .map(|s| json!({ "attempt": s.attempt, "at_ms": s.at.as_millis() as u64, "wait_ms": s.wait.as_millis() as u64 }))
        .collect();
    let rules =
        |rules: &[redrive_core::Rule]| rules.iter().map(ToString::to_string).collect::<Vec<_>>();
    Ok(Json(json!({
        "name": policy.name,
        "description": policy.description,
        "schedule": policy.schedule.describe(),
        "jittered": policy.schedule.is_jittered(),
        "max_attempts": policy.max_attempts,
        "attempt_timeout_ms": policy.attempt_timeout.as_millis() as u64,
        "deadline_ms": policy.deadline.map(|d| d.as_millis() as u64),
        "idempotency_header": policy.idempotency_header,
        "timeline": timeline,
        "success": rules(&policy.success),
        "never_retry": rules(&policy.never_retry),
        "retry_on": rules(&policy.retry_on),
        "explain": redrive_core::explain::explain(&policy),
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReportQuery {
    since: Option<String>,
}

/// `GET /v1/report?since=24h`: failed attempts by destination and class.
pub(super) async fn report<S: Store>(
    State(state): State<Shared<S>>,
    query: QueryOf<ReportQuery>,
) -> Result<Response, Problem> {
    let q = query_of(query)?;
    let now = state.engine.now_ms();
    let since = parse_since(q.since.as_deref().unwrap_or("24h"), now)?;
    let rows = state.engine.store().report(since).await?;
    Ok(Json(json!({ "since": crate::views::rfc3339(since), "failures": rows })).into_response())
}
