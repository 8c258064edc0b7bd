//! Error classes: the vocabulary every policy rule, log line and metric speaks.
//!
//! A class says *what kind of failure* an attempt met, independent of any one
//! platform. Policies then say what to do about each class; keeping the two apart
//! is what lets one engine follow five different "error handling" pages.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What an attempt's outcome means, before any policy decides what to do with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The receiver accepted the request (a success status of the policy).
    Success,
    /// The request's content was refused (most 4xx): resending it unchanged fails again.
    Content,
    /// Credentials are missing, invalid or expired (401, 403, an OAuth `invalid_token`).
    Auth,
    /// The target resource does not exist (404, 410).
    NotFound,
    /// The request conflicts with the receiver's state (409).
    Conflict,
    /// The receiver refused the request for now because of its rate (429).
    RateLimited,
    /// The receiver timed out waiting for the request (408).
    Timeout,
    /// The receiver failed (5xx, or a response that is not a known class).
    Server,
    /// The request certainly never reached the receiver: always safe to resend.
    NetworkUnsent,
    /// The request may have reached the receiver (timeout or reset after sending).
    NetworkIndeterminate,
}

impl ErrorClass {
    /// Every class, in a stable order (used by `policy explain` and tests).
    pub const ALL: [ErrorClass; 10] = [
        ErrorClass::Success,
        ErrorClass::Content,
        ErrorClass::Auth,
        ErrorClass::NotFound,
        ErrorClass::Conflict,
        ErrorClass::RateLimited,
        ErrorClass::Timeout,
        ErrorClass::Server,
        ErrorClass::NetworkUnsent,
        ErrorClass::NetworkIndeterminate,
    ];

    /// The snake_case name used in the API, the CLI and policy files.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Success => "success",
            ErrorClass::Content => "content",
            ErrorClass::Auth => "auth",
            ErrorClass::NotFound => "not_found",
            ErrorClass::Conflict => "conflict",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Server => "server",
            ErrorClass::NetworkUnsent => "network_unsent",
            ErrorClass::NetworkIndeterminate => "network_indeterminate",
        }
    }

    /// True for the two transport classes (no HTTP response was read).
    pub const fn is_network(self) -> bool {
        matches!(
            self,
            ErrorClass::NetworkUnsent | ErrorClass::NetworkIndeterminate
        )
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a class name that is not in the vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown error class `{0}`; expected one of success, content, auth, not_found, conflict, rate_limited, timeout, server, network_unsent, network_indeterminate")]
pub struct UnknownClass(pub String);

impl FromStr for ErrorClass {
    type Err = UnknownClass;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ErrorClass::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownClass(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_from_str_and_serde() {
        for class in ErrorClass::ALL {
            assert_eq!(class.as_str().parse::<ErrorClass>(), Ok(class));
            let json = serde_json::to_string(&class).unwrap();
            assert_eq!(json, format!("\"{}\"", class.as_str()));
        }
        assert!("network".parse::<ErrorClass>().is_err());
    }
}
