//! The dashboard at `/`: where a person finds, understands and resends parked
//! messages. Server-rendered HTML (no script, no CDN), assets embedded in the
//! binary, paged on the server with the store's cursor.
//!
//! Access: a sign-in page exchanges an API token for a session cookie; every
//! other page redirects there when signed out; every form that changes state
//! carries the session's CSRF token and is refused without it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use http::{header, HeaderMap, StatusCode};
use redrive_store::{Cursor, Filter, ListOrder, MessageState, Store};
use serde::Deserialize;

use crate::api::AppState;
use crate::views::{human_ms, rfc3339};

mod audit;
mod destinations;
pub mod html;
mod message;
mod overview;
pub mod session;

use html::{esc, page, q};
use session::Session;

/// The stylesheet, embedded.
pub const STYLE: &str = include_str!("style.css");
const PAGE_SIZE: usize = 50;
const CLASSES: [&str; 9] = [
    "content",
    "auth",
    "not_found",
    "conflict",
    "rate_limited",
    "timeout",
    "server",
    "network_unsent",
    "network_indeterminate",
];
const REASONS: [&str; 4] = ["not_retryable", "exhausted", "expired", "indeterminate"];

type Shared<S> = Arc<AppState<S>>;

/// The dashboard's routes.
pub fn routes<S: Store>() -> Router<Shared<S>> {
    Router::new()
        .route("/", get(overview::overview::<S>))
        .route("/login", get(login_form::<S>).post(login::<S>))
        .route("/logout", post(logout::<S>))
        .route("/parked", get(inbox::<S>))
        .route("/parked/act", post(act_on_selection::<S>))
        .route("/parked/redrive-all", post(redrive_filter::<S>))
        .route("/messages/{id}", get(message::message_page::<S>))
        .route("/messages/{id}/act", post(message::act_on_message::<S>))
        .route("/messages/{id}/edit", post(message::edit_message::<S>))
        .route(
            "/messages/{id}/resolve",
            post(message::resolve_message::<S>),
        )
        .route("/destinations/{name}/pause", post(destinations::pause::<S>))
        .route(
            "/destinations/{name}/resume",
            post(destinations::resume::<S>),
        )
        .route("/audit", get(audit::audit_page::<S>))
        .route("/destinations", get(destinations::destinations_page::<S>))
        .route(
            "/assets/style.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE) }),
        )
}

/// The signed-in session, or a redirect to the sign-in page. Without
/// configured tokens (loopback only) a session is opened on the spot.
fn signed_in<S: Store>(
    state: &AppState<S>,
    headers: &HeaderMap,
) -> Result<(Session, Option<String>), Box<Response>> {
    if let Some(s) = state.sessions.from_headers(headers) {
        return Ok((s, None));
    }
    if state.tokens.is_empty() {
        let s = state.sessions.create(crate::roles::Caller::local());
        let cookie = session::set_cookie(&s, headers);
        return Ok((s, Some(cookie)));
    }
    Err(Box::new(Redirect::to("/login").into_response()))
}

fn respond(html: String, cookie: Option<String>) -> Response {
    let mut res = Html(html).into_response();
    if let Some(c) = cookie {
        if let Ok(v) = c.parse() {
            res.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    res.headers_mut().insert(
        "content-security-policy",
        http::HeaderValue::from_static(
            "default-src 'self'; style-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    res
}

fn forbidden(why: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        Html(page(
            "Refused",
            "",
            None,
            &format!("<div class=\"error\">{}</div>", esc(why)),
        )),
    )
        .into_response()
}

/// Parses a form body; repeated keys (checkboxes) keep every value.
fn form(body: &Bytes) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(body) {
        out.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    out
}

fn first<'a>(f: &'a BTreeMap<String, Vec<String>>, key: &str) -> Option<&'a str> {
    f.get(key)
        .and_then(|v| v.first())
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// The session of a state-changing request, if its CSRF token (and Origin,
/// when sent) are right.
/// The session of a state-changing form, once its origin and CSRF token are
/// checked; for an operator's action (`operate`), also its role.
fn checked<S: Store>(
    state: &AppState<S>,
    headers: &HeaderMap,
    f: &BTreeMap<String, Vec<String>>,
    operate: bool,
) -> Result<Session, Box<Response>> {
    let Some(s) = state.sessions.from_headers(headers) else {
        return Err(Box::new(Redirect::to("/login").into_response()));
    };
    if let (Some(origin), Some(host)) = (headers.get(header::ORIGIN), headers.get(header::HOST)) {
        let origin = origin.to_str().unwrap_or("");
        let host = host.to_str().unwrap_or("");
        let same = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            == Some(host);
        if !same {
            return Err(Box::new(forbidden("this form came from another site")));
        }
    }
    if !session::csrf_ok(&s, first(f, "csrf")) {
        return Err(Box::new(forbidden(
            "the form's CSRF token is missing or wrong; reload the page and try again",
        )));
    }
    if operate && !s.caller.role.allows(crate::roles::Need::Operate) {
        return Err(Box::new(forbidden(&format!(
            "this needs the operator (or admin) role; you are signed in as `{}` ({})",
            s.caller.name, s.caller.role
        ))));
    }
    Ok(s)
}

async fn login_form<S: Store>(State(state): State<Shared<S>>, headers: HeaderMap) -> Response {
    if state.sessions.from_headers(&headers).is_some() {
        return Redirect::to("/").into_response();
    }
    Html(login_page(None)).into_response()
}

fn login_page(error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<div class=\"error\">{}</div>", esc(e)))
        .unwrap_or_default();
    page(
        "Sign in",
        "",
        None,
        &format!(
            "<section class=\"card login\"><h1>Sign in</h1>{error}<form method=\"post\" action=\"/login\">\
             <label for=\"token\">API token</label><input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" autofocus>\
             <button type=\"submit\">Sign in</button></form><p class=\"muted\">Any token of <code>server.api_tokens</code>.</p></section>"
        ),
    )
}

async fn login<S: Store>(
    State(state): State<Shared<S>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let presented = first(&f, "token").unwrap_or("");
    let caller = if state.tokens.is_empty() {
        crate::roles::Caller::local()
    } else {
        match crate::roles::find(&state.tokens, presented) {
            Some(t) => crate::roles::Caller {
                name: t.name.clone(),
                role: t.role,
            },
            None => {
                return (
                    StatusCode::UNAUTHORIZED,
                    Html(login_page(Some("That token is not valid."))),
                )
                    .into_response()
            }
        }
    };
    let s = state.sessions.create(caller);
    let mut res = Redirect::to("/").into_response();
    if let Ok(v) = session::set_cookie(&s, &headers).parse() {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

async fn logout<S: Store>(
    State(state): State<Shared<S>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let s = match checked(&state, &headers, &f, false) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    state.sessions.remove(&s.id);
    let mut res = Redirect::to("/login").into_response();
    if let Ok(v) = session::clear_cookie().parse() {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

fn store_error(e: redrive_store::StoreError) -> Response {
    if let Some(repeated) = redrive_engine::quiet::check("dashboard_store", &e.to_string()) {
        tracing::error!(error = %e, repeated, "store error in the dashboard");
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Html(page(
            "Unavailable",
            "",
            None,
            "<div class=\"error\">The store is unavailable; nothing was changed. Try again.</div>",
        )),
    )
        .into_response()
}

#[derive(Deserialize, Default)]
struct InboxQuery {
    destination: Option<String>,
    class: Option<String>,
    reason: Option<String>,
    since: Option<String>,
    source: Option<String>,
    cursor: Option<String>,
    done: Option<String>,
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.clone().filter(|s| !s.trim().is_empty())
}

/// A `since` filter as the API reads it (a duration or an RFC 3339 time).
fn since_ms(text: &str, now: i64) -> Option<i64> {
    crate::api::parse_since(text, now).ok()
}

fn select(name: &str, options: &[String], current: Option<&str>) -> String {
    let mut out = format!("<select name=\"{name}\"><option value=\"\">any</option>");
    for o in options {
        let sel = if Some(o.as_str()) == current {
            " selected"
        } else {
            ""
        };
        out.push_str(&format!("<option{sel}>{}</option>", esc(o)));
    }
    out.push_str("</select>");
    out
}

async fn inbox<S: Store>(
    State(state): State<Shared<S>>,
    headers: HeaderMap,
    query: crate::api::QueryOf<InboxQuery>,
) -> Response {
    let (session, cookie) = match signed_in(&state, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let qy = query.map(|Query(q)| q).unwrap_or_default();
    let now = state.engine.now_ms();
    let (destination, class, reason, since) = (
        non_empty(&qy.destination),
        non_empty(&qy.class),
        non_empty(&qy.reason),
        non_empty(&qy.since),
    );
    let source = non_empty(&qy.source);
    let mut error = String::new();
    let since_at = match &since {
        Some(s) => match since_ms(s, now) {
            Some(t) => Some(t),
            None => {
                error = format!(
                    "<div class=\"error\">`{}` is not a duration (write 30m, 24h, 7d)</div>",
                    esc(s)
                );
                None
            }
        },
        None => None,
    };
    let filter = Filter {
        state: Some(MessageState::Parked),
        destination: destination.clone(),
        class: class.clone(),
        reason: reason.clone(),
        since: since_at,
        source: source.clone(),
    };
    // Parked messages are listed by id: any id resumes the listing.
    let cursor = non_empty(&qy.cursor).and_then(|c| Cursor::parse(&c, ListOrder::of(&filter)).ok());
    let page_result = match state.engine.store().list(filter, cursor, PAGE_SIZE).await {
        Ok(p) => p,
        Err(e) => return store_error(e),
    };
    // A list to choose from while destinations are few; a name to type
    // beyond (10,000 options would weigh more than the page).
    let destination_field = if state.engine.destination_count() <= 200 {
        let dests: Vec<String> = state.engine.destination_names();
        select("destination", &dests, destination.as_deref())
    } else {
        format!(
            "<input name=\"destination\" size=\"16\" value=\"{}\">",
            esc(destination.as_deref().unwrap_or(""))
        )
    };
    let classes: Vec<String> = CLASSES.iter().map(|s| (*s).to_owned()).collect();
    let reasons: Vec<String> = REASONS.iter().map(|s| (*s).to_owned()).collect();
    let filter_query = format!(
        "destination={}&class={}&reason={}&since={}&source={}",
        q(destination.as_deref().unwrap_or("")),
        q(class.as_deref().unwrap_or("")),
        q(reason.as_deref().unwrap_or("")),
        q(since.as_deref().unwrap_or("")),
        q(source.as_deref().unwrap_or(""))
    );
    let sources: Vec<String> = state
        .inbound
        .sources()
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let source_field = if sources.is_empty() && source.is_none() {
        String::new()
    } else {
        format!(
            "<label>received on {}</label>",
            select("source", &sources, source.as_deref())
        )
    };
    let mut body = String::from("<h1>Parked messages</h1>");
    if let Some(done) = &qy.done {
        body.push_str(&format!("<div class=\"flash\">{}</div>", esc(done)));
    }
    body.push_str(&error);
    body.push_str(&format!(
        "<form class=\"filters\" method=\"get\" action=\"/parked\">\
         <label>destination {}</label><label>error class {}</label><label>park reason {}</label>\
         <label>changed within <input name=\"since\" placeholder=\"24h\" size=\"6\" value=\"{}\"></label>{source_field}\
         <button class=\"quiet\" type=\"submit\">Filter</button><a href=\"/parked\">clear</a></form>",
        destination_field,
        select("class", &classes, class.as_deref()),
        select("reason", &reasons, reason.as_deref()),
        esc(since.as_deref().unwrap_or(""))
    ));
    let csrf = esc(&session.csrf);
    body.push_str(&format!(
        "<form method=\"post\" action=\"/parked/redrive-all\" class=\"actions\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"destination\" value=\"{}\"><input type=\"hidden\" name=\"class\" value=\"{}\">\
         <input type=\"hidden\" name=\"reason\" value=\"{}\"><input type=\"hidden\" name=\"since\" value=\"{}\">\
         <input type=\"hidden\" name=\"source\" value=\"{}\">\
         <button id=\"redrive-all\" type=\"submit\">Redrive every message matching the filter</button></form>",
        esc(destination.as_deref().unwrap_or("")),
        esc(class.as_deref().unwrap_or("")),
        esc(reason.as_deref().unwrap_or("")),
        esc(since.as_deref().unwrap_or("")),
        esc(source.as_deref().unwrap_or(""))
    ));
    if page_result.messages.is_empty() {
        body.push_str("<section class=\"card\"><p>No parked message matches. Nothing waits for a person.</p></section>");
    } else {
        body.push_str(&format!(
            "<form method=\"post\" action=\"/parked/act\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"back\" value=\"{}\">\
             <div class=\"actions\"><button name=\"action\" value=\"redrive\" id=\"redrive-selected\">Redrive selected</button>\
             <button name=\"action\" value=\"discard\" class=\"danger\" id=\"discard-selected\">Discard selected</button></div>\
             <table><tr><th></th><th>message</th><th>destination</th><th>request</th><th>class</th><th>reason</th><th class=\"num\">attempts</th><th>parked</th></tr>",
            esc(&filter_query)
        ));
        for m in &page_result.messages {
            body.push_str(&format!(
                "<tr><td><input type=\"checkbox\" name=\"ids\" value=\"{id}\" aria-label=\"select {id}\"></td>\
                 <td><a href=\"/messages/{id}\">{id}</a></td><td>{}{}</td><td><code>{} {}</code></td>\
                 <td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                esc(&m.destination),
                m.source
                    .as_deref()
                    .map(|s| format!(" <span class=\"muted\">from source {}</span>", esc(s)))
                    .unwrap_or_default(),
                esc(&m.method),
                esc(&m.path),
                esc(m.last_class.as_deref().unwrap_or("")),
                esc(m.park_reason.as_deref().unwrap_or("")),
                m.attempts,
                esc(&rfc3339(m.updated_at)),
                id = esc(&m.id),
            ));
        }
        body.push_str("</table></form>");
        if let Some(next) = &page_result.next {
            body.push_str(&format!(
                "<p><a id=\"next-page\" href=\"/parked?{}&cursor={}\">Next page →</a></p>",
                esc(&filter_query),
                q(&next.to_string())
            ));
        }
    }
    respond(page("Parked", "/parked", Some(&session), &body), cookie)
}

async fn act_on_selection<S: Store>(
    State(state): State<Shared<S>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let s = match checked(&state, &headers, &f, true) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let actor = &s.caller.name;
    let ids: Vec<String> = f.get("ids").cloned().unwrap_or_default();
    let (verb, result) = match first(&f, "action") {
        Some("discard") => ("discarded", state.engine.discard(ids.clone(), actor).await),
        _ => ("redriven", state.engine.redrive(ids.clone(), actor).await),
    };
    let done = match result {
        Ok(d) => d,
        Err(e) => return store_error(e),
    };
    let back = first(&f, "back").unwrap_or("");
    let note = format!("{} of {} selected message(s) {verb}", done.len(), ids.len());
    Redirect::to(&format!("/parked?{back}&done={}", q(&note))).into_response()
}

async fn redrive_filter<S: Store>(
    State(state): State<Shared<S>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let s = match checked(&state, &headers, &f, true) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let now = state.engine.now_ms();
    let filter = Filter {
        state: None,
        destination: first(&f, "destination").map(str::to_owned),
        class: first(&f, "class").map(str::to_owned),
        reason: first(&f, "reason").map(str::to_owned),
        since: first(&f, "since").and_then(|s| since_ms(s, now)),
        source: first(&f, "source")
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
    };
    // In slices of 1,000, stopping at a short slice or at 100,000. A message
    // that parks again while this runs may be picked up by a later slice
    // (`redrive dlq redrive --all` counts first and stops at that count).
    let mut total = 0usize;
    loop {
        match state
            .engine
            .redrive_matching(filter.clone(), 1000, &s.caller.name)
            .await
        {
            Ok(ids) if ids.is_empty() => break,
            Ok(ids) => {
                total += ids.len();
                if ids.len() < 1000 || total >= 100_000 {
                    break;
                }
            }
            Err(e) => return store_error(e),
        }
    }
    Redirect::to(&format!(
        "/parked?done={}",
        q(&format!("{total} parked message(s) redriven"))
    ))
    .into_response()
}
