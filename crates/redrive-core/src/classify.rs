//! Classification: from an outcome to an error class, plus the body signals the
//! seeds say matter.
//!
//! Classification is policy-independent except for one input, the policy's
//! success statuses (PRIVO counts 208 and 302 as success). What to *do* with a
//! class is the decision's job ([`crate::decide`]).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use crate::bodies::oauth::AUTH_ERROR_CODES;
use crate::class::ErrorClass;
use crate::outcome::{Outcome, TransportFailure};
use crate::policy::Rule;

/// What the body said, where the seeds give the body meaning.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Signals<'a> {
    /// Problem details `type` (RFC 9457; SyncHive's retry-later, publish-error).
    pub problem_type: Option<Cow<'a, str>>,
    /// SyncHive's `typeCode`, for example `RETRY_LATER`.
    pub type_code: Option<Cow<'a, str>>,
    /// A boolean `retryable` member (SyncHive's connector errors).
    pub retryable: Option<bool>,
    /// An OAuth `error` code (seed 001: `invalid_token`).
    pub oauth_error: Option<Cow<'a, str>>,
    /// SyncHive's `linkIdentities`: kept on the attempt so partial successes can
    /// be linked back (seed 002).
    pub link_identities: Option<Value>,
}

/// An outcome, classified.
#[derive(Clone, Debug, PartialEq)]
pub struct Classification<'a> {
    /// The error class.
    pub class: ErrorClass,
    /// The response status, when there was a response.
    pub status: Option<u16>,
    /// The transport failure, when there was no response.
    pub transport: Option<TransportFailure>,
    /// What the body said.
    pub signals: Signals<'a>,
}

impl Classification<'_> {
    /// True when the receiver says the access token is no longer valid: an
    /// `auth` error whose OAuth code (body, seed 001, or `WWW-Authenticate`
    /// challenge, RFC 6750 §3.1) is `invalid_token`.
    pub fn token_rejected(&self) -> bool {
        self.class == ErrorClass::Auth
            && self.signals.oauth_error.as_deref() == Some("invalid_token")
    }
}

/// Classifies an outcome. `success` are the policy's success rules (statuses).
pub fn classify<'a>(outcome: &Outcome<'a>, success: &[Rule]) -> Classification<'a> {
    let response = match outcome {
        Outcome::Transport(kind) => {
            return Classification {
                class: kind.class(),
                status: None,
                transport: Some(*kind),
                signals: Signals::default(),
            }
        }
        Outcome::Response(r) => r,
    };
    let status = response.status;
    let mut signals = read_signals(response.body);
    if signals.oauth_error.is_none() {
        // RFC 6750 §3.1: `WWW-Authenticate: Bearer error="invalid_token"`.
        signals.oauth_error = response
            .header("www-authenticate")
            .and_then(crate::bodies::oauth::bearer_challenge_error)
            .map(Cow::Borrowed);
    }
    let mut c = Classification {
        class: ErrorClass::Server,
        status: Some(status),
        transport: None,
        signals,
    };
    if success.iter().any(|rule| rule.when.matches(&c)) {
        c.class = ErrorClass::Success;
        return c;
    }
    let oauth_auth = c
        .signals
        .oauth_error
        .as_deref()
        .is_some_and(|e| AUTH_ERROR_CODES.contains(&e));
    c.class = match status {
        // Seed 001: "401 - Unauthorized", "403 - Forbidden"; an expired token
        // comes back as `invalid_token` whatever the exact 4xx.
        401 | 403 => ErrorClass::Auth,
        400..=499 if oauth_auth => ErrorClass::Auth,
        404 | 410 => ErrorClass::NotFound,
        408 => ErrorClass::Timeout,
        409 => ErrorClass::Conflict,
        429 => ErrorClass::RateLimited,
        // Seed 000: "Content errors ... return a 4xx error code."
        400..=499 => ErrorClass::Content,
        // Redirects are not followed: the destination's URL needs fixing.
        300..=399 => ErrorClass::Content,
        // 5xx, and anything unexpected (1xx, a 2xx the policy does not accept).
        _ => ErrorClass::Server,
    };
    c
}

/// The members the classifier reads; everything else in the body is skipped.
/// Each is a [`Value`] so that one odd member (`"retryable": "yes"`) does not
/// hide the others.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(rename = "type", borrow, default)]
    problem_type: Option<Lenient<'a>>,
    #[serde(rename = "typeCode", borrow, default)]
    type_code: Option<Lenient<'a>>,
    #[serde(borrow, default)]
    retryable: Option<Lenient<'a>>,
    #[serde(borrow, default)]
    error: Option<Lenient<'a>>,
    #[serde(rename = "linkIdentities", default)]
    link_identities: Option<Value>,
}

/// A JSON value kept only if it is a string or a boolean.
enum Lenient<'a> {
    Str(Cow<'a, str>),
    Bool(bool),
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Lenient<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Lenient<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Lenient::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Lenient::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Lenient::Bool(v))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Lenient::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Lenient::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Lenient::Other)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Lenient::Other)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Self::Value, A::Error> {
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Lenient::Other)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Self::Value, A::Error> {
                while a
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Lenient::Other)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'a> Lenient<'a> {
    fn into_str(self) -> Option<Cow<'a, str>> {
        match self {
            Lenient::Str(s) => Some(s),
            _ => None,
        }
    }
    fn into_bool(self) -> Option<bool> {
        match self {
            Lenient::Bool(b) => Some(b),
            _ => None,
        }
    }
}

/// Reads the signals from a body that is a JSON object; anything else has none.
fn read_signals(body: &[u8]) -> Signals<'_> {
    let starts_like_object = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    if !starts_like_object {
        return Signals::default();
    }
    match serde_json::from_slice::<Probe<'_>>(body) {
        Ok(p) => Signals {
            problem_type: p.problem_type.and_then(Lenient::into_str),
            type_code: p.type_code.and_then(Lenient::into_str),
            retryable: p.retryable.and_then(Lenient::into_bool),
            oauth_error: p.error.and_then(Lenient::into_str),
            link_identities: p.link_identities,
        },
        Err(_) => Signals::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Response;
    use crate::policy::StatusRange;

    fn classify_status(status: u16, body: &str) -> Classification<'_> {
        let success = [Rule::statuses(StatusRange::hundreds(2), "")];
        let outcome = Outcome::Response(Response {
            status,
            headers: &[],
            body: body.as_bytes(),
        });
        classify(&outcome, &success)
    }

    #[test]
    fn statuses_map_to_the_vocabulary() {
        for (status, class) in [
            (200, ErrorClass::Success),
            (208, ErrorClass::Success),
            (302, ErrorClass::Content),
            (400, ErrorClass::Content),
            (401, ErrorClass::Auth),
            (403, ErrorClass::Auth),
            (404, ErrorClass::NotFound),
            (408, ErrorClass::Timeout),
            (409, ErrorClass::Conflict),
            (410, ErrorClass::NotFound),
            (422, ErrorClass::Content),
            (429, ErrorClass::RateLimited),
            (500, ErrorClass::Server),
            (503, ErrorClass::Server),
            (101, ErrorClass::Server),
        ] {
            assert_eq!(classify_status(status, "").class, class, "status {status}");
        }
    }

    #[test]
    fn an_invalid_token_body_is_auth_even_on_a_400() {
        let c = classify_status(
            400,
            r#"{"error":"invalid_token","error_description":"expired"}"#,
        );
        assert_eq!(c.class, ErrorClass::Auth);
        assert_eq!(c.signals.oauth_error.as_deref(), Some("invalid_token"));
    }

    #[test]
    fn odd_members_do_not_hide_the_others() {
        let c = classify_status(
            500,
            r#"{"retryable":"yes","type":"t","typeCode":7,"x":[1,{"a":2}]}"#,
        );
        assert_eq!(c.signals.retryable, None);
        assert_eq!(c.signals.problem_type.as_deref(), Some("t"));
        assert_eq!(c.signals.type_code, None);
    }

    #[test]
    fn bodies_that_are_not_json_objects_have_no_signals() {
        for body in [
            "",
            "<html>oops</html>",
            "[1,2]",
            "{ not json",
            "\"retryable\"",
        ] {
            assert_eq!(
                classify_status(500, body).signals,
                Signals::default(),
                "{body}"
            );
        }
    }

    #[test]
    fn escaped_strings_are_read_too() {
        let c = classify_status(500, r#"{"typeCode":"RETRY_\u004cATER"}"#);
        assert_eq!(c.signals.type_code.as_deref(), Some("RETRY_LATER"));
    }
}
