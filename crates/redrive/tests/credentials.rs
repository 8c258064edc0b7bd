//! Destination credentials that renew themselves (seed 001's expiring
//! tokens) and indeterminate outcomes reconciled (seed 000), end to end: the
//! real server against `redrive mock` as token endpoint and receiver.
//! The PostgreSQL case needs `REDRIVE_TEST_DATABASE_URL` (skipped without
//! it; a failure under `CI=true`).

mod support;

use std::path::Path;
use std::time::Duration;

use redrive_mock::{MockServer, Scenario};
use redrive_store::testdb::TestDatabase;
use serde_json::Value;
use support::{request, start, start_logged, Served, TOKEN};

const SECRET: &str = "client-secret-7f3a9c1e5b";

/// A PRIVO-like receiver: a token endpoint whose tokens are refused after
/// `expires_after` requests, and an API that demands a valid token.
fn privo(token_steps: &str, expires_after: u64) -> String {
    format!(
        "[journal]\nlimit = 1000000\n\
         [oauth]\nclient_id = \"partner-1\"\nclient_secret = \"{SECRET}\"\nexpires_after = {expires_after}\n\
         [[routes]]\nname = \"token\"\nmethod = \"POST\"\npath = \"/oauth/token\"\nsteps = [{token_steps}]\n\
         [[routes]]\nname = \"api\"\npath = \"/v1/*\"\nrequire_token = true\nsteps = [{{ status = 201 }}]\n"
    )
}

async fn mock(scenario: &str) -> MockServer {
    MockServer::start(
        Scenario::from_toml("privo", scenario, None).expect("scenario"),
        "127.0.0.1:0".parse().expect("addr"),
        None,
    )
    .await
    .expect("mock")
}

fn write_config(dir: &Path, database: &str, mock: &str, secret: &str, extra: &str) {
    std::fs::write(
        dir.join("redrive.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"{database}\"\napi_tokens = [\"{TOKEN}\"]\npool_size = 8\n{extra}\n\
             [destinations.privo]\nurl = \"{mock}\"\npolicy = \"privo\"\nmax_in_flight = 16\n\
             auth = {{ oauth2 = {{ token_url = \"{mock}/oauth/token\", client_id = \"partner-1\", client_secret = \"{secret}\", scope = \"openid\" }} }}\n"
        ),
    )
    .expect("config");
}

fn enqueue(addr: &str, destination: &str, path: &str, key: &str, body: &str) {
    let body = serde_json::json!({
        "destination": destination,
        "path": path,
        "body": serde_json::from_str::<Value>(body).expect("body"),
    })
    .to_string();
    let (status, answer) =
        request(addr, "POST", "/v1/messages", Some(key), &body).expect("enqueue");
    assert_eq!(status, 202, "{answer}");
}

fn get(addr: &str, path: &str) -> Value {
    let (status, body) = request(addr, "GET", path, None, "").expect("request");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("json")
}

/// Counts the messages in `state`, page by page.
fn count(addr: &str, state: &str) -> usize {
    let mut n = 0;
    let mut cursor = String::new();
    loop {
        let v = get(
            addr,
            &format!("/v1/messages?state={state}&limit=1000{cursor}"),
        );
        n += v["messages"].as_array().map_or(0, Vec::len);
        match v["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return n,
        }
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..1800 {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not after three minutes");
}

/// Every byte of the files in `dir` but the configuration (the database,
/// its WAL, the log).
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        if entry.path().is_file() && entry.file_name() != "redrive.toml" {
            out.extend(std::fs::read(entry.path()).unwrap_or_default());
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A whole token the mock issued (`mock-token-N-` and 16 hex digits).
fn holds_a_token(bytes: &[u8]) -> bool {
    let prefix = b"mock-token-";
    bytes.windows(prefix.len()).enumerate().any(|(i, w)| {
        if w != prefix {
            return false;
        }
        let rest = &bytes[i + prefix.len()..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let hex = rest
            .get(digits + 1..digits + 17)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
        digits > 0 && rest.get(digits) == Some(&b'-') && hex
    })
}

/// Starts the server, enqueues `n` messages to `privo`, and waits until its
/// credentials are failing: the server and their detail.
fn start_failing(dir: &Path, n: usize) -> (Served, String) {
    let node = start(dir);
    for i in 0..n {
        let path = format!("/v1/users/{i}");
        enqueue(&node.addr, "privo", &path, &format!("k-{i}"), "{}");
    }
    let credentials =
        || get(&node.addr, "/v1/destinations")["destinations"][0]["credentials"].clone();
    wait_until("credentials failing", || {
        credentials()["state"] == "failing"
    });
    let detail = credentials()["detail"].as_str().unwrap_or("").to_owned();
    (node, detail)
}

fn deliver_with_expiring_tokens(nodes: &[Served], n: usize) {
    for i in 0..n {
        let addr = &nodes[i % nodes.len()].addr;
        enqueue(
            addr,
            "privo",
            &format!("/v1/users/{i}"),
            &format!("user-{i}"),
            &format!(r#"{{"email":"user{i}@example.com"}}"#),
        );
    }
    wait_until("all delivered", || count(&nodes[0].addr, "pending") == 0);
    assert_eq!(count(&nodes[0].addr, "delivered"), n);
    assert_eq!(count(&nodes[0].addr, "parked"), 0, "no message parked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_with_tokens_that_expire_every_50_requests() {
    const N: usize = 10_000;
    let mock = mock(&privo("{ issue_token = true }", 50)).await;
    let dir = tempfile::tempdir().expect("dir");
    write_config(dir.path(), "sqlite://redrive.db", &mock.url(), SECRET, "");
    let path = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let node = start_logged(&path);
        deliver_with_expiring_tokens(std::slice::from_ref(&node), N);
        // A message's timeline shows renewals in words.
        let v = get(&node.addr, "/v1/messages?state=delivered&limit=1000");
        let ids: Vec<String> = v["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .filter(|m| m["total_attempts"].as_u64() > Some(1))
            .filter_map(|m| m["id"].as_str().map(str::to_owned))
            .collect();
        let renewed = ids.first().expect("some message met an expired token");
        let m = get(&node.addr, &format!("/v1/messages/{renewed}"));
        let first = &m["attempts"][0];
        assert_eq!(first["reason"], "credentials_renewed", "{m}");
        assert_eq!(first["status"], 401);
        assert!(
            first["detail"]
                .as_str()
                .unwrap_or("")
                .contains("spending no attempt"),
            "{m}"
        );
        assert_eq!(
            m["attempts_in_cycle"], 1,
            "the renewal spent no attempt: {m}"
        );
        drop(node);
    })
    .await
    .expect("join");
    let counts = mock.counts();
    let tokens = counts.oauth.issued;
    assert!(
        (200..=210).contains(&tokens),
        "about one token per 50 requests, never one per message: {tokens}"
    );
    let bytes = all_bytes(dir.path());
    assert!(
        !contains(&bytes, SECRET.as_bytes()),
        "the client secret is stored or logged"
    );
    assert!(!holds_a_token(&bytes), "a token is stored or logged");
    // Not even the piece of it the receiver echoes (seed 001's body).
    assert!(
        !contains(&bytes, b"mock-token-"),
        "a piece of a token is stored or logged"
    );
    assert!(
        contains(&bytes, b"credentials_renewed"),
        "the search reads the records"
    );
    println!(
        "expiring tokens (SQLite): {N} delivered, {tokens} tokens, {} requests at the receiver",
        counts.total
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgres_nodes_renew_their_own_tokens() {
    let Some(db) = TestDatabase::create("expiring tokens").await else {
        return;
    };
    const N: usize = 10_000;
    let mock = mock(&privo("{ issue_token = true }", 50)).await;
    let dir = tempfile::tempdir().expect("dir");
    write_config(dir.path(), &db.url, &mock.url(), SECRET, "");
    let path = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let nodes = [start_logged(&path), start(&path)];
        deliver_with_expiring_tokens(&nodes, N);
    })
    .await
    .expect("join");
    let tokens = mock.counts().oauth.issued;
    assert!(
        (200..=220).contains(&tokens),
        "about one token per 50 requests over two nodes: {tokens}"
    );
    let log = std::fs::read(dir.path().join("redrive.log")).expect("log");
    assert!(!contains(&log, SECRET.as_bytes()) && !holds_a_token(&log));
    println!("expiring tokens (PostgreSQL, 2 nodes): {N} delivered, {tokens} tokens");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_token_url_holds_messages_without_spending_attempts() {
    let mock = mock(&privo(
        "{ status = 500, times = 3 }, { issue_token = true }",
        1000,
    ))
    .await;
    let dir = tempfile::tempdir().expect("dir");
    write_config(dir.path(), "sqlite://redrive.db", &mock.url(), SECRET, "");
    let path = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let (node, detail) = start_failing(&path, 20);
        // Failing while the token URL answers 500.
        assert_eq!(detail, "the token endpoint answered 500");
        assert_eq!(count(&node.addr, "parked"), 0);
        // Resumes by itself.
        wait_until("all delivered", || count(&node.addr, "delivered") == 20);
        let v = get(&node.addr, "/v1/messages?state=delivered&limit=100");
        for m in v["messages"].as_array().expect("messages") {
            assert_eq!(
                m["total_attempts"], 1,
                "no attempt was spent while held: {m}"
            );
        }
        assert_eq!(
            get(&node.addr, "/v1/destinations")["destinations"][0]["credentials"]["state"],
            "ok"
        );
    })
    .await
    .expect("join");
    assert_eq!(mock.counts().oauth.issued, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_client_is_failing_with_its_detail_and_one_alert() {
    let mock = mock(&privo("{ issue_token = true }", 1000)).await;
    let alerts = std::sync::Arc::new(self::mock("[default]\nstatus = 200\n").await);
    let dir = tempfile::tempdir().expect("dir");
    write_config(
        dir.path(),
        "sqlite://redrive.db",
        &mock.url(),
        "the-wrong-secret-123",
        &format!("[alerts]\nwebhook = \"{}/alerts\"\n", alerts.url()),
    );
    let path = dir.path().to_path_buf();
    let watched = std::sync::Arc::clone(&alerts);
    tokio::task::spawn_blocking(move || {
        let (node, detail) = start_failing(&path, 5);
        assert!(detail.contains("invalid_client"), "{detail}");
        // Held: pending, unattempted.
        let v = get(&node.addr, "/v1/messages?state=pending&limit=100");
        let pending = v["messages"].as_array().expect("messages");
        assert_eq!(pending.len(), 5);
        assert!(pending.iter().all(|m| m["total_attempts"] == 0), "{v}");
        wait_until("the alert", || watched.counts().total >= 1);
        // The token URL is tried again (at 1 s, 2 s, 4 s): no more alerts.
        std::thread::sleep(Duration::from_secs(4));
        assert_eq!(count(&node.addr, "parked"), 0);
    })
    .await
    .expect("join");
    assert_eq!(
        alerts.counts().total,
        1,
        "one alert (no message is parked, so it is the credentials'), not one per try"
    );
    assert!(
        mock.counts().oauth.refused_clients >= 3,
        "the token URL is tried again"
    );
}

/// Reconciliation: a POST that took effect and answered 500, one that did
/// not, one whose probe has no value to ask with, and one whose probe fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indeterminate_posts_are_reconciled_by_a_probe() {
    let mock = mock(
        "[[routes]]\nmethod = \"POST\"\npath = \"/v1/users/applied\"\nremember = \"/email\"\nsteps = [{ status = 500, applies = true }]\n\
         [[routes]]\nmethod = \"POST\"\npath = \"/v1/users/lost\"\nremember = \"/email\"\nsteps = [{ status = 500, times = 1 }, { status = 201 }]\n\
         [[routes]]\nmethod = \"POST\"\npath = \"/v1/users/*\"\nsteps = [{ status = 500 }]\n\
         [[routes]]\nmethod = \"GET\"\npath = \"/v1/users\"\nsteps = [{ lookup = \"email\" }]\n\
         [[routes]]\nmethod = \"GET\"\npath = \"/v1/broken\"\nsteps = [{ status = 503 }]\n",
    )
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let url = mock.url();
    std::fs::write(
        dir.path().join("redrive.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\napi_tokens = [\"{TOKEN}\"]\n\
             [destinations.privo]\nurl = \"{url}\"\npolicy = \"privo\"\n\
             [destinations.privo.reconcile]\nmethod = \"GET\"\npath = \"/v1/users?email={{body.email}}\"\napplied = [\"2xx\"]\nnot_applied = [404]\nafter = \"1s\"\n\
             [destinations.broken]\nurl = \"{url}\"\npolicy = \"privo\"\n\
             [destinations.broken.reconcile]\npath = \"/v1/broken?email={{body.email}}\"\nafter = \"1s\"\n"
        ),
    )
    .expect("config");
    let path = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let node = start(&path);
        let a = &node.addr;
        enqueue(
            a,
            "privo",
            "/v1/users/applied",
            "applied",
            r#"{"email":"ann@example.com"}"#,
        );
        enqueue(
            a,
            "privo",
            "/v1/users/lost",
            "lost",
            r#"{"email":"bob@example.com"}"#,
        );
        enqueue(a, "privo", "/v1/users/nomail", "nomail", r#"{"name":"cy"}"#);
        enqueue(
            a,
            "broken",
            "/v1/users/x",
            "broken",
            r#"{"email":"dee@example.com"}"#,
        );
        wait_until("all settled", || count(a, "pending") == 0);
        let by_key = |key: &str| -> Value {
            let v = get(a, "/v1/messages?limit=100");
            let id = v["messages"]
                .as_array()
                .expect("messages")
                .iter()
                .find(|m| m["idempotency_key"] == key)
                .and_then(|m| m["id"].as_str())
                .expect("message")
                .to_owned();
            get(a, &format!("/v1/messages/{id}"))
        };
        let applied = by_key("applied");
        assert_eq!(applied["state"], "delivered", "{applied}");
        assert_eq!(applied["attempts"][0]["reconciled"], "applied", "{applied}");
        assert!(applied["attempts"][0]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("reconciliation probe GET /v1/users?email=ann%40example.com answered 200"));
        let lost = by_key("lost");
        assert_eq!(lost["state"], "delivered", "{lost}");
        assert_eq!(
            lost["attempts"][0]["reason"], "reconciled_not_applied",
            "{lost}"
        );
        assert_eq!(lost["attempts"][0]["reconciled"], "not_applied");
        assert_eq!(lost["attempts"][1]["status"], 201);
        let nomail = by_key("nomail");
        assert_eq!(nomail["state"], "parked");
        assert_eq!(nomail["park_reason"], "indeterminate");
        assert!(
            nomail["attempts"][0]["detail"]
                .as_str()
                .unwrap_or("")
                .contains("the probe's `{body.email}` has no value in this message"),
            "{nomail}"
        );
        let broken = by_key("broken");
        assert_eq!(broken["park_reason"], "indeterminate");
        assert!(
            broken["attempts"][0]["detail"]
                .as_str()
                .unwrap_or("")
                .contains("the probe answered 503"),
            "{broken}"
        );
    })
    .await
    .expect("join");
}

/// `redrive send` takes the same credentials: OAuth 2.0 flags (the secret
/// from the environment), or a destination of a configuration with its
/// `auth` and `reconcile`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_uses_renewable_tokens_and_the_probe() {
    let mock = mock(&format!(
        "{}[[routes]]\nmethod = \"POST\"\npath = \"/v2/users\"\nremember = \"/email\"\nsteps = [{{ status = 500, applies = true }}]\n\
         [[routes]]\nmethod = \"GET\"\npath = \"/v2/users\"\nsteps = [{{ lookup = \"email\" }}]\n",
        privo("{ issue_token = true }", 1)
    ))
    .await;
    let url = mock.url();
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("send.toml"),
        format!(
            "[destinations.privo]\nurl = \"{url}\"\npolicy = \"privo\"\n\
             auth = {{ oauth2 = {{ token_url = \"{url}/oauth/token\", client_id = \"partner-1\", client_secret = \"${{PRIVO_SECRET}}\" }} }}\n\
             [destinations.privo.reconcile]\npath = \"/v2/users?email={{body.email}}\"\nafter = \"100ms\"\n"
        ),
    )
    .expect("config");
    let path = dir.path().to_path_buf();
    let (flags, config) = tokio::task::spawn_blocking(move || {
        let send = |args: &[&str]| {
            std::process::Command::new(env!("CARGO_BIN_EXE_redrive"))
                .arg("send")
                .args(args)
                .current_dir(&path)
                .env("PRIVO_SECRET", SECRET)
                .output()
                .expect("run")
        };
        let token_url = format!("{url}/oauth/token");
        let flags = send(&[
            &format!("{url}/v1/users/1"),
            "-d",
            "{}",
            "--profile",
            "privo",
            "--oauth2-token-url",
            &token_url,
            "--oauth2-client-id",
            "partner-1",
            "--oauth2-client-secret",
            "env:PRIVO_SECRET",
        ]);
        let config = send(&[
            "/v2/users",
            "-d",
            r#"{"email":"eve@example.com"}"#,
            "--config",
            "send.toml",
            "--destination",
            "privo",
        ]);
        (flags, config)
    })
    .await
    .expect("join");
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(flags.status.code(), Some(0), "{}", text(&flags));
    assert!(text(&flags).contains("attempt 1 at +") && text(&flags).contains("HTTP 201"));
    assert_eq!(config.status.code(), Some(0), "{}", text(&config));
    assert!(
        text(&config)
            .contains("reconciliation probe GET /v2/users?email=eve%40example.com answered 200"),
        "{}",
        text(&config)
    );
    assert!(!text(&flags).contains(SECRET) && !text(&config).contains(SECRET));
    assert_eq!(mock.counts().oauth.issued, 2, "one token per send");
}
