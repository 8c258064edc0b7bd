//! Destination credentials that renew themselves: OAuth 2.0 client
//! credentials (RFC 6749 §4.4), one token per destination and node.
//!
//! Every attempt asks for the `Authorization` header. While the token is
//! fresh that is a lock and a clone of a shared header value, nothing more.
//! When it is missing, near its end (90 % of its life) or was rejected
//! (`invalid_token`, seed 001), the first attempt to notice fetches a new one
//! while the others wait on the same fetch: an async mutex held across the
//! request, so a thousand attempts in flight make one request to the token
//! URL, never a stampede.
//!
//! A token URL that fails puts the credentials in `failing`: attempts are
//! held (their messages given back unattempted, as under an open circuit)
//! until the next try, which backs off from 1 s to a minute. A token that
//! is still within its life keeps being used while an early renewal fails.
//!
//! The exchange is written here rather than with the `oauth2` crate: it is
//! one form POST and a JSON answer, and `oauth2` 5 would bring `url` with the
//! ICU stack, `chrono` and a second `rand` (about thirty crates) into a tree
//! that already has an HTTP client, `form_urlencoded` and the core's parser
//! of token responses (`redrive_core::bodies::oauth`).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Uri};
use redrive_core::bodies::oauth::{read_token_response, TokenRefused};

use crate::client::{HttpClient, OutboundRequest};

/// How the client authenticates at the token endpoint (RFC 6749 §2.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with the form-encoded id and secret (the default).
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Body,
}

/// An OAuth 2.0 client-credentials grant.
#[derive(Clone)]
pub struct OAuth2 {
    /// The token endpoint.
    pub token_url: Uri,
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: String,
    /// The scope asked for, if any.
    pub scope: Option<String>,
    /// The `audience` parameter some providers want, if any.
    pub audience: Option<String>,
    /// How the client authenticates.
    pub client_auth: ClientAuth,
}

impl std::fmt::Debug for OAuth2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("scope", &self.scope)
            .field("audience", &self.audience)
            .field("client_auth", &self.client_auth)
            .finish()
    }
}

/// A token's lifetime when the answer gives none (DESIGN.md).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// The longest wait before the token URL is tried again.
const MAX_BACKOFF_MS: i64 = 60_000;
/// How long a request to the token URL may take.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);

/// The credentials' health, as `GET /v1/destinations` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialsState {
    /// A token is at hand, or none was needed yet.
    Ok,
    /// The token URL failed; messages wait.
    Failing {
        /// What the token URL answered (never a secret).
        detail: String,
        /// When it is tried again.
        retry_at: i64,
    },
}

/// What an attempt gets.
#[derive(Debug)]
pub enum Grant {
    /// Send this header; `generation` names the token, to reject it later.
    Token {
        /// `Bearer ...`.
        header: HeaderValue,
        /// Which token it is.
        generation: u64,
    },
    /// No token: hold the message until `until`.
    Held {
        /// When the token URL is tried again.
        until: i64,
        /// True for the attempt that saw the credentials start failing (it
        /// sends the alert).
        newly_failing: bool,
    },
}

#[derive(Default)]
struct State {
    token: Option<Token>,
    generation: u64,
    failing: Option<Failing>,
}

struct Token {
    header: HeaderValue,
    generation: u64,
    renew_at: i64,
    expires_at: i64,
    /// The receiver took it at least once: a later rejection means it
    /// expired, not that the token URL hands out tokens nobody takes.
    accepted: bool,
}

struct Failing {
    detail: String,
    retry_at: i64,
    failures: u32,
}

/// A destination's renewable credentials.
pub struct TokenSource {
    destination: String,
    grant: OAuth2,
    state: Mutex<State>,
    /// Held while the token URL is asked: the single flight.
    fetching: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("grant", &self.grant)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// `destination`'s credentials from `grant`, with no token yet.
    pub fn new(destination: &str, grant: OAuth2) -> Self {
        TokenSource {
            destination: destination.to_owned(),
            grant,
            state: Mutex::new(State::default()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The client secret, for redaction.
    pub fn client_secret(&self) -> &str {
        &self.grant.client_secret
    }

    /// The health now.
    pub fn health(&self, now: i64) -> CredentialsState {
        match &self.state().failing {
            Some(f) => CredentialsState::Failing {
                detail: f.detail.clone(),
                retry_at: f.retry_at.max(now),
            },
            None => CredentialsState::Ok,
        }
    }

    /// Until when attempts are held, if they are.
    pub fn held_until(&self, now: i64) -> Option<i64> {
        let s = self.state();
        match (&s.failing, &s.token) {
            (Some(f), None) if now < f.retry_at => Some(f.retry_at),
            (Some(f), Some(t)) if now < f.retry_at && now >= t.expires_at => Some(f.retry_at),
            _ => None,
        }
    }

    /// What an attempt gets without asking the token URL, if anything.
    fn fresh(&self, now: i64) -> Option<Grant> {
        let s = self.state();
        let token = |t: &Token| Grant::Token {
            header: t.header.clone(),
            generation: t.generation,
        };
        if let Some(t) = s.token.as_ref().filter(|t| now < t.renew_at) {
            return Some(token(t));
        }
        let f = s.failing.as_ref().filter(|f| now < f.retry_at)?;
        // A token still within its life is used while renewal fails.
        Some(match s.token.as_ref().filter(|t| now < t.expires_at) {
            Some(t) => token(t),
            None => Grant::Held {
                until: f.retry_at,
                newly_failing: false,
            },
        })
    }

    /// The header for an attempt starting now: the token at hand, or one
    /// fetched for every attempt waiting (one request), or a hold.
    pub async fn header(&self, client: &HttpClient, now: impl Fn() -> i64) -> Grant {
        if let Some(grant) = self.fresh(now()) {
            return grant;
        }
        let _flight = self.fetching.lock().await;
        // Another attempt may have fetched while this one waited.
        if let Some(grant) = self.fresh(now()) {
            return grant;
        }
        let fetched = self.fetch(client).await;
        let at = now();
        let mut s = self.state();
        match fetched {
            Ok((secret, lifetime)) => {
                let header = match HeaderValue::from_str(&format!("Bearer {secret}")) {
                    Ok(mut h) => {
                        h.set_sensitive(true);
                        h
                    }
                    Err(_) => {
                        drop(s);
                        return self.failed(
                            TokenRefused::Failed(
                                "the token endpoint issued a token that cannot be sent in a header"
                                    .to_owned(),
                            ),
                            at,
                        );
                    }
                };
                let life = i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX);
                s.generation += 1;
                let generation = s.generation;
                s.token = Some(Token {
                    header: header.clone(),
                    generation,
                    renew_at: at.saturating_add(life / 10 * 9),
                    expires_at: at.saturating_add(life),
                    accepted: false,
                });
                if s.failing.take().is_some() {
                    tracing::info!(destination = %self.destination, token_url = %self.grant.token_url, "the token URL answers again; delivery resumes");
                    metrics::gauge!("redrive_credentials_failing", "destination" => self.destination.clone()).set(0.0);
                }
                metrics::counter!("redrive_token_requests_total", "destination" => self.destination.clone(), "outcome" => "ok").increment(1);
                Grant::Token { header, generation }
            }
            Err(e) => {
                drop(s);
                self.failed(e, at)
            }
        }
    }

    fn failed(&self, e: TokenRefused, at: i64) -> Grant {
        metrics::counter!("redrive_token_requests_total", "destination" => self.destination.clone(), "outcome" => "failed").increment(1);
        let mut s = self.state();
        let failures = s.failing.as_ref().map_or(0, |f| f.failures) + 1;
        let backoff = (1_000i64 << (failures - 1).min(6)).min(MAX_BACKOFF_MS);
        let newly_failing = s.failing.is_none();
        let detail = e.to_string();
        if newly_failing {
            tracing::warn!(destination = %self.destination, token_url = %self.grant.token_url, %detail, "cannot get a token; the destination's messages wait");
            metrics::gauge!("redrive_credentials_failing", "destination" => self.destination.clone()).set(1.0);
        }
        s.failing = Some(Failing {
            detail,
            retry_at: at + backoff,
            failures,
        });
        match &s.token {
            Some(t) if at < t.expires_at => Grant::Token {
                header: t.header.clone(),
                generation: t.generation,
            },
            _ => Grant::Held {
                until: at + backoff,
                newly_failing,
            },
        }
    }

    /// The receiver took token `generation` (answered other than 401).
    pub fn accepted(&self, generation: u64) {
        let mut s = self.state();
        if let Some(t) = s.token.as_mut().filter(|t| t.generation == generation) {
            t.accepted = true;
        }
    }

    /// True unless token `generation` is the current one and the receiver
    /// never took it: a rejection of such a token, right after a renewal,
    /// is an `auth` error rather than one more renewal.
    pub fn was_accepted(&self, generation: u64) -> bool {
        self.state()
            .token
            .as_ref()
            .is_none_or(|t| t.generation != generation || t.accepted)
    }

    /// The receiver rejected token `generation`: the next attempt fetches a
    /// new one (unless another attempt already did).
    pub fn reject(&self, generation: u64) {
        let mut s = self.state();
        if s.token.as_ref().is_some_and(|t| t.generation == generation) {
            s.token = None;
        }
    }

    async fn fetch(&self, client: &HttpClient) -> Result<(String, Duration), TokenRefused> {
        let g = &self.grant;
        let (headers, body) = token_request(g)?;
        let attempted = client
            .attempt(OutboundRequest {
                method: Method::POST,
                uri: g.token_url.clone(),
                headers,
                body,
                timeout: TOKEN_TIMEOUT,
            })
            .await;
        let response = attempted.result.map_err(|e| {
            TokenRefused::Failed(format!("the token URL cannot be reached: {}", e.kind))
        })?;
        let token = read_token_response(response.status, &response.body)?;
        let lifetime = token
            .expires_in
            .filter(|&s| s > 0)
            .map_or(DEFAULT_LIFETIME, Duration::from_secs);
        Ok((token.access_token, lifetime))
    }
}

/// The token request's headers and form body (RFC 6749 §4.4.2).
fn token_request(g: &OAuth2) -> Result<(HeaderMap, Bytes), TokenRefused> {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials");
    if let Some(scope) = g.scope.as_deref().filter(|s| !s.is_empty()) {
        form.append_pair("scope", scope);
    }
    if let Some(audience) = g.audience.as_deref().filter(|s| !s.is_empty()) {
        form.append_pair("audience", audience);
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    headers.insert(
        http::header::ACCEPT,
        HeaderValue::from_static("application/json"),
    );
    match g.client_auth {
        ClientAuth::Basic => {
            // RFC 6749 §2.3.1: each part form-encoded, then Basic.
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", enc(&g.client_id), enc(&g.client_secret));
            let value = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            );
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                TokenRefused::Failed("the client id cannot be sent in a header".to_owned())
            })?;
            value.set_sensitive(true);
            headers.insert(http::header::AUTHORIZATION, value);
        }
        ClientAuth::Body => {
            form.append_pair("client_id", &g.client_id);
            form.append_pair("client_secret", &g.client_secret);
        }
    }
    Ok((headers, Bytes::from(form.finish())))
}
