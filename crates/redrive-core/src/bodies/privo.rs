//! PRIVO's standard response wrapper (seed 001: "all responses will have a
//! standard wrapper").

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The wrapper around every PRIVO response; `entity` is the operation's data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrivoResponse<T = Value> {
    /// A detailed status message.
    pub message: String,
    /// `success` or `fail`.
    pub status: String,
    /// The data returned by the operation: a scalar or an array.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity: Option<T>,
    /// Errors on the inputs.
    #[serde(default)]
    pub validation_errors: Vec<Value>,
    /// When `entity` is a collection, the number of objects in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_count: Option<u64>,
    /// The number of objects matching the request, for paging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_count: Option<u64>,
    /// Any other members.
    #[serde(flatten)]
    pub extensions: Map<String, Value>,
}

impl<T> PrivoResponse<T> {
    /// True when the wrapper says the operation succeeded.
    pub fn is_success(&self) -> bool {
        self.status.eq_ignore_ascii_case("success")
    }
}
