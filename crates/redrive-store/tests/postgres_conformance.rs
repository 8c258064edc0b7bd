//! The store conformance suite on PostgreSQL, each test on its own database.
//! Needs `REDRIVE_TEST_DATABASE_URL` (skipped without it, a failure in CI).

use redrive_store::testdb::TestDatabase;
use redrive_store::PostgresStore;

async fn fresh() -> Option<(PostgresStore, TestDatabase)> {
    let db = TestDatabase::create("postgres conformance").await?;
    let store = db.store().await;
    Some((store, db))
}

redrive_store::conformance_tests!(fresh());

#[tokio::test]
async fn nodes_starting_together_migrate_once() {
    let Some(db) = TestDatabase::create("concurrent migrations").await else {
        return;
    };
    let (a, b, c) = tokio::join!(db.store(), db.store(), db.store());
    use redrive_store::Store;
    for s in [&a, &b, &c] {
        assert_eq!(s.next_due().await.expect("query"), None);
    }
}

/// Waits (bounded, for a failure) for the next notes.
async fn next(w: &mut redrive_store::Wakeups) -> redrive_store::Notes {
    let changed = tokio::time::timeout(std::time::Duration::from_secs(10), w.changed());
    assert!(matches!(changed.await, Ok(true)), "no notification");
    w.take()
}

/// Enqueues and releases on one node tell every listening node which
/// destinations they made due, and from when, so that its scheduler claims
/// from those alone.
#[tokio::test]
async fn nodes_are_told_which_destinations_are_due() {
    use redrive_store::conformance::new_message;
    use redrive_store::Store;
    let Some(db) = TestDatabase::create("listen/notify").await else {
        return;
    };
    let a = db.store().await;
    let b = db.store().await;
    let mut wake = b.wakeups().expect("postgres listens");
    // The listener says it listens (what came before is unknown).
    assert!(next(&mut wake).await.unknown, "listening");
    a.enqueue(vec![
        new_message("01A", "crm", "k1", 7),
        new_message("01B", "erp", "k2", 9),
        new_message("01C", "crm", "k3", 8),
    ])
    .await
    .expect("enqueue");
    let notes = next(&mut wake).await;
    assert!(!notes.unknown);
    assert_eq!(
        notes.due,
        [("crm".to_owned(), 7), ("erp".to_owned(), 9)].into()
    );
    let claimed = a
        .claim(10, vec![("erp".into(), 1)], "L".into(), 60_000)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    a.release(vec![("01B".into(), "L".into())], 500)
        .await
        .expect("release");
    assert_eq!(next(&mut wake).await.due, [("erp".to_owned(), 500)].into());
}

#[tokio::test]
async fn a_bad_url_is_a_clear_error_without_the_password() {
    let e = PostgresStore::connect("postgres://u:hunter2@127.0.0.1:1/db", &Default::default())
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        e.contains("cannot connect") && !e.contains("hunter2"),
        "{e}"
    );
}
