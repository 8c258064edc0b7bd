//! The command line as users and scripts rely on it (DESIGN.md, Command line):
//! output shape, exit codes, and one-line errors.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::{json, Value};

fn redrive(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_redrive"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `classify --json` and returns the one object it printed.
fn classify(args: &[&str]) -> Value {
    let mut all = vec!["classify", "--json"];
    all.extend_from_slice(args);
    let o = redrive(&all);
    assert_eq!(o.status.code(), Some(0), "{all:?}: {}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 1, "exactly one line: {out}");
    serde_json::from_str(out.trim()).expect("one JSON object")
}

/// Runs a command that must fail with exit code 2 and one line on stderr.
fn usage_error(args: &[&str]) -> String {
    let o = redrive(args);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stdout(&o));
    let err = stderr(&o);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(stdout(&o).is_empty(), "nothing on stdout");
    err
}

fn temp_file(name: &str, content: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("redrive-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write");
    path
}

/// Seed 001's expired token: parked with static credentials, renewed with
/// renewable ones; a 500 on a POST is probed where a probe is configured.
#[test]
fn classify_says_what_renewal_and_reconciliation_would_do() {
    let expired = [
        "--status",
        "401",
        "--body",
        r#"{"error":"invalid_token"}"#,
        "--profile",
        "privo",
    ];
    let v = classify(&expired);
    assert_eq!(
        (&v["decision"], &v["reason"]),
        (&json!("park"), &json!("not_retryable"))
    );
    let mut renewable = expired.to_vec();
    renewable.push("--renewable-token");
    let v = classify(&renewable);
    assert_eq!(
        (&v["decision"], &v["reason"]),
        (&json!("retry"), &json!("credentials_renewed"))
    );
    let v = classify(&["--status", "500", "--profile", "privo", "--reconcile"]);
    assert_eq!(v["decision"], "probe");
    let o = redrive(&["policy", "explain", "privo"]);
    let text = stdout(&o);
    assert!(
        text.contains(
            "a new token is fetched and the request sent again at once, spending no attempt"
        ) && text.contains("applied: delivered (reconciled)"),
        "{text}"
    );
}

#[test]
fn classify_json_has_class_decision_reason_and_delay() {
    let v = classify(&[
        "--status",
        "503",
        "--profile",
        "operations1",
        "--method",
        "GET",
    ]);
    assert_eq!(v["class"], "server");
    assert_eq!(v["decision"], "retry");
    assert_eq!(v["reason"], "schedule");
    assert_eq!(v["delay_ms"], 1000);
    let v = classify(&[
        "--status",
        "503",
        "--profile",
        "operations1",
        "--attempt",
        "4",
    ]);
    assert_eq!(v["delay_ms"], 8000);
    let v = classify(&[
        "--status",
        "503",
        "--profile",
        "operations1",
        "--attempt",
        "5",
    ]);
    assert_eq!(v["decision"], "park");
    assert_eq!(v["reason"], "exhausted");
    assert!(v.get("delay_ms").is_none());
}

#[test]
fn classify_follows_seed_004_for_intentplatform() {
    let v = classify(&["--status", "503", "--profile", "intentplatform"]);
    assert_eq!(
        (v["decision"].as_str(), v["reason"].as_str()),
        (Some("park"), Some("not_retryable"))
    );
    let v = classify(&[
        "--status",
        "502",
        "--profile",
        "intentplatform",
        "--attempt",
        "2",
    ]);
    assert_eq!(
        v["delay_ms"],
        9 * 60 * 1000,
        "t0 + 10 min is 9 min after the +1 min resend"
    );
    let v = classify(&["--transport", "reset", "--profile", "intentplatform"]);
    assert_eq!(
        (v["class"].as_str(), v["decision"].as_str()),
        (Some("network_indeterminate"), Some("retry"))
    );
}

#[test]
fn classify_follows_seed_000_for_privo() {
    let v = classify(&["--status", "500", "--profile", "privo", "--method", "POST"]);
    assert_eq!(
        (v["decision"].as_str(), v["reason"].as_str()),
        (Some("park"), Some("indeterminate"))
    );
    let v = classify(&[
        "--status",
        "500",
        "--profile",
        "privo",
        "--method",
        "POST",
        "--idempotency-key",
        "k1",
    ]);
    assert_eq!(v["decision"], "retry");
    let v = classify(&[
        "--status",
        "500",
        "--profile",
        "privo",
        "--method",
        "DELETE",
    ]);
    assert_eq!(v["decision"], "retry");
    let v = classify(&["--status", "208", "--profile", "privo"]);
    assert_eq!(
        (v["class"].as_str(), v["decision"].as_str()),
        (Some("success"), Some("delivered"))
    );
    let v = classify(&[
        "--status",
        "401",
        "--body",
        r#"{"error":"invalid_token","error_description":"Invalid access token"}"#,
        "--profile",
        "privo",
    ]);
    assert_eq!(
        (v["class"].as_str(), v["reason"].as_str()),
        (Some("auth"), Some("not_retryable"))
    );
    let v = classify(&["--transport", "refused", "--profile", "privo"]);
    assert_eq!(
        (v["class"].as_str(), v["decision"].as_str()),
        (Some("network_unsent"), Some("retry"))
    );
}

#[test]
fn classify_reads_a_synchive_body_from_a_file_and_keeps_link_identities() {
    let body = temp_file(
        "publish-error.json",
        r#"{"type":"http://www.synchive.com/common/publish-error","detail":"x","logCode":"4005E","retryable":false,
            "linkIdentities":{"integrationKey":"shopify_nz_integration","linkIdentities":[{"iri":"i","externalId":"632910392"}]}}"#,
    );
    let at = format!("@{}", body.display());
    let v = classify(&[
        "--status",
        "503",
        "--body",
        &at,
        "--profile",
        "synchive",
        "--method",
        "PUT",
    ]);
    assert_eq!(
        (v["decision"].as_str(), v["reason"].as_str()),
        (Some("park"), Some("not_retryable"))
    );
    assert_eq!(
        v["link_identities"]["linkIdentities"][0]["externalId"],
        "632910392"
    );
    let v = classify(&[
        "--status",
        "500",
        "--body",
        r#"{"typeCode":"RETRY_LATER"}"#,
        "--profile",
        "synchive",
    ]);
    assert_eq!(v["decision"], "retry");
}

#[test]
fn classify_obeys_retry_after_in_both_forms() {
    let v = classify(&[
        "--status",
        "429",
        "-H",
        "Retry-After: 42",
        "--profile",
        "standard",
    ]);
    assert_eq!(
        (v["reason"].as_str(), v["delay_ms"].as_u64()),
        (Some("retry_after"), Some(42_000))
    );
    let past = "Retry-After: Sun, 06 Nov 1994 08:49:37 GMT";
    let v = classify(&["--status", "503", "--header", past, "--profile", "standard"]);
    assert_eq!(
        (v["reason"].as_str(), v["delay_ms"].as_u64()),
        (Some("retry_after"), Some(0))
    );
}

#[test]
fn a_seed_makes_the_jitter_reproducible() {
    let args = [
        "--status",
        "503",
        "--profile",
        "standard",
        "--attempt",
        "6",
        "--seed",
        "42",
    ];
    let a = classify(&args);
    let b = classify(&args);
    assert_eq!(a["delay_ms"], b["delay_ms"]);
    assert!(a["delay_ms"].as_u64().unwrap() <= 32_000);
}

#[test]
fn classify_applies_the_deadline() {
    let file = temp_file(
        "deadline.toml",
        "[policies.short]\ndeadline = \"1m\"\nschedule = [\"30s\"]\n",
    );
    let f = file.to_str().unwrap();
    let v = classify(&["--status", "503", "--policy-file", f, "--elapsed", "10s"]);
    assert_eq!(v["decision"], "retry");
    let v = classify(&["--status", "503", "--policy-file", f, "--elapsed", "45s"]);
    assert_eq!(v["reason"], "expired");
}

#[test]
fn classify_without_json_explains_the_rule_that_fired() {
    let o = redrive(&["classify", "--status", "503", "--profile", "intentplatform"]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert!(out.contains("park (not_retryable)"), "{out}");
    assert!(
        out.contains("no retry rule of policy `intentplatform` matches class server"),
        "{out}"
    );
    let o = redrive(&["classify", "--status", "502", "--profile", "intentplatform"]);
    let out = stdout(&o);
    assert!(out.contains("seed 004: 502 is a temporary error"), "{out}");
    assert!(out.contains("retry in 1m"), "{out}");
}

#[test]
fn policy_list_shows_every_profile() {
    let o = redrive(&["policy", "list"]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    for name in [
        "standard",
        "privo",
        "privo-webhook",
        "synchive",
        "operations1",
        "intentplatform",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(name)),
            "{name} missing: {out}"
        );
    }
}

#[test]
fn policy_explain_intentplatform_shows_the_seed_timeline() {
    let o = redrive(&["policy", "explain", "intentplatform"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    for line in [
        "attempt 1   at 0s",
        "attempt 2   at +1m ",
        "attempt 3   at +10m ",
        "attempt 4   at +1h ",
        "attempt 5   at +1d ",
        "total span  1d",
        "parked as exhausted",
        "circuit breaker is open",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    let row = out
        .lines()
        .find(|l| l.trim_start().starts_with("503 Service Unavailable"))
        .expect("503 row");
    assert!(row.contains("park not_retryable"), "{row}");
}

#[test]
fn policy_explain_reads_a_policy_file() {
    let file = temp_file(
        "billing.toml",
        "[policies.billing]\nextends = \"standard\"\nmax_attempts = 3\nschedule = [\"1m\", \"10m\"]\n",
    );
    let o = redrive(&["policy", "explain", "--policy-file", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("policy billing: extends standard"), "{out}");
    assert!(out.contains("attempt 3   at +11m"), "{out}");
    assert!(!out.contains("attempt 4"), "{out}");
}

#[test]
fn bad_usage_and_bad_input_exit_2_with_one_line() {
    let e = usage_error(&[
        "classify",
        "--status",
        "503",
        "--profile",
        "standard",
        "--bogus",
    ]);
    assert!(e.contains("--bogus"), "{e}");
    let e = usage_error(&["classify", "--status", "700", "--profile", "standard"]);
    assert!(e.contains("--status 700"), "{e}");
    let e = usage_error(&["classify", "--status", "abc", "--profile", "standard"]);
    assert!(e.contains("abc"), "{e}");
    let e = usage_error(&["classify", "--status", "500", "--profile", "stripe"]);
    assert!(e.contains("unknown profile `stripe`"), "{e}");
    let e = usage_error(&["classify", "--status", "500"]);
    assert!(e.contains("--profile"), "{e}");
    let e = usage_error(&["classify", "--profile", "standard"]);
    assert!(e.contains("--status"), "{e}");
    let e = usage_error(&["classify", "--transport", "meteor", "--profile", "standard"]);
    assert!(e.contains("meteor"), "{e}");
    let e = usage_error(&[
        "classify",
        "--status",
        "500",
        "-H",
        "nocolon",
        "--profile",
        "standard",
    ]);
    assert!(e.contains("'nocolon'"), "{e}");
    let e = usage_error(&[
        "classify",
        "--status",
        "500",
        "--body",
        "@/nonexistent/x",
        "--profile",
        "standard",
    ]);
    assert!(e.contains("/nonexistent/x"), "{e}");
    let e = usage_error(&[
        "classify",
        "--status",
        "500",
        "--attempt",
        "0",
        "--profile",
        "standard",
    ]);
    assert!(e.contains("0"), "{e}");
    let e = usage_error(&[
        "classify",
        "--status",
        "500",
        "--elapsed",
        "soon",
        "--profile",
        "standard",
    ]);
    assert!(e.contains("soon"), "{e}");
    let e = usage_error(&["policy", "explain", "nope"]);
    assert!(e.contains("unknown profile `nope`"), "{e}");
    let e = usage_error(&["frobnicate"]);
    assert!(e.contains("frobnicate"), "{e}");
}

#[test]
fn a_bad_policy_file_is_one_line_naming_file_line_and_key() {
    let file = temp_file(
        "bad.toml",
        "[policies.billing]\nextends = \"standard\"\nschedule = []\n",
    );
    let f = file.to_str().unwrap();
    let e = usage_error(&["classify", "--status", "500", "--policy-file", f]);
    assert!(e.contains("bad.toml"), "{e}");
    assert!(
        e.contains("policies.billing.schedule: the schedule is empty"),
        "{e}"
    );
    let e = usage_error(&["policy", "explain", "--policy-file", f]);
    assert!(e.contains("the schedule is empty"), "{e}");
}

#[test]
fn help_and_version_exit_0() {
    assert_eq!(redrive(&["--help"]).status.code(), Some(0));
    assert_eq!(redrive(&["--version"]).status.code(), Some(0));
    assert!(stdout(&redrive(&["classify", "--help"])).contains("--idempotency-key"));
}

#[test]
fn messages_wait_gives_up_on_a_server_it_cannot_reach_in_one_line() {
    // Nothing listens on the discard port: connections are refused, and
    // `wait` keeps trying (a server may be starting) until its timeout.
    let e = usage_error(&[
        "messages",
        "wait",
        "--server",
        "http://127.0.0.1:9",
        "--timeout",
        "300ms",
    ]);
    assert!(
        e.contains("cannot reach the server at http://127.0.0.1:9"),
        "{e}"
    );
    let e = usage_error(&["messages", "wait", "--timeout", "soon"]);
    assert!(e.contains("soon"), "{e}");
}
