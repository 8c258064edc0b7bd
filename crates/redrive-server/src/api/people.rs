//! What people do through the API: edit a parked message's request,
//! resolve it, pause and resume a destination, and read the audit
//! (DESIGN.md, "People"). The caller (the token's name) is the actor.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::StatusCode;
use redrive_engine::Paused;
use redrive_store::{AuditFilter, Changed, Edit, MessageState, Outcome, Store};
use serde::Deserialize;
use serde_json::{json, Value};

use super::validate::{request_parts, RequestParts};
use super::{json_body, parse_since, query_of, QueryOf, Shared};
use crate::problem::Problem;
use crate::roles::Caller;
use crate::views::{rfc3339, MessageView};

/// The message as `GET /v1/messages/{id}` shows it, revisions included.
pub(super) async fn full_view<S: Store>(state: &Shared<S>, id: &str) -> Result<Response, Problem> {
    let Some((m, attempts)) = state.engine.store().get(id.to_owned()).await? else {
        return Err(Problem::not_found(format!("no message {id}")));
    };
    let revisions = state.engine.revisions(id.to_owned()).await?;
    Ok(Json(MessageView::new(&m, Some(&attempts)).with_revisions(&revisions)).into_response())
}

fn not_parked(id: &str, state: MessageState, what: &str) -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "not-parked",
        "The message is not parked",
        format!(
            "message {id} is {}; only a parked message can be {what}",
            state.as_str()
        ),
    )
}

/// `PATCH /v1/messages/{id}`: fields left out keep their value.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EditRequest {
    #[serde(default, deserialize_with = "super::validate::not_null")]
    method: Option<String>,
    #[serde(default, deserialize_with = "super::validate::not_null")]
    path: Option<String>,
    #[serde(default, deserialize_with = "super::validate::not_null")]
    headers: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "super::validate::present")]
    body: Option<Value>,
    #[serde(default, deserialize_with = "super::validate::not_null")]
    body_base64: Option<String>,
    note: Option<String>,
}

pub(super) async fn edit<S: Store>(
    State(state): State<Shared<S>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, Problem> {
    let req: EditRequest = json_body(body, state.max_body).await?;
    let Some((current, _)) = state.engine.store().get(id.clone()).await? else {
        return Err(Problem::not_found(format!("no message {id}")));
    };
    if current.state != MessageState::Parked {
        return Err(not_parked(&id, current.state, "edited"));
    }
    // A secret header shown as `[redacted]` (as every view shows it) and
    // sent back unchanged keeps its stored value.
    let headers: BTreeMap<String, String> = match req.headers {
        Some(given) => given
            .into_iter()
            .map(|(k, v)| {
                let kept = (v == "[redacted]")
                    .then(|| {
                        current
                            .headers
                            .iter()
                            .find(|(ck, _)| ck.eq_ignore_ascii_case(&k))
                            .map(|(_, cv)| cv.clone())
                    })
                    .flatten();
                (k, kept.unwrap_or(v))
            })
            .collect(),
        None => current.headers.iter().cloned().collect(),
    };
    let RequestParts {
        method,
        path,
        headers,
        body,
    } = request_parts(
        Some(req.method.unwrap_or(current.method)),
        req.path.unwrap_or(current.path),
        &headers,
        req.body.as_ref(),
        req.body_base64.as_deref(),
    )?;
    let kept_body = req.body.is_none() && req.body_base64.is_none();
    let edit = Edit {
        method,
        path,
        headers,
        body: if kept_body { current.body } else { body },
        note: req.note,
    };
    match state.engine.edit(id.clone(), edit, &caller.name).await? {
        Changed::Done(_) => full_view(&state, &id).await,
        Changed::NotFound => Err(Problem::not_found(format!("no message {id}"))),
        Changed::NotParked(s) => Err(not_parked(&id, s, "edited")),
    }
}

/// `POST /v1/messages/{id}/resolve`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResolveRequest {
    outcome: Outcome,
    note: Option<String>,
}

pub(super) async fn resolve<S: Store>(
    State(state): State<Shared<S>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, Problem> {
    let req: ResolveRequest = json_body(body, state.max_body).await?;
    match state
        .engine
        .resolve(id.clone(), req.outcome, req.note, &caller.name)
        .await?
    {
        Changed::Done(()) => full_view(&state, &id).await,
        Changed::NotFound => Err(Problem::not_found(format!("no message {id}"))),
        Changed::NotParked(s) => Err(not_parked(&id, s, "resolved")),
    }
}

/// `POST /v1/destinations/{name}/pause`: the body (a note) is optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct PauseRequest {
    note: Option<String>,
}

/// A destination's pause as the API shows it.
pub(crate) fn pause_json(pause: Option<&redrive_store::Pause>) -> Value {
    match pause {
        Some(p) => json!({
            "paused": true,
            "paused_by": p.paused_by,
            "paused_at": rfc3339(p.paused_at),
            "note": p.note,
        }),
        None => json!({ "paused": false }),
    }
}

fn answer<S: Store>(state: &Shared<S>, name: &str, done: Paused) -> Result<Response, Problem> {
    if done == Paused::Unknown {
        return Err(Problem::not_found(format!(
            "no destination `{name}` is configured"
        )));
    }
    let mut v = pause_json(state.engine.pause_of(name).as_ref());
    v["destination"] = json!(name);
    v["changed"] = json!(done == Paused::Changed);
    Ok(Json(v).into_response())
}

pub(super) async fn pause<S: Store>(
    State(state): State<Shared<S>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, Problem> {
    let bytes = axum::body::to_bytes(body, state.max_body)
        .await
        .map_err(|_| Problem::bad_request("the request body is too large"))?;
    let req: PauseRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        PauseRequest::default()
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| Problem::bad_request(format!("the JSON body is not valid: {e}")))?
    };
    let done = state.engine.pause(&name, req.note, &caller.name).await?;
    answer(&state, &name, done)
}

pub(super) async fn resume<S: Store>(
    State(state): State<Shared<S>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    let done = state.engine.resume(&name, &caller.name).await?;
    answer(&state, &name, done)
}

/// What the audit records, as `action` (the stores write these words).
pub(crate) const AUDIT_ACTIONS: [&str; 7] = [
    "edit",
    "redrive",
    "discard",
    "resolve",
    "bulk_redrive",
    "pause",
    "resume",
];

/// `GET /v1/audit`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    since: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

pub(super) async fn audit<S: Store>(
    State(state): State<Shared<S>>,
    query: QueryOf<AuditQuery>,
) -> Result<Response, Problem> {
    let q = query_of(query)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::bad_request("limit must be between 1 and 1000"));
    }
    let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
    // `since` and `action` as the OpenAPI document gives them: an empty
    // one is refused, as any other value outside their language.
    let since = match q.since {
        Some(s) => Some(parse_since(&s, state.engine.now_ms())?),
        None => None,
    };
    if let Some(a) = q.action.as_deref() {
        if !AUDIT_ACTIONS.contains(&a) {
            return Err(Problem::bad_request(format!(
                "action `{a}` is not one of {}",
                AUDIT_ACTIONS.join(", ")
            )));
        }
    }
    // The cursor is the last record's number (at most 18 digits, as the
    // document's pattern says).
    let before = match non_empty(q.cursor) {
        Some(c) if c.len() <= 18 && c.bytes().all(|b| b.is_ascii_digit()) => c.parse::<i64>().ok(),
        Some(c) => {
            return Err(Problem::bad_request(format!(
                "cursor `{c}` is not one this listing gave"
            )))
        }
        None => None,
    };
    let filter = AuditFilter {
        actor: non_empty(q.actor),
        action: q.action,
        since,
    };
    let page = state.engine.audit(filter, before, limit).await?;
    let records: Vec<Value> = page
        .records
        .iter()
        .map(|r| {
            json!({
                "seq": r.seq,
                "at": rfc3339(r.at),
                "actor": r.actor,
                "action": r.action,
                "target": r.target,
                "detail": serde_json::from_str::<Value>(&r.detail).unwrap_or(Value::Null),
            })
        })
        .collect();
    Ok(Json(json!({
        "records": records,
        "next_cursor": page.next.map(|n| n.to_string()),
    }))
    .into_response())
}
