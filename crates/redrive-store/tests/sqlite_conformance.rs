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
