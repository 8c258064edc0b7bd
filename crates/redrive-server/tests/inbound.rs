//! Inbound sources over real HTTP: a platform's requests verified, made
//! durable, answered, and delivered byte for byte to a handler that records
//! what it receives (and can be down).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::IntoResponse;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use redrive_core::bodies::synchive::{ConnectorError, PUBLISH_ERROR_TYPE};
use redrive_server::{serve_with, Config, Listening, ServeError};
use redrive_store::SqliteStore;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

mod support;

use support::{python_reference, SECRET, TOKEN};

/// What the handler received.
#[derive(Clone, Debug)]
struct Received {
    method: String,
    uri: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// A handler on loopback that records every request and answers `status`.
#[derive(Clone)]
struct Handler {
    url: String,
    seen: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
}

type Shared = (Arc<Mutex<Vec<Received>>>, Arc<AtomicU16>);

async fn record(State((seen, status)): State<Shared>, req: Request) -> impl IntoResponse {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let code = status.load(Ordering::SeqCst);
    seen.lock().expect("lock").push(Received {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect(),
        body,
    });
    StatusCode::from_u16(code).unwrap_or(StatusCode::OK)
}

impl Handler {
    async fn start(status: u16) -> Handler {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(status));
        let app = axum::Router::new()
            .fallback(record)
            .with_state((Arc::clone(&seen), Arc::clone(&status)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Handler {
            url: format!("http://{addr}"),
            seen,
            status,
        }
    }

    fn seen(&self) -> Vec<Received> {
        self.seen.lock().expect("lock").clone()
    }

    /// The requests answered 2xx.
    fn delivered(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }
}

struct Rig {
    api: String,
    inbound: Option<String>,
    handler: Handler,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// A server with the destination `handler` and `sources` (TOML).
    async fn start(handler: Handler, server_extra: &str, sources: &str) -> Rig {
        let dir = tempfile::tempdir().expect("dir");
        let text = format!(
            r#"
[server]
listen = "127.0.0.1:0"
database = "sqlite://{}"
api_tokens = ["{TOKEN}"]
{server_extra}

[destinations.handler]
url = "{}"
policy = "fast"

[policies.fast]
extends = "standard"
max_attempts = 1000
deadline = "1h"
schedule = {{ exponential = {{ base = "20ms", factor = 2, cap = "100ms" }} }}

{sources}
"#,
            dir.path().join("redrive.db").display(),
            handler.url,
        );
        let config = Config::from_toml("inbound.toml", &text, &HashMap::new())
            .unwrap_or_else(|e| panic!("{e}"));
        let store = SqliteStore::open_url(&config.database).expect("store");
        let (tx, rx) = oneshot::channel::<Listening>();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_with(
            config,
            store,
            async move {
                let _ = stop_rx.await;
            },
            move |l| {
                let _ = tx.send(l);
            },
        ));
        let at = rx.await.expect("listening");
        Rig {
            api: format!("http://{}", at.api),
            inbound: at.inbound.map(|a| format!("http://{a}")),
            handler,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    /// Where `/in/*` is served.
    fn inbound_base(&self) -> &str {
        self.inbound.as_deref().unwrap_or(&self.api)
    }

    async fn api(&self, path: &str) -> Value {
        let (status, _, body) = send(
            &self.api,
            "GET",
            path,
            &[("authorization", &format!("Bearer {TOKEN}"))],
            Vec::new(),
        )
        .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).expect("json")
    }

    async fn messages(&self) -> Vec<Value> {
        self.api("/v1/messages?limit=1000").await["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits (bounded) until the handler has `n` requests.
    async fn wait_delivered(&self, n: usize) {
        for _ in 0..3000 {
            if self.handler.delivered() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "the handler saw {} requests, not {n}",
            self.handler.delivered()
        );
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.await.expect("join").expect("served");
    }
}

/// One request: status, headers, body.
async fn send(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, http::HeaderMap, Vec<u8>) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = client
        .request(req.body(Full::new(Bytes::from(body))).expect("request"))
        .await
        .expect("response");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    (status, headers, bytes.to_vec())
}

/// Python's `standardwebhooks` package signs and sends: five good events
/// (one of them three times, re-signed each time, as a platform retries),
/// then a wrong signature, an old timestamp and a missing header.
const SENDER: &str = r#"
import sys, json, datetime, urllib.request, urllib.error
try:
    from standardwebhooks.webhooks import Webhook
except ImportError:
    print("MISSING"); sys.exit(0)
url, secret = sys.argv[1], sys.argv[2]
good = Webhook(secret)
other = Webhook("whsec_" + "b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldC0xMjM0NQ==")
now = datetime.datetime.now(tz=datetime.timezone.utc)

def post(path, msg_id, payload, signer=good, at=None, drop=None):
    headers = {
        "content-type": "application/json",
        "x-trace": "trace-" + msg_id,
        "webhook-id": msg_id,
        "webhook-timestamp": str(int((at or now).timestamp())),
        "webhook-signature": signer.sign(msg_id, at or now, payload),
    }
    if drop:
        del headers[drop]
    req = urllib.request.Request(url + path, data=payload.encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req) as r:
            return [r.status, json.loads(r.read())]
    except urllib.error.HTTPError as e:
        return [e.code, json.loads(e.read())]

out = {"good": [], "again": [], "bad": {}}
for i in range(5):
    payload = json.dumps({"type": "consent.granted", "n": i, "name": "Zoë"})
    out["good"].append([payload] + post("/in/privo/events?tenant=42", "msg_%d" % i, payload))
payload0 = out["good"][0][0]
for k in range(2):
    out["again"].append(post("/in/privo/events?tenant=42", "msg_0", payload0))
out["bad"]["wrong_signature"] = post("/in/privo/events", "msg_bad1", payload0, signer=other)
out["bad"]["old_timestamp"] = post("/in/privo/events", "msg_bad2", payload0, at=now - datetime.timedelta(minutes=10))
out["bad"]["missing_header"] = post("/in/privo/events", "msg_bad3", payload0, drop="webhook-signature")
print(json.dumps(out))
"#;

#[tokio::test]
async fn the_standardwebhooks_reference_package_sends_and_the_handler_gets_every_byte() {
    let rig = Rig::start(
        Handler::start(200).await,
        "",
        &format!("[sources.privo]\ndestination = \"handler\"\nverify = {{ standard_webhooks = \"{SECRET}\" }}\n"),
    )
    .await;
    // Off the runtime: the server answering the sender runs on it.
    let base = rig.inbound_base().to_owned();
    let sent = tokio::task::spawn_blocking(move || python_reference(SENDER, &[&base, SECRET]))
        .await
        .expect("join");
    let Some(text) = sent else {
        return rig.stop().await;
    };
    let out: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    let good = out["good"].as_array().expect("good");
    let mut ids = Vec::new();
    for g in good {
        assert_eq!(g[1], 202, "{g}");
        ids.push(g[2]["id"].as_str().expect("id").to_owned());
    }
    // The same webhook-id, re-signed: answered as the first time.
    for a in out["again"].as_array().expect("again") {
        assert_eq!(a[0], 202, "{a}");
        assert_eq!(a[1]["id"].as_str(), Some(ids[0].as_str()), "{a}");
    }
    for (case, r) in out["bad"].as_object().expect("bad") {
        assert_eq!(r[0], 401, "{case}: {r}");
        assert_eq!(r[1]["status"], 401, "{case}: {r}");
    }
    let detail = |case: &str| {
        out["bad"][case][1]["detail"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    assert!(detail("wrong_signature").contains("no `webhook-signature` entry matches"));
    let old = detail("old_timestamp");
    assert!(
        old.contains("s from this server's clock; at most 300 s"),
        "{old}"
    );
    assert!(detail("missing_header").contains("`webhook-signature` header is missing"));

    // Five messages stored, nothing for the refused requests or the resends.
    let messages = rig.messages().await;
    assert_eq!(messages.len(), 5, "{messages:?}");
    assert!(messages.iter().all(|m| m["source"] == "privo"));
    rig.wait_delivered(5).await;
    for _ in 0..1000 {
        if rig
            .messages()
            .await
            .iter()
            .all(|m| m["state"] == "delivered")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(rig
        .messages()
        .await
        .iter()
        .all(|m| m["state"] == "delivered"));
    // Every message delivered: the handler's count is final.
    let seen = rig.handler.seen();
    assert_eq!(seen.len(), 5, "each event delivered once: {seen:?}");
    for g in good {
        let payload = g[0].as_str().expect("payload");
        let r = seen
            .iter()
            .find(|r| r.body == payload.as_bytes())
            .unwrap_or_else(|| panic!("no delivery with body {payload}"));
        assert_eq!(r.method, "POST");
        assert_eq!(r.uri, "/events?tenant=42");
        let n = payload
            .split("\"n\": ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .expect("n");
        assert_eq!(
            r.header("x-trace"),
            Some(format!("trace-msg_{n}").as_bytes())
        );
        assert_eq!(
            r.header("content-type"),
            Some(b"application/json".as_slice())
        );
        assert_eq!(r.header("webhook-id"), Some(format!("msg_{n}").as_bytes()));
    }
    // The sources' own listing and the metrics.
    let listed = rig.api("/v1/messages?source=privo&limit=10").await;
    assert_eq!(listed["messages"].as_array().map(Vec::len), Some(5));
    let none = rig.api("/v1/messages?source=other").await;
    assert_eq!(none["messages"].as_array().map(Vec::len), Some(0));
    let (_, _, metrics) = send(&rig.api, "GET", "/metrics", &[], Vec::new()).await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("redrive_inbound_accepted_total{source=\"privo\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("redrive_inbound_deduped_total{source=\"privo\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("redrive_inbound_refused_total{source=\"privo\",reason=\"unverified\"} 3"),
        "{metrics}"
    );
    rig.stop().await;
}

#[tokio::test]
async fn every_event_accepted_while_the_handler_is_down_is_delivered_once_it_is_up() {
    let handler = Handler::start(503).await;
    let rig = Rig::start(
        handler.clone(),
        "",
        "[sources.hooks]\ndestination = \"handler\"\nverify = { bearer = \"source-token\" }\ndedupe = { json = \"/id\" }\n",
    )
    .await;
    const EVENTS: usize = 40;
    for i in 0..EVENTS {
        let body = format!(r#"{{"id":"evt-{i}","n":{i}}}"#).into_bytes();
        let (status, _, answer) = send(
            rig.inbound_base(),
            "PUT",
            &format!("/in/hooks/things/{i}"),
            &[
                ("authorization", "Bearer source-token"),
                ("x-n", &i.to_string()),
            ],
            body,
        )
        .await;
        assert_eq!(status, 202, "{}", String::from_utf8_lossy(&answer));
    }
    // Down for the whole sending, and then some: attempts fail (until the
    // circuit opens and holds the rest back); nothing is given up on.
    for _ in 0..3000 {
        if handler.seen().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(handler.seen().len() >= 3, "attempts were made while down");
    let messages = rig.messages().await;
    assert_eq!(messages.len(), EVENTS);
    assert!(
        messages.iter().all(|m| m["state"] == "pending"),
        "none given up on"
    );
    // Up: every accepted event arrives, with the source's token left behind.
    handler.seen.lock().expect("lock").clear();
    handler.status.store(200, Ordering::SeqCst);
    let mut delivered: Vec<Received> = Vec::new();
    // The circuit's next probe is at most its cool-down away.
    for _ in 0..12_000 {
        delivered = handler
            .seen()
            .into_iter()
            .filter(|r| r.method == "PUT")
            .collect();
        let uris: std::collections::HashSet<&str> =
            delivered.iter().map(|r| r.uri.as_str()).collect();
        if uris.len() >= EVENTS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in 0..EVENTS {
        let r = delivered
            .iter()
            .find(|r| r.uri == format!("/things/{i}"))
            .unwrap_or_else(|| panic!("event {i} never delivered"));
        assert_eq!(
            r.body,
            format!(r#"{{"id":"evt-{i}","n":{i}}}"#).into_bytes()
        );
        assert_eq!(r.header("x-n"), Some(i.to_string().as_bytes()));
        assert_eq!(
            r.header("authorization"),
            None,
            "the source's credentials stay behind"
        );
    }
    rig.stop().await;
}

#[tokio::test]
async fn synchive_sources_answer_errors_as_seed_002_says() {
    let rig = Rig::start(
        Handler::start(200).await,
        "",
        "[sources.synchive]\npath = \"/in/synchive/v1/data\"\ndestination = \"handler\"\nverify = { basic = { user = \"synchive\", password = \"pw\" } }\nrespond = { synchive = \"publish\" }\nmax_body_bytes = 64\n",
    )
    .await;
    let base = rig.inbound_base().to_owned();
    // user:pw, not synchive:pw.
    let (status, headers, body) = send(
        &base,
        "PUT",
        "/in/synchive/v1/data",
        &[("authorization", "Basic dXNlcjpwdw==")],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(status, 500);
    assert_eq!(headers["content-type"], "application/problem+json");
    let e: ConnectorError = serde_json::from_slice(&body).expect("a seed 002 error body");
    assert_eq!(e.problem_type, PUBLISH_ERROR_TYPE);
    assert_eq!(e.retryable, Some(false));
    assert_eq!(e.log_code.as_deref(), Some("RD401E"));
    assert!(e.detail.contains("user or password"), "{}", e.detail);
    // Too large: not retryable either.
    let auth = ("authorization", "Basic c3luY2hpdmU6cHc=");
    let (status, _, body) = send(
        &base,
        "PUT",
        "/in/synchive/v1/data",
        &[auth],
        vec![b'x'; 65],
    )
    .await;
    assert_eq!(status, 500);
    let e: ConnectorError = serde_json::from_slice(&body).expect("a seed 002 error body");
    assert_eq!(
        (e.retryable, e.log_code.as_deref()),
        (Some(false), Some("RD413E"))
    );
    // A good push.
    let (status, _, body) = send(
        &base,
        "PUT",
        "/in/synchive/v1/data",
        &[auth],
        br#"{"entity":1}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    rig.wait_delivered(1).await;
    // The source's own path is the destination's URL itself.
    assert_eq!(rig.handler.seen()[0].uri, "/");
    rig.stop().await;
}

#[tokio::test]
async fn inbound_listen_serves_sources_there_and_nothing_of_the_api() {
    let rig = Rig::start(
        Handler::start(200).await,
        "inbound_listen = \"127.0.0.1:0\"",
        "[sources.open]\ndestination = \"handler\"\nverify = \"none\"\n",
    )
    .await;
    let inbound = rig.inbound.clone().expect("an inbound listener");
    let auth = format!("Bearer {TOKEN}");
    // The API is not there, even with its token.
    let (status, _, _) = send(
        &inbound,
        "GET",
        "/v1/messages",
        &[("authorization", &auth)],
        Vec::new(),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _, _) = send(&inbound, "GET", "/", &[], Vec::new()).await;
    assert_eq!(status, 404);
    let (status, _, body) = send(&inbound, "GET", "/healthz", &[], Vec::new()).await;
    assert_eq!((status, body), (200, b"ok\n".to_vec()));
    // Sources are there, and not on the API's listener.
    let (status, _, _) = send(&inbound, "POST", "/in/open", &[], b"one".to_vec()).await;
    assert_eq!(status, 202);
    let (status, _, _) = send(&rig.api, "POST", "/in/open", &[], b"two".to_vec()).await;
    assert_eq!(status, 404);
    let (status, _, _) = send(&inbound, "POST", "/in/nope", &[], b"three".to_vec()).await;
    assert_eq!(status, 404);
    rig.wait_delivered(1).await;
    assert_eq!(rig.handler.seen()[0].body, b"one");
    assert_eq!(rig.messages().await.len(), 1);
    rig.stop().await;
}

/// Writes `head` and then `body` on a raw connection, and reads the answer's
/// status line (None if the server closed without one).
async fn raw(addr: &str, head: &str, body: &[u8], then_wait: bool) -> Option<u16> {
    let mut s = tokio::net::TcpStream::connect(addr.trim_start_matches("http://"))
        .await
        .expect("connect");
    s.write_all(head.as_bytes()).await.expect("head");
    s.write_all(body).await.expect("body");
    if !then_wait {
        // The sender is gone before the length it promised.
        let _ = s.shutdown().await;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    text.split(' ').nth(1)?.parse().ok()
}

#[tokio::test]
async fn bad_input_is_refused_and_stores_nothing_and_odd_bytes_are_kept() {
    let rig = Rig::start(
        Handler::start(200).await,
        "",
        "[sources.raw]\ndestination = \"handler\"\nverify = \"none\"\nmax_body_bytes = 1024\nread_timeout = \"1s\"\n",
    )
    .await;
    let base = rig.inbound_base().to_owned();
    // Over the limit, declared or streamed.
    let (status, _, body) = send(&base, "POST", "/in/raw", &[], vec![b'a'; 1025]).await;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    let chunked = format!(
        "POST /in/raw HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        2000,
        "b".repeat(2000)
    );
    assert_eq!(raw(&base, &chunked, b"", true).await, Some(413));
    // A Content-Length that promises more than comes.
    let lying = "POST /in/raw HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n";
    let status = raw(&base, lying, b"only ten b", false).await;
    assert!(matches!(status, Some(400) | None), "{status:?}");
    // A slow sender: half the body, then nothing.
    let slow =
        "POST /in/raw HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n";
    assert_eq!(raw(&base, slow, b"12345", true).await, Some(408));
    assert_eq!(rig.messages().await.len(), 0, "nothing stored");

    // Bytes that are not UTF-8, and a header sent twice: kept exactly.
    let bytes: Vec<u8> = vec![0xff, 0xfe, 0x00, b'{', 0x80, b'}', 0xc3];
    let head = "POST /in/raw/bin?q=%C3%A4 HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nX-Dup: 1\r\nX-Dup: 2\r\nContent-Length: 7\r\nConnection: close\r\n\r\n";
    assert_eq!(raw(&base, head, &bytes, true).await, Some(202));
    rig.wait_delivered(1).await;
    let r = &rig.handler.seen()[0];
    assert_eq!(r.body, bytes);
    assert_eq!(r.uri, "/bin?q=%C3%A4");
    let dups: Vec<&[u8]> = r
        .headers
        .iter()
        .filter(|(k, _)| k == "x-dup")
        .map(|(_, v)| v.as_slice())
        .collect();
    assert_eq!(dups, vec![b"1".as_slice(), b"2".as_slice()]);
    assert_eq!(rig.messages().await.len(), 1);
    rig.stop().await;
}

#[test]
fn a_source_naming_a_missing_destination_is_refused_in_one_line() {
    let text = "[destinations.a]\nurl = \"http://127.0.0.1:9/\"\n[sources.privo]\ndestination = \"my-handler\"\nverify = \"none\"\n";
    let e = Config::from_toml("redrive.toml", text, &HashMap::new())
        .expect_err("refused")
        .to_string();
    assert!(!e.trim().contains('\n'), "one line: {e}");
    assert!(
        e.contains("sources.privo.destination")
            && e.contains("`my-handler` is not a [destinations.*] table; configured: a"),
        "{e}"
    );
}
