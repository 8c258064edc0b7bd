//! A destination's `auth` and `reconcile` tables (DESIGN.md, "Destination
//! credentials" and "Reconciliation of indeterminate outcomes"): read,
//! checked, and turned into what the engine uses. Every error names the key
//! under the table (`.oauth2.token_url`), which the caller prefixes.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http::{HeaderName, HeaderValue};
use redrive_core::duration::DurationText;
use redrive_core::reconcile::{PathTemplate, ReconcileProbe};
use redrive_core::StatusRange;
use redrive_engine::{ClientAuth, OAuth2, TokenSource};
use serde::Deserialize;

/// `auth = { oauth2 = {...} } | { bearer = "..." } | { basic = {...} }`.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum AuthSpec {
    Oauth2(OAuth2Spec),
    Bearer(String),
    Basic(BasicSpec),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OAuth2Spec {
    token_url: String,
    client_id: String,
    client_secret: String,
    scope: Option<String>,
    audience: Option<String>,
    client_auth: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BasicSpec {
    user: String,
    password: String,
}

/// `[destinations.NAME.reconcile]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReconcileSpec {
    method: Option<String>,
    path: String,
    applied: Option<Vec<StatusItem>>,
    not_applied: Option<Vec<StatusItem>>,
    after: Option<DurationText>,
}

/// `404` or `"2xx"`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum StatusItem {
    Code(u16),
    Text(String),
}

/// The longest wait before a probe: the attempt holds its lease meanwhile.
const MAX_AFTER: Duration = Duration::from_secs(300);

type KeyError = (String, String);

fn at(key: &str, message: impl Into<String>) -> KeyError {
    (key.to_owned(), message.into())
}

/// Static credentials become the `Authorization` header; OAuth 2.0 ones a
/// token source.
pub(crate) fn apply(
    destination: &str,
    auth: &AuthSpec,
    headers: &mut Vec<(HeaderName, HeaderValue)>,
) -> Result<Option<Arc<TokenSource>>, KeyError> {
    if headers
        .iter()
        .any(|(name, _)| name == http::header::AUTHORIZATION)
    {
        return Err(at(
            "",
            "`headers` already sets Authorization; keep one of the two",
        ));
    }
    let mut static_header = |value: String, key: &str| -> Result<(), KeyError> {
        let mut value = HeaderValue::from_str(&value).map_err(|_| {
            at(
                key,
                "cannot be sent in a header (a line break or a control character?)",
            )
        })?;
        value.set_sensitive(true);
        headers.push((http::header::AUTHORIZATION, value));
        Ok(())
    };
    match auth {
        AuthSpec::Bearer(token) => {
            if token.is_empty() {
                return Err(at(".bearer", "is empty (is its ${VAR} set?)"));
            }
            static_header(format!("Bearer {token}"), ".bearer")?;
            Ok(None)
        }
        AuthSpec::Basic(b) => {
            if b.user.contains(':') {
                return Err(at(".basic.user", "may not contain `:` (RFC 7617)"));
            }
            let pair = format!("{}:{}", b.user, b.password);
            static_header(
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ),
                ".basic",
            )?;
            Ok(None)
        }
        AuthSpec::Oauth2(o) => {
            let token_url =
                crate::config::parse_url(&o.token_url).map_err(|m| at(".oauth2.token_url", m))?;
            if o.client_id.is_empty() {
                return Err(at(".oauth2.client_id", "is empty"));
            }
            if o.client_secret.is_empty() {
                return Err(at(".oauth2.client_secret", "is empty (is its ${VAR} set?)"));
            }
            let client_auth = match o.client_auth.as_deref() {
                None | Some("basic") => ClientAuth::Basic,
                Some("body") => ClientAuth::Body,
                Some(other) => {
                    return Err(at(
                        ".oauth2.client_auth",
                        format!("`{other}` is neither `basic` nor `body`"),
                    ))
                }
            };
            Ok(Some(Arc::new(TokenSource::new(
                destination,
                OAuth2 {
                    token_url,
                    client_id: o.client_id.clone(),
                    client_secret: o.client_secret.clone(),
                    scope: o.scope.clone(),
                    audience: o.audience.clone(),
                    client_auth,
                },
            ))))
        }
    }
}

/// The probe of a `reconcile` table.
pub(crate) fn probe(r: &ReconcileSpec) -> Result<ReconcileProbe, KeyError> {
    let method = r.method.clone().unwrap_or_else(|| "GET".to_owned());
    if http::Method::from_bytes(method.as_bytes()).is_err() || method.is_empty() {
        return Err(at(".method", format!("`{method}` is not an HTTP method")));
    }
    let path = PathTemplate::parse(&r.path).map_err(|e| at(".path", e.to_string()))?;
    let statuses = |items: &Option<Vec<StatusItem>>,
                    default: StatusRange,
                    key: &str|
     -> Result<Vec<StatusRange>, KeyError> {
        let Some(items) = items else {
            return Ok(vec![default]);
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let text = match item {
                    StatusItem::Code(c) => c.to_string(),
                    StatusItem::Text(t) => t.clone(),
                };
                text.parse::<StatusRange>()
                    .map_err(|e| at(&format!(".{key}[{i}]"), e.to_string()))
            })
            .collect()
    };
    let applied = statuses(&r.applied, StatusRange::hundreds(2), "applied")?;
    let not_applied = statuses(&r.not_applied, StatusRange::one(404), "not_applied")?;
    if let Some(both) = applied
        .iter()
        .find(|a| not_applied.iter().any(|n| a.lo <= n.hi && n.lo <= a.hi))
    {
        return Err(at(
            ".not_applied",
            format!("overlaps `applied` ({both}); a status means one or the other"),
        ));
    }
    let after = r.after.map_or(Duration::from_secs(5), |d| d.0);
    if after > MAX_AFTER {
        return Err(at(
            ".after",
            "is longer than 5m; the message's lease is held while it waits",
        ));
    }
    Ok(ReconcileProbe {
        method: method.to_ascii_uppercase(),
        path,
        applied,
        not_applied,
        after,
    })
}

/// How `GET /v1/destinations` and the dashboard show a destination's
/// credentials: `{"state": "ok" | "failing", "detail", "retry_at", "kind"}`.
pub fn view(d: &redrive_engine::Destination, now: i64) -> serde_json::Value {
    let kind = if d.credentials.is_some() {
        "oauth2"
    } else if d
        .headers
        .iter()
        .any(|(n, _)| n == http::header::AUTHORIZATION)
    {
        "static"
    } else {
        "none"
    };
    match d.credentials.as_ref().map(|c| c.health(now)) {
        Some(redrive_engine::CredentialsState::Failing { detail, retry_at }) => serde_json::json!({
            "state": "failing",
            "kind": kind,
            "detail": detail,
            "retry_at": crate::views::rfc3339(retry_at),
        }),
        _ => serde_json::json!({ "state": "ok", "kind": kind }),
    }
}
