//! Several `redrive serve` nodes on one PostgreSQL database share the queue:
//! every message is delivered once when all nodes live, and none is lost when
//! one is killed with SIGKILL mid-run. Needs `REDRIVE_TEST_DATABASE_URL`
//! (skipped without it; a failure under `CI=true`).

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redrive_mock::{MockServer, Scenario};
use redrive_store::testdb::TestDatabase;
use support::{request, start, Served, TOKEN};

fn write_config(dir: &Path, database: &str, sink: &str) {
    std::fs::write(
        dir.join("redrive.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"{database}\"\napi_tokens = [\"{TOKEN}\"]\npool_size = 8\n\
             [destinations.sink]\nurl = \"{sink}\"\npolicy = \"quick\"\nmax_in_flight = 64\n\
             [policies.quick]\nextends = \"standard\"\nattempt_timeout = \"2s\"\n"
        ),
    )
    .expect("config");
}

/// Enqueues `n` messages, spreading them over the nodes, with 8 threads.
fn enqueue_all(addrs: &[String], n: usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let next = Arc::clone(&next);
            let addrs = addrs.to_vec();
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    return;
                }
                let body = format!(r#"{{"destination":"sink","path":"/m/{i}"}}"#);
                let mut tries = 0;
                loop {
                    let addr = &addrs[(i + t + tries) % addrs.len()];
                    if let Some((202, _)) = request(
                        addr,
                        "POST",
                        "/v1/messages",
                        Some(&format!("msg-{i}")),
                        &body,
                    ) {
                        break;
                    }
                    tries += 1;
                    assert!(tries < 1000, "message {i} never acknowledged");
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("enqueuer");
    }
}

/// Waits until no message is pending; returns how many are delivered.
fn wait_delivered(addr: &str) -> usize {
    for _ in 0..1200 {
        if let Some((200, body)) =
            request(addr, "GET", "/v1/messages?state=pending&limit=1", None, "")
        {
            if body.contains("\"messages\":[]") {
                let mut delivered = 0;
                let mut cursor = String::new();
                loop {
                    let (_, page) = request(
                        addr,
                        "GET",
                        &format!("/v1/messages?state=delivered&limit=1000{cursor}"),
                        None,
                        "",
                    )
                    .expect("list");
                    let v: serde_json::Value = serde_json::from_str(&page).expect("json");
                    delivered += v["messages"].as_array().map_or(0, Vec::len);
                    match v["next_cursor"].as_str() {
                        Some(c) => cursor = format!("&cursor={c}"),
                        None => return delivered,
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("messages still pending after two minutes");
}

async fn sink(delay: &str) -> MockServer {
    MockServer::start(
        Scenario::from_toml(
            "sink",
            &format!("[journal]\nlimit = 1000000\n[default]\nstatus = 200\ndelay = \"{delay}\"\n"),
            None,
        )
        .expect("scenario"),
        "127.0.0.1:0".parse().expect("addr"),
        None,
    )
    .await
    .expect("mock")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_deliver_every_message_exactly_once() {
    let Some(db) = TestDatabase::create("three nodes").await else {
        return;
    };
    const N: usize = 20_000;
    let mock = sink("0ms").await;
    let dir = tempfile::tempdir().expect("dir");
    write_config(dir.path(), &db.url, &mock.url());
    let dir_path = dir.path().to_path_buf();
    let delivered = tokio::task::spawn_blocking(move || {
        let nodes: Vec<Served> = (0..3).map(|_| start(&dir_path)).collect();
        let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
        enqueue_all(&addrs, N);
        wait_delivered(&addrs[0])
    })
    .await
    .expect("join");
    assert_eq!(delivered, N);
    let counts = mock.counts();
    let seen = (0..N)
        .filter(|i| counts.keys.get(&format!("msg-{i}")) == Some(&1))
        .count();
    assert_eq!(
        seen, N,
        "every message reached the receiver exactly once: none was attempted by two nodes"
    );
    assert_eq!(counts.total as usize, N);
    println!(
        "three nodes: {N} messages, {} requests at the receiver, 0 duplicates",
        counts.total
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_run_loses_nothing() {
    let Some(db) = TestDatabase::create("node death").await else {
        return;
    };
    const N: usize = 5_000;
    let mock = sink("20ms").await;
    let dir = tempfile::tempdir().expect("dir");
    write_config(dir.path(), &db.url, &mock.url());
    let dir_path = dir.path().to_path_buf();
    let mock = Arc::new(mock);
    let watcher = Arc::clone(&mock);
    let delivered = tokio::task::spawn_blocking(move || {
        let mut nodes: Vec<Served> = (0..3).map(|_| start(&dir_path)).collect();
        let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
        enqueue_all(&addrs, N);
        // Kill the first node once deliveries are well under way.
        while (watcher.counts().total as usize) < N / 3 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut victim = nodes.remove(0);
        victim.child.kill().expect("SIGKILL");
        let _ = victim.child.wait();
        wait_delivered(&addrs[1])
    })
    .await
    .expect("join");
    assert_eq!(
        delivered, N,
        "every message delivered by the nodes that lived"
    );
    let counts = mock.counts();
    let missing = (0..N)
        .filter(|i| !counts.keys.contains_key(&format!("msg-{i}")))
        .count();
    assert_eq!(missing, 0);
    let duplicates: u64 = counts.keys.values().map(|n| n.saturating_sub(1)).sum();
    println!("node death: {N} messages, {} requests at the receiver, {duplicates} duplicates (the killed node's in-flight attempts, same key)", counts.total);
}

/// A pause made on one node holds on the other (announced with `NOTIFY`):
/// messages enqueued there wait, and are delivered once another node
/// resumes the destination.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_on_one_node_holds_on_every_node() {
    let Some(db) = TestDatabase::create("pause across nodes").await else {
        return;
    };
    const N: usize = 200;
    let mock = sink("0ms").await;
    let dir = tempfile::tempdir().expect("dir");
    write_config(dir.path(), &db.url, &mock.url());
    let dir_path = dir.path().to_path_buf();
    let mock = Arc::new(mock);
    let watcher = Arc::clone(&mock);
    let delivered = tokio::task::spawn_blocking(move || {
        let nodes: Vec<Served> = (0..2).map(|_| start(&dir_path)).collect();
        let (a, b) = (nodes[0].addr.clone(), nodes[1].addr.clone());
        let (status, body) =
            request(&a, "POST", "/v1/destinations/sink/pause", None, "{}").expect("pause");
        assert_eq!(status, 200, "{body}");
        // Node b shows the pause once the announcement reached it.
        let mut seen = false;
        for _ in 0..500 {
            if let Some((200, body)) = request(&b, "GET", "/v1/destinations", None, "") {
                if body.contains("\"paused\":true") {
                    seen = true;
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(seen, "node b never learned of the pause");
        enqueue_all(std::slice::from_ref(&b), N);
        // Both nodes have had many rounds (their claims run at once when
        // something is due): nothing went out.
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(watcher.counts().total, 0, "nothing attempted while paused");
        let (status, body) =
            request(&b, "POST", "/v1/destinations/sink/resume", None, "").expect("resume");
        assert_eq!(status, 200, "{body}");
        wait_delivered(&a)
    })
    .await
    .expect("join");
    assert_eq!(delivered, N);
}
