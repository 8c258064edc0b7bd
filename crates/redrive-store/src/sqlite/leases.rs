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
//! the lease (its fence, on the writer), and it is *ended* after the commit
//! (a record's by the writer's answer to it, a release's by its caller). A claim reads a snapshot of the database and then checks the
//! leases; a lease ended between the two would let it take a message whose
//! record it cannot see. So while a claim runs, ends wait in a queue and are
//! applied when it finishes.
//!
//! Leased messages keep their place at the front of the due index, so a
//! claim that read from the front would step over every one of them (about
//! six entries read per message taken, in a drain). Each destination has a
//! **cursor** instead: the due key `(next_attempt_at, id)` of the last
//! message a claim took, and the next claim reads after it. Behind a cursor
//! every due message is leased, and stays so until one of these, each of
//! which compares its key with the cursor and, at or behind it, sends the
//! next claim back to the front (a *rescan*):
//!
//! - a lease ends and its message is due again: a retry recorded, a release,
//!   a record or release that failed (its key unknown: always a rescan);
//! - a message becomes due without a lease: an enqueue, a redrive;
//! - a lease expires: a claim whose `now` reaches the earliest end of the
//!   destination's leases (any taken since, or held at, its last rescan)
//!   rescans;
//! - the clock is read behind the cursor (a claim's `now` before its key,
//!   or before the last rescan);
//! - a message is made due again while still leased (redriven between its
//!   park's commit and the end of its lease): its lease's end rescans.
//!
//! Like ends, the keys noted while a claim runs are compared once it has
//! moved the cursor: its snapshot may predate them.

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
    /// The message was made due again (a redrive) while this lease held
    /// it: a claim skipped it as leased, so its end must send the next
    /// claim to the front, whatever its ender knows.
    renoted: bool,
    /// The message's counters as its claim read them, so its record need
    /// not read them back (see [`Counters`]).
    counters: Counters,
}

/// A message's attempt counters, `(total_attempts, cycle, attempts)`, as a
/// claim read them. While a lease holds a message nothing but the lease's
/// record changes them (a redrive or a discard takes parked messages only,
/// a release leaves them), with one exception: a record of an earlier lease
/// that was spent, expired before its group committed, and committed after
/// this claim read the row. Every record adds one to `total_attempts`, so
/// the record's update checks it against the claim's and, when it moved,
/// updates as before and reads the counters back.
pub type Counters = (u32, u32, u32);

/// What spending a lease gives its record or release.
#[derive(Debug)]
pub struct Spent<'a> {
    /// The message's row.
    pub rowid: i64,
    /// The message's destination.
    pub destination: &'a str,
    /// Its counters as the claim read them.
    pub counters: Counters,
}

/// A place in a destination's due index: entries are ordered by due time,
/// then id (SQLite compares text bytewise, as `str` does).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DueKey {
    /// `next_attempt_at`.
    pub at: i64,
    /// The message's id.
    pub id: String,
}

/// Where a message whose lease ends is due next, as far as its ender knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DueNext {
    /// Nowhere: it is delivered or parked, or was not pending.
    Gone,
    /// Pending, due at this time.
    At(i64),
    /// Unknown (the write failed): where it was, or anywhere.
    Unknown,
}

/// Where a destination's claims read from.
#[derive(Debug, Default)]
struct Cursor {
    /// The last entry a claim took; `None`: from the front.
    after: Option<DueKey>,
    /// No lease of the destination held at the last rescan or granted since
    /// ends before this: until then, none behind the cursor has expired.
    expires: i64,
    /// The clock of the last rescan: a lease it saw expired (and so did not
    /// count in `expires`) holds again for a clock read before it.
    rescanned_at: i64,
}

/// Every lease this process holds, by message id.
///
/// The maps hash with foldhash rather than the standard library's SipHash
/// (about 1,400 instructions of SipHash per message delivered, in three
/// lookups by id): their keys are ids this server generated (ULIDs, 80
/// random bits) and destination names from its configuration, not keys a
/// client could choose to collide.
#[derive(Debug, Default)]
pub struct Leases {
    by_id: foldhash::HashMap<String, Lease>,
    /// A claim is between its snapshot and its check.
    claiming: bool,
    /// Leases ended while a claim ran: `(id, token, where it is due next)`.
    ended: Vec<(String, String, DueNext)>,
    /// Each destination's cursor.
    cursors: foldhash::HashMap<String, Cursor>,
    /// Due keys noted while a claim ran: `(destination, key)`.
    noted: Vec<(String, DueKey)>,
}

impl Leases {
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

    /// Leases `id` (its row `rowid`, with `counters` as the claim read
    /// them) to `token` until `until`, replacing an ended lease.
    pub fn grant(
        &mut self,
        id: String,
        (destination, rowid, counters): (&str, i64, Counters),
        token: &str,
        until: i64,
    ) {
        let lease = Lease {
            token: token.to_owned(),
            until,
            rowid,
            destination: destination.to_owned(),
            spent: false,
            renoted: false,
            counters,
        };
        self.by_id.insert(id, lease);
        if let Some(cursor) = self.cursors.get_mut(destination) {
            cursor.expires = cursor.expires.min(until);
        }
    }

    /// The fence of records and releases: spends `id`'s lease if `token`
    /// holds it and has not spent it, and returns the message's row,
    /// destination and counters; `None` (and nothing changes) otherwise.
    /// The message stays leased until [`Leases::end`].
    pub fn spend(&mut self, id: &str, token: &str) -> Option<Spent<'_>> {
        let lease = self.by_id.get_mut(id)?;
        if lease.token != token || lease.spent {
            return None;
        }
        lease.spent = true;
        Some(Spent {
            rowid: lease.rowid,
            destination: lease.destination.as_str(),
            counters: lease.counters,
        })
    }

    /// Ends `id`'s lease if `token` holds it: called once the record or
    /// release that spent it is committed (or failed); `next` says where the
    /// message is due now, for the cursor. Waits for a running claim to
    /// finish.
    pub fn end(&mut self, id: String, token: String, next: DueNext) {
        if self.claiming {
            self.ended.push((id, token, next));
        } else {
            self.remove(id, &token, next);
        }
    }

    fn remove(&mut self, id: String, token: &str, next: DueNext) {
        if self.by_id.get(&id).is_some_and(|l| l.token == token) {
            if let Some(lease) = self.by_id.remove(&id) {
                match next {
                    _ if lease.renoted => self.rescan(&lease.destination),
                    DueNext::Gone => {}
                    DueNext::At(at) => self.compare(&lease.destination, &DueKey { at, id }),
                    DueNext::Unknown => self.rescan(&lease.destination),
                }
            }
        }
    }

    /// A message of `destination` became due at `key` without a lease (an
    /// enqueue or a redrive, once committed): a claim whose cursor is past
    /// it must go back for it.
    pub fn note_due(&mut self, destination: &str, key: DueKey) {
        if self.claiming {
            self.noted.push((destination.to_owned(), key));
        } else {
            self.note_now(destination, &key);
        }
    }

    fn note_now(&mut self, destination: &str, key: &DueKey) {
        // Still leased (its record committed a park, the lease is not
        // ended yet): claims skip it until the lease ends, and
        // the end must look again.
        if let Some(lease) = self.by_id.get_mut(&key.id) {
            lease.renoted = true;
        }
        self.compare(destination, key);
    }

    /// Sends `destination`'s next claim to the front.
    fn rescan(&mut self, destination: &str) {
        if let Some(cursor) = self.cursors.get_mut(destination) {
            cursor.after = None;
        }
    }

    /// Sends `destination`'s next claim to the front if `key` is at or
    /// behind its cursor.
    fn compare(&mut self, destination: &str, key: &DueKey) {
        if let Some(cursor) = self.cursors.get_mut(destination) {
            if cursor.after.as_ref().is_some_and(|after| key <= after) {
                cursor.after = None;
            }
        }
    }

    /// Where a claim at `now` reads `destination`'s due entries from: after
    /// the key returned, or from the front (`None`).
    pub fn read_after(&mut self, destination: &str, now: i64) -> Option<DueKey> {
        if let Some(cursor) = self.cursors.get(destination) {
            if let Some(after) = &cursor.after {
                if now < cursor.expires && now >= after.at && now >= cursor.rescanned_at {
                    return Some(after.clone());
                }
            }
        }
        // From the front: the leases held now are the ones it will skip (an
        // expired one it takes, or leaves after the cursor).
        let expires = self
            .by_id
            .values()
            .filter(|l| l.destination == destination && l.until > now)
            .map(|l| l.until)
            .min()
            .unwrap_or(i64::MAX);
        let cursor = match self.cursors.get_mut(destination) {
            Some(cursor) => cursor,
            None => self.cursors.entry(destination.to_owned()).or_default(),
        };
        cursor.after = None;
        cursor.expires = expires;
        cursor.rescanned_at = now;
        None
    }

    /// Where `destination`'s next claim would read from, if not the front
    /// (tests check that claims do read from their cursors).
    #[cfg(test)]
    pub fn cursor_of(&self, destination: &str) -> Option<&DueKey> {
        self.cursors.get(destination)?.after.as_ref()
    }

    /// A claim took `destination`'s entries up to `last`, every one before
    /// it being leased: the next claim reads after it.
    pub fn advance(&mut self, destination: &str, last: DueKey) {
        if let Some(cursor) = self.cursors.get_mut(destination) {
            cursor.after = Some(last);
        }
    }

    /// A claim takes its snapshot next: from now on, ends and notes wait
    /// for it.
    pub fn begin_claim(&mut self) {
        self.claiming = true;
    }

    /// The claim has checked and granted its leases and moved its cursors:
    /// apply the ends and notes that waited.
    pub fn finish_claim(&mut self) {
        self.claiming = false;
        for (id, token, next) in std::mem::take(&mut self.ended) {
            self.remove(id, &token, next);
        }
        for (destination, key) in std::mem::take(&mut self.noted) {
            self.note_now(&destination, &key);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(at: i64, id: &str) -> DueKey {
        DueKey { at, id: id.into() }
    }

    /// A claim's snapshot may predate a message made due (or let go) while
    /// it runs: the note waits for the claim, and is compared with the
    /// cursor the claim leaves, not the one it found.
    #[test]
    fn what_is_noted_during_a_claim_is_compared_with_the_cursor_it_leaves() {
        let mut leases = Leases::default();
        leases.begin_claim();
        assert_eq!(leases.read_after("crm", 100), None, "no cursor yet");
        leases.grant("m5".into(), ("crm", 5, (0, 1, 0)), "t1", 1_000);
        // Committed while the claim runs, behind where it will stop.
        leases.note_due("crm", key(50, "m2"));
        leases.advance("crm", key(90, "m5"));
        leases.finish_claim();
        assert_eq!(
            leases.cursor_of("crm"),
            None,
            "the next claim reads from the front"
        );

        leases.begin_claim();
        assert_eq!(leases.read_after("crm", 100), None);
        leases.grant("m9".into(), ("crm", 9, (0, 1, 0)), "t2", 1_000);
        leases.advance("crm", key(95, "m9"));
        leases.finish_claim();
        // A lease that ends while a claim runs, its message due behind it.
        leases.begin_claim();
        assert_eq!(leases.read_after("crm", 100), Some(key(95, "m9")));
        leases.end("m5".into(), "t1".into(), DueNext::At(60));
        leases.finish_claim();
        assert_eq!(leases.cursor_of("crm"), None);
    }

    /// A message redriven while the lease of its park has not ended yet: a
    /// claim skips it as leased and moves past it, so the lease's end, whose
    /// ender only knows the park, must send the next claim to the front.
    #[test]
    fn a_message_made_due_while_leased_is_looked_for_when_the_lease_ends() {
        let mut leases = Leases::default();
        assert_eq!(leases.read_after("crm", 100), None);
        leases.grant("m1".into(), ("crm", 1, (0, 1, 0)), "t1", 1_000);
        leases.advance("crm", key(10, "m1"));
        // The park committed; the redrive commits before the lease ends.
        leases.note_due("crm", key(50, "m1"));
        assert_eq!(leases.read_after("crm", 100), Some(key(10, "m1")));
        assert!(leases.is_held("m1", 100), "the claim skips it");
        leases.grant("m2".into(), ("crm", 2, (0, 1, 0)), "t2", 1_000);
        leases.advance("crm", key(60, "m2"));
        leases.end("m1".into(), "t1".into(), DueNext::Gone);
        assert_eq!(leases.cursor_of("crm"), None);
    }

    /// A rescan does not count a lease that had expired by its clock; a
    /// clock read before that rescan finds the lease holding again, so it
    /// reads from the front too.
    #[test]
    fn a_clock_read_before_the_last_rescan_reads_from_the_front() {
        let mut leases = Leases::default();
        assert_eq!(leases.read_after("crm", 0), None);
        leases.grant("a".into(), ("crm", 1, (0, 1, 0)), "t1", 1_000);
        leases.grant("m".into(), ("crm", 2, (0, 1, 0)), "t1", 100);
        leases.advance("crm", key(5, "m"));
        assert_eq!(leases.read_after("crm", 150), None, "m's lease expired");
        leases.grant("b".into(), ("crm", 3, (0, 1, 0)), "t2", 1_000);
        leases.advance("crm", key(3, "b"));
        assert_eq!(leases.read_after("crm", 200), Some(key(3, "b")));
        assert_eq!(leases.read_after("crm", 90), None, "the clock went back");
    }

    /// Behind a cursor every lease is held until the earliest of them ends;
    /// from then on a claim reads from the front, where the expired one is.
    #[test]
    fn a_cursor_is_read_from_until_a_lease_behind_it_may_have_expired() {
        let mut leases = Leases::default();
        assert_eq!(leases.read_after("crm", 100), None);
        leases.grant("m1".into(), ("crm", 1, (0, 1, 0)), "t1", 500);
        leases.grant("m2".into(), ("crm", 2, (0, 1, 0)), "t1", 400);
        leases.advance("crm", key(90, "m2"));
        assert_eq!(leases.read_after("crm", 399), Some(key(90, "m2")));
        assert_eq!(leases.read_after("crm", 400), None, "m2's lease ended");
        // A delivery ends its lease with no due key: the cursor stays.
        leases.advance("crm", key(90, "m2"));
        leases.end("m2".into(), "t1".into(), DueNext::Gone);
        assert_eq!(leases.read_after("crm", 450), Some(key(90, "m2")));
        // A clock read behind the cursor reads from the front.
        assert_eq!(leases.read_after("crm", 80), None);
    }
}
