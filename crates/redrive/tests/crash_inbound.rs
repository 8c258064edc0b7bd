//! The crash test's shape, inbound: senders push to an inbound source while
//! `redrive serve` is killed with SIGKILL several times; every request that
//! got a 2xx reaches the handler. A sender resends what got no answer (as
//! a platform does), and the source dedupes by the event's id, so a resend
//! of an event already stored is answered as the first was.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redrive_mock::{MockServer, Scenario};
use support::{request, start, TOKEN};

const EVENTS: usize = 2000;
const KILLS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_accepted_inbound_request_is_lost_across_kill_9() {
    let handler = MockServer::start(
        Scenario::from_toml(
            "handler",
            "[journal]\nlimit = 1000000\n[default]\nstatus = 200\ndelay = \"1ms\"\n",
            None,
        )
        .expect("scenario"),
        "127.0.0.1:0".parse().expect("addr"),
        None,
    )
    .await
    .expect("mock");
    let dir = tempfile::tempdir().expect("dir");
    // The source checks the bearer token the sender holds (the API's token
    // here, so that the tests' plain client can send it) and dedupes by the
    // sender's `Idempotency-Key`.
    std::fs::write(
        dir.path().join("redrive.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://redrive.db\"\napi_tokens = [\"{TOKEN}\"]\n\
             [destinations.handler]\nurl = \"{}\"\npolicy = \"quick\"\nmax_in_flight = 32\n\
             [policies.quick]\nextends = \"standard\"\nattempt_timeout = \"2s\"\n\
             [sources.hooks]\ndestination = \"handler\"\nverify = {{ bearer = \"{TOKEN}\" }}\ndedupe = {{ header = \"idempotency-key\" }}\n",
            handler.url()
        ),
    )
    .expect("config");
    let dir_path = dir.path().to_path_buf();

    let acked = tokio::task::spawn_blocking(move || {
        let acked: Arc<Mutex<HashMap<usize, String>>> = Arc::new(Mutex::new(HashMap::new()));
        let next = Arc::new(AtomicUsize::new(0));
        let current = Arc::new(Mutex::new(String::new()));
        let mut served = start(&dir_path);
        *current.lock().expect("lock") = served.addr.clone();
        let senders: Vec<_> = (0..8)
            .map(|_| {
                let (acked, next, current) =
                    (Arc::clone(&acked), Arc::clone(&next), Arc::clone(&current));
                std::thread::spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= EVENTS {
                        return;
                    }
                    let body = format!(r#"{{"event":"user.updated","n":{i}}}"#);
                    loop {
                        let addr = current.lock().expect("lock").clone();
                        if let Some((202, answer)) = request(
                            &addr,
                            "POST",
                            &format!("/in/hooks/events/{i}"),
                            Some(&format!("evt-{i}")),
                            &body,
                        ) {
                            acked.lock().expect("lock").insert(i, answer);
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
            })
            .collect();
        for k in 0..KILLS {
            let target = (k + 1) * EVENTS / (KILLS + 1);
            while acked.lock().expect("lock").len() < target {
                std::thread::sleep(Duration::from_millis(2));
            }
            served.child.kill().expect("SIGKILL");
            let _ = served.child.wait();
            served = start(&dir_path);
            *current.lock().expect("lock") = served.addr.clone();
        }
        for s in senders {
            s.join().expect("sender");
        }
        let addr = served.addr.clone();
        let acked = acked.lock().expect("lock").clone();
        // Every accepted event is listed under its source.
        let mut listed = 0;
        let mut cursor = String::new();
        loop {
            let path = format!("/v1/messages?source=hooks&limit=1000{cursor}");
            let (status, page) = request(&addr, "GET", &path, None, "").expect("list");
            assert_eq!(status, 200, "{page}");
            let v: serde_json::Value = serde_json::from_str(&page).expect("json");
            let messages = v["messages"].as_array().cloned().unwrap_or_default();
            assert!(messages.iter().all(|m| m["source"] == "hooks"), "{page}");
            listed += messages.len();
            match v["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => break,
            }
        }
        assert_eq!(
            listed, EVENTS,
            "one message per event, resends deduplicated"
        );
        (acked, served)
    })
    .await
    .expect("join");
    let (acked, served) = acked;
    assert_eq!(acked.len(), EVENTS, "every event was eventually accepted");

    // Wait for the handler to see every accepted event (leases of a killed
    // process end within the attempt timeout and its margin).
    let mut seen: HashSet<usize> = HashSet::new();
    for _ in 0..1200 {
        seen = handler
            .journal(None)
            .entries
            .iter()
            .filter_map(|e| e.path.strip_prefix("/events/")?.parse().ok())
            .collect();
        if seen.len() >= EVENTS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let missing: Vec<usize> = (0..EVENTS).filter(|i| !seen.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "{} accepted events never reached the handler, for example {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let total = handler.counts().total;
    println!(
        "inbound crash test: {EVENTS} events, {KILLS} kills, all accepted and delivered; the handler saw {total} requests ({} more than events: redeliveries after a kill)",
        total.saturating_sub(EVENTS as u64)
    );
    drop(served);
}
