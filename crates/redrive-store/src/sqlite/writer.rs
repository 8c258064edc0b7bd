//! The writer thread: group commit, and the checkpointer beside it.
//!
//! One thread owns the write connection. It takes every job waiting in its
//! queue (up to [`MAX_GROUP`]), runs them in one transaction, commits once and
//! only then answers them all: many writes share one commit, and one fsync.
//!
//! Two kinds of job. A **durable** job (an enqueue, an operator's redrive or
//! discard) is answered only after an fsync of the WAL (`synchronous =
//! FULL`): that is what makes a 202 mean "durable". A **delivery** job (a
//! claim, a recorded attempt, a release) is answered once its transaction
//! reached the WAL file, without an fsync of its own (`synchronous = NORMAL`):
//! a killed process loses nothing, since the OS holds the file; an OS crash or
//! a power cut may lose the last delivery transactions, and their messages are
//! then attempted again (delivery is at least once). The next durable commit
//! or checkpoint makes them durable; so, usually sooner, does the WAL
//! syncer's background fdatasync, asked for after each such commit (when
//! the syncer runs: it is not a guarantee, and one sync may wait for the one
//! before it).
//!
//! A job that fails rolls back its whole group: every job of the group is
//! answered with an error, and nothing of it is stored. Jobs fail only on
//! database errors (a full disk, an I/O error), which a group shares anyway;
//! without a savepoint per job, a commit copies no page twice.
//!
//! A group of delivery jobs that may wait (records, releases) is held up to
//! [`LINGER`] for company, until [`COMPANY`] jobs share it: a commit writes
//! every page its group dirtied, and a record of the same few pages (the
//! table's last leaf, each index's) costs less when many records share them.
//! A durable job ends the wait at once: a client waits for it. (Claims do
//! not come here: they write nothing, and run on their own connection.)
//!
//! Checkpoints (copying the WAL back into the database file) stay SQLite's
//! automatic ones, on the writer: only a checkpoint that ran with no write
//! after it lets the next transaction restart the WAL from its beginning. A
//! checkpointer on another thread, racing a writer that never pauses, lets the
//! WAL grow without end, and every new WAL page then costs the kernel a
//! zero-fill (measured: half the writer's time). What made those
//! checkpoints slow, the fsync of a WAL written without syncs, is done behind
//! the writer instead, by the WAL syncer (see `wal_syncer`): the checkpoint's
//! own sync then finds the WAL mostly on disk already.

use std::cell::RefCell;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::{Connection, Statement};

use super::minutes::Tally;
use super::wal_syncer::Nudge;
use crate::StoreError;

/// The most jobs committed in one transaction.
pub const MAX_GROUP: usize = 1024;

/// How long a group of jobs that may wait is held for company. Short beside
/// an HTTP attempt; long beside a commit of a few records.
pub const LINGER: Duration = Duration::from_micros(500);

/// How many jobs a group that may wait gathers before it commits anyway.
pub const COMPANY: usize = 64;

/// Whether a job must be on disk (fsync) before it is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// fsync before answering: acknowledgements to clients and operators.
    Fsync,
    /// In the WAL file before answering; fsync'd by the next durable commit
    /// or checkpoint, and usually sooner by the WAL syncer.
    Written,
}

/// The writer's connection, and the statements of the jobs that run once
/// per message held prepared for the thread's life.
///
/// rusqlite's `prepare_cached` costs each use a copy of the SQL text into a
/// new key, a hash of it to take the statement out of the cache and another
/// to put it back (about 3% of all the instructions of a drain, with three
/// statements per record). A held statement is found by its text's address.
/// Every other statement goes through the connection as before (`Writing`
/// dereferences to it).
///
/// It also holds the group's tally of recorded attempts for the chart (see
/// `minutes`), which `commit_group` adds to its table just before the
/// commit and forgets after the group, committed or not.
pub struct Writing<'c> {
    conn: &'c Connection,
    held: RefCell<Vec<(&'static str, Statement<'c>)>>,
    /// The attempts the group recorded so far, added to their table just
    /// before it commits (see `minutes`).
    tally: RefCell<Tally>,
}

impl<'c> Writing<'c> {
    /// The writer's view of `conn`, with nothing prepared yet.
    pub fn new(conn: &'c Connection) -> Self {
        Writing {
            conn,
            held: RefCell::new(Vec::new()),
            tally: RefCell::new(Tally::default()),
        }
    }

    /// Counts an attempt the running job recorded in the chart's minutes:
    /// added to `attempt_minutes` with the group's commit.
    pub fn tally_attempt(&self, started_at: i64, class: &str) {
        self.tally.borrow_mut().note(started_at, class);
    }

    /// Takes the attempts of the messages `slice` selects out of the
    /// chart's minutes (see `minutes::forget_attempts_of`), after adding
    /// what the group tallied so far.
    pub fn forget_attempts_of<P: rusqlite::Params>(
        &self,
        slice: &str,
        params: P,
    ) -> rusqlite::Result<()> {
        super::minutes::forget_attempts_of(self.conn, &mut self.tally.borrow_mut(), slice, params)
    }

    /// Runs `use_it` on the statement of `sql`, prepared on first use and
    /// held from then on. (Should `use_it` itself ask for a held statement,
    /// the inner call takes it from rusqlite's cache instead: never a panic.)
    pub fn held<T>(
        &self,
        sql: &'static str,
        use_it: impl FnOnce(&mut Statement<'c>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let Ok(mut held) = self.held.try_borrow_mut() else {
            let mut statement = self.conn.prepare_cached(sql)?;
            return use_it(&mut statement);
        };
        let found = held
            .iter()
            .position(|(text, _)| std::ptr::eq(*text, sql) || *text == sql);
        let index = match found {
            Some(i) => i,
            None => {
                held.push((sql, self.conn.prepare(sql)?));
                held.len() - 1
            }
        };
        // In range: found, or just pushed.
        let (_, statement) = &mut held[index];
        let result = use_it(statement);
        // As rusqlite's cache does: a held statement keeps no copy of the
        // last message's values.
        statement.clear_bindings();
        result
    }
}

impl Deref for Writing<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

/// One job for the writer.
pub trait Job: Send {
    /// Runs the job's statements; false when one failed.
    fn run(&mut self, conn: &Writing<'_>) -> bool;
    /// Answers the caller with the job's result, or with `group`'s error when
    /// the group did not commit.
    fn finish(self: Box<Self>, group: Result<(), &StoreError>);
    /// How durable its answer must be.
    fn durability(&self) -> Durability;
    /// Whether its answer may wait up to [`LINGER`] for other jobs to share
    /// its commit.
    fn may_wait(&self) -> bool;
}

/// Runs on the writer thread once a job's group has committed, before its
/// caller is answered: what must follow the commit whether or not the caller
/// still waits (the store's in-memory counts).
pub type CommitHook<T> = Box<dyn FnOnce(&mut T) + Send>;

/// Where a job's answer goes: a callback, run on the writer thread once the
/// job's group has committed or rolled back. A caller that waits passes one
/// that sends on a channel; one that need not wait (the end of a lease, say)
/// does not depend on its caller still being there.
pub type Reply<T> = Box<dyn FnOnce(Result<T, StoreError>) + Send>;

/// A closure and where its answer goes. A job dropped unanswered (still
/// queued when the writer ended, or in a group the writer dropped when it
/// panicked) answers `Closed` as it goes: its reply always runs, once.
pub struct ClosureJob<T, F> {
    f: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: Option<Reply<T>>,
    durability: Durability,
    on_commit: Option<CommitHook<T>>,
}

impl<T, F> Drop for ClosureJob<T, F> {
    fn drop(&mut self) {
        if let Some(reply) = self.reply.take() {
            reply(Err(StoreError::Closed));
        }
    }
}

impl<T, F> ClosureJob<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Writing<'_>) -> Result<T, StoreError> + Send + 'static,
{
    /// A job running `f`, boxed for the writer's queue, answered through
    /// `reply`, with `on_commit` run on its result once its group has
    /// committed. A delivery job ([`Durability::Written`]) may be held up to
    /// [`LINGER`] for company.
    pub fn boxed(
        f: F,
        durability: Durability,
        on_commit: Option<CommitHook<T>>,
        reply: Reply<T>,
    ) -> Box<dyn Job> {
        Box::new(ClosureJob {
            f: Some(f),
            result: None,
            reply: Some(reply),
            durability,
            on_commit,
        })
    }

    /// A job running `f` and the receiver of its answer (for tests).
    #[cfg(test)]
    pub fn awaited(
        f: F,
        durability: Durability,
    ) -> (
        Box<dyn Job>,
        tokio::sync::oneshot::Receiver<Result<T, StoreError>>,
    ) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let reply: Reply<T> = Box::new(move |answer| {
            let _ = tx.send(answer);
        });
        (ClosureJob::boxed(f, durability, None, reply), rx)
    }
}

impl<T, F> Job for ClosureJob<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Writing<'_>) -> Result<T, StoreError> + Send + 'static,
{
    fn run(&mut self, conn: &Writing<'_>) -> bool {
        let Some(f) = self.f.take() else {
            return false;
        };
        let result = f(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(mut self: Box<Self>, group: Result<(), &StoreError>) {
        let answer = match (group, self.result.take()) {
            (Ok(()), Some(Ok(mut value))) => {
                if let Some(hook) = self.on_commit.take() {
                    hook(&mut value);
                }
                Ok(value)
            }
            (Ok(()), Some(result)) => result,
            // Its own error says most.
            (Err(_), Some(Err(own))) => Err(own),
            // Never queued: the writer is gone.
            (Err(StoreError::Closed), None) => Err(StoreError::Closed),
            (Err(e), _) => Err(StoreError::Database(format!(
                "rolled back with its commit group: {e}"
            ))),
            (Ok(()), None) => Err(StoreError::Database("the job did not run".into())),
        };
        if let Some(reply) = self.reply.take() {
            reply(answer);
        }
    }

    fn durability(&self) -> Durability {
        self.durability
    }

    fn may_wait(&self) -> bool {
        self.durability == Durability::Written
    }
}

/// Transactions the writer committed and the jobs they held: their ratio is
/// how well group commit amortises a commit (benchmarks report it).
#[derive(Debug, Default)]
pub struct CommitCounts {
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Jobs in them.
    pub jobs: AtomicU64,
    /// Nanoseconds the writer spent on groups (running, committing,
    /// checkpointing); the rest of its time it waited for work.
    pub busy_ns: AtomicU64,
    /// Background syncs of the WAL (see `wal_syncer`).
    pub wal_syncs: Arc<AtomicU64>,
}

/// Starts the writer on `conn`. With `wal_sync`, every commit that did not
/// sync the WAL itself asks for a background sync of it.
pub fn start(
    conn: Connection,
    counts: Arc<CommitCounts>,
    wal_sync: Option<Nudge>,
) -> Result<Sender<Box<dyn Job>>, StoreError> {
    let (tx, rx) = mpsc::channel::<Box<dyn Job>>();
    thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || {
            let writing = Writing::new(&conn);
            let mut group: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_GROUP);
            let mut synchronous = None;
            while let Ok(first) = rx.recv() {
                group.push(first);
                gather(&rx, &mut group);
                let start = Instant::now();
                counts.commits.fetch_add(1, Ordering::Relaxed);
                counts.jobs.fetch_add(group.len() as u64, Ordering::Relaxed);
                let synced = commit_group(&writing, &mut synchronous, group.drain(..));
                if let (false, Some(wal)) = (synced, &wal_sync) {
                    wal.nudge();
                }
                let busy = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                counts.busy_ns.fetch_add(busy, Ordering::Relaxed);
            }
        })
        .map_err(|e| StoreError::Config(format!("cannot start the writer thread: {e}")))?;
    Ok(tx)
}

/// Adds the jobs waiting to `group`; if every job of it may wait, waits up
/// to [`LINGER`] for more, until [`COMPANY`] or one that may not wait.
fn gather(rx: &Receiver<Box<dyn Job>>, group: &mut Vec<Box<dyn Job>>) {
    let take_waiting = |group: &mut Vec<Box<dyn Job>>| {
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
    };
    take_waiting(group);
    if !group.iter().all(|j| j.may_wait()) {
        return;
    }
    let deadline = Instant::now() + LINGER;
    while group.len() < COMPANY {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(job) => {
                let urgent = !job.may_wait();
                group.push(job);
                if urgent {
                    take_waiting(group);
                    return;
                }
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Runs every job in one transaction and commits (with an fsync when one job
/// asks for it), then answers them all; rolls the whole group back if a job
/// or the commit fails. Says whether the group committed as durable (with
/// `synchronous = FULL`: the WAL was synced, unless the group wrote nothing).
fn commit_group(
    conn: &Writing<'_>,
    synchronous: &mut Option<Durability>,
    jobs: impl Iterator<Item = Box<dyn Job>>,
) -> bool {
    let mut jobs: Vec<Box<dyn Job>> = jobs.collect();
    let wanted = if jobs.iter().any(|j| j.durability() == Durability::Fsync) {
        Durability::Fsync
    } else {
        Durability::Written
    };
    let exec = |sql: &str| {
        conn.prepare_cached(sql)
            .and_then(|mut s| s.execute([]).map(|_| ()))
    };
    let outcome = (|| {
        if *synchronous != Some(wanted) {
            conn.execute_batch(match wanted {
                Durability::Fsync => "PRAGMA synchronous = FULL",
                Durability::Written => "PRAGMA synchronous = NORMAL",
            })
            .map_err(|e| StoreError::Database(e.to_string()))?;
            *synchronous = Some(wanted);
        }
        exec("BEGIN IMMEDIATE").map_err(|e| StoreError::Database(e.to_string()))?;
        for job in jobs.iter_mut() {
            if !job.run(conn) {
                let _ = exec("ROLLBACK");
                return Err(StoreError::Database(
                    "a job of the group failed; nothing of the group was stored".into(),
                ));
            }
        }
        conn.tally
            .borrow_mut()
            .flush(conn)
            .and_then(|()| exec("COMMIT"))
            .map_err(|e| {
                let _ = exec("ROLLBACK");
                StoreError::Database(e.to_string())
            })
    })();
    // Counted with the group, or not at all.
    conn.tally.borrow_mut().clear();
    for job in jobs {
        job.finish(outcome.as_ref().map(|_| ()));
    }
    outcome.is_ok() && wanted == Durability::Fsync
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use tokio::sync::oneshot;

    fn count(tx: &Sender<Box<dyn Job>>) -> i64 {
        let (job, rx) = ClosureJob::awaited(
            |c: &Writing<'_>| {
                c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
                    .map_err(|e| StoreError::Database(e.to_string()))
            },
            Durability::Written,
        );
        tx.send(job).expect("send");
        rx.blocking_recv().expect("answer").expect("count")
    }

    /// Sends a job that holds the writer until the returned gate is sent
    /// to (or dropped); returns once the writer runs it.
    pub(in crate::sqlite) fn hold(
        tx: &Sender<Box<dyn Job>>,
    ) -> (
        std::sync::mpsc::Sender<()>,
        oneshot::Receiver<Result<(), StoreError>>,
    ) {
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
        let (blocker, blocked) = ClosureJob::awaited(
            move |_: &Writing<'_>| {
                let _ = started_tx.send(());
                let _ = gate_rx.recv();
                Ok(())
            },
            Durability::Written,
        );
        tx.send(blocker).expect("send");
        started_rx.recv().expect("writer started");
        (gate_tx, blocked)
    }

    fn insert(c: &Connection, sql: &str) -> Result<(), StoreError> {
        c.execute(sql, [])
            .map(|_| ())
            .map_err(|e| StoreError::Database(e.to_string()))
    }

    /// A job dropped unanswered (the writer gone before it ran it) still
    /// answers, once, with `Closed`: a caller's callback (a record's, which
    /// ends its lease) always runs.
    #[test]
    fn a_job_dropped_unanswered_answers_closed() {
        let (tx, rx) = std::sync::mpsc::channel::<Result<(), StoreError>>();
        let job = ClosureJob::boxed(
            |_: &Writing<'_>| Ok(()),
            Durability::Written,
            None,
            Box::new(move |answer| {
                let _ = tx.send(answer);
            }),
        );
        drop(job);
        assert!(matches!(rx.recv(), Ok(Err(StoreError::Closed))));
        assert!(rx.recv().is_err(), "answered once");
    }

    /// A held statement is prepared once and serves every use after, with
    /// its own parameters each time; one that failed (a constraint) is reset
    /// and serves the next use; a statement asked for while another is in
    /// use comes from rusqlite's cache instead; a schema change in between
    /// is SQLite's business (it prepares the statement again).
    #[test]
    fn held_statements_are_prepared_once_and_stay_usable() {
        const INSERT: &str = "INSERT INTO t (x) VALUES (?1)";
        const COUNT: &str = "SELECT COUNT(*) FROM t WHERE x >= ?1";
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch("CREATE TABLE t (x INTEGER UNIQUE)")
            .expect("schema");
        let w = Writing::new(&conn);
        for x in 1..=3 {
            assert_eq!(w.held(INSERT, |s| s.execute([x])).expect("insert"), 1);
        }
        assert!(
            w.held(INSERT, |s| s.execute([2])).is_err(),
            "a duplicate is refused"
        );
        assert_eq!(w.held(INSERT, |s| s.execute([4])).expect("after"), 1);
        let count = |from: i64| w.held(COUNT, |s| s.query_row([from], |r| r.get::<_, i64>(0)));
        assert_eq!(count(2).expect("count"), 3);
        assert_eq!(w.held.borrow().len(), 2, "one statement per text");
        // Another held statement while one is in use.
        let nested = w
            .held(INSERT, |s| {
                s.execute([5])?;
                count(0)
            })
            .expect("nested");
        assert_eq!(nested, 5);
        w.execute_batch("ALTER TABLE t ADD COLUMN y TEXT")
            .expect("alter");
        assert_eq!(w.held(INSERT, |s| s.execute([6])).expect("altered"), 1);
        assert_eq!(count(0).expect("count"), 6);
        assert_eq!(w.held.borrow().len(), 2);
    }

    /// Jobs that share a group share its fate: one failure, nothing stored,
    /// every caller told.
    #[test]
    fn a_failing_job_rolls_back_its_whole_group() {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(&format!(
            "CREATE TABLE t (x INTEGER); {}",
            crate::sqlite::minutes::TABLE
        ))
        .expect("schema");
        let counts = Arc::new(CommitCounts::default());
        let tx = start(conn, Arc::clone(&counts), None).expect("start");
        // Hold the writer in a first group until both jobs below are queued,
        // so they land in the same group.
        let (gate_tx, blocked) = hold(&tx);
        let (good, good_rx) = ClosureJob::awaited(
            |c: &Writing<'_>| {
                c.tally_attempt(10, "success");
                insert(c, "INSERT INTO t VALUES (1)")
            },
            Durability::Fsync,
        );
        let (bad, bad_rx) = ClosureJob::awaited(
            |c: &Writing<'_>| insert(c, "INSERT INTO missing VALUES (1)"),
            Durability::Written,
        );
        tx.send(good).expect("send");
        tx.send(bad).expect("send");
        gate_tx.send(()).expect("open the gate");
        assert!(blocked.blocking_recv().expect("answer").is_ok());
        let good = good_rx.blocking_recv().expect("answer");
        let bad = bad_rx.blocking_recv().expect("answer");
        assert!(
            matches!(&good, Err(StoreError::Database(m)) if m.contains("rolled back with its commit group")),
            "{good:?}"
        );
        assert!(
            matches!(&bad, Err(StoreError::Database(m)) if m.contains("missing")),
            "{bad:?}"
        );
        assert_eq!(count(&tx), 0, "the good job's row was rolled back too");
        // The writer goes on.
        let (again, again_rx) = ClosureJob::awaited(
            |c: &Writing<'_>| insert(c, "INSERT INTO t VALUES (2)"),
            Durability::Fsync,
        );
        tx.send(again).expect("send");
        assert!(again_rx.blocking_recv().expect("answer").is_ok());
        assert_eq!(count(&tx), 1);
        let (minutes, minutes_rx) = ClosureJob::awaited(
            |c: &Writing<'_>| {
                c.query_row("SELECT COUNT(*) FROM attempt_minutes", [], |r| {
                    r.get::<_, i64>(0)
                })
                .map_err(|e| StoreError::Database(e.to_string()))
            },
            Durability::Written,
        );
        tx.send(minutes).expect("send");
        assert_eq!(
            minutes_rx
                .blocking_recv()
                .expect("answer")
                .expect("minutes"),
            0,
            "the rolled-back group's attempt was not counted, then or later"
        );
        assert_eq!(counts.jobs.load(Ordering::Relaxed), 7);
    }

    /// A job that may wait for company is answered even when none comes: the
    /// wait ends after `LINGER`, and jobs queued together share one commit.
    #[test]
    fn jobs_that_may_wait_are_answered_alone_or_together() {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch("CREATE TABLE t (x INTEGER)")
            .expect("schema");
        let counts = Arc::new(CommitCounts::default());
        let tx = start(conn, Arc::clone(&counts), None).expect("start");
        let (lone, lone_rx) = ClosureJob::awaited(
            |c: &Writing<'_>| insert(c, "INSERT INTO t VALUES (1)"),
            Durability::Written,
        );
        tx.send(lone).expect("send");
        assert!(lone_rx.blocking_recv().expect("answer").is_ok());
        assert_eq!(counts.commits.load(Ordering::Relaxed), 1);
        // Hold the writer, queue three, let go: one group, one commit.
        let (gate_tx, blocked) = hold(&tx);
        let answers: Vec<_> = (0..3)
            .map(|i| {
                let (job, rx) = ClosureJob::awaited(
                    move |c: &Writing<'_>| insert(c, &format!("INSERT INTO t VALUES ({i})")),
                    Durability::Written,
                );
                tx.send(job).expect("send");
                rx
            })
            .collect();
        gate_tx.send(()).expect("open the gate");
        assert!(blocked.blocking_recv().expect("answer").is_ok());
        for rx in answers {
            assert!(rx.blocking_recv().expect("answer").is_ok());
        }
        assert_eq!(
            counts.commits.load(Ordering::Relaxed),
            3,
            "lone, blocker, the three"
        );
        assert_eq!(count(&tx), 4);
    }
}
