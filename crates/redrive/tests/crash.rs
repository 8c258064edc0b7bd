//! No acknowledged message is lost: thousands of messages are enqueued while
//! `redrive serve` is killed with SIGKILL several times, during ingest and
//! delivery; after the last restart every message that got a 202 ends
//! delivered. Duplicate deliveries (allowed: at-least-once, same key) are
//! counted and printed.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redrive_mock::{MockServer, Scenario};
use support::{request, start, TOKEN};

const MESSAGES: usize = 3000;
const KILLS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_message_is_lost_across_kill_9() {
    let mock = MockServer::start(
        Scenario::from_toml(
            "sink",
            "[journal]\nlimit = 1000000\n[default]\nstatus = 200\ndelay = \"2ms\"\n",
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
            "[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://redrive.db\"\napi_tokens = [\"{TOKEN}\"]\n\
             [destinations.sink]\nurl = \"{}\"\npolicy = \"quick\"\nmax_in_flight = 64\n\
             [policies.quick]\nextends = \"standard\"\nattempt_timeout = \"2s\"\n",
            mock.url()
        ),
    )
    .expect("config");
    let dir_path = dir.path().to_path_buf();

    let report = tokio::task::spawn_blocking(move || {
        let acked: Arc<Mutex<HashSet<usize>>> = Arc::new(Mutex::new(HashSet::new()));
        let next = Arc::new(AtomicUsize::new(0));
        let current = Arc::new(Mutex::new(String::new()));
        let mut served = start(&dir_path);
        *current.lock().expect("lock") = served.addr.clone();
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let (acked, next, current) =
                    (Arc::clone(&acked), Arc::clone(&next), Arc::clone(&current));
                std::thread::spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= MESSAGES {
                        return;
                    }
                    let body =
                        format!(r#"{{"destination":"sink","path":"/m/{i}","body":{{"n":{i}}}}}"#);
                    // Resend the same message (same key) until it is acknowledged,
                    // as a client of a crashing server would.
                    loop {
                        let addr = current.lock().expect("lock").clone();
                        if let Some((202, _)) = request(
                            &addr,
                            "POST",
                            "/v1/messages",
                            Some(&format!("msg-{i}")),
                            &body,
                        ) {
                            acked.lock().expect("lock").insert(i);
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
            })
            .collect();
        // Kill during ingest (and the delivery that runs beside it).
        for k in 0..KILLS {
            let target = (k + 1) * MESSAGES / (KILLS + 2);
            while acked.lock().expect("lock").len() < target {
                std::thread::sleep(Duration::from_millis(2));
            }
            served.child.kill().expect("SIGKILL");
            let _ = served.child.wait();
            served = start(&dir_path);
            *current.lock().expect("lock") = served.addr.clone();
        }
        for w in workers {
            w.join().expect("worker");
        }
        // One more kill while delivering the backlog.
        served.child.kill().expect("SIGKILL");
        let _ = served.child.wait();
        served = start(&dir_path);
        let addr = served.addr.clone();
        let acked_count = acked.lock().expect("lock").len();
        // Wait until nothing is pending (leases of killed nodes expire: 32 s at most).
        let mut delivered = 0;
        for _ in 0..1800 {
            let pending = request(&addr, "GET", "/v1/messages?state=pending&limit=1", None, "");
            if let Some((200, body)) = pending {
                if body.contains("\"messages\":[]") {
                    let mut cursor = String::new();
                    delivered = 0;
                    loop {
                        let path = format!("/v1/messages?state=delivered&limit=1000{cursor}");
                        let (_, page) = request(&addr, "GET", &path, None, "").expect("list");
                        let v: serde_json::Value = serde_json::from_str(&page).expect("json");
                        delivered += v["messages"].as_array().map_or(0, Vec::len);
                        match v["next_cursor"].as_str() {
                            Some(c) => cursor = format!("&cursor={c}"),
                            None => break,
                        }
                    }
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        served.child.kill().expect("kill");
        let _ = served.child.wait();
        (acked_count, delivered)
    })
    .await
    .expect("join");

    let (acked, delivered) = report;
    assert_eq!(acked, MESSAGES, "every message was eventually acknowledged");
    assert_eq!(
        delivered, MESSAGES,
        "every acknowledged message was delivered, none lost"
    );
    let counts = mock.counts();
    let received: usize = (0..MESSAGES)
        .filter(|i| counts.keys.contains_key(&format!("msg-{i}")))
        .count();
    assert_eq!(received, MESSAGES, "the receiver saw every message");
    let duplicates: u64 = counts.keys.values().map(|n| n.saturating_sub(1)).sum();
    println!(
        "crash test: {MESSAGES} messages, {} kills, {} deliveries seen by the receiver, {duplicates} duplicates (same key)",
        KILLS + 1,
        counts.total
    );
}
