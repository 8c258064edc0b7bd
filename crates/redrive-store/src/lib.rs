//! redrive's durable store.
//!
//! The [`Store`] trait is the engine's only way to change a message: enqueue it,
//! claim it under a lease, record an attempt together with the next state (one
//! transaction), release it, redrive or discard it. Implementations: [`sqlite`]
//! (the embedded default) and [`postgres`] (several nodes on one queue).
//! [`conformance`] is the suite every implementation must pass.
//!
//! **A method returns only after its writes are durable**: an enqueue that
//! returned `Ok` survives `kill -9`.

use std::future::Future;

pub mod chart;
pub mod conformance;
pub mod listing;
pub mod model;
pub mod people;
pub mod postgres;
mod schema;
pub mod sqlite;
pub mod testdb;
pub mod wakeups;

pub use listing::{BadCursor, Cursor, ListOrder};
pub use model::{
    AttemptRecord, Claimed, Enqueued, Filter, Message, MessageState, NewMessage, NextState, Page,
    ReportRow, Stats,
};
pub use people::{
    AuditFilter, AuditPage, AuditRecord, Changed, Edit, Outcome, Pause, People, Resolution,
    Revision,
};
pub use postgres::{PostgresOptions, PostgresStore};
pub use sqlite::disk::DiskState;
pub use sqlite::SqliteStore;
pub use wakeups::{Notes, Wakeups};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database: {0}")]
    Database(String),
    /// The store's worker thread is gone (the store was closed).
    #[error("the store is closed")]
    Closed,
    /// The database URL or file is not usable.
    #[error("{0}")]
    Config(String),
    /// The disk holding the database is below the watermark: enqueues are
    /// refused so that delivery, records and the purge have room.
    #[error("the disk holding the database has {} free, below min_free_disk ({}): enqueues are refused until delivered messages are purged or space is freed", redrive_core::size::format_size(.0.free_bytes), redrive_core::size::format_size(.0.min_free_bytes))]
    DiskFull(DiskState),
}

/// Every change to a message goes through these methods; each is atomic.
///
/// Times are milliseconds since the Unix epoch, passed in by the caller.
///
/// What a person changes (redrive, discard, edit, resolve, pause) is the
/// [`People`] half of the trait, each change audited with it.
pub trait Store: People + Clone + Send + Sync + 'static {
    /// Stores new messages, deduplicating by idempotency key, and returns once
    /// they are durable.
    fn enqueue(
        &self,
        batch: Vec<NewMessage>,
    ) -> impl Future<Output = Result<Vec<Enqueued>, StoreError>> + Send;

    /// Claims pending messages due at `now`: for each `(destination, n)` in
    /// `want`, up to `n` of that destination's, oldest due first. Each is
    /// leased to `lease` until `lease_until`: if no attempt is recorded by
    /// then, it is due again.
    ///
    /// The caller names the destinations it has room for instead of the ones
    /// it has none for: a claim then reads only rows it will take, however
    /// many messages wait for a destination that is full or whose circuit is
    /// open.
    fn claim(
        &self,
        now: i64,
        want: Vec<(String, usize)>,
        lease: String,
        lease_until: i64,
    ) -> impl Future<Output = Result<Vec<Claimed>, StoreError>> + Send;

    /// The destinations that have pending messages, due or not, in name
    /// order. The engine asks it to find messages for destinations it does not
    /// know (removed from the configuration), which it then parks.
    fn pending_destinations(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Records an attempt and the message's next state in one transaction, if
    /// the lease is still held. Returns false (and writes nothing) otherwise.
    fn record(
        &self,
        id: String,
        lease: String,
        attempt: AttemptRecord,
        next: NextState,
        now: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives leased messages back without spending an attempt, due at
    /// `due_at` (for example when a circuit opened, or at shutdown).
    fn release(
        &self,
        leases: Vec<(String, String)>,
        due_at: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The earliest time a pending message is due, if any is pending.
    fn next_due(&self) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;

    /// Each destination with pending messages and the earliest time one of
    /// them is due (a leased one when its lease ends), in name order. One
    /// probe of the due index per destination with pending messages:
    /// destinations with none cost nothing. The scheduler reads it when it
    /// starts and, as a safety net, now and then.
    fn due_by_destination(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, i64)>, StoreError>> + Send;

    /// For each of `destinations`, the earliest due time after `now` of one
    /// of its pending messages, or `None`; on PostgreSQL a message another
    /// claim leased counts as due when its lease ends. The scheduler asks it
    /// after a claim that took less than it asked for: what is due by `now`
    /// was taken (or is leased), so this is when to ask again. One seek of
    /// the due index per destination.
    fn due_after(
        &self,
        destinations: Vec<String>,
        now: i64,
    ) -> impl Future<Output = Result<Vec<(String, Option<i64>)>, StoreError>> + Send;

    /// A message and all its attempts, oldest first.
    fn get(
        &self,
        id: String,
    ) -> impl Future<Output = Result<Option<(Message, Vec<AttemptRecord>)>, StoreError>> + Send;

    /// Messages matching `filter` after `cursor`, in the order its state is
    /// listed in ([`ListOrder::of`]).
    fn list(
        &self,
        filter: Filter,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> impl Future<Output = Result<Page, StoreError>> + Send;

    /// Deletes delivered and discarded messages last changed before `before`.
    /// Parked and pending messages are never purged.
    fn purge(&self, before: i64) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Counts per destination and state, and the oldest due time.
    fn stats(&self, now: i64) -> impl Future<Output = Result<Stats, StoreError>> + Send;

    /// Failed attempts per destination and class since `since`.
    fn report(&self, since: i64)
        -> impl Future<Output = Result<Vec<ReportRow>, StoreError>> + Send;

    /// Attempts per time bucket and error class since `since`, oldest bucket
    /// first: the overview's chart. Buckets are whole minutes aligned to the
    /// epoch: `bucket_ms` is rounded up to whole minutes (at least one),
    /// `since` down to its minute (see [`chart`]).
    fn attempt_counts(
        &self,
        since: i64,
        bucket_ms: i64,
    ) -> impl Future<Output = Result<Vec<(i64, String, u64)>, StoreError>> + Send;

    /// What other processes made due (PostgreSQL's `NOTIFY`): which
    /// destinations and from when, so an idle scheduler wakes without
    /// polling and claims from those. `None`: nothing to listen to (one
    /// process changes the store, and its engine knows what it changed).
    fn wakeups(&self) -> Option<Wakeups> {
        None
    }

    /// The room left on the database's disk and the watermark (SQLite);
    /// `None` where the store does not watch a disk (PostgreSQL's server
    /// watches its own).
    fn disk(&self) -> Option<DiskState> {
        None
    }
}
