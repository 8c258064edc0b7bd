//! The error bodies a SyncHive connector returns (seed 002: "Outbound Publish"
//! and "Process Message"), and the problem type SyncHive itself uses to ask for a
//! retry.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// SyncHive's "retry later" problem type (seed 002: "should be treated as
/// retryable").
pub const RETRY_LATER_TYPE: &str = "http://www.meaningful.co.nz/limber-sync/retry-later";
/// The `typeCode` that accompanies [`RETRY_LATER_TYPE`].
pub const RETRY_LATER_CODE: &str = "RETRY_LATER";
/// The problem type of a failed publish (`PUT /v1/data`).
pub const PUBLISH_ERROR_TYPE: &str = "http://www.synchive.com/common/publish-error";
/// The problem type of a failed process message (`PUT /v1/process`).
pub const PROCESS_ERROR_TYPE: &str = "http://www.synchive.com/common/process-error";

/// A connector's error body: a problem type plus SyncHive's members.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorError {
    /// [`PUBLISH_ERROR_TYPE`] or [`PROCESS_ERROR_TYPE`].
    #[serde(rename = "type")]
    pub problem_type: String,
    /// An end-user friendly message.
    pub detail: String,
    /// An event code, for example `4005E`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_code: Option<String>,
    /// Technical information that may help an end user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub technical_info: Option<String>,
    /// Whether SyncHive should retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// External IDs to link back when the request partly succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_identities: Option<LinkIdentities>,
    /// Any other members.
    #[serde(flatten)]
    pub extensions: Map<String, Value>,
}

/// `linkIdentities`: which integration the external IDs belong to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkIdentities {
    /// The integration's key, for example `shopify_nz_integration`.
    pub integration_key: String,
    /// The links, one per SyncHive entity.
    pub link_identities: Vec<LinkIdentity>,
}

/// One SyncHive entity (by IRI) and its ID in the external system.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkIdentity {
    /// The entity's IRI in SyncHive.
    pub iri: String,
    /// The ID the external system gave it.
    pub external_id: String,
}
