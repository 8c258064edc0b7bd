//! How a source answers: `202 {"id": ...}` once the request is durable, and
//! each refusal either as problem+json with its own status (`accepted`), or
//! as seed 002 says a SyncHive connector must: HTTP 500 with a
//! `publish-error` / `process-error` body, a `logCode`, a `detail` and
//! `retryable` (`true` only where sending the same request again can succeed).

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use redrive_core::bodies::synchive::{ConnectorError, PROCESS_ERROR_TYPE, PUBLISH_ERROR_TYPE};
use serde_json::json;

use super::source::Respond;
use crate::problem::Problem;

/// Seconds a sender is asked to wait when the store cannot take the request.
pub(crate) const RETRY_AFTER_S: u64 = 5;

/// Why a request was not accepted.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The request does not prove it comes from the platform.
    Unverified(String),
    /// The body is larger than the source takes.
    TooLarge(usize),
    /// The request cannot be kept as it is (a header that is not text, a
    /// body that ended before its length).
    BadRequest(String),
    /// The body did not arrive within the source's read timeout.
    Timeout,
    /// The store could not make it durable: send it again.
    Unavailable,
    /// The disk is below the watermark (507): send it again later.
    DiskFull(String),
    /// Its event id is the idempotency key of a message enqueued otherwise.
    Conflict(String),
}

impl Refusal {
    /// The label of `redrive_inbound_refused_total`.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Refusal::Unverified(_) => "unverified",
            Refusal::TooLarge(_) => "too_large",
            Refusal::BadRequest(_) => "bad_request",
            Refusal::Timeout => "timeout",
            Refusal::Unavailable => "unavailable",
            Refusal::DiskFull(_) => "disk_full",
            Refusal::Conflict(_) => "conflict",
        }
    }

    /// Whether sending the same request again can succeed.
    pub(crate) fn retryable(&self) -> bool {
        matches!(
            self,
            Refusal::Timeout | Refusal::Unavailable | Refusal::DiskFull(_)
        )
    }

    fn problem(&self) -> Problem {
        let (status, slug, title, detail) = match self {
            Refusal::DiskFull(why) => {
                return Problem::disk_full(format!("{why}; nothing was stored, send it again later"))
            }
            Refusal::Unverified(why) => (
                StatusCode::UNAUTHORIZED,
                "unverified",
                "The request is not verified",
                format!("{why}; nothing was stored"),
            ),
            Refusal::TooLarge(max) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Request too large",
                format!("the body is larger than this source's {max} bytes; nothing was stored"),
            ),
            Refusal::BadRequest(why) => (
                StatusCode::BAD_REQUEST,
                "bad-request",
                "Bad request",
                format!("{why}; nothing was stored"),
            ),
            Refusal::Timeout => (
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "The body came too slowly",
                "the body did not arrive within this source's read_timeout; nothing was stored, send it again".to_owned(),
            ),
            Refusal::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "store-unavailable",
                "The store is unavailable",
                "the request could not be made durable; nothing was stored, send it again".to_owned(),
            ),
            Refusal::Conflict(id) => (
                StatusCode::CONFLICT,
                "event-id-taken",
                "Event id taken",
                format!("this event id is the idempotency key of message {id}, which did not come from this source"),
            ),
        };
        Problem::new(status, slug, title, detail)
    }

    /// `logCode` of a SyncHive error body: the status it stands for, then
    /// `E` as in seed 002's `4005E`.
    fn log_code(&self) -> String {
        format!("RD{}E", self.problem().status().as_u16())
    }
}

/// The answer to a refused request.
pub(crate) fn refused(respond: Respond, refusal: &Refusal) -> Response {
    let mut res = match respond {
        Respond::Accepted => refusal.problem().into_response(),
        Respond::SynchivePublish | Respond::SynchiveProcess => {
            let problem = refusal.problem();
            let body = ConnectorError {
                problem_type: if respond == Respond::SynchivePublish {
                    PUBLISH_ERROR_TYPE
                } else {
                    PROCESS_ERROR_TYPE
                }
                .to_owned(),
                detail: problem.detail().to_owned(),
                log_code: Some(refusal.log_code()),
                technical_info: Some(format!(
                    "redrive refused the request: {} ({})",
                    refusal.reason(),
                    problem.status()
                )),
                retryable: Some(refusal.retryable()),
                link_identities: None,
                extensions: serde_json::Map::new(),
            };
            let mut res = (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(redrive_core::bodies::problem::PROBLEM_JSON),
            );
            res
        }
    };
    match refusal {
        Refusal::Unavailable => {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
        }
        Refusal::DiskFull(_) => {
            res.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(crate::problem::DISK_FULL_RETRY_AFTER_S),
            );
        }
        _ => {}
    }
    res
}

/// The answer once the request is durable (or was, the first time its
/// event id came).
pub(crate) fn accepted(id: &str, replayed: bool) -> Response {
    let mut res = (StatusCode::ACCEPTED, axum::Json(json!({ "id": id }))).into_response();
    if replayed {
        res.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_of(res: Response) -> (StatusCode, http::HeaderMap, Vec<u8>) {
        let (parts, body) = res.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes().to_vec())
            .unwrap_or_default();
        (parts.status, parts.headers, bytes)
    }

    #[tokio::test]
    async fn synchive_bodies_say_retryable_only_where_sending_again_can_succeed() {
        let cases = [
            (Refusal::Unavailable, true, "RD503E"),
            (Refusal::Timeout, true, "RD408E"),
            (Refusal::Unverified("x".into()), false, "RD401E"),
            (Refusal::TooLarge(10), false, "RD413E"),
            (Refusal::BadRequest("x".into()), false, "RD400E"),
            (Refusal::Conflict("01X".into()), false, "RD409E"),
            (Refusal::DiskFull("low".into()), true, "RD507E"),
        ];
        for (refusal, retryable, code) in cases {
            for (respond, kind) in [
                (Respond::SynchiveProcess, PROCESS_ERROR_TYPE),
                (Respond::SynchivePublish, PUBLISH_ERROR_TYPE),
            ] {
                let (status, headers, body) = body_of(refused(respond, &refusal)).await;
                assert_eq!(
                    status,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "seed 002: HTTP 500"
                );
                let e: ConnectorError = serde_json::from_slice(&body).expect("seed 002 body");
                assert_eq!(e.problem_type, kind);
                assert_eq!(e.retryable, Some(retryable), "{refusal:?}");
                assert_eq!(e.log_code.as_deref(), Some(code));
                assert!(!e.detail.is_empty());
                assert_eq!(
                    headers.get(header::RETRY_AFTER).is_some(),
                    matches!(refusal, Refusal::Unavailable | Refusal::DiskFull(_))
                );
            }
        }
        let (status, headers, _) = body_of(refused(Respond::Accepted, &Refusal::Unavailable)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "5");
    }
}
