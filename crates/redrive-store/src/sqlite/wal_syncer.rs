//! The WAL syncer: a thread that fdatasyncs the write-ahead log behind the
//! writer, so that the writer's checkpoints find little left to sync.
//!
//! Why: a delivery commit reaches the WAL file without an fsync of its own
//! (`synchronous = NORMAL`), so its pages stay dirty in the page cache until
//! the next checkpoint, which syncs the WAL before it copies it back, on the
//! writer thread. Measured in a drain: that fsync took about 30 ms of each
//! 33 ms checkpoint (one every 1000 WAL pages), and while the writer waited,
//! recorded attempts piled up until the engine's slots ran out and
//! deliveries stopped with them. Synced here as the commits land, the WAL
//! is mostly clean when a checkpoint comes. A side effect: what an OS crash
//! can lose of the delivery commits shrinks from "everything since the last
//! checkpoint" to the last few milliseconds.
//!
//! It only ever syncs, never writes, through its own file descriptor, held
//! for the store's life. SQLite takes no POSIX lock on the WAL file itself
//! (a WAL database locks its `-shm` file and the database file), so this
//! descriptor's close cannot drop one of SQLite's locks. A failed sync is
//! logged; Linux (since 4.13) reports a writeback error to every open file
//! description of the file, so SQLite's own next sync fails as well, and
//! the writer sees it where it matters.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread;

/// Tells the syncer that the writer committed. Cheap: one `try_send` on a
/// channel of one, so a commit never waits for a sync.
#[derive(Clone, Debug)]
pub struct Nudge {
    tx: SyncSender<()>,
}

impl Nudge {
    /// Asks for a sync of everything written so far; a sync already asked
    /// for and not yet begun covers this one too.
    pub fn nudge(&self) {
        // Full: a sync is already asked for. Disconnected: the syncer is
        // gone, and the checkpoints sync the WAL themselves.
        let _ = self.tx.try_send(());
    }
}

/// The WAL file of the database at `db`: SQLite names it after the
/// database with `-wal` appended.
pub fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Starts the syncer on the WAL at `wal` (which the caller has made exist
/// by opening the database in WAL mode); `syncs` counts the syncs done. The
/// thread ends when every [`Nudge`] is dropped.
pub fn start(wal: &Path, syncs: Arc<AtomicU64>) -> std::io::Result<Nudge> {
    let file = File::open(wal)?;
    let (nudge, rx) = channel();
    thread::Builder::new()
        .name("sqlite-wal-sync".into())
        .spawn(move || run(&file, &rx, &syncs))?;
    Ok(nudge)
}

/// Nudges and their receiver: a channel of one, so that nudges given while
/// a sync is asked for and not yet begun coalesce into it.
fn channel() -> (Nudge, Receiver<()>) {
    let (tx, rx) = mpsc::sync_channel::<()>(1);
    (Nudge { tx }, rx)
}

fn run(file: &File, rx: &Receiver<()>, syncs: &AtomicU64) {
    let mut failing = false;
    while rx.recv().is_ok() {
        match file.sync_data() {
            Ok(()) => {
                syncs.fetch_add(1, Ordering::Relaxed);
                failing = false;
            }
            Err(e) => {
                // Once per run of failures: the writer's own syncs report
                // the error to its callers.
                if !failing {
                    tracing::error!(error = %e, "cannot sync the SQLite WAL in the background");
                }
                failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// The WAL's name follows SQLite's rule, also for a name with no
    /// extension and one inside a directory.
    #[test]
    fn the_wal_is_named_after_the_database() {
        assert_eq!(
            wal_path(Path::new("/data/redrive.db")),
            PathBuf::from("/data/redrive.db-wal")
        );
        assert_eq!(wal_path(Path::new("store")), PathBuf::from("store-wal"));
    }

    /// Nudges never block the writer: those given before a sync begins
    /// share it, and the syncer ends once every nudge is dropped.
    #[test]
    fn nudges_coalesce_into_syncs_and_the_syncer_ends_with_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let wal = dir.path().join("x.db-wal");
        File::create(&wal)
            .and_then(|mut f| f.write_all(b"frames"))
            .expect("write");
        let file = File::open(&wal).expect("open");
        let syncs = AtomicU64::new(0);
        let (nudge, rx) = channel();
        // Three nudges with nobody receiving: none blocks (on a full
        // channel it would, forever), and they ask for one sync.
        nudge.nudge();
        nudge.clone().nudge();
        nudge.nudge();
        drop(nudge);
        // Returns once the nudges are gone: the thread's end.
        run(&file, &rx, &syncs);
        assert_eq!(syncs.load(Ordering::Relaxed), 1);
    }

    /// A WAL that does not exist is an error, not a panic: the store then
    /// runs without the syncer.
    #[test]
    fn a_missing_wal_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("none.db-wal");
        assert!(start(&missing, Arc::new(AtomicU64::new(0))).is_err());
    }
}
