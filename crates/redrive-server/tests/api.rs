//! The HTTP API as a client sees it: real HTTP on loopback, a real SQLite file,
//! `redrive mock` as the destination. Bad input gets a problem and leaves the
//! store untouched.

mod support;

use std::collections::HashMap;

use redrive_server::{serve, Config};
use redrive_store::SqliteStore;
use serde_json::json;
use support::{is_problem, python_reference, Server, SECRET, TOKEN};

#[tokio::test]
async fn an_enqueued_message_is_acknowledged_then_delivered() {
    let s = Server::start("[default]\nstatus = 200\n").await;
    let body = r#"{"destination":"crm","method":"POST","path":"/v1/users","headers":{"X-Trace":"t1"},"body":{"email":"a@example.com"}}"#;
    let (status, headers, v) = s.call("POST", "/v1/messages", Some(TOKEN), &[], body).await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        (v["state"].as_str(), v["destination"].as_str()),
        (Some("pending"), Some("crm"))
    );
    let id = v["id"].as_str().expect("id").to_owned();
    let done = s.wait_state(&id, "delivered").await;
    assert_eq!(done["attempts"][0]["status"], 200);
    let e = &s.mock.journal(None).entries[0];
    assert_eq!(e.path, "/v1/users");
    assert_eq!(e.header("x-trace"), Some("t1"));
    assert_eq!(e.header("content-type"), Some("application/json"));
    assert_eq!(e.idempotency_key.as_deref(), v["idempotency_key"].as_str());
    s.stop().await;
}

#[tokio::test]
async fn a_path_beyond_ascii_is_percent_encoded_at_enqueue_and_sent_so() {
    let s = Server::start("[default]\nstatus = 200\n").await;
    let body = r#"{"destination":"crm","path":"/ü/é?q=ä&r=%C3%A4","body":{}}"#;
    let (status, _, v) = s.call("POST", "/v1/messages", Some(TOKEN), &[], body).await;
    assert_eq!(status, 202, "{v}");
    // Shown as it will be sent: RFC 3986 allows no raw UTF-8 in a request target.
    assert_eq!(v["path"], "/%C3%BC/%C3%A9?q=%C3%A4&r=%C3%A4");
    let id = v["id"].as_str().expect("id").to_owned();
    s.wait_state(&id, "delivered").await;
    let e = &s.mock.journal(None).entries[0];
    assert_eq!(e.path, "/%C3%BC/%C3%A9?q=%C3%A4&r=%C3%A4");
    s.stop().await;
}

#[tokio::test]
async fn the_idempotency_key_dedupes_enqueues() {
    let s = Server::start("[default]\nstatus = 200\n").await;
    let body = r#"{"destination":"crm","path":"/v1/users","body":{"n":1}}"#;
    let key = [("idempotency-key", "order-42")];
    let (a, _, first) = s
        .call("POST", "/v1/messages", Some(TOKEN), &key, body)
        .await;
    let (b, headers, second) = s
        .call("POST", "/v1/messages", Some(TOKEN), &key, body)
        .await;
    assert_eq!((a, b), (202, 202));
    assert_eq!(first["id"], second["id"]);
    assert_eq!(first["idempotency_key"], "order-42");
    assert_eq!(headers["idempotent-replayed"], "true");
    let other = r#"{"destination":"crm","path":"/v1/users","body":{"n":2}}"#;
    let (c, headers, problem) = s
        .call("POST", "/v1/messages", Some(TOKEN), &key, other)
        .await;
    assert_eq!(c, 422);
    is_problem(&headers, &problem, 422);
    assert_eq!(s.count().await, 1);
    s.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_problem_and_leaves_the_store_untouched() {
    let s = Server::start("[default]\nstatus = 200\n").await;
    let big = format!(
        r#"{{"destination":"crm","path":"/x","body":"{}"}}"#,
        "a".repeat(5000)
    );
    let cases: Vec<(&str, String, Option<&str>, u16, &str)> = vec![
        (
            "malformed JSON",
            r#"{"destination": "crm", "path": "#.into(),
            Some(TOKEN),
            400,
            "not valid",
        ),
        (
            "not an object",
            "[1,2]".into(),
            Some(TOKEN),
            400,
            "not valid",
        ),
        (
            "unknown field",
            r#"{"destination":"crm","path":"/x","bodyy":1}"#.into(),
            Some(TOKEN),
            400,
            "unknown field `bodyy`",
        ),
        (
            "missing path",
            r#"{"destination":"crm"}"#.into(),
            Some(TOKEN),
            400,
            "missing field `path`",
        ),
        (
            "unknown destination",
            r#"{"destination":"billing","path":"/x"}"#.into(),
            Some(TOKEN),
            422,
            "no destination `billing`",
        ),
        (
            "bad path",
            r#"{"destination":"crm","path":"x y"}"#.into(),
            Some(TOKEN),
            422,
            "must start with `/`",
        ),
        (
            "forbidden header",
            r#"{"destination":"crm","path":"/x","headers":{"Host":"evil"}}"#.into(),
            Some(TOKEN),
            422,
            "`Host` is set by redrive",
        ),
        (
            "both bodies",
            r#"{"destination":"crm","path":"/x","body":1,"body_base64":"AA=="}"#.into(),
            Some(TOKEN),
            422,
            "not both",
        ),
        (
            "bad base64",
            r#"{"destination":"crm","path":"/x","body_base64":"%%%"}"#.into(),
            Some(TOKEN),
            422,
            "not valid base64",
        ),
        ("empty body", String::new(), Some(TOKEN), 400, "empty"),
        (
            "oversized body",
            big,
            Some(TOKEN),
            413,
            "larger than 4096 bytes",
        ),
        (
            "no token",
            r#"{"destination":"crm","path":"/x"}"#.into(),
            None,
            401,
            "Bearer",
        ),
        (
            "wrong token",
            r#"{"destination":"crm","path":"/x"}"#.into(),
            Some("wrong-token-0123456789"),
            401,
            "not valid",
        ),
    ];
    for (what, body, token, status, detail) in cases {
        let (got, headers, problem) = s.call("POST", "/v1/messages", token, &[], &body).await;
        assert_eq!(got, status, "{what}: {problem}");
        is_problem(&headers, &problem, status);
        assert!(
            problem["detail"]
                .as_str()
                .unwrap_or_default()
                .contains(detail),
            "{what}: {problem}"
        );
        if status == 401 {
            assert!(headers.contains_key("www-authenticate"), "{what}");
        }
    }
    assert_eq!(s.count().await, 0, "nothing was stored");
    assert_eq!(s.mock.counts().total, 0, "nothing was sent");
    let (st, headers, problem) = s
        .call("GET", "/v1/messages?state=lost", Some(TOKEN), &[], "")
        .await;
    assert_eq!(st, 400);
    is_problem(&headers, &problem, 400);
    // Pending messages are listed by due time: an id alone (the cursor of a
    // listing by id) does not say where to resume.
    let (st, headers, problem) = s
        .call(
            "GET",
            "/v1/messages?state=pending&cursor=01JABC",
            Some(TOKEN),
            &[],
            "",
        )
        .await;
    assert_eq!(st, 400);
    is_problem(&headers, &problem, 400);
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("`01JABC`") && detail.contains("pending messages"),
        "{problem}"
    );
    // An empty cursor is no cursor: the first page.
    let (st, _, page) = s
        .call(
            "GET",
            "/v1/messages?state=pending&cursor=",
            Some(TOKEN),
            &[],
            "",
        )
        .await;
    assert_eq!(st, 200, "{page}");
    assert!(page["messages"].is_array(), "{page}");
    let (st, _, problem) = s
        .call("GET", "/v1/messages/nope", Some(TOKEN), &[], "")
        .await;
    assert_eq!((st, problem["status"].as_u64()), (404, Some(404)));
    s.stop().await;
}

#[tokio::test]
async fn probes_and_metrics_are_public_and_the_rest_needs_the_token() {
    let s = Server::start("[default]\nstatus = 200\n").await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (st, _, _) = s.call("GET", path, None, &[], "").await;
        assert_eq!(st, 200, "{path}");
    }
    for path in [
        "/openapi.json",
        "/v1/messages",
        "/v1/destinations",
        "/v1/policies/standard",
    ] {
        let (st, _, _) = s.call("GET", path, None, &[], "").await;
        assert_eq!(st, 401, "{path}");
    }
    // Deliver one so the metrics have something to say.
    let (st, v) = s
        .api(
            "POST",
            "/v1/messages",
            r#"{"destination":"crm","path":"/m"}"#,
        )
        .await;
    assert_eq!(st, 202);
    s.wait_state(v["id"].as_str().expect("id"), "delivered")
        .await;
    let (_, _, metrics) = s.call("GET", "/metrics", None, &[], "").await;
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    for name in [
        "redrive_attempts_total{",
        "redrive_attempt_latency_seconds_bucket{",
        "redrive_delivery_seconds_bucket{",
        "redrive_enqueued_total{",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    // Labelled by destination (the engine keeps each destination's handles).
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("redrive_attempts_total{")
                && l.contains(r#"destination="crm""#)
                && l.contains(r#"decision="delivered""#)),
        "no delivered attempt of crm in /metrics:\n{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("redrive_delivery_seconds_count{")
                && l.contains(r#"destination="crm""#)),
        "no delivery time of crm in /metrics:\n{metrics}"
    );
    let (st, _, doc) = s.call("GET", "/openapi.json", Some(TOKEN), &[], "").await;
    assert_eq!(st, 200);
    for path in [
        "/v1/messages",
        "/v1/messages/{id}",
        "/v1/messages/{id}/redrive",
        "/v1/messages/{id}/discard",
        "/v1/dead-letters/redrive",
        "/v1/destinations",
        "/v1/policies/{name}",
        "/metrics",
        "/healthz",
        "/readyz",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn parked_messages_are_redriven_and_discarded_one_by_one_or_by_filter() {
    let s = Server::start(
        "[[routes]]\npath = \"/ok/*\"\nsteps = [{ status = 200 }]\n[default]\nstatus = 400\n",
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let (st, v) = s
            .api(
                "POST",
                "/v1/messages",
                &format!(r#"{{"destination":"crm","path":"/bad/{i}"}}"#),
            )
            .await;
        assert_eq!(st, 202);
        ids.push(v["id"].as_str().expect("id").to_owned());
    }
    for id in &ids {
        let parked = s.wait_state(id, "parked").await;
        assert_eq!(
            (parked["park_reason"].as_str(), parked["class"].as_str()),
            (Some("not_retryable"), Some("content"))
        );
    }
    let (st, v) = s
        .api(
            "GET",
            "/v1/messages?state=parked&destination=crm&reason=not_retryable",
            "",
        )
        .await;
    assert_eq!((st, v["messages"].as_array().map(Vec::len)), (200, Some(3)));

    let (st, v) = s
        .api("POST", &format!("/v1/messages/{}/discard", ids[0]), "")
        .await;
    assert_eq!((st, v["state"].as_str()), (200, Some("discarded")));
    let (st, problem) = s
        .api("POST", &format!("/v1/messages/{}/redrive", ids[0]), "")
        .await;
    assert_eq!(st, 409, "{problem}");
    let (st, _) = s.api("POST", "/v1/messages/nope/redrive", "").await;
    assert_eq!(st, 404);

    let (st, v) = s
        .api(
            "POST",
            "/v1/dead-letters/redrive",
            r#"{"destination":"crm","class":"content","since":"1h"}"#,
        )
        .await;
    assert_eq!((st, v["redriven"].as_u64()), (200, Some(2)), "{v}");
    for id in &ids[1..] {
        let again = s.wait_state(id, "parked").await;
        assert_eq!(again["cycle"], 2);
    }
    let (st, problem) = s
        .api("POST", "/v1/dead-letters/redrive", r#"{"limit":0}"#)
        .await;
    assert_eq!(st, 400, "{problem}");
    s.stop().await;
}

#[tokio::test]
async fn destinations_and_policies_are_described() {
    let s = Server::start("[default]\nstatus = 200\n").await;
    let (st, v) = s.api("GET", "/v1/destinations", "").await;
    assert_eq!(st, 200);
    let crm = &v["destinations"][0];
    assert_eq!(
        (
            crm["name"].as_str(),
            crm["policy"].as_str(),
            crm["signed"].as_bool(),
            crm["circuit"].as_str()
        ),
        (Some("crm"), Some("standard"), Some(true), Some("closed"))
    );
    // A page at a time, by name.
    let (st, v) = s.api("GET", "/v1/destinations?limit=1", "").await;
    assert_eq!(st, 200);
    assert_eq!(
        (
            v["destinations"][0]["name"].as_str(),
            v["next_cursor"].as_str(),
            v["total"].as_u64()
        ),
        (Some("crm"), Some("crm"), Some(2))
    );
    let (st, v) = s
        .api("GET", "/v1/destinations?limit=1&cursor=crm", "")
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        (
            v["destinations"][0]["name"].as_str(),
            v["next_cursor"].as_str()
        ),
        (Some("erp"), None)
    );
    for bad in ["limit=0", "limit=1001", "page=2"] {
        let (st, _) = s.api("GET", &format!("/v1/destinations?{bad}"), "").await;
        assert_eq!(st, 400, "{bad}");
    }
    let (st, p) = s.api("GET", "/v1/policies/intentplatform", "").await;
    assert_eq!(st, 200);
    let offsets: Vec<u64> = p["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|s| s["at_ms"].as_u64())
        .collect();
    assert_eq!(offsets, vec![0, 60_000, 600_000, 3_600_000, 86_400_000]);
    let (st, _) = s.api("GET", "/v1/policies/nope", "").await;
    assert_eq!(st, 404);
    s.stop().await;
}

#[tokio::test]
async fn signatures_verify_with_the_standardwebhooks_reference_library() {
    let s = Server::start("[default]\nstatus = 200\n").await;
    let body = r#"{"destination":"crm","path":"/hooks","body":{"event":"user.created","id":7}}"#;
    let (st, v) = s.api("POST", "/v1/messages", body).await;
    assert_eq!(st, 202);
    let id = v["id"].as_str().expect("id").to_owned();
    s.wait_state(&id, "delivered").await;
    let e = s.mock.journal(None).entries[0].clone();
    let payload = serde_json::to_string(&json!({"event":"user.created","id":7})).expect("json");
    let script = r#"
import sys, json
try:
    from standardwebhooks.webhooks import Webhook
except ImportError:
    print("MISSING"); sys.exit(0)
secret, payload, msg_id, ts, sig = sys.argv[1:6]
Webhook(secret).verify(payload.encode(), {"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": sig})
print("VERIFIED")
"#;
    let verified = python_reference(
        script,
        &[
            SECRET,
            &payload,
            e.header("webhook-id").expect("id"),
            e.header("webhook-timestamp").expect("ts"),
            e.header("webhook-signature").expect("sig"),
        ],
    );
    if let Some(text) = verified {
        assert!(text.contains("VERIFIED"), "{text}");
    }
    s.stop().await;
}

#[tokio::test]
async fn serve_refuses_to_listen_beyond_loopback_without_a_token() {
    let config = Config::from_toml(
        "t.toml",
        "[server]\nlisten = \"0.0.0.0:0\"\n",
        &HashMap::new(),
    )
    .expect("config");
    let dir = tempfile::tempdir().expect("dir");
    let store = SqliteStore::open(&dir.path().join("x.db")).expect("store");
    let result = serve(config, store, std::future::pending(), |_| {}).await;
    let e = result.expect_err("refused").to_string();
    assert!(e.contains("no API token is configured"), "{e}");
}

/// With 152 destinations, `GET /v1/destinations` gives 100 a page by
/// default, and following `next_cursor` lists each once, by name.
#[tokio::test]
async fn many_destinations_are_listed_a_page_at_a_time() {
    let extra: String = (0..150)
        .map(|k| {
            format!("[destinations.d{k:03}]\nurl = \"http://127.0.0.1:9\"\npolicy = \"standard\"\n")
        })
        .collect();
    let s = Server::start_with("[default]\nstatus = 200\n", &extra).await;
    let mut names: Vec<String> = Vec::new();
    let mut path = "/v1/destinations".to_owned();
    let mut pages = 0;
    loop {
        let (st, v) = s.api("GET", &path, "").await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["total"].as_u64(), Some(152));
        let page = v["destinations"].as_array().expect("destinations");
        assert!(page.len() <= 100);
        names.extend(
            page.iter()
                .filter_map(|d| d["name"].as_str().map(str::to_owned)),
        );
        pages += 1;
        match v["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/destinations?cursor={c}"),
            None => break,
        }
    }
    assert_eq!(pages, 2);
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted, "each once, by name");
    assert_eq!(names.len(), 152);
    s.stop().await;
}
