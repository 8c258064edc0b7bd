//! The store conformance suite on SQLite, each test on its own database file.

use redrive_store::SqliteStore;

async fn fresh() -> Option<(SqliteStore, tempfile::TempDir)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("redrive.db")).expect("open");
    Some((store, dir))
}

redrive_store::conformance_tests!(fresh());

#[tokio::test]
async fn messages_survive_reopening_the_file() {
    use redrive_store::Store;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("redrive.db");
    {
        let s = SqliteStore::open(&path).expect("open");
        s.enqueue(vec![redrive_store::conformance::new_message(
            "01A", "crm", "k", 1,
        )])
        .await
        .expect("enqueue");
    }
    let s = SqliteStore::open(&path).expect("reopen");
    assert!(s.get("01A".into()).await.expect("get").is_some());
}

#[test]
fn a_bad_url_or_path_is_a_clear_error() {
    let e = SqliteStore::open_url("postgres://x")
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not a sqlite URL"), "{e}");
    let e = SqliteStore::open(std::path::Path::new("/nonexistent/dir/redrive.db"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/dir/redrive.db"), "{e}");
}

/// One process delivers from a SQLite file: a second store on the same file
/// may read and enqueue, but its claims are refused, with a reason; once the
/// first is gone, the second delivers, and what the first had claimed but not
/// recorded is due again at once (its leases were in its memory).
#[tokio::test]
async fn one_deliverer_per_file_and_its_leases_die_with_it() {
    use redrive_store::conformance::{new_message, want};
    use redrive_store::Store;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("redrive.db");
    let first = SqliteStore::open(&path).expect("open");
    first
        .enqueue(vec![new_message("01A", "crm", "k", 1)])
        .await
        .expect("enqueue");
    let claimed = first
        .claim(10, want("crm", 5), "L1".into(), 60_000)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);

    let second = SqliteStore::open(&path).expect("a second store opens");
    second
        .enqueue(vec![new_message("01B", "crm", "k2", 2)])
        .await
        .expect("and enqueues");
    let refused = second
        .claim(20, want("crm", 5), "L2".into(), 60_000)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("another redrive is delivering from this SQLite database"),
        "{refused}"
    );

    // The lock belongs to the store's handles, not to its threads: it is
    // free as soon as the last handle is dropped.
    drop(first);
    let again = second
        .claim(30, want("crm", 5), "L3".into(), 60_000)
        .await
        .expect("the lock is free once the first store is gone");
    let mut ids: Vec<_> = again.iter().map(|c| c.message.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["01A", "01B"], "01A's lease died with the first store");
}

/// Claims run beside the writer, on their own connection: a claim must never
/// take a message whose record it cannot see yet. Four workers claim and
/// record deliveries at once; every message is claimed exactly once and
/// every record lands. (The interleaving varies from run to run; a correct
/// store passes every one.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_beside_the_writer_never_take_a_recorded_message() {
    use redrive_store::conformance::{new_message, want};
    use redrive_store::{AttemptRecord, NextState, Store};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    const N: usize = 2_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("redrive.db")).expect("open");
    let batch: Vec<_> = (0..N)
        .map(|i| new_message(&format!("01M{i:05}"), "crm", &format!("k{i}"), 0))
        .collect();
    store.enqueue(batch).await.expect("enqueue");

    let claimed = Arc::new(AtomicUsize::new(0));
    let recorded = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (store, claimed, recorded) =
                (store.clone(), Arc::clone(&claimed), Arc::clone(&recorded));
            tokio::spawn(async move {
                let mut records = Vec::new();
                for round in 0..100_000 {
                    if recorded.load(Ordering::SeqCst) == N {
                        break;
                    }
                    let lease = format!("w{w}-{round}");
                    let got = store
                        .claim(1, want("crm", 8), lease.clone(), i64::MAX / 2)
                        .await
                        .expect("claim");
                    claimed.fetch_add(got.len(), Ordering::SeqCst);
                    for c in got {
                        let (store, recorded, lease) =
                            (store.clone(), Arc::clone(&recorded), lease.clone());
                        records.push(tokio::spawn(async move {
                            let ok = store
                                .record(
                                    c.message.id.clone(),
                                    lease,
                                    AttemptRecord::default(),
                                    NextState::Delivered,
                                    2,
                                )
                                .await
                                .expect("record");
                            assert!(ok, "the holder's record of {} lands", c.message.id);
                            recorded.fetch_add(1, Ordering::SeqCst);
                        }));
                    }
                    tokio::task::yield_now().await;
                }
                for r in records {
                    r.await.expect("record task");
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
    assert_eq!(recorded.load(Ordering::SeqCst), N);
    assert_eq!(
        claimed.load(Ordering::SeqCst),
        N,
        "each message claimed once: none taken again after its record"
    );
}
