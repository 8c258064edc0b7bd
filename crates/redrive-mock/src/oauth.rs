//! What testing credentials and reconciliation needs of a mock receiver:
//! an OAuth 2.0 token endpoint (client credentials, RFC 6749 §4.4) whose
//! tokens expire after a number of requests or a duration, routes that
//! demand a valid token and answer seed 001's `invalid_token` otherwise, and
//! a memory of which requests took effect, so that "the POST took effect,
//! then answered 500" can be scripted and a GET can report it.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

use crate::scenario::Reply;
use crate::wire::Request;

/// The `[oauth]` table of a scenario.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthSpec {
    /// The client id the token endpoint accepts.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
    /// A token is refused after this many requests (seed 001's expiry, made
    /// reproducible).
    pub expires_after: Option<u64>,
    /// A token is refused after this long; also its `expires_in` (default 1h).
    pub expires_in: Option<redrive_core::duration::DurationText>,
}

struct Issued {
    uses_left: Option<u64>,
    expires_at: Instant,
}

/// The tokens issued and the requests that took effect.
pub(crate) struct Memory {
    tokens: HashMap<String, Issued>,
    issued: u64,
    refused: u64,
    applied: HashSet<String>,
    rng: StdRng,
}

impl Default for Memory {
    fn default() -> Self {
        Memory {
            tokens: HashMap::new(),
            issued: 0,
            refused: 0,
            applied: HashSet::new(),
            rng: StdRng::from_os_rng(),
        }
    }
}

/// The counts `GET /__mock/counts` shows under `oauth`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct OAuthCounts {
    /// Tokens issued.
    pub issued: u64,
    /// Token requests refused (`invalid_client`).
    pub refused_clients: u64,
}

impl Memory {
    pub(crate) fn counts(&self) -> OAuthCounts {
        OAuthCounts {
            issued: self.issued,
            refused_clients: self.refused,
        }
    }

    /// The token endpoint: a token for the scenario's client, or
    /// `invalid_client`.
    pub(crate) fn issue(&mut self, spec: Option<&OAuthSpec>, req: &Request) -> Reply {
        let Some(spec) = spec else {
            return json(
                500,
                r#"{"error":"server_error","error_description":"the scenario has no [oauth] table"}"#.to_owned(),
                &[],
            );
        };
        let form: HashMap<String, String> = form_pairs(&req.body);
        if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
            return json(400, r#"{"error":"unsupported_grant_type"}"#.to_owned(), &[]);
        }
        let (id, secret) = match req.header("authorization").and_then(basic_credentials) {
            Some(pair) => pair,
            None => (
                form.get("client_id").cloned().unwrap_or_default(),
                form.get("client_secret").cloned().unwrap_or_default(),
            ),
        };
        if id != spec.client_id || secret != spec.client_secret {
            self.refused += 1;
            return json(
                401,
                r#"{"error":"invalid_client","error_description":"client authentication failed"}"#
                    .to_owned(),
                &[("www-authenticate", "Basic realm=\"mock\"")],
            );
        }
        self.issued += 1;
        let lifetime = spec.expires_in.map_or(Duration::from_secs(3600), |d| d.0);
        let token = format!(
            "mock-token-{}-{:016x}",
            self.issued,
            self.rng.random::<u64>()
        );
        self.tokens.insert(
            token.clone(),
            Issued {
                uses_left: spec.expires_after,
                expires_at: Instant::now() + lifetime,
            },
        );
        json(
            200,
            format!(
                r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":{}}}"#,
                lifetime.as_secs().max(1)
            ),
            &[("cache-control", "no-store")],
        )
    }

    /// For a route that demands a token: `None` when the request's token is
    /// valid (one of its uses spent), else seed 001's expired-token answer.
    pub(crate) fn check_token(&mut self, req: &Request) -> Option<Reply> {
        let token = req
            .header("authorization")
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim);
        let valid = match token.and_then(|t| self.tokens.get_mut(t)) {
            Some(issued) if issued.expires_at > Instant::now() => match &mut issued.uses_left {
                Some(0) => false,
                Some(n) => {
                    *n -= 1;
                    true
                }
                None => true,
            },
            _ => false,
        };
        if valid {
            return None;
        }
        // Seed 001: "Expired Token Error Response".
        let shown: String = token.unwrap_or("").chars().take(12).collect();
        Some(json(
            401,
            format!(
                r#"{{"error":"invalid_token","error_description":"Invalid access token: {shown}......."}}"#
            ),
            &[],
        ))
    }

    /// Remembers that the request identified by `key` took effect.
    pub(crate) fn apply(&mut self, key: String) {
        self.applied.insert(key);
    }

    /// A lookup: 200 when a request with the query parameter `param`'s value
    /// took effect, else 404.
    pub(crate) fn lookup(&self, param: &str, req: &Request) -> Reply {
        let value = req
            .query()
            .map(|q| form_pairs(q.as_bytes()))
            .and_then(|q| q.get(param).cloned());
        match value {
            Some(v) if self.applied.contains(&v) => {
                json(200, serde_json::json!({ "found": v }).to_string(), &[])
            }
            _ => json(404, r#"{"found":null}"#.to_owned(), &[]),
        }
    }
}

/// The value at `pointer` (RFC 6901) of a JSON body, as text.
pub(crate) fn key_of(body: &[u8], pointer: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    match v.pointer(pointer)? {
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn form_pairs(bytes: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(bytes);
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| char::from(b).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push((hi * 16 + lo) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// RFC 6749 §2.3.1: Basic with each part form-encoded.
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let encoded = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((decode(id), decode(secret)))
}

fn json(status: u16, body: String, extra: &[(&str, &str)]) -> Reply {
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    headers.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Reply {
        status,
        headers,
        body: Bytes::from(body),
        retry_after_date: None,
        slow_body: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_decoded() {
        let f = form_pairs(b"grant_type=client_credentials&scope=a+b&x=%2F%zz&y");
        assert_eq!(f["scope"], "a b");
        assert_eq!(f["x"], "/%zz");
        assert_eq!(f["y"], "");
        assert_eq!(decode("%4"), "%4");
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let h = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("partner%3A1:s%26cret")
        );
        assert_eq!(
            basic_credentials(&h),
            Some(("partner:1".to_owned(), "s&cret".to_owned()))
        );
    }
}
