//! The PostgreSQL store: several `redrive serve` nodes sharing one queue.
//!
//! - Claims are one statement with `FOR UPDATE SKIP LOCKED`, committed before
//!   any delivery starts (no transaction is ever held across an HTTP call);
//!   nodes never wait on each other's rows.
//! - Every record is fenced by the lease token: a node whose lease expired
//!   cannot overwrite the newer attempt of another.
//! - Enqueue dedupe is a unique index on the idempotency key (no read-then-write
//!   race between nodes); concurrent enqueues share one transaction and one
//!   statement (`enqueue`: group commit), and so do concurrent records
//!   (`record`).
//! - `NOTIFY redrive_due` after enqueues, redrives and releases names the
//!   destinations and when their messages are due (`wakeups`): every node
//!   `LISTEN`s and claims from those, instead of polling every destination.
//! - Migrations and the retention purge take advisory locks, so nodes that
//!   start together migrate once and only one node purges at a time.

mod enqueue;
mod record;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Row};

use crate::listing::{Cursor, ListOrder};
use crate::model::{
    AttemptRecord, Claimed, Enqueued, Filter, Message, MessageState, NewMessage, NextState, Page,
    ReportRow, Stats,
};
use crate::wakeups::{self, WakeupSender, Wakeups};
use crate::{Store, StoreError};

/// The advisory lock key for migrations ("redrive" in ASCII, roughly).
const MIGRATION_LOCK: i64 = 0x7265_6472_6976_6501;
/// The advisory lock key for the retention purge.
const PURGE_LOCK: i64 = 0x7265_6472_6976_6502;
/// The channel idle nodes listen on.
const CHANNEL: &str = "redrive_due";

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
];

/// Each destination with pending messages, in name order, found by a skip
/// scan of the due index: one probe per destination, not one per row.
const PENDING_DESTINATIONS: &str = "WITH RECURSIVE d(name) AS ( \
       SELECT MIN(destination) FROM messages WHERE state = 'pending' \
       UNION ALL \
       SELECT (SELECT MIN(destination) FROM messages WHERE state = 'pending' AND destination > d.name) \
       FROM d WHERE d.name IS NOT NULL)";

/// The earliest due time of a pending message (see [`EARLIEST_DUE`]).
async fn earliest_due(client: &tokio_postgres::Client) -> Result<Option<i64>, StoreError> {
    client
        .query_one(&format!("{PENDING_DESTINATIONS} {EARLIEST_DUE}"), &[])
        .await
        .map_err(db)?
        .try_get(0)
        .map_err(db)
}

/// The earliest due time of a pending message: the smallest of each
/// destination's first entry in the due index.
const EARLIEST_DUE: &str = "SELECT MIN((SELECT MIN(next_attempt_at) FROM messages \
     WHERE state = 'pending' AND destination = d.name)) FROM d WHERE d.name IS NOT NULL";

const COLUMNS: &str = "id, destination, method, path, headers, body, idempotency_key, request_hash, \
    marked_idempotent, state, park_reason, last_class, attempts, total_attempts, cycle, cycle_started_at, \
    next_attempt_at, created_at, updated_at, lease IS NOT NULL";

/// How to connect.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// Connections in the pool.
    pub pool_size: usize,
    /// `statement_timeout` of every connection.
    pub statement_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            pool_size: 16,
            statement_timeout: Duration::from_secs(30),
        }
    }
}

/// The PostgreSQL store. Cheap to clone.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    due: Wakeups,
    enqueuer: tokio::sync::mpsc::UnboundedSender<enqueue::EnqueueJob>,
    recorder: tokio::sync::mpsc::UnboundedSender<record::RecordJob>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PostgresStore")
    }
}

fn db(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(e.to_string())
}

/// TLS with the server's certificate verified against the Mozilla roots.
fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError::Config(format!("cannot set up TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user[:pass]@host[:port]/db[?sslmode=require]`),
    /// runs pending migrations under an advisory lock, and starts listening
    /// for wake-ups.
    pub async fn connect(
        url: &str,
        options: &PostgresOptions,
    ) -> Result<PostgresStore, StoreError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            StoreError::Config(format!(
                "`{}` is not a PostgreSQL URL: {e}",
                redact_url(url)
            ))
        })?;
        config.options(format!(
            "-c statement_timeout={}",
            options.statement_timeout.as_millis()
        ));
        config.application_name("redrive");
        config.connect_timeout(Duration::from_secs(10));
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        // `sslmode=require`: TLS, with the server's certificate verified against
        // the Mozilla roots. Otherwise (`disable`, or the default `prefer`): plain.
        let require_tls = config.get_ssl_mode() == tokio_postgres::config::SslMode::Require;
        let manager = if require_tls {
            Manager::from_config(config.clone(), tls()?, manager_config)
        } else {
            Manager::from_config(config.clone(), tokio_postgres::NoTls, manager_config)
        };
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .build()
            .map_err(|e| StoreError::Config(format!("cannot build the connection pool: {e}")))?;
        let client = pool.get().await.map_err(|e| {
            StoreError::Config(format!("cannot connect to {}: {e}", redact_url(url)))
        })?;
        migrate(&client).await?;
        drop(client);
        let (tx, due) = wakeups::channel();
        tokio::spawn(listen(config, require_tls, tx));
        let enqueuer = enqueue::start(pool.clone());
        let recorder = record::start(pool.clone());
        Ok(PostgresStore {
            pool,
            due,
            enqueuer,
            recorder,
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(db)
    }
}

/// `postgres://user:secret@host/db` without the secret, for error messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

async fn migrate(client: &deadpool_postgres::Object) -> Result<(), StoreError> {
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

/// Keeps a connection that `LISTEN`s and hands `tx` every notification's
/// payload; reconnects after a failure.
async fn listen(config: tokio_postgres::Config, require_tls: bool, tx: WakeupSender) {
    loop {
        if tx.is_closed() {
            return;
        }
        if require_tls {
            if let Ok(tls) = tls() {
                if let Ok((client, connection)) = config.connect(tls).await {
                    listen_on(client, connection, &tx).await;
                }
            }
        } else if let Ok((client, connection)) = config.connect(tokio_postgres::NoTls).await {
            listen_on(client, connection, &tx).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn listen_on<S, T>(
    client: tokio_postgres::Client,
    mut connection: tokio_postgres::Connection<S, T>,
    tx: &WakeupSender,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    {
        {
            let (note_tx, mut note_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
            let driver = tokio::spawn(async move {
                loop {
                    match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                        Some(Ok(AsyncMessage::Notification(n))) => {
                            if note_tx.send(n.payload().to_owned()).is_err() {
                                return;
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => return,
                    }
                }
            });
            if client
                .batch_execute(&format!("LISTEN {CHANNEL}"))
                .await
                .is_ok()
            {
                // Listening (again): what was announced while no one listened
                // is unknown.
                tx.unknown();
                while let Some(payload) = note_rx.recv().await {
                    tx.payload(&payload);
                }
            }
            driver.abort();
        }
    }
}

fn message(r: &Row) -> Message {
    let headers: String = r.get(4);
    let state: String = r.get(9);
    let u = |i: usize| u32::try_from(r.get::<_, i32>(i)).unwrap_or(0);
    Message {
        id: r.get(0),
        destination: r.get(1),
        method: r.get(2),
        path: r.get(3),
        headers: serde_json::from_str(&headers).unwrap_or_default(),
        body: r.get(5),
        idempotency_key: r.get(6),
        request_hash: r.get(7),
        marked_idempotent: r.get(8),
        state: MessageState::parse(&state).unwrap_or(MessageState::Pending),
        park_reason: r.get(10),
        last_class: r.get(11),
        attempts: u(12),
        total_attempts: u(13),
        cycle: u(14),
        cycle_started_at: r.get(15),
        next_attempt_at: r.get(16),
        created_at: r.get(17),
        updated_at: r.get(18),
        leased: r.get(19),
    }
}

fn attempt(r: &Row) -> AttemptRecord {
    let u = |i: usize| u32::try_from(r.get::<_, i32>(i)).unwrap_or(0);
    AttemptRecord {
        n: u(0),
        cycle: u(1),
        attempt: u(2),
        started_at: r.get(3),
        latency_ms: r.get::<_, i64>(4).max(0) as u64,
        status: r
            .get::<_, Option<i32>>(5)
            .and_then(|s| u16::try_from(s).ok()),
        transport: r.get(6),
        class: r.get(7),
        decision: r.get(8),
        reason: r.get(9),
        delay_ms: r.get::<_, Option<i64>>(10).map(|d| d.max(0) as u64),
        response_excerpt: r.get(11),
        detail: r.get(12),
        link_identities: r.get(13),
    }
}

type Param = Box<dyn ToSql + Sync + Send>;

/// `AND ...` clauses for a filter, numbering parameters after `params`.
fn filter_sql(f: &Filter, params: &mut Vec<Param>) -> String {
    let mut sql = String::new();
    if let Some(s) = f.state {
        // A literal, not a parameter: the planner uses a state's partial
        // index (see `listing`) only for a query that names its state.
        sql.push_str(&format!(" AND state = '{}'", s.as_str()));
    }
    if let Some(d) = &f.destination {
        params.push(Box::new(d.clone()));
        sql.push_str(&format!(" AND destination = ${}", params.len()));
    }
    sql.push_str(&narrowing_sql(f, params));
    sql
}

/// `AND ...` clauses for the parts of a filter beyond its state and
/// destination, numbering parameters after `params`.
fn narrowing_sql(f: &Filter, params: &mut Vec<Param>) -> String {
    let mut sql = String::new();
    let mut add = |clause: &str, p: Param, params: &mut Vec<Param>| {
        params.push(p);
        sql.push_str(&format!(" AND {clause} ${}", params.len()));
    };
    if let Some(c) = &f.class {
        add("last_class =", Box::new(c.clone()), params);
    }
    if let Some(r) = &f.reason {
        add("park_reason =", Box::new(r.clone()), params);
    }
    if let Some(t) = f.since {
        add("updated_at >=", Box::new(t), params);
    }
    sql
}

/// Each destination holding messages in `state`, in name order, by a skip
/// scan of the state's index: one probe per destination (a recursive CTE
/// named `d`, its `name` NULL at the end).
fn destinations_in(state: MessageState) -> String {
    let state = state.as_str();
    format!(
        "WITH RECURSIVE d(name) AS ( \
           SELECT MIN(destination) FROM messages WHERE state = '{state}' \
           UNION ALL \
           SELECT (SELECT MIN(destination) FROM messages WHERE state = '{state}' AND destination > d.name) \
           FROM d WHERE d.name IS NOT NULL)"
    )
}

/// `select` (a `SELECT ... WHERE ...` of `filter_sql`) in id order, as many
/// as the parameter numbered `limit` says, each row locked by `lock` (empty,
/// or a locking clause).
///
/// A state's index orders each destination's messages by id, not a whole
/// state's: with a state alone the planner walked the primary key and skipped
/// every message in other states (600 ms to list the 100,000 pending behind
/// 1,900,000 delivered). Each destination holding the state (a skip scan) is
/// read in order instead, and the pages merged.
fn in_id_order(select: &str, filter: &Filter, limit: usize, lock: &str) -> String {
    match (filter.state, &filter.destination) {
        (Some(state), None) => format!(
            "{} SELECT m.* FROM d CROSS JOIN LATERAL \
               ({select} AND destination = d.name ORDER BY id LIMIT ${limit}{lock}) m \
             WHERE d.name IS NOT NULL ORDER BY m.id LIMIT ${limit}",
            destinations_in(state)
        ),
        _ => format!("{select} ORDER BY id LIMIT ${limit}{lock}"),
    }
}

/// A listing by time (`key`: the state and its time column, see
/// [`ListOrder::by_time`]) of what `filter` matches after `cursor`: each destination's
/// messages in the state read in the order of the state's index
/// (destination, time, id), and the pages merged. Its rows are `COLUMNS`,
/// then the time (`LIST_KEY`).
fn in_time_order(
    (state, time): (MessageState, &str),
    filter: &Filter,
    cursor: Option<&Cursor>,
    limit: usize,
    params: &mut Vec<Param>,
) -> String {
    let mut select = format!(
        "SELECT {COLUMNS}, {time} AS list_key FROM messages WHERE state = '{}'",
        state.as_str()
    );
    let destination = match &filter.destination {
        Some(d) => {
            params.push(Box::new(d.clone()));
            format!("${}", params.len())
        }
        None => "d.name".to_owned(),
    };
    select.push_str(&format!(" AND destination = {destination}"));
    select.push_str(&narrowing_sql(filter, params));
    if let Some(c) = cursor {
        params.push(Box::new(c.at()));
        params.push(Box::new(c.id().to_owned()));
        select.push_str(&format!(
            " AND ({time}, id) > (${}, ${})",
            params.len() - 1,
            params.len()
        ));
    }
    params.push(Box::new(i64::try_from(limit).unwrap_or(i64::MAX)));
    let limit = params.len();
    select.push_str(&format!(" ORDER BY {time}, id LIMIT ${limit}"));
    if filter.destination.is_some() {
        return select;
    }
    format!(
        "{} SELECT m.* FROM d CROSS JOIN LATERAL ({select}) m \
         WHERE d.name IS NOT NULL ORDER BY m.list_key, m.id LIMIT ${limit}",
        destinations_in(state)
    )
}

/// Messages per destination and state, one `GROUP BY` per state.
fn stats_by_state() -> String {
    [
        MessageState::Pending,
        MessageState::Delivered,
        MessageState::Parked,
        MessageState::Discarded,
    ]
    .iter()
    .map(|s| {
        let s = s.as_str();
        format!(
            "SELECT destination, '{s}'::TEXT, COUNT(*) FROM messages WHERE state = '{s}' GROUP BY destination"
        )
    })
    .collect::<Vec<_>>()
    .join(" UNION ALL ")
}

/// Where the time of a row of `in_time_order` is: after `COLUMNS`.
const LIST_KEY: usize = 20;

fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// Announces a payload of [`wakeups::payload`] to every node (when the
/// transaction commits): `$1` the channel, `$2` the payload.
const NOTIFY: &str = "SELECT pg_notify($1, $2)";

/// The payload announcing `due` (destination, time), if there is any.
fn due_payload<'a>(due: impl IntoIterator<Item = (&'a str, i64)>) -> Option<String> {
    let mut due = due.into_iter().peekable();
    due.peek()?;
    Some(wakeups::payload(due))
}

async fn redrive_ids(
    tx: &deadpool_postgres::Transaction<'_>,
    ids: &[String],
    now: i64,
) -> Result<Vec<String>, StoreError> {
    let rows = tx
        .query(
            "UPDATE messages SET state = 'pending', park_reason = NULL, attempts = 0, cycle = cycle + 1, \
             cycle_started_at = $2, next_attempt_at = $2, lease = NULL, updated_at = $2 \
             WHERE id = ANY($1) AND state = 'parked' RETURNING id, destination",
            &[&ids, &now],
        )
        .await
        .map_err(db)?;
    let mut done: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    done.sort_by_key(|id| ids.iter().position(|x| x == id));
    if let Some(payload) = due_payload(rows.iter().map(|r| (r.get::<_, &str>(1), now))) {
        tx.execute(NOTIFY, &[&CHANNEL, &payload])
            .await
            .map_err(db)?;
    }
    Ok(done)
}

impl Store for PostgresStore {
    async fn enqueue(&self, batch: Vec<NewMessage>) -> Result<Vec<Enqueued>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // Group commit with the other enqueues waiting (see `enqueue`).
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.enqueuer
            .send((batch, tx))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn claim(
        &self,
        now: i64,
        want: Vec<(String, usize)>,
        lease: String,
        lease_until: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        let (destinations, limits): (Vec<String>, Vec<i64>) = want
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(d, n)| (d, i64::try_from(n).unwrap_or(i64::MAX)))
            .unzip();
        if destinations.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        // One statement, committed before any delivery: per destination, its
        // due rows oldest first that no other node holds; their due time
        // becomes the lease's end.
        let rows = client
            .query(
                &format!(
                    "WITH due AS (SELECT d.id, d.was_due \
                       FROM unnest($2::text[], $3::int8[]) AS w(destination, n) \
                       CROSS JOIN LATERAL (SELECT id, next_attempt_at AS was_due FROM messages \
                         WHERE state = 'pending' AND destination = w.destination AND next_attempt_at <= $1 \
                         ORDER BY next_attempt_at, id LIMIT w.n FOR UPDATE SKIP LOCKED) d) \
                     UPDATE messages m SET lease = $4, next_attempt_at = $5 FROM due WHERE m.id = due.id \
                     RETURNING {}, due.was_due",
                    COLUMNS
                        .split(", ")
                        .map(|c| if c.starts_with("lease") { "m.lease IS NOT NULL".to_owned() } else { format!("m.{c}") })
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                &[&now, &destinations, &limits, &lease, &lease_until],
            )
            .await
            .map_err(db)?;
        let mut claimed: Vec<(i64, Claimed)> = rows
            .iter()
            .map(|r| {
                (
                    r.get::<_, i64>(20),
                    Claimed {
                        message: message(r),
                        lease: lease.clone(),
                        due_at: r.get::<_, i64>(20),
                    },
                )
            })
            .collect();
        claimed.sort_by(|a, b| (a.0, &a.1.message.id).cmp(&(b.0, &b.1.message.id)));
        Ok(claimed.into_iter().map(|(_, c)| c).collect())
    }

    async fn pending_destinations(&self) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("{PENDING_DESTINATIONS} SELECT name FROM d WHERE name IS NOT NULL"),
                &[],
            )
            .await
            .map_err(db)?;
        rows.iter().map(|r| r.try_get(0).map_err(db)).collect()
    }

    async fn record(
        &self,
        id: String,
        lease: String,
        attempt: AttemptRecord,
        next: NextState,
        now: i64,
    ) -> Result<bool, StoreError> {
        // Group commit with the other records waiting (see `record`).
        let (tx, rx) = tokio::sync::oneshot::channel();
        let r = record::Record {
            id,
            lease,
            attempt,
            next,
            now,
        };
        self.recorder
            .send((r, tx))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn release(&self, leases: Vec<(String, String)>, due_at: i64) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let (ids, tokens): (Vec<String>, Vec<String>) = leases.into_iter().unzip();
        let rows = client
            .query(
                "UPDATE messages m SET lease = NULL, next_attempt_at = $3 \
                 FROM unnest($1::text[], $2::text[]) AS l(id, lease) \
                 WHERE m.id = l.id AND m.lease = l.lease AND m.state = 'pending' \
                 RETURNING m.destination",
                &[&ids, &tokens, &due_at],
            )
            .await
            .map_err(db)?;
        if let Some(payload) = due_payload(rows.iter().map(|r| (r.get::<_, &str>(0), due_at))) {
            client
                .execute(NOTIFY, &[&CHANNEL, &payload])
                .await
                .map_err(db)?;
        }
        Ok(rows.len() as u64)
    }

    async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        let client = self.client().await?;
        earliest_due(&client).await
    }

    async fn due_by_destination(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "{PENDING_DESTINATIONS} SELECT name, (SELECT MIN(next_attempt_at) FROM messages \
                     WHERE state = 'pending' AND destination = d.name) FROM d WHERE d.name IS NOT NULL"
                ),
                &[],
            )
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| Ok((r.try_get(0).map_err(db)?, r.try_get(1).map_err(db)?)))
            .collect()
    }

    async fn due_after(
        &self,
        destinations: Vec<String>,
        now: i64,
    ) -> Result<Vec<(String, Option<i64>)>, StoreError> {
        let client = self.client().await?;
        // A row another claim leased is due at its lease's end, which is
        // its `next_attempt_at`.
        let rows = client
            .query(
                "SELECT w.d, (SELECT MIN(next_attempt_at) FROM messages \
                 WHERE state = 'pending' AND destination = w.d AND next_attempt_at > $2) \
                 FROM unnest($1::text[]) WITH ORDINALITY AS w(d, i) ORDER BY w.i",
                &[&destinations, &now],
            )
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| Ok((r.try_get(0).map_err(db)?, r.try_get(1).map_err(db)?)))
            .collect()
    }

    async fn get(&self, id: String) -> Result<Option<(Message, Vec<AttemptRecord>)>, StoreError> {
        let client = self.client().await?;
        let Some(row) = client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM messages WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(db)?
        else {
            return Ok(None);
        };
        let attempts = client
            .query(
                "SELECT n, cycle, attempt, started_at, latency_ms, status, transport, class, decision, reason, \
                 delay_ms, response_excerpt, detail, link_identities FROM attempts WHERE message_id = $1 ORDER BY n",
                &[&id],
            )
            .await
            .map_err(db)?;
        Ok(Some((
            message(&row),
            attempts.iter().map(attempt).collect(),
        )))
    }

    async fn list(
        &self,
        filter: Filter,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let client = self.client().await?;
        let mut params: Vec<Param> = Vec::new();
        // One more than the page, to know whether another follows.
        let wanted = limit.saturating_add(1);
        let order = ListOrder::of(&filter);
        let sql = match order.by_time() {
            None => {
                let mut sql = format!("SELECT {COLUMNS}, 0::BIGINT FROM messages WHERE TRUE");
                sql.push_str(&filter_sql(&filter, &mut params));
                if let Some(c) = &cursor {
                    params.push(Box::new(c.id().to_owned()));
                    sql.push_str(&format!(" AND id > ${}", params.len()));
                }
                params.push(Box::new(i64::try_from(wanted).unwrap_or(i64::MAX)));
                in_id_order(&sql, &filter, params.len(), "")
            }
            Some(key) => in_time_order(key, &filter, cursor.as_ref(), wanted, &mut params),
        };
        let rows = client.query(&sql, &refs(&params)).await.map_err(db)?;
        let mut keyed: Vec<(Option<i64>, Message)> =
            rows.iter().map(|r| (r.get(LIST_KEY), message(r))).collect();
        let next = if keyed.len() > limit {
            keyed.truncate(limit);
            keyed
                .last()
                .map(|(at, m)| Cursor::after(order, at.unwrap_or(i64::MIN), m.id.clone()))
        } else {
            None
        };
        let messages = keyed.into_iter().map(|(_, m)| m).collect();
        Ok(Page { messages, next })
    }

    async fn redrive(&self, ids: Vec<String>, now: i64) -> Result<Vec<String>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let done = redrive_ids(&tx, &ids, now).await?;
        tx.commit().await.map_err(db)?;
        Ok(done)
    }

    async fn redrive_matching(
        &self,
        filter: Filter,
        now: i64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let filter = Filter {
            state: Some(MessageState::Parked),
            ..filter
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let mut params: Vec<Param> = Vec::new();
        let mut sql = "SELECT id FROM messages WHERE TRUE".to_owned();
        sql.push_str(&filter_sql(&filter, &mut params));
        params.push(Box::new(i64::try_from(limit).unwrap_or(i64::MAX)));
        let sql = in_id_order(&sql, &filter, params.len(), " FOR UPDATE SKIP LOCKED");
        let ids: Vec<String> = tx
            .query(&sql, &refs(&params))
            .await
            .map_err(db)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let done = redrive_ids(&tx, &ids, now).await?;
        tx.commit().await.map_err(db)?;
        Ok(done)
    }

    async fn discard(&self, ids: Vec<String>, now: i64) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "UPDATE messages SET state = 'discarded', next_attempt_at = NULL, lease = NULL, updated_at = $2 \
                 WHERE id = ANY($1) AND state = 'parked' RETURNING id",
                &[&ids, &now],
            )
            .await
            .map_err(db)?;
        let mut done: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        done.sort_by_key(|id| ids.iter().position(|x| x == id));
        Ok(done)
    }

    async fn purge(&self, before: i64) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(db)?;
            // Only one node purges at a time; the others skip this round.
            let mine: bool = tx
                .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&PURGE_LOCK])
                .await
                .map_err(db)?
                .get(0);
            if !mine {
                return Ok(total);
            }
            // Delivered messages by their index, one range per destination
            // (destination, delivery time): with the destinations only in a
            // semi-join the planner chose a scan of the table even where few
            // were left to purge (EXPLAIN at 2,000,000 rows). Then the
            // discarded ones, few.
            let n = tx
                .execute(
                    &format!(
                        "{} DELETE FROM messages WHERE id IN (SELECT m.id FROM d CROSS JOIN LATERAL \
                         (SELECT id FROM messages WHERE state = 'delivered' AND destination = d.name \
                          AND updated_at < $1 LIMIT 5000) m WHERE d.name IS NOT NULL LIMIT 5000)",
                        destinations_in(MessageState::Delivered)
                    ),
                    &[&before],
                )
                .await
                .map_err(db)?;
            let n = if n > 0 {
                n
            } else {
                tx.execute(
                    "DELETE FROM messages WHERE id IN (SELECT id FROM messages \
                     WHERE state = 'discarded' AND updated_at < $1 LIMIT 5000)",
                    &[&before],
                )
                .await
                .map_err(db)?
            };
            tx.commit().await.map_err(db)?;
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    async fn stats(&self, _now: i64) -> Result<Stats, StoreError> {
        let client = self.client().await?;
        let rows = client
            // A count per state, each naming its state, so that the planner
            // counts pending, parked and discarded messages from their
            // partial indexes alone (EXPLAIN ANALYZE at 2,000,000 rows: 346 to
            // 455 ms, against 598 to 692 ms for one GROUP BY over the table).
            .query(&stats_by_state(), &[])
            .await
            .map_err(db)?;
        let by_destination_state = rows
            .iter()
            .filter_map(|r| {
                let state: String = r.get(1);
                MessageState::parse(&state)
                    .map(|s| (r.get::<_, String>(0), s, r.get::<_, i64>(2).max(0) as u64))
            })
            .collect();
        let oldest_due_at = earliest_due(&client).await?;
        Ok(Stats {
            by_destination_state,
            oldest_due_at,
        })
    }

    async fn report(&self, since: i64) -> Result<Vec<ReportRow>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT m.destination, a.class, COUNT(*), COUNT(DISTINCT a.message_id), \
                 COUNT(DISTINCT CASE WHEN m.state = 'parked' THEN m.id END) \
                 FROM attempts a JOIN messages m ON m.id = a.message_id \
                 WHERE a.started_at >= $1 AND a.class <> 'success' \
                 GROUP BY m.destination, a.class ORDER BY m.destination, COUNT(*) DESC",
                &[&since],
            )
            .await
            .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| ReportRow {
                destination: r.get(0),
                class: r.get(1),
                attempts: r.get::<_, i64>(2).max(0) as u64,
                messages: r.get::<_, i64>(3).max(0) as u64,
                parked: r.get::<_, i64>(4).max(0) as u64,
            })
            .collect())
    }

    async fn attempt_counts(
        &self,
        since: i64,
        bucket_ms: i64,
    ) -> Result<Vec<(i64, String, u64)>, StoreError> {
        let client = self.client().await?;
        // Whole minutes, as SQLite counts them (see `chart`).
        let bucket = crate::chart::whole_minutes(bucket_ms);
        let since = crate::chart::minute_of(since);
        let rows = client
            .query(
                "SELECT started_at - ((started_at % $2) + $2) % $2 AS b, class, COUNT(*) \
                 FROM attempts WHERE started_at >= $1 GROUP BY b, class ORDER BY b, class",
                &[&since, &bucket],
            )
            .await
            .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get::<_, i64>(0),
                    r.get::<_, String>(1),
                    r.get::<_, i64>(2).max(0) as u64,
                )
            })
            .collect())
    }

    fn wakeups(&self) -> Option<Wakeups> {
        Some(self.due.clone())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(
            super::redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }
}
