//! The SQLite store's schema: its migrations, in order, and the function
//! that runs those a database has not seen (`PRAGMA user_version` counts
//! them).

use rusqlite::Connection;

use super::{db, minutes};
use crate::StoreError;

/// Schema migrations, in order; `PRAGMA user_version` says how many ran.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE messages (
    id                TEXT PRIMARY KEY,
    destination       TEXT NOT NULL,
    method            TEXT NOT NULL,
    path              TEXT NOT NULL,
    headers           TEXT NOT NULL,
    body              BLOB NOT NULL,
    idempotency_key   TEXT NOT NULL UNIQUE,
    request_hash      TEXT NOT NULL,
    marked_idempotent INTEGER NOT NULL,
    state             TEXT NOT NULL,
    park_reason       TEXT,
    last_class        TEXT,
    attempts          INTEGER NOT NULL DEFAULT 0,
    total_attempts    INTEGER NOT NULL DEFAULT 0,
    cycle             INTEGER NOT NULL DEFAULT 1,
    cycle_started_at  INTEGER NOT NULL,
    next_attempt_at   INTEGER,
    lease             TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);
CREATE INDEX messages_due ON messages (next_attempt_at) WHERE state = 'pending';
CREATE INDEX messages_by_state ON messages (state, destination, id);
CREATE INDEX messages_by_update ON messages (state, updated_at);
CREATE TABLE attempts (
    message_id        TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    n                 INTEGER NOT NULL,
    cycle             INTEGER NOT NULL,
    attempt           INTEGER NOT NULL,
    started_at        INTEGER NOT NULL,
    latency_ms        INTEGER NOT NULL,
    status            INTEGER,
    transport         TEXT,
    class             TEXT NOT NULL,
    decision          TEXT NOT NULL,
    reason            TEXT NOT NULL,
    delay_ms          INTEGER,
    response_excerpt  TEXT,
    detail            TEXT,
    link_identities   TEXT,
    PRIMARY KEY (message_id, n)
) WITHOUT ROWID;
CREATE INDEX attempts_by_start ON attempts (started_at);
"#,
    crate::schema::DUE_IN_CLAIM_ORDER,
    crate::schema::DUE_BY_DESTINATION,
    crate::schema::FEWER_INDEXES,
    crate::schema::LISTS_BY_STATE_ORDER,
    minutes::MIGRATION,
    crate::schema::PEOPLE_SQLITE,
    crate::schema::SOURCES,
];

pub(super) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map_err(db)?
        .try_into()
        .unwrap_or(0);
    if version > MIGRATIONS.len() {
        return Err(StoreError::Config(format!(
            "the database is at schema version {version}, newer than this redrive knows ({}); upgrade redrive",
            MIGRATIONS.len()
        )));
    }
    if version > 0 && version < MIGRATIONS.len() {
        // Some read every row (6 counts the attempts by minute): on a large
        // database the first start after an upgrade takes a while.
        tracing::info!(
            from = version,
            to = MIGRATIONS.len(),
            "migrating the database schema"
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        conn.execute_batch(&format!(
            "BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;",
            i + 1
        ))
        .map_err(|e| StoreError::Database(format!("migration {}: {e}", i + 1)))?;
    }
    Ok(())
}
