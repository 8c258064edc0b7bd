//! The commands a person uses on a running server (`messages`, `dlq`,
//! `report`), `redrive send`, and `serve`'s refusal of a bad configuration.

mod support;

use std::process::{Command, Output};
use std::time::Duration;

use redrive_mock::{MockServer, Scenario};
use support::{request, start, TOKEN};

fn redrive(args: &[&str], server: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_redrive"))
        .args(args)
        .args(["--server", &format!("http://{server}")])
        .env("REDRIVE_API_TOKEN", TOKEN)
        .output()
        .expect("run")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn wait_for(addr: &str, path: &str, needle: &str) -> String {
    for _ in 0..500 {
        if let Some((200, body)) = request(addr, "GET", path, None, "") {
            if body.contains(needle) {
                return body;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{path} never contained {needle}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_finds_inspects_redrives_and_discards_parked_messages() {
    let mock = MockServer::start(
        Scenario::from_toml("s", "[[routes]]\npath = \"/ok/*\"\nsteps = [{ status = 200 }]\n[default]\nstatus = 422\nbody = '{\"error\":\"email is required\"}'\n", None).expect("scenario"),
        "127.0.0.1:0".parse().expect("addr"),
        None,
    )
    .await
    .expect("mock");
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("redrive.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://redrive.db\"\napi_tokens = [\"{TOKEN}\"]\n\
             [destinations.crm]\nurl = \"{}\"\npolicy = \"standard\"\n",
            mock.url()
        ),
    )
    .expect("config");
    let dir_path = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let served = start(&dir_path);
        let addr = served.addr.clone();
        let mut ids = Vec::new();
        for i in 0..3 {
            let (status, body) = request(
                &addr,
                "POST",
                "/v1/messages",
                None,
                &format!(r#"{{"destination":"crm","path":"/users/{i}","body":{{"i":{i}}}}}"#),
            )
            .expect("enqueue");
            assert_eq!(status, 202, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).expect("json");
            ids.push(v["id"].as_str().expect("id").to_owned());
        }
        wait_for(&addr, "/v1/messages?state=parked", &ids[2]);

        let o = redrive(&["dlq", "list"], &addr);
        assert!(o.status.success(), "{}", text(&o));
        let out = text(&o);
        for id in &ids {
            assert!(out.contains(id.as_str()), "{out}");
        }
        assert!(
            out.contains("not_retryable") && out.contains("content"),
            "{out}"
        );

        let o = redrive(&["dlq", "show", &ids[0]], &addr);
        let out = text(&o);
        assert!(
            o.status.success() && out.contains("HTTP 422") && out.contains("email is required"),
            "{out}"
        );

        let o = redrive(&["dlq", "discard", &ids[0]], &addr);
        assert!(
            o.status.success() && text(&o).contains("discarded"),
            "{}",
            text(&o)
        );

        let o = redrive(&["dlq", "redrive", &ids[0]], &addr);
        assert_eq!(
            o.status.code(),
            Some(2),
            "a discarded message cannot be redriven: {}",
            text(&o)
        );
        assert!(text(&o).contains("409"), "{}", text(&o));

        let o = redrive(
            &[
                "dlq",
                "redrive",
                "--all",
                "--destination",
                "crm",
                "--reason",
                "not_retryable",
            ],
            &addr,
        );
        assert!(o.status.success(), "{}", text(&o));
        assert!(
            text(&o).contains("redriven 2 parked message(s)"),
            "{}",
            text(&o)
        );
        wait_for(&addr, &format!("/v1/messages/{}", ids[1]), "\"cycle\":2");

        let o = redrive(
            &["messages", "list", "--state", "discarded", "--json"],
            &addr,
        );
        assert!(o.status.success());
        assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1);

        let o = redrive(&["report", "--since", "1h"], &addr);
        let out = text(&o);
        assert!(
            o.status.success() && out.contains("crm") && out.contains("content"),
            "{out}"
        );

        let o = redrive(&["messages", "show", "nope"], &addr);
        assert_eq!(o.status.code(), Some(2));
        assert!(text(&o).contains("404"), "{}", text(&o));
        let o = Command::new(env!("CARGO_BIN_EXE_redrive"))
            .args(["dlq", "list", "--server", &format!("http://{addr}")])
            .env_remove("REDRIVE_API_TOKEN")
            .output()
            .expect("run");
        assert_eq!(o.status.code(), Some(2));
        assert!(text(&o).contains("REDRIVE_API_TOKEN"), "{}", text(&o));
        drop(served);
        let o = redrive(&["dlq", "list"], &addr);
        assert_eq!(o.status.code(), Some(2));
        assert!(text(&o).contains("cannot reach the server"), "{}", text(&o));
    })
    .await
    .expect("join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_exits_0_when_delivered_and_1_when_parked() {
    let mock = MockServer::start(
        Scenario::from_toml("s", "[[routes]]\npath = \"/flaky\"\nsteps = [{ fault = \"reset\" }, { status = 200, body = \"done\" }]\n[default]\nstatus = 400\n", None).expect("scenario"),
        "127.0.0.1:0".parse().expect("addr"),
        None,
    )
    .await
    .expect("mock");
    let url = mock.url();
    let (ok, parked) = tokio::task::spawn_blocking(move || {
        let run = |path: &str| {
            Command::new(env!("CARGO_BIN_EXE_redrive"))
                .args([
                    "send",
                    &format!("{url}{path}"),
                    "-X",
                    "PUT",
                    "-d",
                    "{}",
                    "--idempotent",
                    "--profile",
                    "privo",
                ])
                .output()
                .expect("run")
        };
        (run("/flaky"), run("/bad"))
    })
    .await
    .expect("join");
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "done");
    let log = String::from_utf8_lossy(&ok.stderr);
    assert!(
        log.contains("attempt 1") && log.contains("reset") && log.contains("attempt 2"),
        "{log}"
    );
    assert_eq!(parked.status.code(), Some(1), "{}", text(&parked));
    assert!(String::from_utf8_lossy(&parked.stderr).contains("parked: not_retryable"));
}

#[test]
fn serve_refuses_a_bad_configuration_in_one_line() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("bad.toml"),
        "[destinations.crm]\nurl = \"http://x\"\npolicy = \"nope\"\n",
    )
    .expect("write");
    let o = Command::new(env!("CARGO_BIN_EXE_redrive"))
        .args(["serve", "--config", "bad.toml"])
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("bad.toml") && err.contains("destinations.crm.policy"),
        "{err}"
    );
    assert!(
        !dir.path().join("redrive.db").exists(),
        "no database was created"
    );
}

/// One `redrive serve` delivers from a SQLite file: a second one on the same
/// file refuses to start, in one line, and the first goes on.
#[test]
fn a_second_serve_on_the_same_sqlite_file_refuses_to_start() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("redrive.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://redrive.db\"\napi_tokens = [\"{TOKEN}\"]\n\
             [destinations.crm]\nurl = \"http://127.0.0.1:9\"\npolicy = \"standard\"\n"
        ),
    )
    .expect("config");
    let first = start(dir.path());
    let second = Command::new(env!("CARGO_BIN_EXE_redrive"))
        .args(["serve", "--config", "redrive.toml"])
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert_eq!(second.status.code(), Some(2), "{}", text(&second));
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("another redrive is delivering from this SQLite database"),
        "{err}"
    );
    let (status, _) = request(&first.addr, "GET", "/v1/messages", None, "").expect("answer");
    assert_eq!(status, 200, "the first server still answers");
}
