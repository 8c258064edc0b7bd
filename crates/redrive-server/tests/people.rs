//! People through the API: roles checked against the one table of routes,
//! an edit that the receiver then sees, resolutions, pauses that hold across
//! a restart, and the audit of who did what (seeds 000, 004).

mod support;

use std::time::Duration;

use redrive_server::roles::{Role, ROUTES};
use serde_json::Value;
use support::{is_problem, Server, TOKEN};

/// `POST /bad*` is refused (the message parks), everything else accepted.
const RECEIVER: &str = "[[routes]]\nmethod = \"POST\"\npath = \"/bad*\"\nsteps = [{ status = 400 }]\n[default]\nstatus = 200\n";

const TOKENS: &str = r#"[
  { name = "rita", token = "reader-token-0123456789", role = "reader" },
  { name = "shop", token = "sender-token-0123456789", role = "sender" },
  { name = "alice", token = "operator-token-0123456", role = "operator" },
  "${TEST_TOKEN}",
]"#;

fn token(role: Role) -> &'static str {
    match role {
        Role::Reader => "reader-token-0123456789",
        Role::Sender => "sender-token-0123456789",
        Role::Operator => "operator-token-0123456",
        Role::Admin => TOKEN,
    }
}

async fn as_role(s: &Server, role: Role, method: &str, path: &str, body: &str) -> (u16, Value) {
    let (status, headers, v) = s.call(method, path, Some(token(role)), &[], body).await;
    if status >= 400 {
        is_problem(&headers, &v, status);
    }
    (status, v)
}

/// Enqueues a message to `path` at `crm` and waits until it settles in
/// `state`; returns its id.
async fn message(s: &Server, path: &str, body: &str, state: &str) -> String {
    let (status, v) = s
        .api(
            "POST",
            "/v1/messages",
            &format!(r#"{{"destination":"crm","path":"{path}","body":{body}}}"#),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().expect("id").to_owned();
    s.wait_state(&id, state).await;
    id
}

/// Every route of the table, called with every role: 403 (a problem naming
/// the role needed) exactly where the table says the role may not, a 2xx
/// everywhere else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_each_role_as_the_table_says() {
    let s = Server::start_with_tokens(RECEIVER, TOKENS, "").await;
    for &(method, pattern, need) in ROUTES {
        for role in Role::ALL {
            let allowed = role.allows(need);
            // A parked message of its own for each call that may change one.
            let id = if pattern.contains("{id}") && allowed && method != "GET" {
                message(&s, "/bad", "{}", "parked").await
            } else {
                "01UNKNOWN".to_owned()
            };
            let path = pattern.replace("{id}", &id).replace(
                "{name}",
                if pattern.contains("policies") {
                    "standard"
                } else {
                    "crm"
                },
            );
            let body = match (method, pattern) {
                ("POST", "/v1/messages") => r#"{"destination":"erp","path":"/ok","body":{}}"#,
                (_, "/v1/messages/{id}/resolve") => r#"{"outcome":"applied"}"#,
                ("PATCH", _) => r#"{"note":"checked"}"#,
                ("POST", _) => "{}",
                _ => "",
            };
            let (status, v) = as_role(&s, role, method, &path, body).await;
            if allowed {
                let expect_ok = !(method == "GET" && pattern == "/v1/messages/{id}");
                if expect_ok {
                    assert!(
                        (200..300).contains(&status),
                        "{role} {method} {pattern}: {status} {v}"
                    );
                } else {
                    assert_eq!(status, 404, "{role} {method} {pattern}: {v}");
                }
            } else {
                assert_eq!(status, 403, "{role} {method} {pattern}: {v}");
                let detail = v["detail"].as_str().unwrap_or("");
                assert!(
                    detail.contains(need.least_role()) && detail.contains(role.as_str()),
                    "{detail}"
                );
            }
        }
    }
    s.stop().await;
}

/// An edited message, redriven, reaches the receiver as edited; its history
/// keeps the old request; an edit of a message that is not parked, or an
/// invalid one, changes nothing and is not audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_is_what_the_receiver_gets_and_what_the_audit_shows() {
    let s = Server::start_with_tokens(RECEIVER, TOKENS, "").await;
    let id = message(&s, "/bad", r#"{"email":"ann@exmaple.com"}"#, "parked").await;
    let edit = r#"{"path":"/good","body":{"email":"ann@example.com"},"headers":{"X-Fixed":"1"},"note":"typo in the domain"}"#;
    let (status, v) = as_role(
        &s,
        Role::Operator,
        "PATCH",
        &format!("/v1/messages/{id}"),
        edit,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["revision"].as_u64(), v["path"].as_str()),
        (Some(2), Some("/good"))
    );
    let revisions = v["revisions"].as_array().expect("revisions");
    assert_eq!(revisions.len(), 2);
    assert_eq!(revisions[0]["path"], "/bad");
    assert_eq!(revisions[0]["body"], r#"{"email":"ann@exmaple.com"}"#);
    assert_eq!(
        (
            revisions[1]["actor"].as_str(),
            revisions[1]["note"].as_str()
        ),
        (Some("alice"), Some("typo in the domain"))
    );
    // Invalid: a 422, nothing changed.
    let (status, _) = as_role(
        &s,
        Role::Operator,
        "PATCH",
        &format!("/v1/messages/{id}"),
        r#"{"path":"nope"}"#,
    )
    .await;
    assert_eq!(status, 422);
    let (status, v) = as_role(
        &s,
        Role::Operator,
        "POST",
        &format!("/v1/messages/{id}/redrive"),
        "",
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let v = s.wait_state(&id, "delivered").await;
    let attempts = v["attempts"].as_array().expect("attempts");
    assert_eq!(
        attempts.last().map(|a| a["revision"].clone()),
        Some(2.into()),
        "{v}"
    );
    assert_eq!(attempts[0]["revision"], 1);
    let journal = s.mock.journal(None);
    let last = journal.entries.last().expect("the receiver saw it");
    assert_eq!(
        (last.path.as_str(), last.header("x-fixed")),
        ("/good", Some("1"))
    );
    // Delivered now: an edit is a 409 and leaves no record.
    let (status, v) = as_role(
        &s,
        Role::Operator,
        "PATCH",
        &format!("/v1/messages/{id}"),
        r#"{"note":"again"}"#,
    )
    .await;
    assert_eq!(status, 409, "{v}");
    let (_, audit) = s.api("GET", "/v1/audit", "").await;
    let seen: Vec<(String, String, String)> = audit["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            (
                r["actor"].as_str().unwrap_or("").to_owned(),
                r["action"].as_str().unwrap_or("").to_owned(),
                r["target"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("alice".to_owned(), "redrive".to_owned(), id.clone()),
            ("alice".to_owned(), "edit".to_owned(), id.clone()),
        ]
    );
    assert_eq!(audit["records"][1]["detail"]["revision"], 2);
    s.stop().await;
}

/// `applied` ends a parked message delivered with the resolution;
/// `not_applied` sends it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolution_closes_or_resends() {
    let s = Server::start_with_tokens(RECEIVER, TOKENS, "").await;
    let a = message(&s, "/bad-a", "{}", "parked").await;
    let (status, v) = as_role(
        &s,
        Role::Operator,
        "POST",
        &format!("/v1/messages/{a}/resolve"),
        r#"{"outcome":"applied","note":"found it in their console"}"#,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["state"], "delivered");
    assert_eq!(
        (
            v["resolution"]["outcome"].as_str(),
            v["resolution"]["actor"].as_str()
        ),
        (Some("applied"), Some("alice"))
    );
    let b = message(&s, "/bad-b", "{}", "parked").await;
    let (status, v) = as_role(
        &s,
        Role::Operator,
        "POST",
        &format!("/v1/messages/{b}/resolve"),
        r#"{"outcome":"not_applied"}"#,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["resolution"]["outcome"], "not_applied");
    // Sent again: it parks again (the receiver still refuses /bad-b).
    let v = s.wait_state(&b, "parked").await;
    assert_eq!(v["cycle"], 2);
    let (status, _) = as_role(
        &s,
        Role::Operator,
        "POST",
        &format!("/v1/messages/{a}/resolve"),
        r#"{"outcome":"maybe"}"#,
    )
    .await;
    assert_eq!(status, 400);
    s.stop().await;
}

/// A paused destination accepts 1,000 messages and attempts none, also
/// across a restart while paused; resumed, it delivers them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_holds_every_message_across_a_restart() {
    let s = Server::start_with_tokens(RECEIVER, TOKENS, "").await;
    let (status, v) = as_role(
        &s,
        Role::Operator,
        "POST",
        "/v1/destinations/crm/pause",
        r#"{"note":"maintenance"}"#,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (
            v["paused"].as_bool(),
            v["paused_by"].as_str(),
            v["changed"].as_bool()
        ),
        (Some(true), Some("alice"), Some(true))
    );
    let (_, v) = as_role(&s, Role::Operator, "POST", "/v1/destinations/crm/pause", "").await;
    assert_eq!(v["changed"], false, "paused already: nothing written");
    for i in 0..1000 {
        let (status, _) = s
            .api(
                "POST",
                "/v1/messages",
                &format!(r#"{{"destination":"crm","path":"/m/{i}"}}"#),
            )
            .await;
        assert_eq!(status, 202);
    }
    let s = s.restart().await;
    let (_, d) = s.api("GET", "/v1/destinations", "").await;
    let crm = d["destinations"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == "crm"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (crm["paused"].as_bool(), crm["note"].as_str()),
        (Some(true), Some("maintenance")),
        "{crm}"
    );
    // The scheduler has had its start and its first rounds: still nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.mock.counts().total, 0, "nothing attempted while paused");
    let (_, v) = s
        .api("GET", "/v1/messages?state=pending&limit=1000", "")
        .await;
    let pending = v["messages"].as_array().expect("messages");
    assert_eq!(pending.len(), 1000);
    assert!(pending.iter().all(|m| m["total_attempts"] == 0));
    let (status, v) = as_role(
        &s,
        Role::Operator,
        "POST",
        "/v1/destinations/crm/resume",
        "",
    )
    .await;
    assert_eq!((status, v["paused"].as_bool()), (200, Some(false)), "{v}");
    for _ in 0..600 {
        let (_, v) = s
            .api("GET", "/v1/messages?state=delivered&limit=1000", "")
            .await;
        if v["messages"].as_array().map_or(0, Vec::len) == 1000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, v) = s
        .api("GET", "/v1/messages?state=delivered&limit=1000", "")
        .await;
    assert_eq!(v["messages"].as_array().map_or(0, Vec::len), 1000);
    let (_, audit) = s.api("GET", "/v1/audit?action=pause", "").await;
    assert_eq!(
        audit["records"].as_array().map_or(0, Vec::len),
        1,
        "one pause, one record"
    );
    let (status, _) = as_role(
        &s,
        Role::Operator,
        "POST",
        "/v1/destinations/nope/pause",
        "",
    )
    .await;
    assert_eq!(status, 404);
    s.stop().await;
}

/// A message's secret header is `[redacted]` in every revision shown, kept
/// when an edit sends `[redacted]` back, and never in the audit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisions_and_the_audit_keep_secrets_out() {
    let s = Server::start_with_tokens(RECEIVER, TOKENS, "").await;
    let (status, v) = s
        .api(
            "POST",
            "/v1/messages",
            r#"{"destination":"crm","path":"/bad","headers":{"X-Auth-Token":"msg-secret-98765"},"body":{}}"#,
        )
        .await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().expect("id").to_owned();
    s.wait_state(&id, "parked").await;
    let edit = r#"{"path":"/good","headers":{"X-Auth-Token":"[redacted]","X-Fixed":"1"}}"#;
    let (status, v) = as_role(
        &s,
        Role::Operator,
        "PATCH",
        &format!("/v1/messages/{id}"),
        edit,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let shown = v.to_string();
    assert!(!shown.contains("msg-secret-98765"), "{shown}");
    assert!(shown.contains("[redacted]"));
    let (_, audit) = s.api("GET", "/v1/audit", "").await;
    assert!(!audit.to_string().contains("msg-secret-98765"));
    as_role(
        &s,
        Role::Operator,
        "POST",
        &format!("/v1/messages/{id}/redrive"),
        "",
    )
    .await;
    s.wait_state(&id, "delivered").await;
    let journal = s.mock.journal(None);
    let last = journal.entries.last().expect("the receiver saw it");
    assert_eq!(last.path, "/good");
    assert_eq!(
        last.header("x-auth-token"),
        Some("msg-secret-98765"),
        "the secret was kept, not replaced by `[redacted]`"
    );
    s.stop().await;
}
