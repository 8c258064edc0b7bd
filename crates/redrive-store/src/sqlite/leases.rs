//! The SQLite store's leases, held in memory.
//!
//! A SQLite file has one deliverer: the process holding its delivery lock
//! (see [`DeliveryLock`]). Its leases need not be written to the database
//! then: a claim reads the due rows and notes the leases here, instead of
//! rewriting each row and moving its entry in the due index (a quarter of the
//! writer's work in a drain). Nothing is lost when the process dies: its
//! leases die with it, and its claimed messages, still pending in the
//! database, are due again when the next process starts.
//!
//! While leased, a message's due time is its lease's end, as when the lease
//! was a column: a claim skips it until then, and after then takes it over.
//!
//! Claims run on their own connection, beside the writer, so a lease may end
//! only once what ended it is committed: a record or release first *spends*
//! the lease (its fence, on the writer), and its caller *ends* it after the
//! commit. A claim reads a snapshot of the database and then checks the
//! leases; a lease ended between the two would let it take a message whose
//! record it cannot see. So while a claim runs, ends wait in a queue and are
//! applied when it finishes.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::model::{Message, MessageState};
use crate::StoreError;

/// One message's lease.
#[derive(Clone, Debug)]
pub struct Lease {
    /// The holder's token: only it records the attempt or releases.
    pub token: String,
    /// When the lease ends (ms since the epoch); then the message is due again.
    pub until: i64,
    /// The message's row, so a record finds it without the id index.
    pub rowid: i64,
    destination: String,
    /// A record or release used it (not committed yet): it fences off
    /// another, and still holds the message.
    spent: bool,
}

/// Every lease this process holds, by message id.
#[derive(Debug, Default)]
pub struct Leases {
    by_id: HashMap<String, Lease>,
    per_destination: HashMap<String, usize>,
    /// A claim is between its snapshot and its check.
    claiming: bool,
    /// Leases ended while a claim ran: `(id, token)`.
    ended: Vec<(String, String)>,
}

impl Leases {
    /// Leases held for `destination`'s messages, ended ones included: a claim
    /// reads that many due entries more than it wants, since leased messages
    /// keep their place at the front of the due index.
    pub fn held_for(&self, destination: &str) -> usize {
        self.per_destination.get(destination).copied().unwrap_or(0)
    }

    /// Whether `id` is leased at `now` (a lease that has ended is not).
    pub fn is_held(&self, id: &str, now: i64) -> bool {
        self.by_id.get(id).is_some_and(|l| l.until > now)
    }

    /// When `id`'s lease ends, if it has one.
    pub fn until(&self, id: &str) -> Option<i64> {
        self.by_id.get(id).map(|l| l.until)
    }

    /// Whether no message is leased.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Leases `id` to `token` until `until`, replacing an ended lease.
    pub fn grant(&mut self, id: String, destination: &str, rowid: i64, token: &str, until: i64) {
        let lease = Lease {
            token: token.to_owned(),
            until,
            rowid,
            destination: destination.to_owned(),
            spent: false,
        };
        if let Some(old) = self.by_id.insert(id, lease) {
            self.forget(&old.destination);
        }
        *self
            .per_destination
            .entry(destination.to_owned())
            .or_insert(0) += 1;
    }

    /// The fence of records and releases: spends `id`'s lease if `token`
    /// holds it and has not spent it, and returns the message's row and
    /// destination; `None` (and nothing changes) otherwise. The message
    /// stays leased until [`Leases::end`].
    pub fn spend(&mut self, id: &str, token: &str) -> Option<(i64, &str)> {
        let lease = self.by_id.get_mut(id)?;
        if lease.token != token || lease.spent {
            return None;
        }
        lease.spent = true;
        Some((lease.rowid, lease.destination.as_str()))
    }

    /// Ends `id`'s lease if `token` holds it: called once the record or
    /// release that spent it is committed (or failed). Waits for a running
    /// claim to finish.
    pub fn end(&mut self, id: String, token: String) {
        if self.claiming {
            self.ended.push((id, token));
        } else {
            self.remove(&id, &token);
        }
    }

    fn remove(&mut self, id: &str, token: &str) {
        if self.by_id.get(id).is_some_and(|l| l.token == token) {
            if let Some(lease) = self.by_id.remove(id) {
                self.forget(&lease.destination);
            }
        }
    }

    /// A claim takes its snapshot next: from now on, ends wait for it.
    pub fn begin_claim(&mut self) {
        self.claiming = true;
    }

    /// The claim has checked and granted its leases: apply the ends that
    /// waited.
    pub fn finish_claim(&mut self) {
        self.claiming = false;
        for (id, token) in std::mem::take(&mut self.ended) {
            self.remove(&id, &token);
        }
    }

    fn forget(&mut self, destination: &str) {
        if let Some(n) = self.per_destination.get_mut(destination) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_destination.remove(destination);
            }
        }
    }

    /// Shows `m` as the API shows a message: leased, and due when its lease
    /// ends, while a lease is held on it.
    pub fn show(&self, m: &mut Message) {
        match self.by_id.get(&m.id) {
            Some(l) if m.state == MessageState::Pending => {
                m.leased = true;
                m.next_attempt_at = Some(l.until);
            }
            _ => m.leased = false,
        }
    }
}

/// Locks `m`, whether or not a thread panicked while holding it (the leases
/// stay consistent: every change to them is a single map operation).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The lock that makes one process the deliverer of a SQLite file: an
/// exclusive `flock` on a file beside the database, taken at the first claim
/// and held while the store lives. Operators' commands and a second reader
/// still open the database; a second deliverer is refused instead of
/// delivering every message twice.
#[derive(Debug)]
pub struct DeliveryLock {
    path: PathBuf,
    held: Mutex<Option<File>>,
}

impl DeliveryLock {
    /// The lock of the database at `database` (not taken yet).
    pub fn new(database: &Path) -> DeliveryLock {
        let mut name = database.as_os_str().to_owned();
        name.push(".deliver-lock");
        DeliveryLock {
            path: PathBuf::from(name),
            held: Mutex::new(None),
        }
    }

    /// Takes the lock, or says which process-wide lock another holds.
    pub fn take(&self) -> Result<(), StoreError> {
        let mut held = lock(&self.held);
        if held.is_some() {
            return Ok(());
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.path)
            .map_err(|e| {
                StoreError::Config(format!(
                    "cannot open the delivery lock {}: {e}",
                    self.path.display()
                ))
            })?;
        match file.try_lock() {
            Ok(()) => {
                *held = Some(file);
                Ok(())
            }
            Err(TryLockError::WouldBlock) => Err(StoreError::Config(format!(
                "another redrive is delivering from this SQLite database (it holds {}); \
                 one process delivers from a SQLite file, use PostgreSQL for several",
                self.path.display()
            ))),
            Err(TryLockError::Error(e)) => Err(StoreError::Config(format!(
                "cannot lock {}: {e}",
                self.path.display()
            ))),
        }
    }
}
