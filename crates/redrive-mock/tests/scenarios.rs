//! Scenarios as integrators write them: sequences per route and per key, seeded
//! mixes, the journal and its counts, and replacing the scenario at run time.
//! Real HTTP over loopback on port 0.

use std::io::{Read, Write};
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use redrive_mock::{MockServer, Scenario, EXAMPLE};
use serde_json::Value;

async fn start(text: &str) -> MockServer {
    let scenario = Scenario::from_toml("test.toml", text, None).unwrap_or_else(|e| panic!("{e}"));
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    MockServer::start(scenario, addr, None)
        .await
        .expect("starts")
}

struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON")
    }
}

async fn send(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    let res = client.request(req).await.expect("response");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

async fn statuses(
    m: &MockServer,
    method: &str,
    path: &str,
    key: Option<&str>,
    n: usize,
) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        let headers: Vec<(&str, &str)> = key.map(|k| ("idempotency-key", k)).into_iter().collect();
        out.push(
            send(method, &format!("{}{path}", m.url()), &headers, "")
                .await
                .status,
        );
    }
    out
}

const FAIL_TWICE_PER_KEY: &str = r#"
[[routes]]
method = "POST"
path = "/v1/users"
per = "idempotency_key"
steps = [{ status = 503, times = 2 }, { status = 201 }]
"#;

#[tokio::test]
async fn a_sequence_per_route_plays_in_order_then_repeats_its_last_step() {
    let m = start("[[routes]]\npath = \"/x\"\nsteps = [{ status = 503, times = 2 }, { status = 429 }, { status = 200 }]\n").await;
    assert_eq!(
        statuses(&m, "GET", "/x", None, 6).await,
        vec![503, 503, 429, 200, 200, 200]
    );
}

#[tokio::test]
async fn a_sequence_per_idempotency_key_fails_twice_for_each_message() {
    let m = start(FAIL_TWICE_PER_KEY).await;
    assert_eq!(
        statuses(&m, "POST", "/v1/users", Some("a"), 3).await,
        vec![503, 503, 201]
    );
    assert_eq!(
        statuses(&m, "POST", "/v1/users", Some("b"), 4).await,
        vec![503, 503, 201, 201]
    );
    assert_eq!(
        statuses(&m, "POST", "/v1/users", Some("a"), 1).await,
        vec![201]
    );
    // Requests without a key share the route's own sequence.
    assert_eq!(
        statuses(&m, "POST", "/v1/users", None, 3).await,
        vec![503, 503, 201]
    );
    let counts = m.counts();
    assert_eq!(counts.keys.get("a"), Some(&4));
    assert_eq!(counts.keys.get("b"), Some(&4));
    assert_eq!(counts.routes[0].steps[0].count, 6);
    assert_eq!(counts.routes[0].steps[1].count, 5);
}

#[tokio::test]
async fn methods_and_paths_route_and_the_default_answers_the_rest() {
    let m = start(FAIL_TWICE_PER_KEY).await;
    let r = send("GET", &format!("{}/v1/users", m.url()), &[], "").await;
    assert_eq!(r.status, 404, "GET is not the POST route");
    let m = start(
        "[[routes]]\npath = \"/v1/*\"\nsteps = [{ status = 202 }]\n[default]\nstatus = 418\n",
    )
    .await;
    assert_eq!(statuses(&m, "DELETE", "/v1/a/b", None, 1).await, vec![202]);
    assert_eq!(statuses(&m, "GET", "/v2", None, 1).await, vec![418]);
    assert_eq!(m.counts().default, 1);
}

#[tokio::test]
async fn a_seeded_mix_is_reproducible_and_follows_its_weights() {
    let text = "[[routes]]\npath = \"*\"\nseed = 7\nmix = [{ weight = 3, status = 200 }, { weight = 1, status = 503 }]\n";
    let a = start(text).await;
    let b = start(text).await;
    let first = statuses(&a, "GET", "/", None, 200).await;
    let second = statuses(&b, "GET", "/", None, 200).await;
    assert_eq!(first, second, "same seed, same series");
    let ok = first.iter().filter(|s| **s == 200).count();
    assert!(
        (110..=190).contains(&ok),
        "about 3 in 4 succeed: {ok} of 200"
    );
    let other = start(&text.replace("seed = 7", "seed = 8")).await;
    assert_ne!(statuses(&other, "GET", "/", None, 200).await, first);
}

#[tokio::test]
async fn the_journal_records_every_request_with_keys_signatures_and_a_body_hash() {
    let m = start(FAIL_TWICE_PER_KEY).await;
    let url = format!("{}/v1/users?source=test", m.url());
    let headers = [
        ("idempotency-key", "msg-1"),
        ("webhook-id", "msg_1"),
        ("webhook-signature", "v1,abc="),
        ("authorization", "Bearer secret-token"),
        ("content-type", "application/json"),
    ];
    send("POST", &url, &headers, "hello").await;
    let r = send("GET", &format!("{}/__mock/journal", m.url()), &[], "").await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["total"], 1);
    let e = &j["entries"][0];
    assert_eq!(e["method"], "POST");
    assert_eq!(e["path"], "/v1/users?source=test");
    assert_eq!(e["route"], "POST /v1/users");
    assert_eq!(e["answer"], "respond 503");
    assert_eq!(e["idempotency_key"], "msg-1");
    assert_eq!(e["body_size"], 5);
    // sha256("hello")
    assert_eq!(
        e["body_sha256"],
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
    let header = |name: &str| {
        e["headers"]
            .as_array()
            .and_then(|hs| hs.iter().find(|h| h[0] == name))
            .map(|h| h[1].clone())
    };
    assert_eq!(header("webhook-signature"), Some(Value::from("v1,abc=")));
    assert_eq!(
        header("authorization"),
        Some(Value::from("[redacted]")),
        "secrets stay out of the journal"
    );
    assert!(!String::from_utf8_lossy(&r.body).contains("secret-token"));
}

#[tokio::test]
async fn the_journal_keeps_its_limit_and_resets_with_the_sequences() {
    let m = start("[journal]\nlimit = 3\n[[routes]]\npath = \"*\"\nsteps = [{ status = 503 }, { status = 200 }]\n").await;
    for i in 0..5 {
        send("GET", &format!("{}/{i}", m.url()), &[], "").await;
    }
    let j = send("GET", &format!("{}/__mock/journal", m.url()), &[], "")
        .await
        .json();
    assert_eq!(
        (j["total"].as_u64(), j["dropped"].as_u64()),
        (Some(5), Some(2))
    );
    let paths: Vec<_> = j["entries"]
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["path"].clone())
        .collect();
    assert_eq!(paths, vec!["/2", "/3", "/4"]);
    let j = send(
        "GET",
        &format!("{}/__mock/journal?limit=1", m.url()),
        &[],
        "",
    )
    .await
    .json();
    assert_eq!(j["entries"][0]["path"], "/4");

    let r = send("DELETE", &format!("{}/__mock/journal", m.url()), &[], "").await;
    assert_eq!(r.status, 204);
    assert_eq!(m.counts().total, 0);
    assert_eq!(
        statuses(&m, "GET", "/", None, 2).await,
        vec![503, 200],
        "the sequence starts again"
    );
    let counts = send("GET", &format!("{}/__mock/counts", m.url()), &[], "")
        .await
        .json();
    assert_eq!(counts["total"], 2);
    assert_eq!(counts["routes"][0]["steps"][0]["count"], 1);
}

#[tokio::test]
async fn the_scenario_can_be_read_and_replaced_at_run_time() {
    let m = start(FAIL_TWICE_PER_KEY).await;
    let base = m.url();
    let r = send("GET", &format!("{base}/__mock/scenario"), &[], "").await;
    assert_eq!(String::from_utf8_lossy(&r.body), FAIL_TWICE_PER_KEY);

    let new = "[[routes]]\npath = \"*\"\nsteps = [{ status = 299 }]\n";
    let r = send("PUT", &format!("{base}/__mock/scenario"), &[], new).await;
    assert_eq!((r.status, r.json()["routes"].as_u64()), (200, Some(1)));
    assert_eq!(
        statuses(&m, "POST", "/v1/users", Some("a"), 1).await,
        vec![299]
    );

    // A bad scenario is refused with the key at fault, and the current one stays.
    let r = send(
        "PUT",
        &format!("{base}/__mock/scenario"),
        &[],
        "[[routes]]\npath = \"*\"\nsteps = [{ fault = \"explode\" }]\n",
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    let detail = r.json()["detail"].as_str().unwrap_or_default().to_owned();
    assert!(detail.contains("routes[0].steps[0].fault"), "{detail}");
    assert_eq!(statuses(&m, "GET", "/", None, 1).await, vec![299]);
}

#[tokio::test]
async fn unknown_admin_routes_are_a_problem() {
    let m = start(FAIL_TWICE_PER_KEY).await;
    let r = send("GET", &format!("{}/__mock/nothing", m.url()), &[], "").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["status"], 404);
    let r = send(
        "GET",
        &format!("{}/__mock/journal?limit=x", m.url()),
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn chunked_bodies_and_expect_continue_are_read() {
    let m = start("[default]\nstatus = 200\n").await;
    let addr = m.addr();
    let raw = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.write_all(b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
            .expect("write");
        s.write_all(b"PUT /e HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
            .expect("write");
        let mut got = vec![0u8; 4096];
        let mut seen = String::new();
        while !seen.contains("100 Continue") {
            let n = s.read(&mut got).expect("read");
            assert!(n > 0, "closed early: {seen}");
            seen.push_str(&String::from_utf8_lossy(&got[..n]));
        }
        s.write_all(b"abc").expect("write");
        s.read_to_string(&mut seen).expect("read");
        seen
    })
    .await
    .expect("join");
    assert_eq!(raw.matches("HTTP/1.1 200 OK").count(), 2, "{raw}");
    let j = m.journal(None);
    assert_eq!(j.entries[0].body_size, 5);
    assert_eq!(j.entries[1].body_size, 3);
}

#[tokio::test]
async fn garbage_requests_get_a_400_and_are_not_journaled() {
    let m = start("[default]\nstatus = 200\n").await;
    let addr = m.addr();
    let raw = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.write_all(b"\x16\x03\x01 not http at all\r\n\r\n")
            .expect("write");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    })
    .await
    .expect("join");
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert_eq!(m.counts().total, 0);
}

fn load_error(text: &str) -> String {
    match Scenario::from_toml("s.toml", text, None) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => {
            let line = e.to_string();
            assert!(!line.contains('\n'), "{line}");
            line
        }
    }
}

#[test]
fn bad_scenarios_name_the_file_the_key_and_the_problem() {
    for (text, expected) in [
        ("[[routes]]\npath = \"*\"\nstep = []\n", "unknown field `step`"),
        ("[[routes]]\npath = \"*\"\nsteps = []\n", "s.toml: routes[0].steps: is empty"),
        ("[[routes]]\npath = \"x\"\nsteps = [{ status = 200 }]\n", "routes[0].path: `x` is not a path"),
        ("[[routes]]\npath = \"/__mock/x\"\nsteps = [{ status = 200 }]\n", "reserved"),
        ("[[routes]]\npath = \"*\"\nsteps = [{ status = 200, fault = \"reset\" }]\n", "routes[0].steps[0].status: a `reset` step sends no response"),
        ("[[routes]]\npath = \"*\"\nsteps = [{ delay = \"1s\" }]\n", "routes[0].steps[0]: a step needs `status`"),
        ("[[routes]]\npath = \"*\"\nsteps = [{ status = 200, delay = \"soon\" }]\n", "`soon` is not a duration"),
        ("[[routes]]\npath = \"*\"\nsteps = [{ status = 700 }]\n", "700 is not an HTTP status"),
        ("[[routes]]\npath = \"*\"\nmix = [{ status = 200 }]\n", "routes[0].mix[0].weight: every step of a mix needs a weight"),
        ("[[routes]]\npath = \"*\"\nsteps = [{ status = 200, weight = 2 }]\n", "only the steps of a mix have a weight"),
        ("[[routes]]\npath = \"*\"\nsteps = [{ preset = \"invalid_token\", retryable = true }]\n", "applies to the publish_error and process_error presets"),
        ("[[routes]]\npath = \"*\"\nsteps = [{ preset = \"teapot\" }]\n", "unknown variant `teapot`"),
        ("[[routes]]\npath = \"*\"\nsteps = [{ status = 200, body_file = \"/nonexistent/body.json\" }]\n", "routes[0].steps[0].body_file: cannot read /nonexistent/body.json"),
        ("[[routes]]\npath = \"*\"\nsteps = [{ status = 200, headers = { content-length = \"5\" } }]\n", "is set by the mock"),
        ("[[routes]]\npath = \"*\"\nsteps = [{ status = 200 }]\nmix = [{ weight = 1, status = 200 }]\n", "not both"),
    ] {
        let e = load_error(text);
        assert!(e.contains(expected), "{e}\n  should contain: {expected}");
        assert!(e.starts_with("s.toml"), "{e}");
    }
}

#[test]
fn the_example_scenario_loads_and_shows_every_step() {
    let s = Scenario::from_toml("example", EXAMPLE, None).unwrap_or_else(|e| panic!("{e}"));
    let labels: Vec<String> = s
        .routes
        .iter()
        .flat_map(|r| r.responder.steps().map(|st| st.label.clone()))
        .collect();
    for wanted in [
        "respond 401 (invalid_token)",
        "respond 400 (privo_validation_error)",
        "respond 429 (rate_limited)",
        "respond 500 (retry_later)",
        "respond 500 (publish_error)",
        "respond 500 (process_error)",
        "timeout",
        "reset",
        "close",
        "malformed",
        "down 2s",
    ] {
        assert!(
            labels.iter().any(|l| l == wanted),
            "{wanted} missing from {labels:?}"
        );
    }
    let delayed = s
        .routes
        .iter()
        .flat_map(|r| r.responder.steps())
        .any(|st| st.delay.is_some());
    let slow = s.routes.iter().flat_map(|r| r.responder.steps()).any(|st| {
        matches!(&st.action, redrive_mock::scenario::Action::Respond(r) if r.slow_body.is_some())
    });
    assert!(delayed && slow);
}

#[test]
fn the_platform_scenarios_in_examples_load() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/scenarios");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("examples/scenarios") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            names.push(
                path.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
        }
    }
    names.sort();
    assert_eq!(
        names,
        vec!["intentplatform", "operations1", "privo", "synchive"]
    );
}
