//! The chart's attempts per minute (`minutes`): always what a `GROUP BY` of
//! the attempts would say, through records, purges in the same group, and
//! databases made before the table existed.

use super::*;

/// Claims the first due message of `crm` at `at` under `lease` and
/// records an attempt of `class` started then.
async fn attempt_once(store: &SqliteStore, lease: &str, at: i64, class: &str, next: NextState) {
    let claimed = store
        .claim(at, want("crm", 1), lease.into(), at + 1_000)
        .await
        .expect("claim");
    let record = AttemptRecord {
        started_at: at,
        class: class.into(),
        ..outcome("x")
    };
    let id = claimed[0].message.id.clone();
    assert!(store
        .record(id, lease.into(), record, next, at)
        .await
        .expect("record"));
}

/// A count of attempts: minute, class, attempts.
type Minute = (i64, String, i64);

/// What `attempt_minutes` holds, and what a `GROUP BY` of the attempts
/// says it should.
fn minutes_and_attempts(path: &Path) -> (Vec<Minute>, Vec<Minute>) {
    let conn = connect(path).expect("open");
    let rows = |sql: &str| {
        conn.prepare(sql)
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("rows")
            .collect::<rusqlite::Result<Vec<Minute>>>()
            .expect("read")
    };
    (
        rows("SELECT minute, class, n FROM attempt_minutes ORDER BY 1, 2"),
        rows(&format!(
            "SELECT {}, class, COUNT(*) FROM attempts GROUP BY 1, 2 ORDER BY 1, 2",
            crate::sqlite::minutes::MINUTE_OF_START
        )),
    )
}

/// The chart's counts by minute are what the attempts say after
/// records of every kind and after a purge; the chart reads them, not
/// the attempts, and the report finds failed attempts by the index of
/// failures (successes are in no index by time).
#[tokio::test]
async fn the_minutes_follow_the_attempts_and_serve_the_chart() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("x.db");
    let store = SqliteStore::open(&path).expect("open");
    let batch: Vec<NewMessage> = (0..6)
        .map(|i| new_message(&format!("01M{i}"), "crm", &format!("k{i}"), 10))
        .collect();
    store.enqueue(batch).await.expect("enqueue");
    for (i, started) in [10, 20, 70_000, 80_000, 130_000, 59_999]
        .into_iter()
        .enumerate()
    {
        let (class, next) = match i % 3 {
            0 => ("success", NextState::Delivered),
            1 => ("server", NextState::Retry { at: started + 1 }),
            _ => (
                "content",
                NextState::Parked {
                    reason: "not_retryable".into(),
                },
            ),
        };
        attempt_once(&store, &format!("L{i}"), started, class, next).await;
    }
    let (kept, counted) = minutes_and_attempts(&path);
    assert_eq!(kept, counted);
    assert_eq!(kept.iter().map(|r| r.2).sum::<i64>(), 6);
    let chart = store.attempt_counts(0, 60_000).await.expect("chart");
    assert_eq!(
        chart,
        kept.iter()
            .map(|(m, c, n)| (*m, c.clone(), *n as u64))
            .collect::<Vec<_>>()
    );
    // The delivered ones (records 0 and 3) go, and their counts.
    assert_eq!(store.purge(1_000_000).await.expect("purge"), 2);
    let (kept, counted) = minutes_and_attempts(&path);
    assert_eq!(kept, counted);
    assert!(!kept.iter().any(|r| r.1 == "success"), "{kept:?}");

    let conn = connect(&path).expect("open");
    let plan = |sql: &str| -> String {
        conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("plan")
            .query_map([0], |r| r.get::<_, String>(3))
            .expect("rows")
            .collect::<rusqlite::Result<Vec<_>>>()
            .expect("plan rows")
            .join("; ")
    };
    let report = plan(REPORT);
    assert!(report.contains("attempts_failed"), "{report}");
    assert!(!report.contains("SCAN a"), "{report}");
}

/// A purge that deletes an attempt recorded earlier in its own commit
/// group takes back exactly what that record added: the group's tally
/// goes into the table before the purge subtracts, so no count is left
/// without attempts behind it.
#[tokio::test]
async fn a_purge_in_the_group_of_a_record_leaves_the_minutes_exact() {
    let (_dir, path, store) = two_due().await;
    attempt_once(&store, "L0", 20, "success", NextState::Delivered).await;
    let claimed = store
        .claim(25, want("crm", 1), "L1".into(), 1_000)
        .await
        .expect("claim");
    assert_eq!(claimed[0].message.id, "01B");
    let (gate, _held) = writer::tests::hold(&store.writer);
    let record = AttemptRecord {
        started_at: 30,
        class: "success".into(),
        ..outcome("x")
    };
    give_up(store.record("01B".into(), "L1".into(), record, NextState::Delivered, 30)).await;
    give_up(store.purge_slice(1_000_000, Some("crm".into()))).await;
    gate.send(()).expect("release the writer");
    // Answered in order: the record and the purge came before.
    store
        .enqueue(vec![new_message("01C", "crm", "k3", 10)])
        .await
        .expect("enqueue");
    assert!(
        store.get("01B".into()).await.expect("get").is_none(),
        "purged"
    );
    let (kept, counted) = minutes_and_attempts(&path);
    assert_eq!(kept, counted);
    assert!(kept.is_empty(), "{kept:?}");
}

/// A database made before the counts by minute gets them from the
/// attempts it holds when it is opened.
#[tokio::test]
async fn an_older_database_gets_its_minutes_from_its_attempts() {
    let (_dir, path, store) = two_due().await;
    for (lease, at) in [("L0", 61_000), ("L1", 62_000)] {
        let next = NextState::Retry { at: at + 10_000 };
        attempt_once(&store, lease, at, "server", next).await;
    }
    drop(store);
    // As migration 5 left it (migrations 8 and 7 undone first).
    connect(&path)
        .expect("open")
        .execute_batch(
            "DROP INDEX messages_by_source; ALTER TABLE messages DROP COLUMN source; \
             DROP TABLE revisions; DROP TABLE audit; DROP TABLE pauses; \
             ALTER TABLE messages DROP COLUMN revision; ALTER TABLE messages DROP COLUMN resolution; \
             ALTER TABLE attempts DROP COLUMN revision; \
             DROP TABLE attempt_minutes; DROP INDEX attempts_failed; \
             CREATE INDEX attempts_by_start ON attempts (started_at); PRAGMA user_version = 5;",
        )
        .expect("back to version 5");
    let store = SqliteStore::open(&path).expect("open the older database");
    assert_eq!(
        store.attempt_counts(0, 60_000).await.expect("chart"),
        vec![(60_000, "server".to_owned(), 2)]
    );
    drop(store);
    let (kept, counted) = minutes_and_attempts(&path);
    assert_eq!(kept, counted);
}
