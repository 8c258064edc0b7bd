//! Every API error as RFC 9457 problem details (`application/problem+json`).

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use redrive_core::bodies::ProblemDetails;

/// Where redrive's problem types are documented.
pub const TYPE_BASE: &str = "https://redrive.dev/problems/";

/// An API error.
#[derive(Debug, Clone)]
pub struct Problem {
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
    detail: String,
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
        }
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
        res
    }
}
