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
mod migrations;
mod people;
mod rows;
mod store;
use claims::{claim_due, due_after, due_by_destination, earliest_due, pending_destinations};
use listing::{destinations_holding, in_id_order, in_time_order};
use migrations::migrate;
use rows::{attempt_from_row, message_from_row};
use store::{destination_of, redrive_ids};

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
    // `wal_autocheckpoint` stays SQLite's 1,000 pages: at 8,000 a drain
    // ran 47.0k-50.1k msg/s against 51.2k-52.5k (the claimer looks pages
    // up in a longer WAL; fast Xeon, 2026-11-22), at 4,000 it cost 160.2k
    // instructions per message against 158.2k (slower Xeon, 2026-12-01).
    // The disk watermark keeps 5/4 of it as the WAL's room (`disk`).
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

#[cfg(test)]
mod cursor_tests;

#[cfg(test)]
mod tests;
