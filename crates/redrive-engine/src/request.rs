//! The HTTP request of one attempt, built from a message and its
//! destination.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use redrive_store::Message;

use crate::client::OutboundRequest;
use crate::destination::Destination;

/// The request of one attempt: the message's headers, then the destination's
/// (which win), the idempotency key where the policy sends one, and the
/// signature headers.
pub fn build_request(
    dest: &Destination,
    m: &Message,
    now_ms: i64,
) -> Result<OutboundRequest, String> {
    build_request_with(dest, m, m.body.clone(), now_ms)
}

/// [`build_request`] with the body given apart, so a caller that owns the
/// message can move it rather than copy it.
pub(crate) fn build_request_with(
    dest: &Destination,
    m: &Message,
    body: Vec<u8>,
    now_ms: i64,
) -> Result<OutboundRequest, String> {
    let method = Method::from_bytes(m.method.as_bytes())
        .map_err(|_| format!("`{}` is not an HTTP method", m.method))?;
    let uri = dest
        .url_for(&m.path)
        .map_err(|e| format!("`{}{}` is not a URL: {e}", dest.url, m.path))?;
    let mut headers = HeaderMap::new();
    // Appended, not inserted: a request received on an inbound source may
    // repeat a header, and is sent on as it came. A value may hold UTF-8
    // beyond ASCII (obs-text), as it was received.
    for (k, v) in &m.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_bytes(v.as_bytes()),
        ) else {
            return Err(format!("header `{k}` is not valid"));
        };
        headers.append(name, value);
    }
    for (name, value) in &dest.headers {
        headers.insert(name.clone(), value.clone());
    }
    if let Some(h) = &dest.policy.idempotency_header {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.as_bytes()),
            HeaderValue::from_str(&m.idempotency_key),
        ) {
            headers.insert(name, value);
        }
    }
    if let Some(secret) = &dest.signing {
        let ts = now_ms.div_euclid(1000);
        let signature = secret.sign(&m.id, ts, &body);
        let pairs = [
            ("webhook-id", m.id.clone()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", signature),
        ];
        for (k, v) in pairs {
            if let Ok(v) = HeaderValue::from_str(&v) {
                headers.insert(HeaderName::from_static(k), v);
            }
        }
    }
    Ok(OutboundRequest {
        method,
        uri,
        headers,
        body: Bytes::from(body),
        timeout: dest.policy.attempt_timeout,
    })
}
