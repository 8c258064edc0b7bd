//! Canned answers with the seeds' exact bodies, so a scenario can say
//! `preset = "retry_later"` instead of pasting JSON.
//!
//! Bodies are built from `redrive_core::bodies`, the same types the classifier
//! reads, so a preset and the core cannot disagree about a field name.

use redrive_core::bodies::synchive::{
    PROCESS_ERROR_TYPE, PUBLISH_ERROR_TYPE, RETRY_LATER_CODE, RETRY_LATER_TYPE,
};
use redrive_core::bodies::{
    ConnectorError, LinkIdentities, LinkIdentity, OAuthError, PrivoResponse, ProblemDetails,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The presets a step may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// 401 with the OAuth `invalid_token` body (seed 001).
    InvalidToken,
    /// 400 with PRIVO's response wrapper carrying validation errors (seed 001).
    PrivoValidationError,
    /// 500 with SyncHive's retry-later problem (seed 002).
    RetryLater,
    /// 500 with a connector's publish-error body (seed 002); `retryable` defaults to false.
    PublishError,
    /// 500 with a connector's process-error body (seed 002); `retryable` defaults to true.
    ProcessError,
    /// 429 with `Retry-After` (seed 001, seed 003).
    RateLimited,
}

/// A preset's status, content type and body.
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

const DETAIL: &str = "Could not connect to ShopifyNZ.\nThe HTTP API Key Value you provided is incorrect.\nPlease provide a valid HTTP API Key Value to the ShopifyNZ Integration and try again.";

/// Builds the preset; `retryable` overrides the connector errors' flag.
pub fn canned(preset: Preset, retryable: Option<bool>) -> Canned {
    let json_type = |t: &str| vec![("content-type".to_owned(), t.to_owned())];
    let to_text = |v: Value| v.to_string();
    match preset {
        Preset::InvalidToken => Canned {
            status: 401,
            headers: vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                (
                    "www-authenticate".to_owned(),
                    "Bearer error=\"invalid_token\"".to_owned(),
                ),
            ],
            // seed 001, "Expired Token Error Response".
            body: to_text(json!(OAuthError {
                error: "invalid_token".to_owned(),
                error_description: Some("Invalid access token: eyJhbGciOiJSUzIi.......3gZthv7Y".to_owned()),
                error_uri: None,
                extensions: Map::new(),
            })),
        },
        Preset::PrivoValidationError => Canned {
            status: 400,
            headers: json_type("application/json"),
            // seed 001, "Response Wrapper", with one error on the inputs.
            body: to_text(json!(PrivoResponse::<Value> {
                message: "Validation failed".to_owned(),
                status: "fail".to_owned(),
                entity: None,
                validation_errors: vec![json!({"field": "email", "message": "is required"})],
                result_count: Some(0),
                total_count: Some(0),
                extensions: Map::new(),
            })),
        },
        Preset::RetryLater => {
            // seed 002, "Requests to SyncHive", verbatim.
            let mut p = ProblemDetails::new(RETRY_LATER_TYPE, "Retry later", 500, "Retry later");
            p.extensions.insert("typeCode".into(), json!(RETRY_LATER_CODE));
            p.extensions
                .insert("uuid".into(), json!("3721a351-9285-4375-99db-f1fe1d8277b7"));
            p.extensions
                .insert("message".into(), json!("Oops, something went wrong"));
            Canned {
                status: 500,
                headers: json_type("application/problem+json"),
                body: to_text(json!(p)),
            }
        }
        Preset::PublishError => Canned {
            status: 500,
            headers: json_type("application/json"),
            // seed 002, "Outbound Publish".
            body: to_text(json!(ConnectorError {
                problem_type: PUBLISH_ERROR_TYPE.to_owned(),
                detail: DETAIL.to_owned(),
                log_code: Some("4005E".to_owned()),
                technical_info: None,
                retryable: Some(retryable.unwrap_or(false)),
                link_identities: Some(LinkIdentities {
                    integration_key: "shopify_nz_integration".to_owned(),
                    link_identities: vec![LinkIdentity {
                        iri: "https://schema.limbergraph.com/limber/Product#00006e95-ed86-46b6-a36e-b7e339bfb0b2"
                            .to_owned(),
                        external_id: "632910392".to_owned(),
                    }],
                }),
                extensions: Map::new(),
            })),
        },
        Preset::ProcessError => Canned {
            status: 500,
            headers: json_type("application/json"),
            // seed 002, "Process Message".
            body: to_text(json!(ConnectorError {
                problem_type: PROCESS_ERROR_TYPE.to_owned(),
                detail: DETAIL.to_owned(),
                log_code: Some("4003E".to_owned()),
                technical_info: None,
                retryable: Some(retryable.unwrap_or(true)),
                link_identities: None,
                extensions: Map::new(),
            })),
        },
        Preset::RateLimited => Canned {
            status: 429,
            headers: vec![("retry-after".to_owned(), "1".to_owned())],
            body: String::new(),
        },
    }
}
