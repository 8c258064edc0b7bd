//! A store outage does not flood the log (DESIGN.md, "Hardening"): with the
//! database refusing every connection, 10,000 enqueues each meet the same
//! store error, and the server's log holds a bounded number of error lines
//! (repeated identical errors are logged once, then counted). Needs
//! `REDRIVE_TEST_DATABASE_URL` (skipped without it; a failure under CI).

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use redrive_store::testdb::TestDatabase;
use support::{request, start_logged, TOKEN};

const ENQUEUES: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_identical_store_errors_make_a_few_log_lines() {
    let Some(db) = TestDatabase::create("log_flood").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("redrive.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"{}\"\napi_tokens = [\"{TOKEN}\"]\npool_size = 4\nstatement_timeout = \"2s\"\n\
             [destinations.sink]\nurl = \"http://127.0.0.1:9\"\n",
            db.url
        ),
    )
    .expect("config");
    let served = start_logged(dir.path());
    let addr = served.addr.clone();
    let body = r#"{"destination":"sink","path":"/m"}"#;
    let (status, _) = request(&addr, "POST", "/v1/messages", None, body).expect("enqueue");
    assert_eq!(status, 202, "the store works before the outage");

    db.refuse_connections(true).await;
    let answers = tokio::task::spawn_blocking(move || {
        let next = Arc::new(AtomicUsize::new(0));
        let unavailable = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (next, unavailable, addr) =
                    (Arc::clone(&next), Arc::clone(&unavailable), addr.clone());
                std::thread::spawn(move || {
                    while next.fetch_add(1, Ordering::SeqCst) < ENQUEUES {
                        if let Some((503, _)) = request(&addr, "POST", "/v1/messages", None, body) {
                            unavailable.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("sender");
        }
        unavailable.load(Ordering::SeqCst)
    })
    .await
    .expect("join");
    db.refuse_connections(false).await;
    drop(served);

    assert_eq!(answers, ENQUEUES, "every enqueue met the outage (503)");
    let log = std::fs::read_to_string(dir.path().join("redrive.log")).expect("log");
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\""))
        .collect();
    assert!(
        errors.iter().any(|l| l.contains("store error")),
        "the outage is in the log: {log}"
    );
    assert!(
        errors.len() <= 40,
        "{} error lines for {ENQUEUES} identical store errors:\n{}",
        errors.len(),
        errors.join("\n")
    );
    println!(
        "log flood: {ENQUEUES} enqueues during an outage, {} error lines ({} log lines in all)",
        errors.len(),
        log.lines().count()
    );
}
