//! The mock's own API, under `/__mock/`: read and reset the journal, read the
//! counts, read or replace the scenario, and go down for a while.

use std::io;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::scenario::Scenario;
use crate::server::Shared;
use crate::wire::{self, Request};

/// Answers one request to `/__mock/...`.
pub(crate) async fn handle(
    shared: &Shared,
    req: &Request,
    stream: &mut TcpStream,
) -> io::Result<()> {
    let param = |name: &str| {
        req.query()?
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    };
    let method = req.method.to_ascii_uppercase();
    let (status, content_type, body): (u16, &str, Vec<u8>) = match (method.as_str(), req.path()) {
        ("GET", "/__mock/journal") => {
            let limit = match param("limit").map(|v| v.parse::<usize>()) {
                Some(Err(_)) => return problem(stream, req, 400, "`limit` must be a whole number").await,
                Some(Ok(n)) => Some(n),
                None => None,
            };
            json_body(&shared.journal(limit))
        }
        ("DELETE", "/__mock/journal") | ("POST", "/__mock/reset") => {
            shared.reset();
            (204, "", Vec::new())
        }
        ("GET", "/__mock/counts") => json_body(&shared.counts()),
        ("GET", "/__mock/scenario") => (200, "application/toml", shared.scenario().text.clone().into_bytes()),
        ("PUT", "/__mock/scenario") => {
            let Ok(text) = std::str::from_utf8(&req.body) else {
                return problem(stream, req, 400, "the scenario is not UTF-8 text").await;
            };
            match Scenario::from_toml("scenario", text, shared.base_dir.as_deref()) {
                Ok(s) => {
                    let routes = s.routes.len();
                    shared.replace(s);
                    json_body(&json!({ "routes": routes }))
                }
                Err(e) => return problem(stream, req, 400, &e.to_string()).await,
            }
        }
        ("POST", "/__mock/down") => {
            let window = match param("for").map(|v| redrive_core::parse_duration(&v)) {
                Some(Ok(d)) if !d.is_zero() => d,
                Some(Err(e)) => return problem(stream, req, 400, &e.to_string()).await,
                _ => Duration::from_secs(1),
            };
            let answer = json_body(&json!({ "down_ms": window.as_millis() as u64 }));
            write(stream, req, 202, answer.1, &answer.2, false).await?;
            shared.go_down(window);
            return Err(io::ErrorKind::ConnectionAborted.into());
        }
        ("GET", "/__mock/health") => (200, "text/plain", b"ok\n".to_vec()),
        _ => {
            return problem(
                stream,
                req,
                404,
                "the mock's API is GET|DELETE /__mock/journal, GET /__mock/counts, GET|PUT /__mock/scenario, POST /__mock/reset, POST /__mock/down?for=5s, GET /__mock/health",
            )
            .await
        }
    };
    write(stream, req, status, content_type, &body, req.keep_alive).await
}

fn json_body<T: Serialize>(value: &T) -> (u16, &'static str, Vec<u8>) {
    match serde_json::to_vec(value) {
        Ok(body) => (200, "application/json", body),
        Err(e) => (500, "text/plain", e.to_string().into_bytes()),
    }
}

async fn problem(
    stream: &mut TcpStream,
    req: &Request,
    status: u16,
    detail: &str,
) -> io::Result<()> {
    let title = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let body = json!({ "type": "about:blank", "title": title, "status": status, "detail": detail })
        .to_string();
    write(
        stream,
        req,
        status,
        "application/problem+json",
        body.as_bytes(),
        req.keep_alive,
    )
    .await
}

async fn write(
    stream: &mut TcpStream,
    _req: &Request,
    status: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
) -> io::Result<()> {
    let headers = if content_type.is_empty() {
        Vec::new()
    } else {
        vec![("content-type".to_owned(), content_type.to_owned())]
    };
    let mut out = wire::head(status, &headers, body.len(), keep_alive);
    out.extend_from_slice(body);
    stream.write_all(&out).await
}
