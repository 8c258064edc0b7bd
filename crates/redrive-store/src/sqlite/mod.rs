//! The embedded SQLite store.
//!
//! One writer thread owns the write connection and commits in groups (see
//! [`writer`]): that is how an enqueue is acknowledged only once durable
//! without paying an fsync per message. A second thread with its own
//! connection serves reads (WAL lets them run beside the writer). Leases live
//! in memory (see [`leases`]): one process delivers from a SQLite file.
//!
//! # Why it is built this way
//!
//! One writer thread (`sqlite/writer.rs`) commits every waiting job in **one
//! transaction** (group commit) in WAL mode and answers only after `COMMIT`.
//! A group holding a durable job (enqueue, redrive, discard) commits with
//! `synchronous = FULL` (an fsync); a group of delivery jobs only (claim,
//! record, release) with `NORMAL` (written to the WAL file, fsync'd by the
//! next durable commit or checkpoint). After such a group the writer nudges
//! the **WAL syncer** (`sqlite/wal_syncer.rs`), a thread that fdatasyncs the
//! WAL file through its own descriptor: SQLite's automatic checkpoint, which
//! runs on the writer and syncs the WAL first, then finds it mostly on disk
//! (a drain's checkpoints fell from about 33 ms to about 5 ms, and with them
//! the stalls that used up the engine's slots). A group of records and
//! releases only waits up to 0.5 ms for company (64 jobs), so more records
//! share the pages a commit writes; a durable job ends the wait. A failing
//! job rolls back its whole group and every job of it gets the error (no
//! savepoint per job: jobs fail only on database errors, which a group
//! shares). The statements run once per message (an enqueue's insert, a
//! record's three) stay prepared for the writer thread's life
//! (`Writing::held`); every other statement goes through rusqlite's cache. A
//! reader thread serves reads. Migrations are versioned by `PRAGMA
//! user_version`. **Leases live in memory** (`sqlite/leases.rs`): one process
//! delivers from a SQLite file (an `flock` on `<database>.deliver-lock`,
//! taken when `redrive serve` starts or at the first claim; a second
//! deliverer is refused with a reason). **Claims run on a third thread with
//! its own connection** ("sqlite-claimer"), beside the writer: in one read
//! transaction a claim reads, per destination asked for, the due entries
//! oldest first from the `(destination, next_attempt_at, id)` partial index,
//! skips the leased ones and notes the new leases; it writes nothing. From
//! the cursor (below) the scan returns each entry's row with it (few entries
//! there are leased, and a skipped one costs a read of its row); from the
//! front, where every leased entry is stepped over, it reads the index alone
//! and each taken message by rowid. Leased entries keep their place at the
//! front of the index, so a claim reads from the destination's **cursor**
//! (the key of the last entry a claim took, sought with a row-value range
//! `(next_attempt_at, id) > (?, ?)`) rather than stepping over every lease
//! from the front; what could put a due, unleased entry at or behind the
//! cursor sends the next claim back to the front (a lease ended with its
//! message due again, an enqueue or redrive behind it, a redrive of a message
//! whose lease has not ended yet, a lease that may have expired, a clock read
//! behind the cursor or the last rescan; `leases.rs` lists the rules and
//! `cursor_tests.rs` checks every claim of a random run against a model). A
//! claim that fails ends every lease it granted. A claim notes each message's
//! attempt counters with its lease, and the record writes the attempt
//! numbered from them without reading the row back: while a lease holds a
//! message, nothing but its record changes them (redrive and discard take
//! parked messages only), except the record of an earlier lease that expired
//! after it was spent and committed after the claim read the row; every
//! record adds one to `total_attempts`, so the update checks it against the
//! claim's and, when it moved, updates as before and reads the counters back.
//! A record or release *spends* the lease on the writer (its fence; the row
//! is found by rowid) and *ends* it only after its group committed; ends that
//! come while a claim runs wait until it has checked its snapshot (else a
//! claim could take a message whose committed record its snapshot predates:
//! `claims_beside_the_writer_never_take_a_recorded_message` catches exactly
//! that). When the process dies its leases die with it, and its claimed
//! messages are due again at the next start; `get`, `list` and `next_due`
//! show a leased message as due when its lease ends, as before. The hot
//! statements have no `RETURNING`: SQLite runs such a statement through an
//! ephemeral table and a statement journal (a copy of every page it changes),
//! which cost more than the write itself; an enqueue builds the stored
//! message from what it inserted, a record reads its counters back by rowid.
//! **The counts by destination and state live in memory**
//! (`sqlite/counts.rs`), read once when the store opens: each writer job
//! notes what it changed and the writer applies it after the job's group
//! committed (a hook on the job, run on the writer thread, so a caller that
//! stopped waiting still counts and a rolled-back group counts nothing).
//! `stats`, which the gauges and the dashboard ask every few seconds, no
//! longer scans the table (62 ms at 1,000,000 messages before, 65 µs now).
//! **The chart's attempts per minute and class are a table of their own**
//! (`sqlite/minutes.rs`, `attempt_minutes`): the writer tallies a group's
//! attempts and adds them in the group's transaction just before its commit,
//! and the purge takes back the counts of the attempts it deletes, so the
//! table is always what a `GROUP BY` of `attempts` would say. The overview's
//! three hours no longer visit every attempt of those hours (2,000,000
//! attempts: 1.07 s before, 0.1 ms now), and successful attempts, nearly all
//! of them, are in no index by time (failed ones are, for the report):
//! PostgreSQL, whose records come from many connections at once, keeps its
//! index by start time instead, and `chart.rs` rounds both stores' buckets to
//! whole minutes. A new database file gets 16 KiB pages (an older one keeps
//! SQLite's 4 KiB; both work), and foreign keys are declared but not
//! enforced: the check cost each recorded attempt a lookup of the message its
//! own record had just updated, so the purge deletes a message's attempts
//! itself.

mod counts;
mod leases;
mod minutes;
mod wal_syncer;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread;

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension, Row};
use tokio::sync::{mpsc, oneshot};

use crate::listing::{Cursor, ListOrder};
use crate::model::{
    AttemptRecord, Claimed, Enqueued, Filter, Message, MessageState, NewMessage, NextState, Page,
    ReportRow, Stats,
};
use crate::{Store, StoreError};
use disk::DiskState;

use counts::{Counts, Delta};
use leases::{lock, DeliveryLock, DueKey, DueNext, Leases};
use writer::{ClosureJob, Job, Writing};
pub use writer::{CommitCounts, Durability, MAX_GROUP};

/// Page cache per connection, in KiB. SQLite's default (2 MiB) makes a claim
/// or a record read its B-tree pages back from the OS on every call once the
/// database outgrows it; the cache is bounded, so memory still does not grow
/// with the backlog.
const CACHE_KIB: u32 = 16 * 1024;

/// Page size of a new database file (an existing one keeps its own). Larger
/// than SQLite's 4 KiB: every record and enqueue moves entries in five
/// B-trees, and with fewer, larger pages each has fewer levels and splits a
/// quarter as often. A split also makes the commit walk the whole page
/// cache (SQLite renumbers the new pages through a scratch number past the
/// end of the file, and the commit then drops every cached page numbered
/// past the end): four times fewer cached pages, four times less to walk.
/// The rows and index entries a record touches lie together (ids and due
/// times grow with time), so larger pages add little to what a commit
/// writes.
const PAGE_SIZE: u32 = 16 * 1024;

/// Schema migrations, in order; `PRAGMA user_version` says how many ran.
const MIGRATIONS: &[&str] = &[
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

/// A message's columns, in the order `message_from_row` reads them (a macro,
/// so that statements written as one literal can include them).
macro_rules! columns {
    () => {
        "id, destination, method, path, headers, body, idempotency_key, request_hash, \
         marked_idempotent, state, park_reason, last_class, attempts, total_attempts, cycle, \
         cycle_started_at, next_attempt_at, created_at, updated_at, lease IS NOT NULL, revision, \
         resolution, source"
    };
}
const COLUMNS: &str = columns!();
/// How many columns `COLUMNS` names: a column selected after them is this one.
const COLUMN_COUNT: usize = 23;

// After `columns!`, which it uses.
mod claims;
pub mod disk;
mod listing;
mod people;
use claims::{claim_due, due_after, due_by_destination, earliest_due, pending_destinations};
use listing::{destinations_holding, in_id_order, in_time_order};

type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// The SQLite store. Cheap to clone: clones share the two worker threads.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    writer: std::sync::mpsc::Sender<Box<dyn Job>>,
    reader: mpsc::UnboundedSender<ReadJob>,
    /// Claims, on their own connection: a slow read (a report) does not
    /// hold deliveries up, nor does the writer's group.
    claimer: mpsc::UnboundedSender<ReadJob>,
    path: PathBuf,
    commits: Arc<CommitCounts>,
    leases: Arc<Mutex<Leases>>,
    delivery: Arc<DeliveryLock>,
    /// Messages per destination and state, moved by the writer's commits.
    counts: Arc<Mutex<Counts>>,
    /// The room left on the database's disk, and the watermark.
    disk: Arc<disk::DiskWatch>,
}

// The statements the writer runs once per message, held prepared on its
// thread (see `Writing::held`).

/// An enqueue's insert; a duplicate key inserts nothing.
const ENQUEUE_INSERT: &str = "INSERT INTO messages (id, destination, method, path, headers, body, idempotency_key, \
     request_hash, marked_idempotent, state, cycle_started_at, next_attempt_at, created_at, updated_at, source) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending', ?10, ?10, ?10, ?10, ?11) \
     ON CONFLICT (idempotency_key) DO NOTHING";
/// A record's update of its message (found by rowid, fenced by id and state;
/// with `?8`, only if its `total_attempts` is still what the claim read).
const RECORD_UPDATE: &str =
    "UPDATE messages SET state = ?1, park_reason = ?2, last_class = ?3, attempts = attempts + ?9, \
     total_attempts = total_attempts + 1, next_attempt_at = ?4, lease = NULL, updated_at = ?5 \
     WHERE rowid = ?6 AND id = ?7 AND state = 'pending' AND (?8 IS NULL OR total_attempts = ?8)";
/// The counters a record just wrote, read back by rowid.
const RECORD_COUNTERS: &str =
    "SELECT total_attempts, cycle, attempts FROM messages WHERE rowid = ?1";
/// The failed attempts since ?1 by destination and class; `a.class !=
/// 'success'` as the index of failures says it, so that the index serves.
const REPORT: &str = "SELECT m.destination, a.class, COUNT(*), COUNT(DISTINCT a.message_id), \
     COUNT(DISTINCT CASE WHEN m.state = 'parked' THEN m.id END) \
     FROM attempts a JOIN messages m ON m.id = a.message_id \
     WHERE a.started_at >= ?1 AND a.class != 'success' \
     GROUP BY m.destination, a.class ORDER BY m.destination, COUNT(*) DESC, a.class";
/// A record's attempt row.
const RECORD_ATTEMPT: &str = "INSERT INTO attempts (message_id, n, cycle, attempt, started_at, latency_ms, status, transport, \
     class, decision, reason, delay_ms, response_excerpt, detail, link_identities, revision) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)";

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

impl SqliteStore {
    /// Deletes up to 5,000 messages finished before `before`: `destination`'s
    /// delivered ones, or with `None` discarded ones; returns how many.
    async fn purge_slice(
        &self,
        before: i64,
        destination: Option<String>,
    ) -> Result<u64, StoreError> {
        self.write_counted(Durability::Written, move |conn, delta| {
            // The slice counted, then its attempts and itself deleted: the
            // same statement reads the same rows each time in one
            // transaction.
            let (slice, values) = match &destination {
                Some(d) => (
                    "SELECT id FROM messages INDEXED BY messages_delivered \
                     WHERE state = 'delivered' AND destination = ?2 AND updated_at < ?1 LIMIT 5000",
                    vec![
                        rusqlite::types::Value::Integer(before),
                        rusqlite::types::Value::Text(d.clone()),
                    ],
                ),
                None => (
                    "SELECT id FROM messages INDEXED BY messages_discarded \
                     WHERE state = 'discarded' AND updated_at < ?1 LIMIT 5000",
                    vec![rusqlite::types::Value::Integer(before)],
                ),
            };
            let params = || rusqlite::params_from_iter(values.iter());
            let mut counted = conn
                .prepare_cached(&format!(
                    "SELECT destination, state, COUNT(*) FROM messages WHERE id IN ({slice}) \
                     GROUP BY destination, state"
                ))
                .map_err(db)?;
            let mut rows = counted.query(params()).map_err(db)?;
            while let Some(row) = rows.next().map_err(db)? {
                let destination: String = row.get(0).map_err(db)?;
                let state: String = row.get(1).map_err(db)?;
                let n: i64 = row.get(2).map_err(db)?;
                if let Some(state) = MessageState::parse(&state) {
                    delta.remove(&destination, state, n.max(0) as u64);
                }
            }
            drop(rows);
            // The attempts first (foreign keys are not enforced, so no
            // cascade), while the slice still finds their messages; their
            // counts by minute with them.
            conn.forget_attempts_of(slice, params()).map_err(db)?;
            for table in ["attempts", "revisions"] {
                conn.prepare_cached(&format!(
                    "DELETE FROM {table} WHERE message_id IN ({slice})"
                ))
                .map_err(db)?
                .execute(params())
                .map_err(db)?;
            }
            conn.prepare_cached(&format!("DELETE FROM messages WHERE id IN ({slice})"))
                .map_err(db)?
                .execute(params())
                .map_err(db)
        })
        .await
        .map(|n| n as u64)
    }

    /// Opens (creating if needed) the database at `path`, runs pending
    /// migrations and starts the worker threads.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let write_conn = connect(path)?;
        migrate(&write_conn)?;
        let counts = Arc::new(Mutex::new(Counts::load(&write_conn)?));
        let commits = Arc::new(CommitCounts::default());
        // The WAL lies beside the file SQLite opened, with symbolic links
        // resolved (a database reached through a link has its WAL beside
        // the target): named after the connection's own file name, not
        // after `path`. A database with no file (in memory) has no WAL.
        // Without the syncer the store still works (its checkpoints then
        // sync the whole WAL on the writer): a warning, not an error.
        let wal = write_conn
            .path()
            .filter(|file| !file.is_empty())
            .map(|file| wal_syncer::wal_path(Path::new(file)));
        let wal_sync = wal.and_then(|wal| {
            match wal_syncer::start(&wal, Arc::clone(&commits.wal_syncs)) {
                Ok(nudge) => Some(nudge),
                Err(e) => {
                    tracing::warn!(wal = %wal.display(), error = %e, "cannot sync the WAL in the background; checkpoints will sync it on the writer");
                    None
                }
            }
        });
        let writer = writer::start(write_conn, Arc::clone(&commits), wal_sync)?;
        let reader = start_reader("sqlite-reader", connect(path)?)?;
        let claimer = start_reader("sqlite-claimer", connect(path)?)?;
        let disk = disk::DiskWatch::start(path, connect(path)?);
        Ok(SqliteStore {
            writer,
            reader,
            claimer,
            path: path.to_path_buf(),
            commits,
            leases: Arc::default(),
            delivery: Arc::new(DeliveryLock::new(path)),
            counts,
            disk,
        })
    }

    /// Sets the disk watermark (`[server] min_free_disk`): below it,
    /// enqueues are refused. `None`: the smaller of 1 GiB and 5 % of the
    /// database's filesystem.
    pub fn set_min_free_disk(&self, bytes: Option<u64>) {
        self.disk
            .set_min_free(bytes, &disk::directory_of(&self.path));
    }

    /// Opens the database a `sqlite://PATH` URL names.
    pub fn open_url(url: &str) -> Result<SqliteStore, StoreError> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                StoreError::Config(format!(
                    "`{url}` is not a sqlite URL; write sqlite://redrive.db"
                ))
            })?;
        SqliteStore::open(Path::new(path))
    }

    /// Makes this store the deliverer of its file now rather than at its
    /// first claim, so that `redrive serve` refuses to start beside another
    /// (one process delivers from a SQLite file: its leases are in memory).
    pub fn take_delivery_lock(&self) -> Result<(), StoreError> {
        self.delivery.take()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Background syncs of the WAL so far (a delivery commit asks for one).
    pub fn wal_syncs(&self) -> u64 {
        self.commits.wal_syncs.load(Ordering::Relaxed)
    }

    /// Transactions committed so far, and the jobs they held.
    pub fn commit_counts(&self) -> (u64, u64) {
        (
            self.commits.commits.load(Ordering::Relaxed),
            self.commits.jobs.load(Ordering::Relaxed),
        )
    }

    /// Seconds the writer has spent on groups so far (the rest it waited).
    pub fn writer_busy_seconds(&self) -> f64 {
        self.commits.busy_ns.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// Runs `f` on the writer, answered once its group is `durability` (a
    /// delivery job, [`Durability::Written`], may wait for company); what
    /// `f` notes in its [`Delta`] moves the counts once its group committed.
    async fn write_counted<T: Send + 'static>(
        &self,
        durability: Durability,
        f: impl FnOnce(&Writing<'_>, &mut Delta) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.write_counted_then(durability, f, move |answer| {
            let _ = tx.send(answer);
        });
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// [`SqliteStore::write_counted`] without waiting: `then` gets the
    /// answer on the writer thread (or on this one, should the writer be
    /// gone).
    fn write_counted_then<T: Send + 'static>(
        &self,
        durability: Durability,
        f: impl FnOnce(&Writing<'_>, &mut Delta) -> Result<T, StoreError> + Send + 'static,
        then: impl FnOnce(Result<T, StoreError>) + Send + 'static,
    ) {
        let counts = Arc::clone(&self.counts);
        let leases = Arc::clone(&self.leases);
        let job = ClosureJob::boxed(
            move |conn: &Writing<'_>| {
                let mut delta = Delta::default();
                let value = f(conn, &mut delta)?;
                Ok((value, delta))
            },
            durability,
            Some(Box::new(move |(_, delta): &mut (T, Delta)| {
                lock(&counts).apply(delta);
                let due = delta.take_due();
                if !due.is_empty() {
                    let mut leases = lock(&leases);
                    for (destination, at, id) in due {
                        leases.note_due(&destination, DueKey { at, id });
                    }
                }
            })),
            Box::new(move |answer: Result<(T, Delta), StoreError>| {
                then(answer.map(|(value, _)| value))
            }),
        );
        // Should the writer be gone, the job comes back and, dropped
        // unanswered, answers `Closed`.
        let _ = self.writer.send(job);
    }

    /// Runs `f` on the writer without waiting: `then` gets the answer on the
    /// writer thread (or on this one, should the writer be gone).
    fn write_as_then<T: Send + 'static>(
        &self,
        durability: Durability,
        f: impl FnOnce(&Writing<'_>) -> Result<T, StoreError> + Send + 'static,
        then: impl FnOnce(Result<T, StoreError>) + Send + 'static,
    ) {
        let job = ClosureJob::boxed(f, durability, None, Box::new(then));
        let _ = self.writer.send(job);
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        read_on(&self.reader, f).await
    }
}

/// Runs `f` on the thread behind `queue` (the reader's or the claimer's).
async fn read_on<T: Send + 'static>(
    queue: &mpsc::UnboundedSender<ReadJob>,
    f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let (tx, rx) = oneshot::channel();
    let job: ReadJob = Box::new(move |conn| {
        let _ = tx.send(f(conn));
    });
    queue.send(job).map_err(|_| StoreError::Closed)?;
    rx.await.map_err(|_| StoreError::Closed)?
}

/// A thread running read jobs on `conn`, one at a time.
fn start_reader(
    name: &str,
    conn: Connection,
) -> Result<mpsc::UnboundedSender<ReadJob>, StoreError> {
    let (tx, mut rx) = mpsc::unbounded_channel::<ReadJob>();
    thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            while let Some(job) = rx.blocking_recv() {
                job(&conn);
            }
        })
        .map_err(|e| StoreError::Config(format!("cannot start the {name} thread: {e}")))?;
    Ok(tx)
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(|e| {
        StoreError::Config(format!("cannot open the database {}: {e}", path.display()))
    })?;
    // Foreign keys stay declared in the schema but are not enforced: the
    // check cost every attempt recorded a lookup of its message, which the
    // record has just updated; the one cascade (the purge) deletes the
    // attempts itself.
    conn.execute_batch(&format!(
        "PRAGMA page_size = {PAGE_SIZE}; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
         PRAGMA foreign_keys = OFF; PRAGMA busy_timeout = 10000; \
         PRAGMA cache_size = -{CACHE_KIB}; PRAGMA temp_store = MEMORY;"
    ))
    .map_err(|e| StoreError::Config(format!("cannot use the database {}: {e}", path.display())))?;
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
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

/// A message from a row of `COLUMNS`. The headers' JSON and the state are
/// read in place rather than copied first: every claimed message comes
/// through here, and its allocations are freed on another thread (the
/// allocator's costliest pattern).
fn message_from_row(r: &Row<'_>) -> rusqlite::Result<Message> {
    let headers = match r.get_ref(4)? {
        ValueRef::Text(json) | ValueRef::Blob(json) => {
            serde_json::from_slice(json).unwrap_or_default()
        }
        _ => Vec::new(),
    };
    let state = match r.get_ref(9)? {
        ValueRef::Text(name) => std::str::from_utf8(name).ok().and_then(MessageState::parse),
        _ => None,
    };
    Ok(Message {
        id: r.get(0)?,
        destination: r.get(1)?,
        method: r.get(2)?,
        path: r.get(3)?,
        headers,
        body: r.get(5)?,
        idempotency_key: r.get(6)?,
        request_hash: r.get(7)?,
        marked_idempotent: r.get(8)?,
        state: state.unwrap_or(MessageState::Pending),
        park_reason: r.get(10)?,
        last_class: r.get(11)?,
        attempts: r.get(12)?,
        total_attempts: r.get(13)?,
        cycle: r.get(14)?,
        cycle_started_at: r.get(15)?,
        next_attempt_at: r.get(16)?,
        created_at: r.get(17)?,
        updated_at: r.get(18)?,
        leased: r.get(19)?,
        revision: r.get(20)?,
        resolution: match r.get_ref(21)? {
            ValueRef::Text(json) => serde_json::from_slice(json).ok(),
            _ => None,
        },
        source: r.get(22)?,
    })
}

fn attempt_from_row(r: &Row<'_>) -> rusqlite::Result<AttemptRecord> {
    Ok(AttemptRecord {
        n: r.get(0)?,
        cycle: r.get(1)?,
        attempt: r.get(2)?,
        started_at: r.get(3)?,
        latency_ms: r.get::<_, i64>(4)?.max(0) as u64,
        status: r.get(5)?,
        transport: r.get(6)?,
        class: r.get(7)?,
        decision: r.get(8)?,
        reason: r.get(9)?,
        delay_ms: r.get::<_, Option<i64>>(10)?.map(|d| d.max(0) as u64),
        response_excerpt: r.get(11)?,
        detail: r.get(12)?,
        link_identities: r.get(13)?,
        revision: r.get(14)?,
    })
}

fn get_by_key(conn: &Connection, key: &str) -> rusqlite::Result<Option<Message>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM messages WHERE idempotency_key = ?1"
    ))?
    .query_row([key], message_from_row)
    .optional()
}

fn redrive_ids(
    conn: &Connection,
    delta: &mut Delta,
    ids: &[String],
    now: i64,
) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "UPDATE messages SET state = 'pending', park_reason = NULL, attempts = 0, cycle = cycle + 1, \
             cycle_started_at = ?2, next_attempt_at = ?2, lease = NULL, updated_at = ?2 \
             WHERE id = ?1 AND state = 'parked'",
        )
        .map_err(db)?;
    let mut done = Vec::new();
    for id in ids {
        if stmt.execute(params![id, now]).map_err(db)? == 1 {
            let destination = destination_of(conn, id)?;
            delta.moved(&destination, MessageState::Parked, MessageState::Pending);
            delta.made_due_again(&destination, now, id);
            done.push(id.clone());
        }
    }
    Ok(done)
}

/// The destination of message `id` (for the counts of an operator's change).
fn destination_of(conn: &Connection, id: &str) -> Result<String, StoreError> {
    conn.prepare_cached("SELECT destination FROM messages WHERE id = ?1")
        .map_err(db)?
        .query_row([id], |r| r.get(0))
        .map_err(db)
}

impl Store for SqliteStore {
    fn disk(&self) -> Option<DiskState> {
        Some(self.disk.state())
    }

    async fn enqueue(&self, batch: Vec<NewMessage>) -> Result<Vec<Enqueued>, StoreError> {
        if self.disk.is_low() {
            return Err(StoreError::DiskFull(self.disk.state()));
        }
        self.disk.spend(
            batch
                .iter()
                .map(|m| (m.body.len() + m.path.len() + m.idempotency_key.len() + 256) as u64)
                .sum(),
        );
        let leases = Arc::clone(&self.leases);
        self.write_counted(Durability::Fsync, move |conn, delta| {
            let mut out = Vec::with_capacity(batch.len());
            // No RETURNING: SQLite runs a statement with RETURNING through an
            // ephemeral table and a statement journal (a copy of every page
            // it touches), which cost more than the insert. A new message is
            // what was inserted; only a duplicate key costs a lookup.
            for m in batch {
                let headers = serde_json::to_string(&m.headers)
                    .map_err(|e| StoreError::Database(e.to_string()))?;
                let inserted = conn
                    .held(ENQUEUE_INSERT, |s| {
                        s.execute(params![
                            m.id,
                            m.destination,
                            m.method,
                            m.path,
                            headers,
                            m.body,
                            m.idempotency_key,
                            m.request_hash,
                            m.marked_idempotent,
                            m.created_at,
                            m.source
                        ])
                    })
                    .map_err(db)?;
                if inserted == 1 {
                    delta.add(&m.destination, MessageState::Pending, 1);
                    delta.made_due(&m.destination, m.created_at, &m.id);
                    out.push(Enqueued::Created(m.into_pending()));
                    continue;
                }
                let mut stored = get_by_key(conn, &m.idempotency_key)
                    .map_err(db)?
                    .ok_or_else(|| {
                        StoreError::Database("the key conflicted but no message holds it".into())
                    })?;
                lock(&leases).show(&mut stored);
                out.push(if stored.request_hash == m.request_hash {
                    Enqueued::Duplicate(stored)
                } else {
                    Enqueued::Conflict {
                        existing_id: stored.id,
                    }
                });
            }
            Ok(out)
        })
        .await
    }

    async fn claim(
        &self,
        now: i64,
        want: Vec<(String, usize)>,
        lease: String,
        lease_until: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        self.delivery.take()?;
        let leases = Arc::clone(&self.leases);
        // On the claimer's own connection, beside the writer: a claim writes
        // nothing, and deliveries wait for it, not for the writer's group.
        let (tx, rx) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            lock(&leases).begin_claim();
            let result = claim_due(conn, &leases, now, &want, &lease, lease_until);
            lock(&leases).finish_claim();
            let _ = tx.send(result);
        });
        self.claimer.send(job).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn pending_destinations(&self) -> Result<Vec<String>, StoreError> {
        self.read(pending_destinations).await
    }

    async fn record(
        &self,
        id: String,
        lease: String,
        attempt: AttemptRecord,
        next: NextState,
        now: i64,
    ) -> Result<bool, StoreError> {
        // The lease ends in the writer's answer, as the commit's answer
        // comes, not here after the await: a caller that stopped waiting
        // leaves no lease behind.
        let (tx, rx) = oneshot::channel();
        let leases = Arc::clone(&self.leases);
        let fence = Arc::clone(&self.leases);
        let ended = (id.clone(), lease.clone());
        let due_next = match &next {
            NextState::Retry { at } | NextState::Again { at } => DueNext::At(*at),
            NextState::Delivered | NextState::Parked { .. } => DueNext::Gone,
        };
        self.write_counted_then(
            Durability::Written,
            move |conn, delta| {
                // The fence: only the lease's holder records, once. The lease
                // ends once the record is committed (below): until then the
                // message stays leased, so no claim takes it.
                let Some((rowid, destination, known)) = lock(&fence)
                    .spend(&id, &lease)
                    .map(|s| (s.rowid, s.destination.to_owned(), s.counters))
                else {
                    return Ok((false, false));
                };
                let (state, reason, next_at) = match &next {
                    NextState::Delivered => ("delivered", None, None),
                    NextState::Retry { at } | NextState::Again { at } => {
                        ("pending", None, Some(*at))
                    }
                    NextState::Parked { reason } => ("parked", Some(reason.as_str()), None),
                };
                let spends = next.spends();
                // No RETURNING (see `enqueue`): the update, and the counters
                // it wrote are the claim's plus one (see `Counters`), or read
                // back from the row. (Not an INSERT ... SELECT of them: SQLite
                // gives a statement that may insert several rows a statement
                // journal, a copy of every page it touches.)
                let update = |known_total: Option<u32>| {
                    conn.held(RECORD_UPDATE, |s| {
                        s.execute(params![
                            state,
                            reason,
                            attempt.class,
                            next_at,
                            now,
                            rowid,
                            id,
                            known_total,
                            spends
                        ])
                    })
                    .map_err(db)
                };
                let (total, cycle, in_cycle) = known;
                // The attempt's number in its cycle is the one it was to
                // be, whether or not it spends one.
                let counters: Option<(u32, u32, u32)> = if update(Some(total))? == 1 {
                    Some((total.saturating_add(1), cycle, in_cycle.saturating_add(1)))
                } else if update(None)? == 1 {
                    // The counters moved since the claim read them (a record
                    // of an expired lease committed since): read back.
                    conn.held(RECORD_COUNTERS, |s| {
                        s.query_row([rowid], |r| {
                            let after: u32 = r.get(2)?;
                            Ok((r.get(0)?, r.get(1)?, after + 1 - spends))
                        })
                        .optional()
                    })
                    .map_err(db)?
                } else {
                    // Fenced off: the message is no longer pending.
                    None
                };
                let Some((n, cycle, in_cycle)) = counters else {
                    return Ok((false, true));
                };
                match &next {
                    NextState::Delivered => {
                        delta.moved(&destination, MessageState::Pending, MessageState::Delivered)
                    }
                    NextState::Parked { .. } => {
                        delta.moved(&destination, MessageState::Pending, MessageState::Parked)
                    }
                    NextState::Retry { .. } | NextState::Again { .. } => {}
                }
                conn.held(RECORD_ATTEMPT, |s| {
                    s.execute(params![
                        id,
                        n,
                        cycle,
                        in_cycle,
                        attempt.started_at,
                        attempt.latency_ms as i64,
                        attempt.status,
                        attempt.transport,
                        attempt.class,
                        attempt.decision,
                        attempt.reason,
                        attempt.delay_ms.map(|d| d as i64),
                        attempt.response_excerpt,
                        attempt.detail,
                        attempt.link_identities,
                        attempt.revision.max(1)
                    ])
                })
                .map_err(db)?;
                conn.tally_attempt(attempt.started_at, &attempt.class);
                Ok((true, true))
            },
            move |outcome| {
                let recorded = match outcome {
                    Ok((recorded, spent)) => {
                        if spent {
                            let next = if recorded { due_next } else { DueNext::Gone };
                            lock(&leases).end(ended.0, ended.1, next);
                        }
                        Ok(recorded)
                    }
                    // Rolled back: the message is pending again, and due at once.
                    Err(e) => {
                        lock(&leases).end(ended.0, ended.1, DueNext::Unknown);
                        Err(e)
                    }
                };
                let _ = tx.send(recorded);
            },
        );
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn release(&self, given: Vec<(String, String)>, due_at: i64) -> Result<u64, StoreError> {
        let leases = Arc::clone(&self.leases);
        let fence = Arc::clone(&self.leases);
        let ended = given.clone();
        let (tx, rx) = oneshot::channel();
        self.write_as_then(
            Durability::Written,
            move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "UPDATE messages SET lease = NULL, next_attempt_at = ?3 \
                         WHERE rowid = ?1 AND id = ?2 AND state = 'pending'",
                    )
                    .map_err(db)?;
                let mut n = 0;
                for (id, token) in &given {
                    let Some(rowid) = lock(&fence).spend(id, token).map(|s| s.rowid) else {
                        continue;
                    };
                    n += stmt.execute(params![rowid, id, due_at]).map_err(db)? as u64;
                }
                Ok(n)
            },
            // Committed or rolled back, the leases end (only those the
            // tokens hold) as the writer answers, whether or not the caller
            // still waits: the messages are due at `due_at`, or at once.
            move |outcome: Result<u64, StoreError>| {
                let next = if outcome.is_ok() {
                    DueNext::At(due_at)
                } else {
                    DueNext::Unknown
                };
                {
                    let mut leases = lock(&leases);
                    for (id, token) in ended {
                        leases.end(id, token, next.clone());
                    }
                }
                let _ = tx.send(outcome);
            },
        );
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        let leases = Arc::clone(&self.leases);
        self.read(move |conn| earliest_due(conn, &leases)).await
    }

    async fn due_by_destination(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let leases = Arc::clone(&self.leases);
        self.read(move |conn| due_by_destination(conn, &leases))
            .await
    }

    async fn due_after(
        &self,
        destinations: Vec<String>,
        now: i64,
    ) -> Result<Vec<(String, Option<i64>)>, StoreError> {
        // On the claimer's connection, in line with the claims it follows.
        read_on(&self.claimer, move |conn| {
            due_after(conn, &destinations, now)
        })
        .await
    }

    async fn get(&self, id: String) -> Result<Option<(Message, Vec<AttemptRecord>)>, StoreError> {
        let leases = Arc::clone(&self.leases);
        self.read(move |conn| {
            let Some(mut m) = conn
                .prepare_cached(&format!("SELECT {COLUMNS} FROM messages WHERE id = ?1"))
                .map_err(db)?
                .query_row([&id], message_from_row)
                .optional()
                .map_err(db)?
            else {
                return Ok(None);
            };
            let mut stmt = conn
                .prepare_cached(
                    "SELECT n, cycle, attempt, started_at, latency_ms, status, transport, class, decision, reason, \
                     delay_ms, response_excerpt, detail, link_identities, revision FROM attempts WHERE message_id = ?1 ORDER BY n",
                )
                .map_err(db)?;
            let attempts = stmt
                .query_map([&id], attempt_from_row)
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            lock(&leases).show(&mut m);
            Ok(Some((m, attempts)))
        })
        .await
    }

    async fn list(
        &self,
        filter: Filter,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let leases = Arc::clone(&self.leases);
        self.read(move |conn| {
            // One snapshot for the page, which may take a query per
            // destination.
            let snapshot = conn.unchecked_transaction().map_err(db)?;
            let order = ListOrder::of(&filter);
            let mut keyed: Vec<(i64, Message)> = match order.by_time() {
                None => in_id_order(
                    &snapshot,
                    COLUMNS,
                    &filter,
                    cursor.as_ref().map(Cursor::id),
                    limit.saturating_add(1),
                    message_from_row,
                    |m| &m.id,
                )?
                .into_iter()
                .map(|m| (0, m))
                .collect(),
                Some(key) => in_time_order(
                    &snapshot,
                    key,
                    &filter,
                    cursor.as_ref(),
                    limit.saturating_add(1),
                )?,
            };
            // The cursor from the stored key, before a lease shows its end
            // as the due time.
            let next = if keyed.len() > limit {
                keyed.truncate(limit);
                keyed
                    .last()
                    .map(|(at, m)| Cursor::after(order, *at, m.id.clone()))
            } else {
                None
            };
            let mut messages: Vec<Message> = keyed.into_iter().map(|(_, m)| m).collect();
            {
                let leases = lock(&leases);
                for m in &mut messages {
                    leases.show(m);
                }
            }
            Ok(Page { messages, next })
        })
        .await
    }

    async fn purge(&self, before: i64) -> Result<u64, StoreError> {
        // Delivered messages one destination at a time (their index is by
        // destination, then delivery time), then the discarded ones (few:
        // each was discarded by a person). In slices, so the writer is never
        // held long.
        let delivered = self
            .read(|conn| destinations_holding(conn, MessageState::Delivered))
            .await?;
        let mut total = 0;
        for slice in delivered.into_iter().map(Some).chain(std::iter::once(None)) {
            loop {
                let n = self.purge_slice(before, slice.clone()).await?;
                total += n;
                if n == 0 {
                    break;
                }
            }
        }
        Ok(total)
    }

    async fn stats(&self, _now: i64) -> Result<Stats, StoreError> {
        let leases = Arc::clone(&self.leases);
        // The counts from memory (see `counts`); only the oldest due time
        // reads the database, a probe per destination.
        let by_destination_state = lock(&self.counts).snapshot();
        let oldest_due_at = self.read(move |conn| earliest_due(conn, &leases)).await?;
        Ok(Stats {
            by_destination_state,
            oldest_due_at,
        })
    }

    async fn report(&self, since: i64) -> Result<Vec<ReportRow>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(REPORT).map_err(db)?;
            let rows = stmt
                .query_map([since], |r| {
                    Ok(ReportRow {
                        destination: r.get(0)?,
                        class: r.get(1)?,
                        attempts: r.get::<_, i64>(2)?.max(0) as u64,
                        messages: r.get::<_, i64>(3)?.max(0) as u64,
                        parked: r.get::<_, i64>(4)?.max(0) as u64,
                    })
                })
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            Ok(rows)
        })
        .await
    }

    async fn attempt_counts(
        &self,
        since: i64,
        bucket_ms: i64,
    ) -> Result<Vec<(i64, String, u64)>, StoreError> {
        // From the counts by minute, not the attempts (see `minutes`).
        self.read(move |conn| minutes::per_bucket(conn, since, bucket_ms).map_err(db))
            .await
    }
}

#[cfg(test)]
mod cursor_tests;

#[cfg(test)]
mod tests;
