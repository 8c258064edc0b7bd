//! The disk watermark (DESIGN.md, "Hardening"): how much room the database
//! has, and whether enqueues must stop so that delivery can go on.
//!
//! Room is the filesystem's space available to this process (`statvfs`'s
//! `f_bavail`) plus the database's free pages (`PRAGMA freelist_count`),
//! less what the WAL may still grow by. SQLite reuses a page freed by the
//! purge before it grows the file, so a backlog that filled the disk and
//! was delivered and purged makes room without the file shrinking. Below
//! `min_free`, enqueues are refused ([`crate::StoreError::DiskFull`])
//! while claims, records and the purge go on: the watermark is the room
//! kept for them (attempt rows, the purge's deletes, the database pages a
//! checkpoint copies back).
//!
//! # The WAL's room is kept aside
//!
//! The WAL is written in whole pages (16 KiB), several per commit whatever
//! the commit's size, and a record or a purge writes as much of it as an
//! enqueue: its growth is not the enqueues' bytes and cannot be estimated
//! from them. It is bounded instead. SQLite's automatic checkpoint (on the
//! writer, every [`wal_autocheckpoint`] pages) lets the next commit restart
//! the WAL from its beginning, so the file stops growing near that size
//! and is then reused, never shrunk. The room counted is therefore less
//! [`WAL_ROOM_SHARE`] of that size not yet taken by the file
//! ([`DiskState::wal_reserve_bytes`]): the WAL's growth up to its usual
//! size is accounted for before it happens. (Without that, the disk test
//! filled a 64 MiB tmpfs with 8 MiB of watermark left: the WAL grew by
//! more than the watermark between two measures.)
//!
//! A reader keeps a checkpoint from completing, and then the WAL grows past
//! its usual size (24.6 MiB seen under load). When the file is larger than
//! its room, the watch runs a truncating checkpoint (`TRUNCATE`: it waits
//! for the readers and holds writers while it copies), which gives the
//! space back to the filesystem. Only an oversized WAL pays for it.
//!
//! A thread measures every [`PERIOD`]. Between two measures each enqueue
//! spends an estimate of what it adds to the database file (twice its
//! bytes: index entries, half-full pages), so a burst cannot run through
//! the watermark within a period.
//!
//! [`wal_autocheckpoint`]: https://sqlite.org/pragma.html#pragma_wal_autocheckpoint

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use rusqlite::Connection;

/// How often the room is measured: a `statvfs`, a read of the database's
/// header and a `stat` of the WAL, cheap beside what a period of enqueues
/// writes.
pub const PERIOD: Duration = Duration::from_millis(100);
/// Once below the watermark, enqueues come back only with this share of
/// it more: an eighth.
pub const HYSTERESIS: (u64, u64) = (1, 8);
/// The room kept for the WAL, as a share of its automatic checkpoint's
/// size: the commit that crosses the threshold writes its pages before the
/// checkpoint runs (a group of enqueues of large bodies, several MiB).
pub const WAL_ROOM_SHARE: (u64, u64) = (5, 4);
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
    /// Not counted as free: what the WAL may still grow by before its
    /// automatic checkpoint restarts it.
    pub wal_reserve_bytes: u64,
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
    wal_reserve: AtomicU64,
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
            wal_reserve: AtomicU64::new(0),
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
        let file = match FileState::read(conn) {
            Ok(file) => file,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the database's free pages and WAL settings");
                return;
            }
        };
        if file.wal_bytes > file.wal_room() {
            // A reader kept the automatic checkpoints from restarting the
            // WAL: give its space back (see the module's comment).
            match conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            }) {
                Ok(0) => {
                    tracing::debug!(wal = file.wal_bytes, "the WAL outgrew its room: truncated")
                }
                Ok(_) => tracing::debug!(
                    wal = file.wal_bytes,
                    "the WAL outgrew its room; the truncating checkpoint was kept waiting"
                ),
                Err(e) => {
                    tracing::debug!(error = %e, "the WAL outgrew its room; the truncating checkpoint did not run")
                }
            }
        }
        let reserve = file.wal_reserve();
        self.free_pages
            .store(file.free_pages_bytes, Ordering::SeqCst);
        self.wal_reserve.store(reserve, Ordering::SeqCst);
        self.free.store(
            available
                .saturating_add(file.free_pages_bytes)
                .saturating_sub(reserve),
            Ordering::SeqCst,
        );
        self.update_low();
    }

    fn update_low(&self) {
        let (free, min) = (
            self.free.load(Ordering::SeqCst),
            self.min_free.load(Ordering::SeqCst),
        );
        // Once low, low until [`HYSTERESIS`] above the watermark: room
        // hovering at the mark would otherwise flip enqueues (and the log)
        // every measure.
        let (num, den) = HYSTERESIS;
        let low = if self.low.load(Ordering::SeqCst) {
            free < min.saturating_add(min.saturating_mul(num) / den)
        } else {
            free < min
        };
        let was = self.low.swap(low, Ordering::SeqCst);
        if low != was {
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
            wal_reserve_bytes: self.wal_reserve.load(Ordering::SeqCst),
            min_free_bytes: self.min_free.load(Ordering::SeqCst),
            low: self.low.load(Ordering::SeqCst),
        }
    }
}

/// What the database's files hold, as one measure reads it.
#[derive(Clone, Copy, Debug)]
struct FileState {
    free_pages_bytes: u64,
    page_size: u64,
    autocheckpoint_pages: u64,
    /// The WAL file's size (0 when there is none).
    wal_bytes: u64,
}

impl FileState {
    fn read(conn: &Connection) -> rusqlite::Result<FileState> {
        let (free_pages, page_size) = conn.query_row(
            "SELECT freelist_count, page_size FROM pragma_freelist_count, pragma_page_size",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
        )?;
        // Not a table-valued function: the pragma can also set.
        let autocheckpoint =
            conn.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get::<_, i64>(0))?;
        let page_size = page_size.max(0) as u64;
        let wal_bytes = conn
            .path()
            .filter(|f| !f.is_empty())
            .and_then(|f| std::fs::metadata(super::wal_syncer::wal_path(Path::new(f))).ok())
            .map_or(0, |m| m.len());
        Ok(FileState {
            free_pages_bytes: (free_pages.max(0) as u64).saturating_mul(page_size),
            page_size,
            autocheckpoint_pages: autocheckpoint.max(0) as u64,
            wal_bytes,
        })
    }

    /// The size the WAL is let grow to: [`WAL_ROOM_SHARE`] of its
    /// automatic checkpoint's size.
    fn wal_room(&self) -> u64 {
        let (num, den) = WAL_ROOM_SHARE;
        self.autocheckpoint_pages
            .saturating_mul(self.page_size)
            .saturating_mul(num)
            / den
    }

    /// What the WAL may still grow by.
    fn wal_reserve(&self) -> u64 {
        self.wal_room().saturating_sub(self.wal_bytes)
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

    #[test]
    fn once_low_enqueues_come_back_an_eighth_above_the_watermark() {
        let dir = tempfile::tempdir().expect("dir");
        let conn = Connection::open(dir.path().join("d.db")).expect("open");
        let watch = DiskWatch::unmeasured();
        watch.measure(dir.path(), &conn);
        let free = watch.state().free_bytes;
        watch.set_min_free(Some(free + 1), dir.path());
        assert!(watch.is_low());
        // At the mark again, and a sixteenth above it: still low.
        watch.set_min_free(Some(free), dir.path());
        assert!(watch.is_low(), "at the mark");
        watch.set_min_free(Some(free / 17 * 16), dir.path());
        assert!(watch.is_low(), "a sixteenth above");
        // More than an eighth above: enqueues come back.
        watch.set_min_free(Some(free / 10 * 8), dir.path());
        assert!(!watch.is_low(), "a quarter above");
        // Not low: the watermark alone decides.
        watch.set_min_free(Some(free / 17 * 16), dir.path());
        assert!(!watch.is_low());
    }

    #[test]
    fn the_wal_room_is_kept_aside_and_an_oversized_wal_is_truncated() {
        let dir = tempfile::tempdir().expect("dir");
        let db = dir.path().join("d.db");
        let writer = Connection::open(&db).expect("open");
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; \
                 CREATE TABLE t (b BLOB);",
            )
            .expect("schema");
        let conn = Connection::open(&db).expect("open");
        // 10 pages of 4 KiB: the WAL's room is 12.5 of them.
        conn.execute_batch("PRAGMA wal_autocheckpoint = 10")
            .expect("pragma");
        let room = 10 * 4096 * 5 / 4;
        let watch = DiskWatch::unmeasured();
        watch.measure(dir.path(), &conn);
        let wal = || std::fs::metadata(dir.path().join("d.db-wal")).map_or(0, |m| m.len());
        let small = wal();
        assert!(small > 0 && small < room, "a small WAL: {small}");
        assert_eq!(watch.state().wal_reserve_bytes, room - small);

        // 40 pages of rows, no checkpoint: the WAL outgrows its room.
        for _ in 0..40 {
            writer
                .execute("INSERT INTO t VALUES (zeroblob(4000))", [])
                .expect("insert");
        }
        assert!(wal() > room, "the WAL grew to {}", wal());
        watch.measure(dir.path(), &conn);
        assert_eq!(wal(), 0, "truncated by the measure");
        let count: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(count, 40, "nothing lost to the truncation");
        watch.measure(dir.path(), &conn);
        assert_eq!(watch.state().wal_reserve_bytes, room);
    }
}
