//! Throw-away PostgreSQL databases for tests: each test gets its own, dropped
//! when the guard goes. Reads `REDRIVE_TEST_DATABASE_URL`; without it the test
//! is skipped with a message, and under `CI=true` that is a failure.

use crate::postgres::{PostgresOptions, PostgresStore};

/// Drops its database when dropped.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    /// The URL of the new database.
    pub url: String,
}

impl TestDatabase {
    /// A fresh, empty database, or `None` (with a message) when
    /// `REDRIVE_TEST_DATABASE_URL` is not set. Panics under `CI=true` then.
    pub async fn create(test: &str) -> Option<TestDatabase> {
        let Ok(admin_url) = std::env::var("REDRIVE_TEST_DATABASE_URL") else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{test}: REDRIVE_TEST_DATABASE_URL is not set, and CI=true does not allow skipping PostgreSQL tests");
            }
            eprintln!("SKIPPED {test}: set REDRIVE_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test to run it");
            return None;
        };
        let (client, connection) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("{test}: cannot connect to REDRIVE_TEST_DATABASE_URL: {e}"));
        tokio::spawn(connection);
        let name = format!("redrive_test_{}", rand_suffix());
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("{test}: cannot create a test database: {e}"));
        let url = match admin_url.rsplit_once('/') {
            Some((base, rest)) => match rest.split_once('?') {
                Some((_, query)) => format!("{base}/{name}?{query}"),
                None => format!("{base}/{name}"),
            },
            None => panic!("{test}: REDRIVE_TEST_DATABASE_URL has no database name"),
        };
        Some(TestDatabase {
            admin_url,
            name,
            url,
        })
    }

    /// Makes the database refuse connections (and ends those it has), or
    /// accept them again: a store that fails every call, for tests of what
    /// an outage looks like.
    pub async fn refuse_connections(&self, refuse: bool) {
        let (client, connection) = tokio_postgres::connect(&self.admin_url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("admin connection: {e}"));
        tokio::spawn(connection);
        let name = &self.name;
        let sql = if refuse {
            format!(
                "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            )
        } else {
            format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        };
        client
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// A store on this database.
    pub async fn store(&self) -> PostgresStore {
        PostgresStore::connect(&self.url, &PostgresOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

fn rand_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs outside async; a thread with its own runtime does the work.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok((client, connection)) =
                    tokio_postgres::connect(&admin, tokio_postgres::NoTls).await
                {
                    tokio::spawn(connection);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}
