//! A full disk must not wedge delivery (DESIGN.md, "Hardening"): the
//! server runs on a 64 MiB tmpfs of its own; while the receiver is down, a
//! backlog of 2 KiB messages fills it until enqueues get 507; the receiver
//! comes back, everything acknowledged is delivered, the delivered backlog
//! is purged early and enqueues are accepted again without a person; a
//! second backlog brings the total beyond what the disk holds at once; the
//! database passes `PRAGMA integrity_check`.
//!
//! It mounts a tmpfs, which needs root: where it cannot, it says so and
//! passes, except under CI (`CI` set), where it fails.

mod support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redrive_mock::{MockServer, Scenario};
use support::{request, start, TOKEN};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Mounted(PathBuf);

impl Mounted {
    fn tmpfs(at: &Path, size: &str) -> Result<Mounted, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(Mounted(at.to_path_buf()))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn scenario(status: u16) -> Scenario {
    Scenario::from_toml(
        "receiver",
        &format!("[journal]\nlimit = 1000000\n[default]\nstatus = {status}\n"),
        None,
    )
    .expect("scenario")
}

/// 2 KiB of JSON for message `i`.
fn body(i: usize) -> String {
    format!(
        r#"{{"destination":"sink","path":"/m/{i}","body":{{"n":{i},"pad":"{}"}}}}"#,
        "x".repeat(2000)
    )
}

/// Enqueues from 8 threads, numbers from `from`, until a 507 (or `limit`
/// messages were acknowledged); with `patient`, a 507 is waited out and the
/// message sent again, as a client that honours `Retry-After` would (sooner
/// here). The acknowledged numbers, the statuses other than 202 and 507,
/// and how many 507 came.
fn fill(addr: &str, from: usize, limit: usize, patient: bool) -> (Vec<usize>, Vec<u16>, usize) {
    let next = Arc::new(AtomicUsize::new(from));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let other = Arc::new(Mutex::new(Vec::new()));
    let full = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (next, acked, other, full, refused, addr) = (
                Arc::clone(&next),
                Arc::clone(&acked),
                Arc::clone(&other),
                Arc::clone(&full),
                Arc::clone(&refused),
                addr.to_owned(),
            );
            std::thread::spawn(move || loop {
                if full.load(Ordering::SeqCst) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= from + limit {
                    return;
                }
                loop {
                    match request(
                        &addr,
                        "POST",
                        "/v1/messages",
                        Some(&format!("m-{i}")),
                        &body(i),
                    ) {
                        Some((202, _)) => acked.lock().expect("lock").push(i),
                        Some((507, answer)) => {
                            assert!(answer.contains("min_free_disk"), "{answer}");
                            refused.fetch_add(1, Ordering::SeqCst);
                            // Patient, but not for ever: a disk that never
                            // makes room fails the test instead of hanging it.
                            if patient && refused.load(Ordering::SeqCst) < 5_000 {
                                std::thread::sleep(Duration::from_millis(200));
                                continue;
                            }
                            full.store(true, Ordering::SeqCst);
                        }
                        Some((status, _)) => other.lock().expect("lock").push(status),
                        None => other.lock().expect("lock").push(0),
                    }
                    break;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("sender");
    }
    let acked = acked.lock().expect("lock").clone();
    let other = other.lock().expect("lock").clone();
    (acked, other, refused.load(Ordering::SeqCst))
}

/// Numbers the receiver answered 2xx for.
fn delivered(receiver: &MockServer) -> HashSet<usize> {
    receiver
        .journal(None)
        .entries
        .iter()
        .filter(|e| !e.answer.contains("503"))
        .filter_map(|e| e.path.strip_prefix("/m/")?.parse().ok())
        .collect()
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_that_filled_the_disk_drains_and_enqueues_come_back() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("data dir");
    let _mounted = match Mounted::tmpfs(&data, "64m") {
        Ok(m) => m,
        Err(e) => {
            assert!(
                std::env::var("CI").is_err(),
                "CI must be able to mount a tmpfs for the disk test: {e}"
            );
            eprintln!("SKIPPED: cannot mount a tmpfs here (needs root): {e}");
            return;
        }
    };
    let receiver = MockServer::start(scenario(503), "127.0.0.1:0".parse().expect("addr"), None)
        .await
        .expect("mock");
    std::fs::write(
        dir.path().join("redrive.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\napi_tokens = [\"{TOKEN}\"]\nmin_free_disk = \"8MiB\"\nmax_body_bytes = 8192\n\
             [destinations.sink]\nurl = \"{}\"\npolicy = \"patient\"\nmax_in_flight = 32\n\
             [policies.patient]\nextends = \"standard\"\nmax_attempts = 100\ndeadline = \"1h\"\n\
             schedule = {{ exponential = {{ base = \"200ms\", factor = 2, cap = \"2s\" }} }}\n",
            data.join("redrive.db").display(),
            receiver.url()
        ),
    )
    .expect("config");
    let served = start(dir.path());
    let addr = served.addr.clone();

    // Phase 1: the receiver is down; fill until 507, and again until the
    // server says it is low (a 507 may come from the estimate of what the
    // enqueues before it wrote, which the next measure corrects).
    let mut first = Vec::new();
    let mut why = String::new();
    for round in 0.. {
        assert!(round < 100, "never low: {why}");
        let a = addr.clone();
        let from = 200_000 * round / 100;
        let (acked, other, _) =
            tokio::task::spawn_blocking(move || fill(&a, from, 200_000 / 100, false))
                .await
                .expect("join");
        assert!(
            other.is_empty(),
            "only 202 and 507 while filling: {other:?}"
        );
        first.extend(acked);
        let (status, answer) = request(&addr, "GET", "/readyz", None, "").expect("readyz");
        why = answer;
        if status == 503 {
            break;
        }
    }
    assert!(first.len() > 1000, "the disk held {} messages", first.len());
    assert!(why.contains("below min_free_disk"), "{why}");
    let (_, metrics) = request(&addr, "GET", "/metrics", None, "").expect("metrics");
    assert!(metrics.contains("redrive_disk_free_bytes"), "{metrics}");

    // The receiver returns: everything acknowledged is delivered.
    receiver.replace_scenario(scenario(200));
    let want: HashSet<usize> = first.iter().copied().collect();
    wait_for(
        "the first backlog delivered",
        Duration::from_secs(240),
        || delivered(&receiver).is_superset(&want),
    )
    .await;

    // Enqueues are accepted again within a minute, without a person: the
    // delivered backlog is purged early and its pages count as free.
    let started = Instant::now();
    let mut probe = 1_000_000;
    loop {
        let answer = request(
            &addr,
            "POST",
            "/v1/messages",
            Some(&format!("m-{probe}")),
            &body(probe),
        );
        if let Some((202, _)) = answer {
            break;
        }
        assert!(
            matches!(answer, Some((507, _))),
            "only 507 while the disk is low: {answer:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "enqueues still refused a minute after the backlog drained"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        probe += 1;
    }
    let back_after = started.elapsed();
    let (status, _) = request(&addr, "GET", "/readyz", None, "").expect("readyz");
    assert_eq!(status, 200);

    // Phase 2: as many again, delivered as they come; a 507 is waited out.
    let a = addr.clone();
    let count = first.len();
    let (second, other, refused) =
        tokio::task::spawn_blocking(move || fill(&a, 200_000, count, true))
            .await
            .expect("join");
    assert!(other.is_empty(), "{other:?}");
    assert_eq!(second.len(), count);
    let want2: HashSet<usize> = second.iter().copied().chain([probe]).collect();
    wait_for(
        "the second backlog delivered",
        Duration::from_secs(240),
        || delivered(&receiver).is_superset(&want2),
    )
    .await;
    let total = want.len() + want2.len();
    assert!(
        total >= want.len() * 2,
        "more messages in all ({total}) than the disk held at once ({})",
        want.len()
    );
    drop(served);

    let conn = rusqlite::Connection::open(data.join("redrive.db")).expect("open");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok");
    println!(
        "disk test: 64 MiB tmpfs, min_free_disk 8 MiB; {} messages filled it, all delivered; enqueues accepted again {:.1} s after; {total} messages in all ({refused} answers 507 waited out in the second backlog)",
        want.len(),
        back_after.as_secs_f64()
    );
}
