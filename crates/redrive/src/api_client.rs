//! A small client of redrive's HTTP API for the CLI: `--server URL`, the token
//! from `REDRIVE_API_TOKEN`, problem details turned into one-line errors.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Where the server is, and how to authenticate.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// The server's base URL.
    #[arg(
        long,
        value_name = "URL",
        env = "REDRIVE_SERVER",
        default_value = "http://127.0.0.1:7878",
        global = true
    )]
    pub server: String,
}

/// The server could not be reached (no answer at all, as opposed to an
/// error answer): a caller that waits for a server to start tries again.
#[derive(Debug)]
pub struct Unreachable(String);

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unreachable {}

/// The API client.
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl ApiClient {
    /// A client for `args.server`, with the token from `REDRIVE_API_TOKEN`.
    pub fn new(args: &ServerArgs) -> Result<Self> {
        let base = args.server.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            bail!("--server {base}: write http://HOST:PORT");
        }
        Ok(ApiClient {
            base,
            token: std::env::var("REDRIVE_API_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
            http: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// Sends a request and returns the JSON body of a 2xx answer; any other
    /// answer becomes an error with the problem's title and detail.
    pub async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("accept", "application/json");
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let payload = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Bytes::from(serde_json::to_vec(v)?)
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(payload))
            .context("cannot build the request")?;
        let res = self.http.request(req).await.map_err(|e| {
            anyhow::Error::new(Unreachable(format!(
                "cannot reach the server at {}: {e} (is `redrive serve` running? set --server)",
                self.base
            )))
        })?;
        let status = res.status();
        let bytes = res
            .into_body()
            .collect()
            .await
            .context("cannot read the answer")?
            .to_bytes();
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let title = value["title"].as_str().unwrap_or("error");
        let detail = value["detail"].as_str().unwrap_or("");
        if status == http::StatusCode::UNAUTHORIZED && self.token.is_none() {
            bail!("{title}: {detail} (set REDRIVE_API_TOKEN)");
        }
        bail!("{} {title}: {detail}", status.as_u16())
    }
}

/// Percent-encodes a query value.
pub fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
