//! What a message's request must be, at enqueue and at an edit: a method,
//! a path, headers redrive does not set itself, and a body (JSON or
//! base64). Each refusal is a 422 naming what is wrong.

use std::collections::BTreeMap;

use base64::Engine as _;
use http::{HeaderValue, StatusCode};
use serde_json::Value;

use crate::problem::Problem;

const FORBIDDEN_HEADERS: [&str; 8] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
];

pub(super) fn unprocessable(
    slug: &'static str,
    title: &'static str,
    detail: impl Into<String>,
) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, slug, title, detail)
}

/// `path` with every byte a request target may not hold percent-encoded:
/// bytes beyond ASCII (a path written `/ü/é?q=ä` is sent as
/// `/%C3%BC/%C3%A9?q=%C3%A4`, RFC 3986 §2.1, in the path and the query
/// alike) and the ASCII characters no URI may hold raw (`"<>\^`{|}`).
/// What is already encoded (`%C3%BC`) is kept as it is.
pub(crate) fn percent_encode_target(path: &str) -> String {
    const RAW_NOT_ALLOWED: &[u8] = b"\"<>\\^`{|}";
    if path
        .bytes()
        .all(|b| b.is_ascii() && !RAW_NOT_ALLOWED.contains(&b))
    {
        return path.to_owned();
    }
    let mut out = String::with_capacity(path.len() * 3);
    for b in path.bytes() {
        if b.is_ascii() && !RAW_NOT_ALLOWED.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A `body` member that is there, `null` included (`null` is a JSON body
/// like any other); `#[serde(default)]` makes an absent one `None`. So
/// `body` and `body_base64` together are refused even when `body` is null,
/// as the OpenAPI document says.
pub(crate) fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    use serde::Deserialize;
    Value::deserialize(d).map(Some)
}

/// An optional member that, when there, is not `null` (the OpenAPI
/// document says "a string", not "a string or null").
pub(crate) fn not_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Standard base64 with padding; bits past the last byte are ignored, as
/// the OpenAPI document's pattern (which cannot see them) implies.
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// `bytes` in lower-case hexadecimal, written into one string (a hash per
/// enqueue: no allocation per byte).
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A request checked as at enqueue.
pub(crate) struct RequestParts {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Checks a message's request; a JSON body gets `Content-Type:
/// application/json` unless a content type is given, and the path is
/// percent-encoded where it must be ([`percent_encode_target`]).
pub(crate) fn request_parts(
    method: Option<String>,
    path: String,
    headers: &BTreeMap<String, String>,
    body: Option<&Value>,
    body_base64: Option<&str>,
) -> Result<RequestParts, Problem> {
    let method = method
        .unwrap_or_else(|| "POST".to_owned())
        .to_ascii_uppercase();
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(unprocessable(
            "invalid-message",
            "Invalid message",
            format!("`{method}` is not an HTTP method"),
        ));
    }
    if !path.starts_with('/')
        || path
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'#')
    {
        return Err(unprocessable(
            "invalid-message",
            "Invalid message",
            format!(
                "path `{path}` must start with `/` and hold no spaces, control characters or `#`"
            ),
        ));
    }
    let path = percent_encode_target(&path);
    let mut message_headers: Vec<(String, String)> = Vec::new();
    for (k, v) in headers {
        let lower = k.to_ascii_lowercase();
        if FORBIDDEN_HEADERS.contains(&lower.as_str()) {
            return Err(unprocessable(
                "invalid-message",
                "Invalid message",
                format!("header `{k}` is set by redrive; remove it"),
            ));
        }
        if http::HeaderName::from_bytes(k.as_bytes()).is_err() || HeaderValue::from_str(v).is_err()
        {
            return Err(unprocessable(
                "invalid-message",
                "Invalid message",
                format!("header `{k}` is not a valid HTTP header"),
            ));
        }
        message_headers.push((k.clone(), v.clone()));
    }
    let body = match (body, body_base64) {
        (Some(_), Some(_)) => {
            return Err(unprocessable(
                "invalid-message",
                "Invalid message",
                "give `body` or `body_base64`, not both",
            ))
        }
        (Some(v), None) => {
            if !message_headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                message_headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
            }
            serde_json::to_vec(v).map_err(|e| Problem::bad_request(e.to_string()))?
        }
        (None, Some(b)) => BASE64.decode(b).map_err(|_| {
            unprocessable(
                "invalid-message",
                "Invalid message",
                "`body_base64` is not valid base64",
            )
        })?,
        (None, None) => Vec::new(),
    };
    Ok(RequestParts {
        method,
        path,
        headers: message_headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::percent_encode_target;

    #[test]
    fn bytes_beyond_ascii_are_percent_encoded_in_the_path_and_the_query() {
        assert_eq!(percent_encode_target("/ü/é?q=ä"), "/%C3%BC/%C3%A9?q=%C3%A4");
        assert_eq!(
            percent_encode_target("/a%C3%BC?x={1}|\"y\""),
            "/a%C3%BC?x=%7B1%7D%7C%22y%22"
        );
        assert_eq!(
            percent_encode_target("/plain/path?a=1&b=2"),
            "/plain/path?a=1&b=2"
        );
        assert_eq!(percent_encode_target("/日本"), "/%E6%97%A5%E6%9C%AC");
    }
}
