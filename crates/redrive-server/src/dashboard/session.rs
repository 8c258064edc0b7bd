//! Dashboard sessions: an API token is exchanged once for a session cookie
//! (HttpOnly, SameSite=Strict, Secure behind TLS), and every state-changing
//! form carries the session's CSRF token.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::HeaderMap;
use rand::RngCore;
use subtle::ConstantTimeEq;

/// The cookie's name.
pub const COOKIE: &str = "redrive_session";
/// How long a session lasts without use.
pub const IDLE: Duration = Duration::from_secs(12 * 3600);

/// A signed-in person.
#[derive(Clone, Debug)]
pub struct Session {
    /// The session id (the cookie's value).
    pub id: String,
    /// The token every form must echo.
    pub csrf: String,
    /// Who signed in: the token's name and role.
    pub caller: crate::roles::Caller,
}

/// The live sessions, in memory: a restart signs everyone out.
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, (Session, Instant)>>,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    crate::api::validate::hex(&bytes)
}

impl Sessions {
    /// Starts a session for `caller`.
    pub fn create(&self, caller: crate::roles::Caller) -> Session {
        let session = Session {
            id: random_token(),
            csrf: random_token(),
            caller,
        };
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        live.retain(|_, (_, seen)| now.duration_since(*seen) < IDLE);
        live.insert(session.id.clone(), (session.clone(), now));
        session
    }

    /// The session named by the request's cookie, if it is live.
    pub fn from_headers(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, COOKIE)?;
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match live.get_mut(&id) {
            Some((s, seen)) if now.duration_since(*seen) < IDLE => {
                *seen = now;
                Some(s.clone())
            }
            Some(_) => {
                live.remove(&id);
                None
            }
            None => None,
        }
    }

    /// Ends a session.
    pub fn remove(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }
}

/// A cookie's value.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// `Set-Cookie` for a session; `Secure` when the request came over TLS (as a
/// TLS-terminating proxy reports with `X-Forwarded-Proto: https`).
pub fn set_cookie(session: &Session, headers: &HeaderMap) -> String {
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        session.id,
        IDLE.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The cookie that ends a session in the browser.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// True when `presented` is the session's CSRF token (constant time).
pub fn csrf_ok(session: &Session, presented: Option<&str>) -> bool {
    presented.is_some_and(|p| bool::from(session.csrf.as_bytes().ct_eq(p.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_cookie_and_checks_its_csrf_token() {
        let sessions = Sessions::default();
        let s = sessions.create(crate::roles::Caller::local());
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            format!("a=b; {COOKIE}={}", s.id).parse().unwrap(),
        );
        let found = sessions.from_headers(&headers).expect("found");
        assert!(csrf_ok(&found, Some(&s.csrf)));
        assert!(!csrf_ok(&found, Some("forged")));
        assert!(!csrf_ok(&found, None));
        sessions.remove(&s.id);
        assert!(sessions.from_headers(&headers).is_none());
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_behind_tls() {
        let s = Sessions::default().create(crate::roles::Caller::local());
        let plain = set_cookie(&s, &HeaderMap::new());
        assert!(
            plain.contains("HttpOnly")
                && plain.contains("SameSite=Strict")
                && !plain.contains("Secure")
        );
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        assert!(set_cookie(&s, &headers).ends_with("; Secure"));
    }
}
