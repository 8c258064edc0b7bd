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

#[tokio::test]
async fn an_enqueue_wakes_listening_nodes() {
    use redrive_store::Store;
    let Some(db) = TestDatabase::create("listen/notify").await else {
        return;
    };
    let a = db.store().await;
    let b = db.store().await;
    let mut wake = b.wakeups().expect("postgres listens");
    let before = *wake.borrow_and_update();
    // LISTEN is set up in the background; give it a moment by retrying.
    let mut woke = false;
    for i in 0..50 {
        a.enqueue(vec![redrive_store::conformance::new_message(
            &format!("01W{i}"),
            "crm",
            &format!("w{i}"),
            1,
        )])
        .await
        .expect("enqueue");
        if tokio::time::timeout(std::time::Duration::from_millis(200), wake.changed())
            .await
            .is_ok()
        {
            woke = true;
            break;
        }
    }
    assert!(woke && *wake.borrow() != before, "node b was told");
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
