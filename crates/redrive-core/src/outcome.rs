//! The outcome of one attempt: a response, or a named transport failure.
//!
//! The engine builds an [`Outcome`] from whatever its HTTP client saw; the core
//! never touches a socket. The outcome borrows the response so classifying it
//! copies nothing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::class::ErrorClass;

/// What one attempt produced.
#[derive(Clone, Copy, Debug)]
pub enum Outcome<'a> {
    /// The receiver answered with an HTTP response.
    Response(Response<'a>),
    /// No usable response was read; the kind says whether the request left.
    Transport(TransportFailure),
}

/// An HTTP response, borrowed from the engine's buffers.
#[derive(Clone, Copy, Debug)]
pub struct Response<'a> {
    /// The status code (100..=599).
    pub status: u16,
    /// Response headers as (name, value) pairs; names compare case-insensitively.
    pub headers: &'a [(&'a str, &'a str)],
    /// The response body (possibly truncated by the engine; only its start matters).
    pub body: &'a [u8],
}

impl<'a> Response<'a> {
    /// The first header with this name (case-insensitive), if any.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// A transport failure: the attempt ended without a usable HTTP response.
///
/// The split that matters is whether the request may have reached the receiver
/// (seed 000: "Clients are usually left in a state where they don't know or are
/// not sure whether or not the server received the request").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportFailure {
    /// The connection was refused: nothing listens there.
    Refused,
    /// The host name did not resolve.
    Dns,
    /// The TLS handshake failed, so no request bytes were sent.
    Tls,
    /// Connecting took longer than allowed.
    ConnectTimeout,
    /// The request was sent but no full response came in time.
    Timeout,
    /// The connection was reset after the request was (perhaps partly) sent.
    Reset,
    /// The connection closed after the request without any response (an empty reply).
    Closed,
    /// The receiver answered with bytes that are not HTTP.
    Malformed,
}

impl TransportFailure {
    /// Every kind, in a stable order.
    pub const ALL: [TransportFailure; 8] = [
        TransportFailure::Refused,
        TransportFailure::Dns,
        TransportFailure::Tls,
        TransportFailure::ConnectTimeout,
        TransportFailure::Timeout,
        TransportFailure::Reset,
        TransportFailure::Closed,
        TransportFailure::Malformed,
    ];

    /// The name used on the CLI (`--transport`) and in attempt records.
    pub const fn as_str(self) -> &'static str {
        match self {
            TransportFailure::Refused => "refused",
            TransportFailure::Dns => "dns",
            TransportFailure::Tls => "tls",
            TransportFailure::ConnectTimeout => "connect_timeout",
            TransportFailure::Timeout => "timeout",
            TransportFailure::Reset => "reset",
            TransportFailure::Closed => "closed",
            TransportFailure::Malformed => "malformed",
        }
    }

    /// True when the request certainly never reached the receiver.
    pub const fn never_sent(self) -> bool {
        matches!(
            self,
            TransportFailure::Refused
                | TransportFailure::Dns
                | TransportFailure::Tls
                | TransportFailure::ConnectTimeout
        )
    }

    /// The error class of this failure: `network_unsent` when the request never
    /// left, `network_indeterminate` when it may have been applied.
    pub const fn class(self) -> ErrorClass {
        if self.never_sent() {
            ErrorClass::NetworkUnsent
        } else {
            ErrorClass::NetworkIndeterminate
        }
    }
}

impl fmt::Display for TransportFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a transport kind that is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown transport failure `{0}`; expected one of refused, dns, tls, connect_timeout, timeout, reset, closed, malformed")]
pub struct UnknownTransport(pub String);

impl FromStr for TransportFailure {
    type Err = UnknownTransport;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TransportFailure::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownTransport(s.to_owned()))
    }
}

/// What the policy needs to know about the request that was attempted.
#[derive(Clone, Copy, Debug)]
pub struct RequestFacts<'a> {
    /// The HTTP method, any case.
    pub method: &'a str,
    /// The request carries an idempotency key that the receiver honours.
    pub idempotency_key: bool,
    /// The caller vouched that the content itself blocks duplicates
    /// (seed 000: "a unique email address", "a unique Username").
    pub marked_idempotent: bool,
}

impl<'a> RequestFacts<'a> {
    /// A request with no idempotency key and no caller mark.
    pub const fn new(method: &'a str) -> Self {
        RequestFacts {
            method,
            idempotency_key: false,
            marked_idempotent: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_four_kinds_never_reached_the_server_the_others_may_have() {
        use TransportFailure::*;
        for kind in [Refused, Dns, Tls, ConnectTimeout] {
            assert_eq!(kind.class(), ErrorClass::NetworkUnsent, "{kind}");
        }
        for kind in [Timeout, Reset, Closed, Malformed] {
            assert_eq!(kind.class(), ErrorClass::NetworkIndeterminate, "{kind}");
        }
    }

    #[test]
    fn kinds_parse_by_name() {
        for kind in TransportFailure::ALL {
            assert_eq!(kind.as_str().parse(), Ok(kind));
        }
        assert!("timed_out".parse::<TransportFailure>().is_err());
    }

    #[test]
    fn header_lookup_ignores_case() {
        let headers = [("retry-after", "5")];
        let r = Response {
            status: 429,
            headers: &headers,
            body: b"",
        };
        assert_eq!(r.header("Retry-After"), Some("5"));
        assert_eq!(r.header("Content-Type"), None);
    }
}
