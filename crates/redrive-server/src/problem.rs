//! Every API error as RFC 9457 problem details (`application/problem+json`).

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use redrive_core::bodies::ProblemDetails;

/// Where redrive's problem types are documented.
pub const TYPE_BASE: &str = "https://redrive.dev/problems/";

/// Seconds a sender is asked to wait while the disk is below the
/// watermark: the measure runs twice a second and the purge at once, so
/// room comes back within seconds once a backlog drains.
pub const DISK_FULL_RETRY_AFTER_S: u64 = 10;

/// An API error.
#[derive(Debug, Clone)]
pub struct Problem {
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
    detail: String,
    /// Seconds for `Retry-After`, where sending again later can succeed.
    retry_after: Option<u64>,
}

impl Problem {
    /// What went wrong, in words.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// A problem of type `{TYPE_BASE}{slug}`.
    pub fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Problem {
            status,
            slug,
            title,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// The same problem, answered with `Retry-After: seconds`.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// 507: the disk is below the watermark; what was sent was not stored.
    pub fn disk_full(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "disk-full",
            "The disk is nearly full",
            detail,
        )
        .retry_after(DISK_FULL_RETRY_AFTER_S)
    }

    /// 400: the request cannot be read.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "The request is not valid",
            detail,
        )
    }

    /// 404: no such resource.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// 500: the store failed.
    pub fn internal(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            detail,
        )
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<redrive_store::StoreError> for Problem {
    fn from(e: redrive_store::StoreError) -> Self {
        if let redrive_store::StoreError::DiskFull(_) = e {
            return Problem::disk_full(format!("{e}; nothing was stored, send it again later"));
        }
        if let Some(repeated) = redrive_engine::quiet::check("api_store", &e.to_string()) {
            tracing::error!(error = %e, repeated, "store error");
        }
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store-unavailable",
            "The store is unavailable",
            "the store could not complete the operation; nothing was changed, retry later",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = ProblemDetails::new(
            &format!("{TYPE_BASE}{}", self.slug),
            self.title,
            self.status.as_u16(),
            self.detail,
        );
        let mut res = (self.status, axum::Json(body)).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(redrive_core::bodies::problem::PROBLEM_JSON),
        );
        if let Some(s) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        res
    }
}
