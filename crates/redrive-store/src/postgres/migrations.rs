//! The schema's migrations, run once under an advisory lock by whichever
//! node starts first.

use super::db;
use crate::StoreError;

/// The advisory lock key for migrations ("redrive" in ASCII, roughly).
const MIGRATION_LOCK: i64 = 0x7265_6472_6976_6501;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE messages (
    id                TEXT PRIMARY KEY,
    destination       TEXT NOT NULL,
    method            TEXT NOT NULL,
    path              TEXT NOT NULL,
    headers           TEXT NOT NULL,
    body              BYTEA NOT NULL,
    idempotency_key   TEXT NOT NULL UNIQUE,
    request_hash      TEXT NOT NULL,
    marked_idempotent BOOLEAN NOT NULL,
    state             TEXT NOT NULL,
    park_reason       TEXT,
    last_class        TEXT,
    attempts          INTEGER NOT NULL DEFAULT 0,
    total_attempts    INTEGER NOT NULL DEFAULT 0,
    cycle             INTEGER NOT NULL DEFAULT 1,
    cycle_started_at  BIGINT NOT NULL,
    next_attempt_at   BIGINT,
    lease             TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX messages_due ON messages (next_attempt_at) WHERE state = 'pending';
CREATE INDEX messages_by_state ON messages (state, destination, id);
CREATE INDEX messages_by_update ON messages (state, updated_at);
CREATE TABLE attempts (
    message_id        TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    n                 INTEGER NOT NULL,
    cycle             INTEGER NOT NULL,
    attempt           INTEGER NOT NULL,
    started_at        BIGINT NOT NULL,
    latency_ms        BIGINT NOT NULL,
    status            INTEGER,
    transport         TEXT,
    class             TEXT NOT NULL,
    decision          TEXT NOT NULL,
    reason            TEXT NOT NULL,
    delay_ms          BIGINT,
    response_excerpt  TEXT,
    detail            TEXT,
    link_identities   TEXT,
    PRIMARY KEY (message_id, n)
);
CREATE INDEX attempts_by_start ON attempts (started_at);
"#,
    crate::schema::DUE_IN_CLAIM_ORDER,
    crate::schema::DUE_BY_DESTINATION,
    crate::schema::FEWER_INDEXES,
    crate::schema::LISTS_BY_STATE_ORDER,
    crate::schema::PEOPLE_POSTGRES,
    crate::schema::SOURCES,
];

pub(super) async fn migrate(client: &deadpool_postgres::Object) -> Result<(), StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db)?;
    let result = async {
        client
            .batch_execute("CREATE TABLE IF NOT EXISTS redrive_schema (version INTEGER NOT NULL)")
            .await
            .map_err(db)?;
        let version: i32 = client
            .query_opt("SELECT version FROM redrive_schema", &[])
            .await
            .map_err(db)?
            .map_or(0, |r| r.get(0));
        let version = usize::try_from(version).unwrap_or(0);
        if version > MIGRATIONS.len() {
            return Err(StoreError::Config(format!(
                "the database is at schema version {version}, newer than this redrive knows ({}); upgrade redrive",
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let n = i32::try_from(i + 1).unwrap_or(i32::MAX);
            client
                .batch_execute(&format!(
                    "BEGIN; {sql}; DELETE FROM redrive_schema; INSERT INTO redrive_schema VALUES ({n}); COMMIT;"
                ))
                .await
                .map_err(|e| StoreError::Database(format!("migration {n}: {e}")))?;
        }
        Ok(())
    }
    .await;
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    result
}
