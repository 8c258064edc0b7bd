//! The seeds' exact JSON bodies parse into the typed bodies and serialize back
//! to the same JSON. Where a seed prints a body that is not strict JSON (raw
//! line breaks in a string, comments, missing braces) the fixture is the closest
//! strict JSON, and the comment says what changed.

use redrive_core::bodies::synchive::{
    PROCESS_ERROR_TYPE, PUBLISH_ERROR_TYPE, RETRY_LATER_CODE, RETRY_LATER_TYPE,
};
use redrive_core::bodies::{ConnectorError, OAuthError, PrivoResponse, ProblemDetails};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

fn round_trip<T: DeserializeOwned + Serialize>(text: &str) -> T {
    let original: Value = serde_json::from_str(text).expect("fixture is JSON");
    let typed: T = serde_json::from_str(text).expect("parses into the type");
    let back = serde_json::to_value(&typed).expect("serializes");
    assert_eq!(back, original, "round trip changed the body");
    typed
}

/// seed 002, "Requests to SyncHive": verbatim.
const SYNCHIVE_RETRY_LATER: &str = r#"{
"type": "http://www.meaningful.co.nz/limber-sync/retry-later",
"typeCode": "RETRY_LATER",
"status": 500,
"title": "Retry later",
"detail": "Retry later",
"uuid": "3721a351-9285-4375-99db-f1fe1d8277b7",
"message": "Oops, something went wrong"
}"#;

/// seed 002, "Outbound Publish": the seed breaks `detail` over lines; here they
/// are `\n` escapes.
const SYNCHIVE_PUBLISH_ERROR: &str = r#"{
"type": "http://www.synchive.com/common/publish-error",
"detail": "Could not connect to ShopifyNZ.\nThe HTTP API Key Value you provided is incorrect.\nPlease provide a valid HTTP API Key Value to the ShopifyNZ Integration and try again.",
"logCode": "4005E",
"retryable": false,
"linkIdentities": {
"integrationKey": "shopify_nz_integration",
"linkIdentities": [
{
"iri": "https://schema.limbergraph.com/limber/Product#00006e95-ed86-46b6-a36e-b7e339bfb0b2",
"externalId": "632910392"
}
]
}
}"#;

/// seed 002, "Process Message": line breaks in `detail` escaped.
const SYNCHIVE_PROCESS_ERROR: &str = r#"{
"type": "http://www.synchive.com/common/process-error",
"detail": "Could not connect to ShopifyNZ.\nThe HTTP API Key Value you provided is incorrect.\nPlease provide a valid HTTP API Key Value to the ShopifyNZ Integration and try again.",
"logCode": "4003E",
"retryable": true
}"#;

/// seed 001, "Expired Token Error Response": the seed omits the braces.
const PRIVO_INVALID_TOKEN: &str = r#"{
          "error": "invalid_token",
          "error_description": "Invalid access token: eyJhbGciOiJSUzIi.......3gZthv7Y"
}"#;

/// seed 001, "Response Wrapper": the seed's comments removed, its arrays closed.
const PRIVO_WRAPPER: &str = r#"{
  "message": "Ok",
  "status": "success",
  "entity": [],
  "validationErrors": [],
  "resultCount": 0,
  "totalCount": 0
}"#;

#[test]
fn seed002_retry_later_problem_round_trips_with_its_extension_members() {
    let p: ProblemDetails = round_trip(SYNCHIVE_RETRY_LATER);
    assert_eq!(p.problem_type.as_deref(), Some(RETRY_LATER_TYPE));
    assert_eq!(p.status, Some(500));
    assert_eq!(p.extensions["typeCode"], RETRY_LATER_CODE);
    assert_eq!(p.extensions["uuid"], "3721a351-9285-4375-99db-f1fe1d8277b7");
}

#[test]
fn seed002_publish_error_round_trips_with_link_identities() {
    let e: ConnectorError = round_trip(SYNCHIVE_PUBLISH_ERROR);
    assert_eq!(e.problem_type, PUBLISH_ERROR_TYPE);
    assert_eq!(e.log_code.as_deref(), Some("4005E"));
    assert_eq!(e.retryable, Some(false));
    let links = e.link_identities.expect("present");
    assert_eq!(links.integration_key, "shopify_nz_integration");
    assert_eq!(links.link_identities[0].external_id, "632910392");
    // The same body is also a valid problem details object.
    let _: ProblemDetails = round_trip(SYNCHIVE_PUBLISH_ERROR);
}

#[test]
fn seed002_process_error_round_trips() {
    let e: ConnectorError = round_trip(SYNCHIVE_PROCESS_ERROR);
    assert_eq!(e.problem_type, PROCESS_ERROR_TYPE);
    assert_eq!(e.retryable, Some(true));
    assert_eq!(e.link_identities, None);
    assert!(e.detail.starts_with("Could not connect to ShopifyNZ.\n"));
}

#[test]
fn seed002_technical_info_is_a_member_of_connector_errors() {
    let text = r#"{"type":"http://www.synchive.com/common/process-error","detail":"d","logCode":"1E","technicalInfo":"stack: x"}"#;
    let e: ConnectorError = round_trip(text);
    assert_eq!(e.technical_info.as_deref(), Some("stack: x"));
}

#[test]
fn seed001_invalid_token_round_trips() {
    let e: OAuthError = round_trip(PRIVO_INVALID_TOKEN);
    assert_eq!(e.error, "invalid_token");
    assert!(e
        .error_description
        .unwrap()
        .starts_with("Invalid access token"));
}

#[test]
fn seed001_response_wrapper_round_trips() {
    let w: PrivoResponse = round_trip(PRIVO_WRAPPER);
    assert!(w.is_success());
    assert_eq!(w.entity, Some(json!([])));
    assert_eq!((w.result_count, w.total_count), (Some(0), Some(0)));
}

#[test]
fn seed001_wrapper_with_validation_errors_and_a_typed_entity() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct User {
        id: u32,
    }
    let text = r#"{"message":"Validation failed","status":"fail","entity":{"id":7},"validationErrors":[{"field":"email","message":"required"}]}"#;
    let w: PrivoResponse<User> = round_trip(text);
    assert!(!w.is_success());
    assert_eq!(w.entity, Some(User { id: 7 }));
    assert_eq!(w.validation_errors[0]["field"], "email");
}

#[test]
fn problem_details_builds_what_redrive_serves() {
    let p = ProblemDetails::new(
        "https://redrive.dev/problems/unknown-destination",
        "Unknown destination",
        422,
        "no destination `crm`",
    );
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(
        v,
        json!({"type": "https://redrive.dev/problems/unknown-destination", "title": "Unknown destination", "status": 422, "detail": "no destination `crm`"})
    );
}
