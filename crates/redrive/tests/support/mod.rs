//! Running `redrive serve` as a child process, and talking to it with plain
//! HTTP/1.1 (so the tests depend on nothing of ours to read the answers).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The API token the tests' configurations use.
pub const TOKEN: &str = "cli-test-token-0123456789";

/// A running server.
pub struct Served {
    pub child: Child,
    pub addr: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `redrive serve --config redrive.toml` in `dir` and reads the address
/// from its first line.
pub fn start(dir: &Path) -> Served {
    spawn(dir, None)
}

/// [`start`], logging everything at `debug` to `dir/redrive.log` (for tests
/// that search the logs).
pub fn start_logged(dir: &Path) -> Served {
    let log = std::fs::File::create(dir.join("redrive.log")).expect("log file");
    spawn(dir, Some(log))
}

fn spawn(dir: &Path, log: Option<std::fs::File>) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_redrive"))
        .args(["serve", "--config", "redrive.toml", "--log-format", "json"])
        .current_dir(dir)
        .env("REDRIVE_LOG", if log.is_some() { "debug" } else { "error" })
        .stdout(Stdio::piped())
        .stderr(log.map_or_else(Stdio::null, Stdio::from))
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("first line");
    let addr = line
        .trim()
        .strip_prefix("redrive listening on http://")
        .unwrap_or_else(|| panic!("unexpected: {line}"))
        .to_owned();
    Served { child, addr }
}

/// One request with `Connection: close`: the status and body, or None if the
/// connection failed (the server was killed).
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> Option<(u16, String)> {
    exchange(addr, TOKEN, method, path, key, body)
}

/// [`request`] with another token.
pub fn request_as(
    addr: &str,
    token: &str,
    method: &str,
    path: &str,
    body: &str,
) -> Option<(u16, String)> {
    exchange(addr, token, method, path, None, body)
}

fn exchange(
    addr: &str,
    token: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let key_header = key
        .map(|k| format!("Idempotency-Key: {k}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n{key_header}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}
