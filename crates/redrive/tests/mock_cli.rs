//! `redrive mock` as a user runs it: it prints its address, serves the
//! scenario, refuses a bad file in one line, and prints a valid example.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

fn redrive() -> Command {
    Command::new(env!("CARGO_BIN_EXE_redrive"))
}

/// Kills the child when the test ends, whatever happens.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn mock_prints_its_address_and_serves_the_scenario() {
    let scenario = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/scenarios/operations1.toml"
    );
    let mut child = redrive()
        .args(["mock", "--scenario", scenario, "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let running = Running(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("first line");
    let url = line
        .trim()
        .strip_prefix("redrive mock listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"));
    assert!(!url.ends_with(":0"), "a real port: {url}");
    assert!(get(url, "/invalid/x").starts_with("HTTP/1.1 400"));
    assert!(get(url, "/auth-failure/x").starts_with("HTTP/1.1 401"));
    let counts = get(url, "/__mock/counts");
    assert!(counts.contains("\"total\":2"), "{counts}");
    drop(running);
}

#[test]
fn a_bad_scenario_is_one_line_naming_the_file_and_key() {
    let path =
        std::env::temp_dir().join(format!("redrive-bad-scenario-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "[[routes]]\npath = \"/x\"\nsteps = [{ fault = \"explode\" }]\n",
    )
    .expect("write");
    let out = redrive()
        .args([
            "mock",
            "--scenario",
            path.to_str().expect("utf-8"),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("redrive-bad-scenario"), "{err}");
    assert!(err.contains("routes[0].steps[0].fault"), "{err}");
    let out = redrive()
        .args(["mock", "--scenario", "/nonexistent.toml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.toml"));
}

#[test]
fn mock_example_prints_a_scenario_that_loads() {
    let out = redrive().args(["mock", "--example"]).output().expect("run");
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(text.starts_with("# A redrive mock scenario"));
    redrive_mock::Scenario::from_toml("example", &text, None).unwrap_or_else(|e| panic!("{e}"));
}
