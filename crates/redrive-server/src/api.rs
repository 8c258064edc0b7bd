//! The HTTP API of DESIGN.md, under `/v1`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Limited};
use metrics_exporter_prometheus::PrometheusHandle;
use redrive_engine::Engine;
use redrive_store::{Cursor, Enqueued, Filter, ListOrder, MessageState, NewMessage, Store};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::problem::Problem;
use crate::roles::{self, ApiToken, Caller};
use crate::views::MessageView;

mod describe;
#[cfg(test)]
mod openapi_check;
mod people;
pub(crate) mod validate;

pub(crate) use people::AUDIT_ACTIONS;
use validate::{request_parts, unprocessable, RequestParts};

/// What every handler shares.
pub struct AppState<S: Store> {
    /// The engine (and through it the store and destinations).
    pub engine: Engine<S>,
    /// Accepted bearer tokens with their names and roles; empty means auth
    /// is off (loopback only).
    pub tokens: Vec<ApiToken>,
    /// The largest request body.
    pub max_body: usize,
    /// The Prometheus exporter.
    pub metrics: PrometheusHandle,
    /// False once shutdown began (`/readyz` then says so).
    pub ready: AtomicBool,
    /// Dashboard sessions.
    pub sessions: crate::dashboard::session::Sessions,
    /// Inbound sources and their counts.
    pub inbound: crate::inbound::Inbound,
}

type Shared<S> = Arc<AppState<S>>;

/// The router: public probes and metrics, and the authenticated API.
pub fn router<S: Store>(state: Shared<S>) -> Router {
    let api = Router::new()
        .route("/v1/messages", post(enqueue::<S>).get(list::<S>))
        .route("/v1/messages/{id}", get(show::<S>).patch(people::edit::<S>))
        .route("/v1/messages/{id}/redrive", post(redrive_one::<S>))
        .route("/v1/messages/{id}/discard", post(discard_one::<S>))
        .route("/v1/messages/{id}/resolve", post(people::resolve::<S>))
        .route("/v1/dead-letters/redrive", post(redrive_bulk::<S>))
        .route("/v1/destinations", get(describe::destinations::<S>))
        .route("/v1/destinations/{name}/pause", post(people::pause::<S>))
        .route("/v1/destinations/{name}/resume", post(people::resume::<S>))
        .route("/v1/audit", get(people::audit::<S>))
        .route("/v1/policies/{name}", get(describe::policy::<S>))
        .route("/v1/report", get(describe::report::<S>))
        .route("/openapi.json", get(openapi::<S>))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::<S>,
        ));
    let inbound = if state.inbound.own_listener {
        Router::new()
    } else {
        crate::inbound::routes::<S>()
    };
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz::<S>))
        .route("/metrics", get(metrics::<S>))
        .merge(api)
        .merge(inbound)
        .merge(crate::dashboard::routes::<S>())
        .fallback(|| async { Problem::not_found("no such route; see /openapi.json") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "this route does not take that method; see /openapi.json",
            )
        })
        .with_state(state)
}

/// `[server] inbound_listen`'s router: `/in/*` and `/healthz`, nothing of
/// the API.
pub fn inbound_router<S: Store>(state: Shared<S>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(crate::inbound::routes::<S>())
        .fallback(|| async {
            Problem::not_found("this listener serves inbound sources (/in/*) only")
        })
        .with_state(state)
}

/// Who calls (the bearer token's name and role), and whether the role may
/// call this route: the one place roles are checked, from
/// [`crate::roles::ROUTES`]. The caller goes on to the handler as an
/// extension (the actor of the audit).
async fn auth<S: Store>(State(state): State<Shared<S>>, mut req: Request, next: Next) -> Response {
    let caller = if state.tokens.is_empty() {
        Caller::local()
    } else {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let Some(presented) = presented else {
            return unauthorized("send `Authorization: Bearer TOKEN`");
        };
        match roles::find(&state.tokens, presented) {
            Some(t) => Caller {
                name: t.name.clone(),
                role: t.role,
            },
            None => return unauthorized("the bearer token is not valid"),
        }
    };
    let pattern = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let Some(need) = roles::need_of(req.method(), &pattern) else {
        return Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden",
            format!(
                "{} {pattern} is not in the table of roles; no token may call it",
                req.method()
            ),
        )
        .into_response();
    };
    if !caller.role.allows(need) {
        return Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden",
            format!(
                "{} {pattern} needs the {} role; token `{}` has the {} role",
                req.method(),
                need.least_role(),
                caller.name,
                caller.role
            ),
        )
        .into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

fn unauthorized(detail: &str) -> Response {
    let mut res = Problem::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Unauthorized",
        detail,
    )
    .into_response();
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"redrive\""),
    );
    res
}

async fn readyz<S: Store>(State(state): State<Shared<S>>) -> Response {
    if !state.ready.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    if let Some(disk) = state.engine.store().disk().filter(|d| d.low) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "disk: {} free (free pages in the database included, {} kept for the WAL's growth), below min_free_disk {}: enqueues and inbound requests get 507 while delivery and the purge go on\n",
                redrive_core::size::format_size(disk.free_bytes),
                redrive_core::size::format_size(disk.wal_reserve_bytes),
                redrive_core::size::format_size(disk.min_free_bytes)
            ),
        )
            .into_response();
    }
    match state.engine.store().next_due().await {
        Ok(_) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}\n")).into_response(),
    }
}

async fn metrics<S: Store>(State(state): State<Shared<S>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// The document as written (`openapi.json`), with what this server's
/// configuration says: the destinations a message may name and a
/// destination may be paused by, the policies that can be described. A
/// client (or Schemathesis) then knows that `destination: "nope"` is refused
/// before it sends it. Beyond 200 destinations the names stay out (the
/// document would weigh more than it says).
async fn openapi<S: Store>(State(state): State<Shared<S>>) -> Response {
    let names: Vec<String> = state.engine.destination_names();
    let mut policies: Vec<String> = redrive_core::profiles::NAMES
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    for d in state.engine.destinations() {
        if !policies.contains(&d.policy_name) {
            policies.push(d.policy_name.clone());
        }
    }
    let body = crate::openapi_doc::with_configuration(&names, &policies);
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A query string, or why it was refused.
pub(crate) type QueryOf<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

/// The query's fields, or a 400 saying what was wrong with them.
pub(crate) fn query_of<T>(query: QueryOf<T>) -> Result<T, Problem> {
    query
        .map(|Query(q)| q)
        .map_err(|e| Problem::bad_request(e.body_text()))
}

/// Reads a JSON body of at most `max` bytes.
async fn json_body<T: serde::de::DeserializeOwned>(body: Body, max: usize) -> Result<T, Problem> {
    let bytes = Limited::new(body, max)
        .collect()
        .await
        .map_err(|_| {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Request too large",
                format!("the request body is larger than {max} bytes"),
            )
        })?
        .to_bytes();
    if bytes.is_empty() {
        return Err(Problem::bad_request(
            "the request body is empty; send a JSON object",
        ));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| Problem::bad_request(format!("the JSON body is not valid: {e}")))
}

/// `POST /v1/messages`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnqueueRequest {
    destination: String,
    #[serde(default, deserialize_with = "validate::not_null")]
    method: Option<String>,
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "validate::present")]
    body: Option<Value>,
    #[serde(default, deserialize_with = "validate::not_null")]
    body_base64: Option<String>,
    #[serde(default)]
    idempotent: bool,
}

async fn enqueue<S: Store>(
    State(state): State<Shared<S>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let req: EnqueueRequest = json_body(body, state.max_body).await?;
    if state.engine.destination(&req.destination).is_none() {
        let known: Vec<String> = state.engine.destination_names();
        return Err(unprocessable(
            "unknown-destination",
            "Unknown destination",
            format!(
                "no destination `{}` is configured; configured: {}",
                req.destination,
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        ));
    }
    let RequestParts {
        method,
        path,
        headers: message_headers,
        body,
    } = request_parts(
        req.method,
        req.path,
        &req.headers,
        req.body.as_ref(),
        req.body_base64.as_deref(),
    )?;
    let caller_key = match headers.get("idempotency-key") {
        Some(v) => {
            let k = v
                .to_str()
                .map_err(|_| Problem::bad_request("the Idempotency-Key header is not text"))?
                .trim();
            if k.is_empty() || k.len() > 255 {
                return Err(Problem::bad_request(
                    "the Idempotency-Key header must hold 1 to 255 characters",
                ));
            }
            Some(k.to_owned())
        }
        None => None,
    };
    let now = state.engine.now_ms();
    let id = ulid::Ulid::from_parts(now.max(0) as u64, rand::random::<u128>()).to_string();
    let mut hash = Sha256::new();
    for part in [
        req.destination.as_bytes(),
        method.as_bytes(),
        path.as_bytes(),
    ] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    for (k, v) in &message_headers {
        hash.update(k.to_ascii_lowercase().as_bytes());
        hash.update(b":");
        hash.update(v.as_bytes());
        hash.update(b"\n");
    }
    hash.update([u8::from(req.idempotent)]);
    hash.update(&body);
    let request_hash = validate::hex(&hash.finalize());
    let new = NewMessage {
        idempotency_key: caller_key.unwrap_or_else(|| id.clone()),
        id,
        destination: req.destination,
        method,
        path,
        headers: message_headers,
        body,
        request_hash,
        marked_idempotent: req.idempotent,
        created_at: now,
        source: None,
    };
    let result = state.engine.enqueue(vec![new]).await?;
    match result.into_iter().next() {
        Some(Enqueued::Created(m)) => {
            metrics::counter!("redrive_enqueued_total", "destination" => m.destination.clone()).increment(1);
            Ok((StatusCode::ACCEPTED, Json(MessageView::new(&m, Some(&[])))).into_response())
        }
        Some(Enqueued::Duplicate(m)) => {
            let mut res = (StatusCode::ACCEPTED, Json(MessageView::new(&m, None))).into_response();
            res.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(res)
        }
        Some(Enqueued::Conflict { existing_id }) => Err(unprocessable(
            "idempotency-key-reused",
            "Idempotency-Key reused",
            format!("this Idempotency-Key belongs to message {existing_id}, enqueued with a different request"),
        )),
        None => Err(Problem::internal("the store returned nothing")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    destination: Option<String>,
    class: Option<String>,
    reason: Option<String>,
    since: Option<String>,
    source: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

/// A `since` value (`redrive_core::since`: exactly the language of the
/// pattern the OpenAPI document gives), as a time.
pub(crate) fn parse_since(text: &str, now: i64) -> Result<i64, Problem> {
    match redrive_core::since::parse_since(text) {
        Some(redrive_core::since::Since::Ago(ms)) => Ok(now.saturating_sub(ms as i64)),
        Some(redrive_core::since::Since::At(t)) => Ok(t),
        None => Err(Problem::bad_request(format!(
            "since `{text}` is neither a duration (24h, 1h30m: at most four parts of six digits) nor an RFC 3339 time in UTC (2026-12-06T10:00:00Z)"
        ))),
    }
}

fn filter_from(
    state_name: Option<&str>,
    destination: Option<String>,
    class: Option<String>,
    reason: Option<String>,
    since: Option<&str>,
    source: Option<String>,
    now: i64,
) -> Result<Filter, Problem> {
    let state = match state_name {
        Some(s) => Some(MessageState::parse(s).ok_or_else(|| {
            Problem::bad_request(format!(
                "state `{s}` is not one of pending, delivered, parked, discarded"
            ))
        })?),
        None => None,
    };
    Ok(Filter {
        state,
        destination,
        class,
        reason,
        since: since.map(|s| parse_since(s, now)).transpose()?,
        source,
    })
}

async fn list<S: Store>(
    State(state): State<Shared<S>>,
    query: QueryOf<ListQuery>,
) -> Result<Response, Problem> {
    let q = query_of(query)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::bad_request("limit must be between 1 and 1000"));
    }
    let filter = filter_from(
        q.state.as_deref(),
        q.destination,
        q.class,
        q.reason,
        q.since.as_deref(),
        q.source,
        state.engine.now_ms(),
    )?;
    // An empty cursor is no cursor: the first page.
    let cursor = q
        .cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(|c| Cursor::parse(c, ListOrder::of(&filter)))
        .transpose()
        .map_err(|e| Problem::bad_request(e.to_string()))?;
    let page = state.engine.store().list(filter, cursor, limit).await?;
    let messages: Vec<MessageView> = page
        .messages
        .iter()
        .map(|m| MessageView::new(m, None))
        .collect();
    Ok(
        Json(json!({ "messages": messages, "next_cursor": page.next.map(|c| c.to_string()) }))
            .into_response(),
    )
}

async fn show<S: Store>(
    State(state): State<Shared<S>>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    people::full_view(&state, &id).await
}

async fn act_on_one<S: Store>(
    state: &Shared<S>,
    caller: &Caller,
    id: String,
    redrive: bool,
) -> Result<Response, Problem> {
    let done = if redrive {
        state.engine.redrive(vec![id.clone()], &caller.name).await?
    } else {
        state.engine.discard(vec![id.clone()], &caller.name).await?
    };
    if done.is_empty() {
        return match state.engine.store().get(id.clone()).await? {
            None => Err(Problem::not_found(format!("no message {id}"))),
            Some((m, _)) => Err(Problem::new(
                StatusCode::CONFLICT,
                "not-parked",
                "The message is not parked",
                format!(
                    "message {id} is {}; only parked messages can be {}",
                    m.state.as_str(),
                    if redrive { "redriven" } else { "discarded" }
                ),
            )),
        };
    }
    people::full_view(state, &id).await
}

async fn redrive_one<S: Store>(
    State(state): State<Shared<S>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    act_on_one(&state, &caller, id, true).await
}

async fn discard_one<S: Store>(
    State(state): State<Shared<S>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    act_on_one(&state, &caller, id, false).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkRedrive {
    destination: Option<String>,
    class: Option<String>,
    reason: Option<String>,
    since: Option<String>,
    source: Option<String>,
    #[serde(default, deserialize_with = "integral")]
    limit: Option<usize>,
}

/// A count in a JSON body: an integer, or a number with no fraction
/// (`245.0`), as JSON Schema's `integer` allows.
fn integral<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    use serde::de::Error;
    match Option::<serde_json::Number>::deserialize(d)? {
        None => Ok(None),
        Some(n) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1e15)
                    .map(|f| f as u64)
            })
            .and_then(|v| usize::try_from(v).ok())
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("`{n}` is not a count"))),
    }
}

async fn redrive_bulk<S: Store>(
    State(state): State<Shared<S>>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Result<Response, Problem> {
    let req: BulkRedrive = json_body(body, state.max_body).await?;
    let limit = req.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(Problem::bad_request("limit must be between 1 and 10000"));
    }
    let now = state.engine.now_ms();
    let filter = filter_from(
        None,
        req.destination,
        req.class,
        req.reason,
        req.since.as_deref(),
        req.source,
        now,
    )?;
    let ids = state
        .engine
        .redrive_matching(filter, limit, &caller.name)
        .await?;
    Ok(Json(json!({ "redriven": ids.len(), "ids": ids, "limit": limit })).into_response())
}
