//! RFC 9457 problem details (`application/problem+json`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The media type of a problem details body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem details object (RFC 9457 §3). Every member is optional on the wire;
/// extension members (SyncHive's `typeCode`, `uuid`, `message`, ...) are kept in
/// `extensions`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProblemDetails {
    /// A URI reference that identifies the problem type.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub problem_type: Option<String>,
    /// A short, human-readable summary of the problem type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The HTTP status code, repeated for convenience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// An explanation specific to this occurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// A URI reference that identifies this occurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Extension members, in the order they came.
    #[serde(flatten)]
    pub extensions: Map<String, Value>,
}

impl ProblemDetails {
    /// A problem with a type, a title, a status and a detail: what redrive's own
    /// API returns for every error.
    pub fn new(problem_type: &str, title: &str, status: u16, detail: impl Into<String>) -> Self {
        ProblemDetails {
            problem_type: Some(problem_type.to_owned()),
            title: Some(title.to_owned()),
            status: Some(status),
            detail: Some(detail.into()),
            instance: None,
            extensions: Map::new(),
        }
    }
}
