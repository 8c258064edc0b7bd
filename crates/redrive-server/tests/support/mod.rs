//! A real `redrive serve` on loopback with a SQLite file and `redrive mock`
//! as its destinations, and a plain HTTP client to talk to it.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use redrive_mock::{MockServer, Scenario};
use redrive_server::{serve, Config, ServeError};
use redrive_store::SqliteStore;
use serde_json::Value;
use tokio::sync::oneshot;

pub const TOKEN: &str = "test-token-0123456789abcdef";
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub struct Server {
    pub base: String,
    pub mock: MockServer,
    stop: Option<oneshot::Sender<()>>,
    task: Option<Serving>,
    text: String,
    _dir: tempfile::TempDir,
}

type Serving = tokio::task::JoinHandle<Result<(), ServeError>>;

impl Server {
    pub async fn start(scenario: &str) -> Server {
        Server::start_with(scenario, "").await
    }

    pub async fn start_with(scenario: &str, extra: &str) -> Server {
        Server::start_with_tokens(scenario, r#"["${TEST_TOKEN}"]"#, extra).await
    }

    /// With `api_tokens = TOKENS` (TOML; `${TEST_TOKEN}` is [`TOKEN`]).
    pub async fn start_with_tokens(scenario: &str, tokens: &str, extra: &str) -> Server {
        let mock = MockServer::start(
            Scenario::from_toml("test", scenario, None).expect("scenario"),
            "127.0.0.1:0".parse().expect("addr"),
            None,
        )
        .await
        .expect("mock");
        let dir = tempfile::tempdir().expect("dir");
        let db = dir.path().join("redrive.db");
        let text = format!(
            r#"
[server]
listen = "127.0.0.1:0"
database = "sqlite://{}"
api_tokens = {tokens}
max_body_bytes = 4096

[destinations.crm]
url = "{}"
policy = "standard"
signing_secret = "{SECRET}"

[destinations.erp]
url = "{}"
policy = "intentplatform"
{extra}
"#,
            db.display(),
            mock.url(),
            mock.url()
        );
        let (base, stop, task) = Server::serve(&text).await;
        Server {
            base,
            mock,
            stop: Some(stop),
            task: Some(task),
            text,
            _dir: dir,
        }
    }

    /// Stops the server and starts it again on the same database.
    pub async fn restart(mut self) -> Server {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("join").expect("served");
        }
        let (base, stop, task) = Server::serve(&self.text).await;
        self.base = base;
        self.stop = Some(stop);
        self.task = Some(task);
        self
    }

    async fn serve(text: &str) -> (String, oneshot::Sender<()>, Serving) {
        let env: HashMap<String, String> = [("TEST_TOKEN".to_owned(), TOKEN.to_owned())].into();
        let config = Config::from_toml("test.toml", text, &env).unwrap_or_else(|e| panic!("{e}"));
        let store = SqliteStore::open_url(&config.database).expect("store");
        let (addr_tx, addr_rx) = oneshot::channel::<SocketAddr>();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            config,
            store,
            async move {
                let _ = stop_rx.await;
            },
            move |addr| {
                let _ = addr_tx.send(addr);
            },
        ));
        let addr = addr_rx.await.expect("listening");
        (format!("http://{addr}"), stop, task)
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, http::HeaderMap, Value) {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = client
            .request(
                req.body(Full::new(Bytes::from(body.to_owned())))
                    .expect("request"),
            )
            .await
            .expect("response");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.expect("body").to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, headers, value)
    }

    pub async fn api(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let (s, _, v) = self.call(method, path, Some(TOKEN), &[], body).await;
        (s, v)
    }

    pub async fn count(&self) -> usize {
        let (s, v) = self.api("GET", "/v1/messages?limit=1000", "").await;
        assert_eq!(s, 200);
        v["messages"].as_array().map_or(0, Vec::len)
    }

    pub async fn wait_state(&self, id: &str, state: &str) -> Value {
        for _ in 0..1000 {
            let (_, v) = self.api("GET", &format!("/v1/messages/{id}"), "").await;
            if v["state"] == state {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("message {id} never became {state}");
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("join").expect("served");
        }
    }
}

pub fn is_problem(headers: &http::HeaderMap, body: &Value, status: u16) {
    assert_eq!(
        headers["content-type"], "application/problem+json",
        "{body}"
    );
    assert_eq!(body["status"], status, "{body}");
    for member in ["type", "title", "detail"] {
        assert!(
            body[member].is_string(),
            "problem without `{member}`: {body}"
        );
    }
}

/// Runs `script` with `python3 -c` and `args`, for tests whose other side
/// is a reference library (the `standardwebhooks` package). A script prints
/// `MISSING` when its import fails: then `None`, a skip said out loud, and a
/// failure under CI (which installs the package).
pub fn python_reference(script: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output();
    let text = match out {
        Ok(o) => format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => format!("MISSING python3: {e}"),
    };
    if text.contains("MISSING") {
        assert!(
            std::env::var("CI").is_err(),
            "CI must install the standardwebhooks package: {text}"
        );
        eprintln!("SKIPPED: the Python standardwebhooks package is not installed (pip install standardwebhooks)");
        return None;
    }
    Some(text)
}
