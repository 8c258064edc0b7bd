//! A person's commands on a running server: `dlq edit` with a scripted
//! `$EDITOR` (one that gives up, one that writes JSON that does not parse
//! and then fixes it), `dlq resolve`, `destinations pause|resume` and
//! `audit`.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use redrive_mock::{MockServer, Scenario};
use support::{request, request_as, start, TOKEN};

const ADMIN: &str = "admin-token-0123456789abcdef";

fn redrive(args: &[&str], server: &str, editor: Option<&Path>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_redrive"));
    c.args(args)
        .args(["--server", &format!("http://{server}")])
        .env("REDRIVE_API_TOKEN", TOKEN)
        .env_remove("VISUAL");
    if let Some(e) = editor {
        c.env("EDITOR", e);
    }
    c.output().expect("run")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A script that stands for the editor.
fn script(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn get(addr: &str, path: &str) -> serde_json::Value {
    let (status, body) = request(addr, "GET", path, None, "").expect("request");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("json")
}

fn wait_state(addr: &str, id: &str, state: &str) -> serde_json::Value {
    for _ in 0..500 {
        let v = get(addr, &format!("/v1/messages/{id}"));
        if v["state"] == state {
            return v;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{id} never became {state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_corrects_resolves_pauses_and_reads_the_audit() {
    let mock = MockServer::start(
        Scenario::from_toml(
            "s",
            "[[routes]]\nmethod = \"POST\"\npath = \"/bad*\"\nsteps = [{ status = 400 }]\n[default]\nstatus = 200\n",
            None,
        )
        .expect("scenario"),
        "127.0.0.1:0".parse().expect("addr"),
        None,
    )
    .await
    .expect("mock");
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("redrive.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://redrive.db\"\n\
             api_tokens = [{{ name = \"alice\", token = \"{TOKEN}\", role = \"operator\" }}, \"{ADMIN}\"]\n\
             [destinations.crm]\nurl = \"{}\"\npolicy = \"standard\"\n",
            mock.url()
        ),
    )
    .expect("config");
    let path = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let node = start(&path);
        let a = node.addr.as_str();
        let enqueue = |p: &str| {
            let body = format!(r#"{{"destination":"crm","path":"{p}","body":{{"email":"ann@exmaple.com"}}}}"#);
            // alice, an operator, may not enqueue; the admin token may.
            let (status, _) = request(a, "POST", "/v1/messages", None, &body).expect("enqueue");
            assert_eq!(status, 403);
            let (status, answer) =
                request_as(a, ADMIN, "POST", "/v1/messages", &body).expect("enqueue");
            assert_eq!(status, 202, "{answer}");
            let v: serde_json::Value = serde_json::from_str(&answer).expect("json");
            v["id"].as_str().expect("id").to_owned()
        };
        let id = enqueue("/bad");
        wait_state(a, &id, "parked");

        // An editor that gives up: nothing saved.
        let quit = script(&path, "quit.sh", "exit 3");
        let o = redrive(&["dlq", "edit", &id, "--no-redrive"], a, Some(&quit));
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains("exited with exit status: 3; nothing was saved"), "{}", text(&o));
        assert_eq!(get(a, &format!("/v1/messages/{id}"))["revision"], 1);

        // An editor that first writes JSON that does not parse, then fixes
        // it: the error names the line, the editor opens again.
        let fix = script(
            &path,
            "fix.sh",
            r#"if [ ! -f "$0.ran" ]; then touch "$0.ran"; printf '{\n  "path": "/good",\n  "body": {' > "$1"; exit 0; fi
printf '{"method":"POST","path":"/good","headers":{},"body":{"email":"ann@example.com"},"note":"typo"}' > "$1""#,
        );
        let o = redrive(&["dlq", "edit", &id, "--redrive"], a, Some(&fix));
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let out = text(&o);
        assert!(out.contains("the draft is not JSON: EOF while parsing an object at line 3"), "{out}");
        assert!(out.contains("revision 2 saved") && out.contains("redriven"), "{out}");
        let m = wait_state(a, &id, "delivered");
        assert_eq!(m["path"], "/good");
        let journal = mock.journal(None);
        let last = journal.entries.last().expect("the receiver saw it");
        assert_eq!(last.path, "/good");

        // Resolve a second one as applied.
        let other = enqueue("/bad-2");
        wait_state(a, &other, "parked");
        let o = redrive(&["dlq", "resolve", &other, "--applied", "--note", "in their console"], a, None);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(text(&o).contains("now delivered"), "{}", text(&o));

        // Pause and resume.
        let o = redrive(&["destinations", "pause", "crm", "--note", "maintenance"], a, None);
        assert!(text(&o).contains("crm: paused"), "{}", text(&o));
        let o = redrive(&["destinations", "resume", "crm"], a, None);
        assert!(text(&o).contains("crm: delivering"), "{}", text(&o));

        let o = redrive(&["audit"], a, None);
        let out = text(&o);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 5, "{out}");
        for (line, action) in lines.iter().zip(["resume", "pause", "resolve", "redrive", "edit"]) {
            assert!(line.contains("alice") && line.contains(action), "{line}");
        }
        assert!(lines[4].contains("revision=2") && lines[4].contains("note=\"typo\""), "{out}");
        drop(node);
    })
    .await
    .expect("join");
}
