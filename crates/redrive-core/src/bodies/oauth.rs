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
