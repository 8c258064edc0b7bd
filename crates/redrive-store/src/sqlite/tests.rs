//! The SQLite store's own tests: what only an embedded file can show (the
//! lock, the WAL, page sizes, migrations of older files, the writer's groups).

use super::listing::{destinations_in, id_order_query, index_of, time_order_query};
use super::*;
use crate::conformance::{new_message, want};
use crate::People;

mod minutes;

/// What `stats` reports, and what a `GROUP BY` of the table says.
async fn counted_and_stored(
    store: &SqliteStore,
) -> (
    Vec<(String, MessageState, u64)>,
    Vec<(String, MessageState, u64)>,
) {
    let counted = store.stats(0).await.expect("stats").by_destination_state;
    let conn = connect(store.path()).expect("open");
    let stored = Counts::load(&conn).expect("count").snapshot();
    (counted, stored)
}

fn outcome(reason: &str) -> AttemptRecord {
    AttemptRecord {
        class: "server".into(),
        decision: "park".into(),
        reason: reason.into(),
        ..AttemptRecord::default()
    }
}

/// Waits (for an event; the bound only keeps a broken store from
/// hanging the test) until `done` holds.
async fn until(mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !done() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    done()
}

/// A delivery commit (a record, unsynced) has the WAL synced in the
/// background; a durable commit syncs it itself. Also on a database
/// opened a second time, once its WAL was deleted at the first close
/// (SQLite makes a new one), and on a database reached through a
/// symbolic link, whose WAL lies beside the link's target.
#[tokio::test]
async fn delivery_commits_have_the_wal_synced_behind_them() {
    let dir = tempfile::tempdir().expect("dir");
    let target = dir.path().join("data");
    std::fs::create_dir(&target).expect("data dir");
    let path = target.join("x.db");
    // A database in WAL mode, closed by its only connection: that last
    // close deletes the WAL. (Not a store opened and dropped: its three
    // connections close on their own threads at once, and when each
    // sees another still open, none deletes it.)
    let first = Connection::open(&path).expect("create");
    first
        .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE earlier (x);")
        .expect("WAL mode");
    drop(first);
    let wal = target.join("x.db-wal");
    assert!(!wal.exists(), "the last close deletes the WAL");
    let link = dir.path().join("link.db");
    std::os::unix::fs::symlink(&path, &link).expect("symlink");
    let store = SqliteStore::open(&link).expect("second open, through the link");
    assert!(wal.exists() && !dir.path().join("link.db-wal").exists());
    store
        .enqueue(vec![new_message("01A", "crm", "k1", 10)])
        .await
        .expect("enqueue");
    assert_eq!(store.wal_syncs(), 0, "a durable commit syncs itself");
    let claimed = store
        .claim(20, want("crm", 1), "L".into(), 1_000)
        .await
        .expect("claim");
    let lease = claimed[0].lease.clone();
    assert!(store
        .record("01A".into(), lease, outcome("x"), NextState::Delivered, 30)
        .await
        .expect("record"));
    // The sync runs on its own thread: wait for it.
    assert!(
        until(|| store.wal_syncs() >= 1).await,
        "no background sync followed"
    );
}

/// A store in a temporary directory (`x.db`) holding 01A and 01B of
/// `crm`, due at 10, both claimed at 20 under lease `L` until
/// `lease_until`.
async fn two_claimed(lease_until: i64) -> (tempfile::TempDir, SqliteStore) {
    let (dir, _, store) = two_due().await;
    let claimed = store
        .claim(20, want("crm", 2), "L".into(), lease_until)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2);
    (dir, store)
}

/// Polls `call` once (which queues its job behind the held writer) and
/// drops it: a caller that stopped waiting.
async fn give_up<F: std::future::Future>(call: F) {
    tokio::pin!(call);
    let answered = tokio::select! {
        biased;
        _ = &mut call => true,
        () = std::future::ready(()) => false,
    };
    assert!(!answered, "the writer is held");
}

/// A record or release whose caller stopped waiting (its future dropped
/// once the job was queued) still ends its lease once it commits: the
/// message is claimable again when it is due, not only when the lease
/// runs out.
#[tokio::test]
async fn a_lease_ends_with_its_record_or_release_even_if_the_caller_left() {
    let (_dir, store) = two_claimed(1_000_000).await;
    let (gate, _held) = writer::tests::hold(&store.writer);
    give_up(store.record(
        "01A".into(),
        "L".into(),
        outcome("schedule"),
        NextState::Retry { at: 30 },
        25,
    ))
    .await;
    give_up(store.release(vec![("01B".into(), "L".into())], 35)).await;
    gate.send(()).expect("release the writer");
    // The writer answers its jobs in order: once this enqueue is
    // answered, the earlier answers (and the leases' ends) came before.
    store
        .enqueue(vec![new_message("01C", "crm", "k3", 10)])
        .await
        .expect("enqueue");
    let again = store
        .claim(40, want("crm", 3), "L2".into(), 2_000_000)
        .await
        .expect("claim");
    let ids: Vec<&str> = again.iter().map(|c| c.message.id.as_str()).collect();
    // Oldest due first: 01C since 10, 01A since 30, 01B since 35.
    assert_eq!(ids, ["01C", "01A", "01B"], "both leases ended");
}

/// A record numbers its attempt from the counters its claim read, not
/// from a read of the row after its update, unless the row's
/// `total_attempts` moved since the claim: then it reads them back.
/// (What moves them behind a lease in the store: a record of an
/// earlier, expired lease that committed after the claim read the row.
/// Here the row is changed by hand: `attempts` alone for 01A, which the
/// record does not look at; `total_attempts` too for 01B.)
#[tokio::test]
async fn a_record_numbers_its_attempt_from_its_claim_unless_the_row_moved() {
    let (dir, store) = two_claimed(1_000).await;
    let path = dir.path().join("x.db");
    let side = connect(&path).expect("open");
    side.execute_batch(
        "UPDATE messages SET attempts = 7; \
         UPDATE messages SET total_attempts = 41 WHERE id = '01B'",
    )
    .expect("change the rows");
    for id in ["01A", "01B"] {
        assert!(store
            .record(
                id.into(),
                "L".into(),
                outcome("schedule"),
                NextState::Delivered,
                30
            )
            .await
            .expect("record"));
    }
    let numbered = |id: &'static str| {
        let store = &store;
        async move {
            let (m, attempts) = store.get(id.into()).await.expect("get").expect("found");
            let a = &attempts[0];
            (
                (m.state, m.total_attempts, m.attempts),
                (a.n, a.cycle, a.attempt),
            )
        }
    };
    assert_eq!(
        numbered("01A").await,
        ((MessageState::Delivered, 1, 8), (1, 1, 1))
    );
    assert_eq!(
        numbered("01B").await,
        ((MessageState::Delivered, 42, 8), (42, 1, 8))
    );
    // A lease that recorded records nothing more.
    assert!(!store
        .record(
            "01A".into(),
            "L".into(),
            outcome("schedule"),
            NextState::Delivered,
            40
        )
        .await
        .expect("record"));
}

/// Each state is read per destination from its own index, in the
/// index's order: no query sorts a state's messages, a cursor is a range
/// of the index, and finding the destinations is a skip scan (the
/// conformance tests `list_a_state_across_destinations` and
/// `list_each_state_in_its_order` check the pages).
#[tokio::test]
async fn each_state_is_listed_from_its_index_without_a_sort() {
    let dir = tempfile::tempdir().expect("dir");
    let store = SqliteStore::open(&dir.path().join("x.db")).expect("open");
    let names = ["crm", "erp", "billing"];
    let batch: Vec<NewMessage> = (0..12)
        .map(|i| new_message(&format!("01M{i:02}"), names[i % 3], &format!("k{i}"), 10))
        .collect();
    store.enqueue(batch).await.expect("enqueue");
    let conn = connect(store.path()).expect("open");
    let plan = |sql: &str, values: Vec<rusqlite::types::Value>| -> String {
        conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("plan")
            .query_map(rusqlite::params_from_iter(values), |r| {
                r.get::<_, String>(3)
            })
            .expect("rows")
            .collect::<rusqlite::Result<Vec<_>>>()
            .expect("plan rows")
            .join("; ")
    };
    let of = |state| Filter {
        state: Some(state),
        destination: Some("crm".into()),
        class: Some("server".into()),
        ..Filter::default()
    };
    for state in [MessageState::Parked, MessageState::Discarded] {
        let (sql, values) = id_order_query("id", &of(state), Some("01M00"), 3);
        let each = plan(&sql, values);
        assert!(!each.contains("TEMP B-TREE"), "{each}");
        assert!(each.contains(index_of(state)), "{each}");
        assert!(each.contains("id>?"), "{each}");
    }
    for (order, state, range) in [
        (
            ListOrder::Due,
            MessageState::Pending,
            "(next_attempt_at,id)>",
        ),
        (
            ListOrder::Delivered,
            MessageState::Delivered,
            "(updated_at,id)>",
        ),
    ] {
        let cursor = Cursor::At(order, 10, "01M00".into());
        let key = order.by_time().expect("an order by time");
        let (sql, mut values) = time_order_query(key, &of(state), Some(&cursor), 3);
        values[0] = "crm".to_owned().into();
        let each = plan(&sql, values);
        assert!(!each.contains("TEMP B-TREE"), "{each}");
        assert!(each.contains(index_of(state)), "{each}");
        assert!(each.contains(range), "{each}");
    }
    for state in [
        MessageState::Pending,
        MessageState::Delivered,
        MessageState::Parked,
        MessageState::Discarded,
    ] {
        let skip = plan(&destinations_in(state), Vec::new());
        assert!(!skip.contains("SCAN messages"), "{skip}");
    }
}

/// A store in a temporary directory holding 01A and 01B of `crm`, due
/// at 10, and the database's path.
async fn two_due() -> (tempfile::TempDir, std::path::PathBuf, SqliteStore) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("x.db");
    let store = SqliteStore::open(&path).expect("open");
    store
        .enqueue(vec![
            new_message("01A", "crm", "k1", 10),
            new_message("01B", "crm", "k2", 10),
        ])
        .await
        .expect("enqueue");
    (dir, path, store)
}

fn page_size(path: &Path) -> i64 {
    let conn = Connection::open(path).expect("open");
    conn.query_row("PRAGMA page_size", [], |r| r.get(0))
        .expect("page size")
}

/// A new database gets `PAGE_SIZE` pages; one made before (SQLite's 4
/// KiB) keeps its own, since a WAL database cannot change it, and works
/// as before: the change of page size needs no migration.
#[tokio::test]
async fn new_databases_get_large_pages_and_old_ones_keep_theirs() {
    let dir = tempfile::tempdir().expect("dir");
    let fresh = dir.path().join("fresh.db");
    drop(SqliteStore::open(&fresh).expect("open"));
    assert_eq!(page_size(&fresh), i64::from(PAGE_SIZE));

    let old = dir.path().join("old.db");
    Connection::open(&old)
        .expect("create")
        .execute_batch(
            "PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; CREATE TABLE earlier (x);",
        )
        .expect("an older database");
    let store = SqliteStore::open(&old).expect("open the older database");
    store
        .enqueue(vec![new_message("01OLD", "crm", "k-old", 10)])
        .await
        .expect("enqueue");
    let claimed = store
        .claim(20, want("crm", 1), "L".into(), 1_000)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    assert!(store
        .record(
            "01OLD".into(),
            "L".into(),
            outcome("x"),
            NextState::Delivered,
            30
        )
        .await
        .expect("record"));
    drop(store);
    assert_eq!(page_size(&old), 4096);
}

/// The counts `stats` reports are kept in memory and moved by each
/// committed change: after every kind of change they are what the table
/// holds, and a store opened again starts from the table.
#[tokio::test]
async fn the_counts_follow_every_change_and_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("x.db");
    let store = SqliteStore::open(&path).expect("open");
    let mut batch: Vec<NewMessage> = (0..5)
        .map(|i| {
            new_message(
                &format!("01M{i}"),
                if i < 3 { "crm" } else { "erp" },
                &format!("k{i}"),
                10,
            )
        })
        .collect();
    // A repeated key is a duplicate, not a new message.
    batch.push(new_message("01DUP", "crm", "k0", 10));
    store.enqueue(batch).await.expect("enqueue");
    let (counted, stored) = counted_and_stored(&store).await;
    assert_eq!(counted, stored);
    assert_eq!(
        counted,
        vec![
            ("crm".to_owned(), MessageState::Pending, 3),
            ("erp".to_owned(), MessageState::Pending, 2)
        ]
    );

    let mut claimed = store
        .claim(20, want("crm", 3), "L".into(), 1_000)
        .await
        .expect("claim");
    claimed.extend(
        store
            .claim(20, want("erp", 2), "L".into(), 1_000)
            .await
            .expect("claim"),
    );
    let ids: Vec<String> = claimed.iter().map(|c| c.message.id.clone()).collect();
    let parked = || NextState::Parked {
        reason: "exhausted".into(),
    };
    let nexts = [
        NextState::Delivered,
        parked(),
        NextState::Retry { at: 500 },
        parked(),
        NextState::Delivered,
    ];
    for (id, next) in ids.iter().zip(nexts) {
        assert!(store
            .record(id.clone(), "L".into(), outcome("exhausted"), next, 30)
            .await
            .expect("record"));
    }
    // A second record of the same lease is fenced off and counts nothing.
    assert!(!store
        .record(
            ids[0].clone(),
            "L".into(),
            outcome("exhausted"),
            NextState::Delivered,
            31
        )
        .await
        .expect("record"));
    let (counted, stored) = counted_and_stored(&store).await;
    assert_eq!(counted, stored);

    assert_eq!(
        store
            .redrive(vec![ids[1].clone()], "ops".into(), 40)
            .await
            .expect("redrive")
            .len(),
        1
    );
    assert_eq!(
        store
            .discard(vec![ids[3].clone()], "ops".into(), 40)
            .await
            .expect("discard")
            .len(),
        1
    );
    // Already pending: neither redriven nor discarded, nothing counted.
    assert!(store
        .discard(vec![ids[1].clone()], "ops".into(), 41)
        .await
        .expect("discard")
        .is_empty());
    let (counted, stored) = counted_and_stored(&store).await;
    assert_eq!(counted, stored);

    assert_eq!(store.purge(1_000).await.expect("purge"), 3);
    let (counted, stored) = counted_and_stored(&store).await;
    assert_eq!(counted, stored);
    assert_eq!(counted, vec![("crm".to_owned(), MessageState::Pending, 2),]);
    drop(store);

    let again = SqliteStore::open(&path).expect("open again");
    let (counted, stored) = counted_and_stored(&again).await;
    assert_eq!(counted, stored);
    assert_eq!(counted, vec![("crm".to_owned(), MessageState::Pending, 2)]);
}
