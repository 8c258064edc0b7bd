//! Inbound sources (DESIGN.md, "Inbound sources"): what a platform pushes to
//! `/in/*` is verified, made durable, answered, and then delivered to the
//! source's destination as a message like any other.
//!
//! A request is kept exactly: its method, the path below the source's path
//! (`/in/privo/events?x=1` becomes `/events?x=1` at the destination), the
//! headers in their order (repeated ones too) without hop-by-hop headers and
//! the source's own credentials, and the body's bytes, whatever they are.
//! It is answered 2xx only after the store says it is durable: the enqueue
//! is the API's (`Engine::enqueue`, grouped with the enqueues beside it), so
//! an inbound request costs what an enqueue costs.
//!
//! An event sent again (`dedupe`) becomes the idempotency key
//! `SOURCE:EVENT-ID` with a request hash of the source and the id alone: a
//! platform's retry, re-signed with a new timestamp, is the same message, and
//! is answered as the first was.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::any;
use axum::Router;
use http::{header, HeaderMap};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use redrive_store::{Enqueued, NewMessage, Store};
use sha2::{Digest, Sha256};

use crate::api::AppState;
use crate::problem::Problem;

mod respond;
pub mod source;
mod verify;

use respond::Refusal;
pub use source::{Dedupe, Respond, Source, Verify};

/// Headers that belong to one connection or to the request's framing, never
/// passed on (RFC 9110 §7.6.1, and what the client sets itself).
const NOT_KEPT: [&str; 11] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// The configured sources and what each has received since this process
/// started.
#[derive(Debug, Default)]
pub struct Inbound {
    sources: Vec<Source>,
    counts: Vec<Counts>,
    /// `/in/*` is served on `[server] inbound_listen`, not with the API.
    pub own_listener: bool,
}

/// What a source received since this process started.
#[derive(Debug, Default)]
struct Counts {
    accepted: AtomicU64,
    deduped: AtomicU64,
    refused: AtomicU64,
}

/// One source's counts, for the overview.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceCounts {
    /// The source.
    pub name: String,
    /// Its destination.
    pub destination: String,
    /// Requests made durable.
    pub accepted: u64,
    /// Events sent again, answered as the first time and not stored.
    pub deduped: u64,
    /// Requests refused (not verified, too large, ...).
    pub refused: u64,
}

impl Inbound {
    /// The sources; `own_listener` when `/in/*` has a listener of its own.
    pub fn new(sources: Vec<Source>, own_listener: bool) -> Self {
        let counts = sources.iter().map(|_| Counts::default()).collect();
        Inbound {
            sources,
            counts,
            own_listener,
        }
    }

    /// The sources.
    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// Each source's counts since this process started.
    pub fn counts(&self) -> Vec<SourceCounts> {
        self.sources
            .iter()
            .zip(&self.counts)
            .map(|(s, c)| SourceCounts {
                name: s.name.clone(),
                destination: s.destination.clone(),
                accepted: c.accepted.load(Ordering::Relaxed),
                deduped: c.deduped.load(Ordering::Relaxed),
                refused: c.refused.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// The source a path belongs to, and the path below it.
    fn find<'p>(&self, path: &'p str) -> Option<(usize, &'p str)> {
        self.sources.iter().enumerate().find_map(|(i, s)| {
            let rest = path.strip_prefix(s.path.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then_some((i, rest))
        })
    }
}

/// `/in` and everything below it, any method.
pub fn routes<S: Store>() -> Router<Arc<AppState<S>>> {
    Router::new()
        .route("/in", any(receive::<S>))
        .route("/in/{*rest}", any(receive::<S>))
}

async fn receive<S: Store>(State(state): State<Arc<AppState<S>>>, req: Request) -> Response {
    let inbound = &state.inbound;
    let Some((i, rest)) = inbound.find(req.uri().path()) else {
        let known: Vec<&str> = inbound.sources.iter().map(|s| s.path.as_str()).collect();
        return axum::response::IntoResponse::into_response(Problem::not_found(format!(
            "no source is configured at this path; sources: {}",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )));
    };
    let source = &inbound.sources[i];
    let path = match req.uri().query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_owned(),
    };
    match take(&state, source, path, req).await {
        Ok((id, replayed)) => {
            let (counter, name) = if replayed {
                (&inbound.counts[i].deduped, "redrive_inbound_deduped_total")
            } else {
                (
                    &inbound.counts[i].accepted,
                    "redrive_inbound_accepted_total",
                )
            };
            counter.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(name, "source" => source.name.clone()).increment(1);
            respond::accepted(&id, replayed)
        }
        Err(refusal) => {
            inbound.counts[i].refused.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("redrive_inbound_refused_total", "source" => source.name.clone(), "reason" => refusal.reason()).increment(1);
            tracing::debug!(source = %source.name, reason = refusal.reason(), "inbound request refused");
            respond::refused(source.respond, &refusal)
        }
    }
}

/// Reads, verifies and stores one request: the message's id, and whether
/// its event was stored before.
async fn take<S: Store>(
    state: &AppState<S>,
    source: &Source,
    path: String,
    req: Request,
) -> Result<(String, bool), Refusal> {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > source.max_body as u64) {
        return Err(Refusal::TooLarge(source.max_body));
    }
    let body = read_body(body, source).await?;
    let now = state.engine.now_ms();
    verify::check(&source.verify, &parts.headers, &body, now.div_euclid(1000))
        .map_err(Refusal::Unverified)?;
    let headers = kept_headers(&parts.headers, verify::uses_authorization(&source.verify))?;
    let id = ulid::Ulid::from_parts(now.max(0) as u64, rand::random::<u128>()).to_string();
    let (idempotency_key, request_hash) = match event_id(source, &parts.headers, &body) {
        Some(event) => {
            let mut hash = Sha256::new();
            hash.update(source.name.as_bytes());
            hash.update([0]);
            hash.update(event.as_bytes());
            let hash = crate::api::validate::hex(&hash.finalize());
            (format!("{}:{event}", source.name), hash)
        }
        None => (id.clone(), id.clone()),
    };
    let message = NewMessage {
        id,
        destination: source.destination.clone(),
        method: parts.method.as_str().to_owned(),
        path,
        headers,
        body: body.to_vec(),
        idempotency_key,
        request_hash,
        marked_idempotent: false,
        created_at: now,
        source: Some(source.name.clone()),
    };
    let stored = state.engine.enqueue(vec![message]).await.map_err(|e| {
        if let redrive_store::StoreError::DiskFull(_) = e {
            return Refusal::DiskFull(e.to_string());
        }
        if let Some(repeated) = redrive_engine::quiet::check("inbound_store", &e.to_string()) {
            tracing::error!(error = %e, repeated, "inbound: the store refused a request");
        }
        Refusal::Unavailable
    })?;
    match stored.into_iter().next() {
        Some(Enqueued::Created(m)) => Ok((m.id, false)),
        Some(Enqueued::Duplicate(m)) if m.source.as_deref() == Some(source.name.as_str()) => {
            Ok((m.id, true))
        }
        Some(Enqueued::Duplicate(m)) => Err(Refusal::Conflict(m.id)),
        Some(Enqueued::Conflict { existing_id }) => Err(Refusal::Conflict(existing_id)),
        None => Err(Refusal::Unavailable),
    }
}

/// The body, at most the source's limit, within its read timeout.
async fn read_body(body: Body, source: &Source) -> Result<bytes::Bytes, Refusal> {
    let read = Limited::new(body, source.max_body).collect();
    match tokio::time::timeout(source.read_timeout, read).await {
        Err(_) => Err(Refusal::Timeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(Refusal::TooLarge(source.max_body))
        }
        Ok(Err(e)) => Err(Refusal::BadRequest(format!(
            "the body could not be read to its end ({e})"
        ))),
    }
}

/// The headers passed on, in order; a value that is not UTF-8 cannot be
/// kept as text and is refused by name.
fn kept_headers(
    headers: &HeaderMap,
    drop_authorization: bool,
) -> Result<Vec<(String, String)>, Refusal> {
    let mut kept = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let n = name.as_str();
        if NOT_KEPT.contains(&n) || (drop_authorization && n == "authorization") {
            continue;
        }
        let v = std::str::from_utf8(value.as_bytes())
            .map_err(|_| Refusal::BadRequest(format!("the value of header `{n}` is not UTF-8")))?;
        kept.push((n.to_owned(), v.to_owned()));
    }
    Ok(kept)
}

/// The event's id, if the source dedupes and the request carries one (a
/// request without one is stored; it cannot be told from another).
fn event_id(source: &Source, headers: &HeaderMap, body: &[u8]) -> Option<String> {
    match source.dedupe.as_ref()? {
        Dedupe::Header(name) => headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned),
        Dedupe::Json(pointer) => {
            let value: serde_json::Value = serde_json::from_slice(body).ok()?;
            match value.pointer(pointer)? {
                serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        }
    }
}
