//! The disk watermark (DESIGN.md, "Hardening"): how much room the database
//! has, and whether enqueues must stop so that delivery can go on.
//!
//! Room is the filesystem's space available to this process (`statvfs`'s
//! `f_bavail`) plus the database's free pages (`PRAGMA freelist_count`):
//! SQLite reuses a page freed by the purge before it grows the file, so a
//! backlog that filled the disk and was delivered and purged makes room
//! without the file shrinking. Below `min_free`, enqueues are refused
//! ([`crate::StoreError::DiskFull`]) while claims, records and the purge go
//! on: those write little (a record updates a row in place; the purge frees
//! pages), and the watermark is the room kept for them, for the WAL that
//! grows between checkpoints and for the checkpoints themselves.
//!
//! While low, the same thread also truncates the WAL (a `TRUNCATE`
//! checkpoint), whose file otherwise keeps the size it grew to.
//!
//! A thread measures every [`PERIOD`]. Between two measures each enqueue
//! spends an estimate of what it writes (twice its bytes: the WAL, then
//! the database), so a burst cannot run through the watermark within a
//! period.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use rusqlite::Connection;

/// How often the room is measured.
pub const PERIOD: Duration = Duration::from_millis(500);
/// The watermark when none is configured: the smaller of this and
/// [`DEFAULT_SHARE`] of the filesystem, so that a small disk works too.
pub const DEFAULT_MIN_FREE: u64 = 1 << 30;
/// See [`DEFAULT_MIN_FREE`]: 5 %.
pub const DEFAULT_SHARE: f64 = 0.05;

/// The room the database has, as last measured (and spent since).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DiskState {
    /// Bytes free: the filesystem's available space and the database's free
    /// pages.
    pub free_bytes: u64,
    /// Of which free pages inside the database.
    pub free_pages_bytes: u64,
    /// The watermark.
    pub min_free_bytes: u64,
    /// Below the watermark: enqueues are refused.
    pub low: bool,
}

/// Shared between the store and its measuring thread.
#[derive(Debug)]
pub(super) struct DiskWatch {
    free: AtomicU64,
    free_pages: AtomicU64,
    min_free: AtomicU64,
    /// The watermark was set by the configuration (not the default).
    configured: AtomicBool,
    low: AtomicBool,
}

impl DiskWatch {
    /// Starts measuring the filesystem holding `db` (and its free pages
    /// through a connection of its own). The thread ends with the store.
    pub(super) fn start(db: &Path, conn: Connection) -> Arc<DiskWatch> {
        let watch = Arc::new(DiskWatch::unmeasured());
        let dir = directory_of(db);
        watch.measure(&dir, &conn);
        let weak: Weak<DiskWatch> = Arc::downgrade(&watch);
        let spawned = std::thread::Builder::new()
            .name("sqlite-disk".into())
            .spawn(move || loop {
                std::thread::sleep(PERIOD);
                match weak.upgrade() {
                    Some(w) => w.measure(&dir, &conn),
                    None => return,
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start measuring the disk; the watermark is not enforced");
        }
        watch
    }

    /// Nothing measured yet: room without end, no watermark.
    fn unmeasured() -> DiskWatch {
        DiskWatch {
            free: AtomicU64::new(u64::MAX),
            free_pages: AtomicU64::new(0),
            min_free: AtomicU64::new(0),
            configured: AtomicBool::new(false),
            low: AtomicBool::new(false),
        }
    }

    /// Sets the watermark; `None` is the default (see [`DEFAULT_MIN_FREE`]).
    pub(super) fn set_min_free(&self, bytes: Option<u64>, dir: &Path) {
        match bytes {
            Some(b) => {
                self.configured.store(true, Ordering::SeqCst);
                self.min_free.store(b, Ordering::SeqCst);
            }
            None => {
                self.configured.store(false, Ordering::SeqCst);
                if let Some((_, total)) = filesystem(dir) {
                    self.min_free
                        .store(default_min_free(total), Ordering::SeqCst);
                }
            }
        }
        self.update_low();
    }

    fn measure(&self, dir: &Path, conn: &Connection) {
        let Some((available, total)) = filesystem(dir) else {
            return;
        };
        if !self.configured.load(Ordering::SeqCst) {
            self.min_free
                .store(default_min_free(total), Ordering::SeqCst);
        }
        let pages = conn
            .query_row(
                "SELECT freelist_count * page_size FROM pragma_freelist_count, pragma_page_size",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_or(0, |n| n.max(0) as u64);
        self.free_pages.store(pages, Ordering::SeqCst);
        self.free
            .store(available.saturating_add(pages), Ordering::SeqCst);
        self.update_low();
        if self.low.load(Ordering::SeqCst) {
            // Below the watermark the WAL is what still grows: deliveries
            // and the purge write to it, and an automatic checkpoint copies
            // it back but never shrinks the file (under load a reader keeps
            // it from restarting, and it grew past 24 MiB on a 64 MiB disk).
            // A truncating checkpoint gives its space back to the
            // filesystem; it waits for readers (the busy timeout) and holds
            // writers while it copies, which only a low disk pays for.
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
                tracing::debug!(error = %e, "disk low: the truncating checkpoint did not run");
            }
        }
    }

    fn update_low(&self) {
        let low = self.free.load(Ordering::SeqCst) < self.min_free.load(Ordering::SeqCst);
        let was = self.low.swap(low, Ordering::SeqCst);
        if low != was {
            let (free, min) = (
                self.free.load(Ordering::SeqCst),
                self.min_free.load(Ordering::SeqCst),
            );
            if low {
                tracing::warn!(free, min_free = min, "disk below min_free_disk: enqueues are refused (507) until delivered messages are purged or space is freed");
            } else {
                tracing::info!(
                    free,
                    min_free = min,
                    "disk above min_free_disk again: enqueues are accepted"
                );
            }
        }
    }

    /// Accounts for an enqueue of about `bytes` before the next measure.
    pub(super) fn spend(&self, bytes: u64) {
        let _ = self
            .free
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| {
                Some(f.saturating_sub(bytes.saturating_mul(2)))
            });
        if !self.low.load(Ordering::Relaxed) {
            self.update_low();
        }
    }

    /// Whether enqueues must be refused.
    pub(super) fn is_low(&self) -> bool {
        self.low.load(Ordering::Relaxed)
    }

    pub(super) fn state(&self) -> DiskState {
        DiskState {
            free_bytes: self.free.load(Ordering::SeqCst),
            free_pages_bytes: self.free_pages.load(Ordering::SeqCst),
            min_free_bytes: self.min_free.load(Ordering::SeqCst),
            low: self.low.load(Ordering::SeqCst),
        }
    }
}

fn default_min_free(total: u64) -> u64 {
    DEFAULT_MIN_FREE.min((total as f64 * DEFAULT_SHARE) as u64)
}

/// The directory a database file lies in (where its WAL grows too).
pub(super) fn directory_of(db: &Path) -> PathBuf {
    match db.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `(available to this process, total)` bytes of the filesystem holding `dir`.
fn filesystem(dir: &Path) -> Option<(u64, u64)> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some((
        s.f_bavail.saturating_mul(s.f_frsize),
        s.f_blocks.saturating_mul(s.f_frsize),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_watermark_is_the_smaller_of_1_gib_and_5_percent() {
        assert_eq!(default_min_free(40 << 20), 2 << 20);
        assert_eq!(default_min_free(1 << 40), 1 << 30);
    }

    #[test]
    fn enqueues_spend_room_until_the_next_measure() {
        let dir = tempfile::tempdir().expect("dir");
        let conn = Connection::open(dir.path().join("d.db")).expect("open");
        // Measured once, by hand: no thread to measure again meanwhile.
        let watch = DiskWatch::unmeasured();
        watch.measure(dir.path(), &conn);
        let free = watch.state().free_bytes;
        assert!(free > 0 && free < u64::MAX, "measured: {free}");
        watch.set_min_free(Some(free - 1000), dir.path());
        assert!(!watch.is_low());
        watch.spend(400);
        assert!(!watch.is_low(), "800 bytes of 1000 spent");
        watch.spend(200);
        assert!(watch.is_low(), "1200 bytes spent: below");
        assert!(watch.state().low);
        watch.set_min_free(Some(0), dir.path());
        assert!(!watch.is_low());
    }
}
