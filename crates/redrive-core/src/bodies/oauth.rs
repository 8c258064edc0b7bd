//! The OAuth 2.0 error body (RFC 6749 §5.2, RFC 6750 §3.1), as PRIVO returns it
//! for an expired token (seed 001).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `{"error": "invalid_token", "error_description": "..."}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OAuthError {
    /// The error code, for example `invalid_token`.
    pub error: String,
    /// A human-readable explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    /// A page about the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_uri: Option<String>,
    /// Any other members.
    #[serde(flatten)]
    pub extensions: Map<String, Value>,
}

/// OAuth error codes that mean the credentials, not the request, are at fault
/// (RFC 6749 §5.2 and RFC 6750 §3.1).
pub const AUTH_ERROR_CODES: [&str; 5] = [
    "invalid_token",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "insufficient_scope",
];

/// The `error` of a `Bearer` challenge in a `WWW-Authenticate` header
/// (RFC 6750 §3: `Bearer realm="api", error="invalid_token", ...`), if the
/// header holds one.
pub fn bearer_challenge_error(header: &str) -> Option<&str> {
    let t = header.trim_start();
    let scheme = t.get(..6)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut rest = t[6..].trim_start();
    // auth-params: name=token or name="quoted", separated by commas.
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=')?;
        let name = name.trim().trim_start_matches(',').trim();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = quoted_end(q)?;
            (&q[..end], &q[end + 1..])
        } else {
            match after.find(',') {
                Some(i) => (after[..i].trim(), &after[i..]),
                None => (after.trim(), ""),
            }
        };
        if name.eq_ignore_ascii_case("error") {
            return Some(value);
        }
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    None
}

/// Where a quoted string (after its opening quote) ends, skipping `\"`.
fn quoted_end(q: &str) -> Option<usize> {
    let bytes = q.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct TokenResponse {
    /// The token.
    pub access_token: String,
    /// Its type; only `Bearer` (any case) is usable.
    #[serde(default)]
    pub token_type: Option<String>,
    /// Its lifetime in seconds, when the server says.
    #[serde(default)]
    pub expires_in: Option<u64>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: never printed.
        f.debug_struct("TokenResponse")
            .field("access_token", &"<redacted>")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Why a token endpoint's answer gave no token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefused {
    /// An OAuth error (RFC 6749 §5.2), such as `invalid_client`: the
    /// credentials are wrong, and asking again will not help.
    #[error("the token endpoint refused the client: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        /// The OAuth error code.
        error: String,
        /// Its description, if any.
        description: Option<String>,
        /// The HTTP status.
        status: u16,
    },
    /// Another failure (a 5xx, a body that is not a token): asking again
    /// later may succeed.
    #[error("{0}")]
    Failed(String),
}

impl TokenRefused {
    /// True when asking again later may succeed.
    pub fn is_temporary(&self) -> bool {
        match self {
            TokenRefused::Refused { error, .. } => !matches!(
                error.as_str(),
                "invalid_client"
                    | "unauthorized_client"
                    | "invalid_scope"
                    | "invalid_grant"
                    | "unsupported_grant_type"
            ),
            TokenRefused::Failed(_) => true,
        }
    }
}

/// Reads a token endpoint's answer: a token on 2xx, else the OAuth error
/// (RFC 6749 §5.2) or a description of what came back. The token never
/// appears in an error.
pub fn read_token_response(status: u16, body: &[u8]) -> Result<TokenResponse, TokenRefused> {
    if (200..300).contains(&status) {
        let token: TokenResponse = serde_json::from_slice(body).map_err(|e| {
            TokenRefused::Failed(format!(
                "the token endpoint answered {status} with a body that is not a token response ({})",
                e.classify_text()
            ))
        })?;
        if token.access_token.is_empty() {
            return Err(TokenRefused::Failed(format!(
                "the token endpoint answered {status} with an empty access_token"
            )));
        }
        if let Some(t) = &token.token_type {
            if !t.eq_ignore_ascii_case("bearer") {
                return Err(TokenRefused::Failed(format!(
                    "the token endpoint issued a `{}` token; only Bearer tokens are supported",
                    t.chars().take(32).collect::<String>()
                )));
            }
        }
        return Ok(token);
    }
    match serde_json::from_slice::<OAuthError>(body) {
        Ok(e) if (400..500).contains(&status) => Err(TokenRefused::Refused {
            error: e.error,
            description: e.error_description,
            status,
        }),
        _ => Err(TokenRefused::Failed(format!(
            "the token endpoint answered {status}"
        ))),
    }
}

/// Describes a serde_json error without quoting the input.
trait ClassifyText {
    fn classify_text(&self) -> String;
}

impl ClassifyText for serde_json::Error {
    fn classify_text(&self) -> String {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable".to_owned(),
            serde_json::error::Category::Syntax => {
                format!("not JSON at line {} column {}", self.line(), self.column())
            }
            serde_json::error::Category::Data => "no access_token string".to_owned(),
            serde_json::error::Category::Eof => "cut short".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_challenge_names_its_error() {
        assert_eq!(
            bearer_challenge_error(
                r#"Bearer realm="example", error="invalid_token", error_description="The access token expired""#
            ),
            Some("invalid_token")
        );
        assert_eq!(
            bearer_challenge_error("bearer error=invalid_token"),
            Some("invalid_token")
        );
        assert_eq!(
            bearer_challenge_error(r#"Bearer realm="a, \"b\"", error="insufficient_scope""#),
            Some("insufficient_scope")
        );
        assert_eq!(bearer_challenge_error(r#"Bearer realm="example""#), None);
        assert_eq!(
            bearer_challenge_error(r#"Basic realm="x", error="invalid_token""#),
            None
        );
        assert_eq!(bearer_challenge_error("Bear"), None);
        assert_eq!(
            bearer_challenge_error(r#"Bearer error="unterminated"#),
            None
        );
    }

    #[test]
    fn token_responses_are_read_and_refusals_named() {
        let t = read_token_response(
            200,
            br#"{"access_token":"abc","token_type":"bearer","expires_in":60}"#,
        )
        .unwrap();
        assert_eq!((t.access_token.as_str(), t.expires_in), ("abc", Some(60)));
        assert!(
            !format!("{t:?}").contains("abc"),
            "the token is never printed"
        );
        let e = read_token_response(
            401,
            br#"{"error":"invalid_client","error_description":"bad secret"}"#,
        )
        .unwrap_err();
        assert!(!e.is_temporary());
        assert_eq!(
            e.to_string(),
            "the token endpoint refused the client: invalid_client (bad secret)"
        );
        let e = read_token_response(503, b"busy").unwrap_err();
        assert!(e.is_temporary());
        assert_eq!(e.to_string(), "the token endpoint answered 503");
        let e = read_token_response(
            200,
            br#"{"access_token":"s3cr3t-value","token_type":"mac"}"#,
        )
        .unwrap_err();
        assert!(!e.to_string().contains("s3cr3t"));
        let e = read_token_response(200, br#"{"access_token": "ab"#).unwrap_err();
        assert!(
            e.to_string().contains("cut short") || e.to_string().contains("not JSON"),
            "{e}"
        );
        assert!(read_token_response(200, br#"{"access_token":""}"#).is_err());
    }
}
