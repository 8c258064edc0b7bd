//! `openapi.json` held equal to the handlers' types: every request body and
//! every query string the document describes has exactly the fields the
//! handler's type reads (serde tells them: a deserializer that only
//! records the names a struct asks for), the audit's actions are the ones
//! the handler accepts, `since` has the core's pattern, and the enqueue's
//! answer links to the operations on a message.

use std::collections::BTreeSet;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde_json::Value;

/// The field names a struct deserializes.
fn fields_of<'de, T: Deserialize<'de>>() -> BTreeSet<&'static str> {
    let mut seen = None;
    let _ = T::deserialize(Names(&mut seen));
    seen.unwrap_or_default().iter().copied().collect()
}

struct Names<'a>(&'a mut Option<&'static [&'static str]>);

impl<'de> Deserializer<'de> for Names<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Some(fields);
        Err(de::Error::custom("names taken"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

fn doc() -> Value {
    serde_json::from_str(crate::OPENAPI).expect("openapi.json is JSON")
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("{r} resolves to nothing")),
        None => schema,
    }
}

fn body_fields(doc: &Value, path: &str, method: &str) -> BTreeSet<String> {
    let op = &doc["paths"][path][method];
    let schema = resolve(
        doc,
        &op["requestBody"]["content"]["application/json"]["schema"],
    );
    assert_eq!(
        schema["additionalProperties"], false,
        "{method} {path}: unknown members are refused"
    );
    schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{method} {path} has no body properties"))
        .keys()
        .cloned()
        .collect()
}

fn query_fields(doc: &Value, path: &str, method: &str) -> BTreeSet<String> {
    doc["paths"][path][method]["parameters"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| p["in"] == "query")
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn names(set: BTreeSet<&'static str>) -> BTreeSet<String> {
    set.into_iter().map(str::to_owned).collect()
}

#[test]
fn request_bodies_and_queries_have_the_handlers_fields() {
    let doc = doc();
    let cases: Vec<(&str, &str, BTreeSet<String>, BTreeSet<String>)> = vec![
        (
            "/v1/messages",
            "post",
            body_fields(&doc, "/v1/messages", "post"),
            names(fields_of::<super::EnqueueRequest>()),
        ),
        (
            "/v1/messages/{id}",
            "patch",
            body_fields(&doc, "/v1/messages/{id}", "patch"),
            names(fields_of::<super::people::EditRequest>()),
        ),
        (
            "/v1/messages/{id}/resolve",
            "post",
            body_fields(&doc, "/v1/messages/{id}/resolve", "post"),
            names(fields_of::<super::people::ResolveRequest>()),
        ),
        (
            "/v1/destinations/{name}/pause",
            "post",
            body_fields(&doc, "/v1/destinations/{name}/pause", "post"),
            names(fields_of::<super::people::PauseRequest>()),
        ),
        (
            "/v1/dead-letters/redrive",
            "post",
            body_fields(&doc, "/v1/dead-letters/redrive", "post"),
            names(fields_of::<super::BulkRedrive>()),
        ),
        (
            "/v1/messages",
            "get",
            query_fields(&doc, "/v1/messages", "get"),
            names(fields_of::<super::ListQuery>()),
        ),
        (
            "/v1/audit",
            "get",
            query_fields(&doc, "/v1/audit", "get"),
            names(fields_of::<super::people::AuditQuery>()),
        ),
        (
            "/v1/destinations",
            "get",
            query_fields(&doc, "/v1/destinations", "get"),
            names(fields_of::<super::describe::DestinationsQuery>()),
        ),
        (
            "/v1/report",
            "get",
            query_fields(&doc, "/v1/report", "get"),
            names(fields_of::<super::describe::ReportQuery>()),
        ),
    ];
    for (path, method, documented, read) in cases {
        assert!(
            !read.is_empty(),
            "{method} {path}: no fields read from its type"
        );
        assert_eq!(
            documented, read,
            "{method} {path}: the document and the handler's type differ"
        );
    }
}

#[test]
fn constraints_come_from_the_code_that_enforces_them() {
    let doc = doc();
    let audit = &doc["paths"]["/v1/audit"]["get"]["parameters"];
    let action = audit
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "action"))
        .expect("action");
    let documented: Vec<&str> = action["schema"]["enum"]
        .as_array()
        .expect("enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(documented, super::people::AUDIT_ACTIONS);
    for (path, method) in [
        ("/v1/messages", "get"),
        ("/v1/audit", "get"),
        ("/v1/report", "get"),
    ] {
        let since = doc["paths"][path][method]["parameters"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == "since"))
            .unwrap_or_else(|| panic!("{method} {path}: since"));
        assert_eq!(
            since["schema"]["pattern"],
            redrive_core::since::PATTERN,
            "{method} {path}"
        );
    }
    let links = doc["paths"]["/v1/messages"]["post"]["responses"]["202"]["links"]
        .as_object()
        .expect("links from the enqueue");
    for op in [
        "getMessage",
        "editMessage",
        "redriveMessage",
        "discardMessage",
        "resolveMessage",
    ] {
        assert_eq!(links[op]["parameters"]["id"], "$response.body#/id", "{op}");
        let found = doc["paths"]
            .as_object()
            .expect("paths")
            .values()
            .flat_map(|p| p.as_object().into_iter().flat_map(|o| o.values()))
            .any(|o| o["operationId"] == op);
        assert!(found, "the link names operation {op}, which exists");
    }
}

/// The keys of `value` (an object), and of its first element where a key
/// holds an array of objects.
fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn schema_keys(doc: &Value, name: &str) -> BTreeSet<String> {
    keys(&doc["components"]["schemas"][name]["properties"])
}

#[test]
fn answers_have_the_views_fields() {
    use redrive_store::{AttemptRecord, Message, MessageState, Outcome, Resolution, Revision};
    let doc = doc();
    // A message with every optional part present, so that every field
    // the view can show is shown.
    let m = Message {
        id: "01J".into(),
        destination: "crm".into(),
        method: "POST".into(),
        path: "/v1".into(),
        headers: vec![("x-a".into(), "1".into())],
        body: b"{}".to_vec(),
        idempotency_key: "k".into(),
        request_hash: "h".into(),
        marked_idempotent: true,
        state: MessageState::Parked,
        park_reason: Some("exhausted".into()),
        last_class: Some("server".into()),
        attempts: 1,
        total_attempts: 1,
        cycle: 1,
        cycle_started_at: 0,
        next_attempt_at: Some(0),
        leased: false,
        created_at: 0,
        updated_at: 0,
        revision: 2,
        resolution: Some(Resolution {
            outcome: Outcome::Applied,
            actor: "alice".into(),
            note: Some("done".into()),
            at: 0,
        }),
        source: Some("privo".into()),
    };
    let attempt = AttemptRecord {
        n: 1,
        cycle: 1,
        attempt: 1,
        status: Some(500),
        transport: Some("reset".into()),
        class: "server".into(),
        decision: "park".into(),
        reason: "indeterminate".into(),
        delay_ms: Some(1),
        response_excerpt: Some("x".into()),
        detail: Some("reconciled_applied".into()),
        link_identities: Some("{}".into()),
        revision: 1,
        ..AttemptRecord::default()
    };
    let revision = Revision {
        n: 1,
        created_at: 0,
        actor: Some("alice".into()),
        note: Some("n".into()),
        method: "POST".into(),
        path: "/".into(),
        headers: Vec::new(),
        body: b"{}".to_vec(),
    };
    let view = crate::views::MessageView::new(&m, Some(std::slice::from_ref(&attempt)))
        .with_revisions(std::slice::from_ref(&revision));
    let shown = serde_json::to_value(&view).expect("view");
    assert_eq!(keys(&shown), schema_keys(&doc, "Message"), "Message");
    let mut attempt_keys = keys(&shown["attempts"][0]);
    // `reconciled` shows only after a probe; the document lists it.
    attempt_keys.insert("reconciled".into());
    assert_eq!(attempt_keys, schema_keys(&doc, "Attempt"), "Attempt");
    let mut revision_keys = keys(&shown["revisions"][0]);
    // A body is shown as text or as base64, never both.
    revision_keys.insert("body_base64".into());
    assert_eq!(revision_keys, schema_keys(&doc, "Revision"), "Revision");
    assert_eq!(
        keys(&shown["resolution"]),
        schema_keys(&doc, "Resolution"),
        "Resolution"
    );
}
