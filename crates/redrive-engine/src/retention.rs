//! Retention: delivered and discarded messages are purged when they are
//! older than `retention`, and early while the store's disk is below its
//! watermark (DESIGN.md, "Hardening").

use std::time::Duration;

use redrive_store::Store;
use tokio::sync::watch;

use crate::engine::Engine;
use crate::quiet;

/// How often the retention task looks at the disk watermark.
const DISK_LOOK: Duration = Duration::from_secs(2);
/// How often the retention purge runs while the disk has room.
const RETENTION_PERIOD_MS: i64 = 60_000;

impl<S: Store> Engine<S> {
    /// Purges delivered and discarded messages older than `keep` every
    /// minute; while the store's disk is below its watermark, early and
    /// oldest first (DESIGN.md, "Hardening"): those older than a quarter of
    /// `keep`, then a sixteenth, ..., down to every finished message, until
    /// the disk has room again. Parked and pending messages are never
    /// purged; retention is an upper bound, not a promise.
    pub(crate) async fn retain(&self, keep: Duration, mut stop: watch::Receiver<bool>) {
        let mut next_purge = i64::MIN;
        let mut age = keep;
        loop {
            let now = self.now_ms();
            if self.inner.store.disk().is_some_and(|d| d.low) {
                // Younger each step, until a step frees something (then the
                // next look measures again) or every finished message is gone.
                loop {
                    age = if age < Duration::from_secs(4) {
                        Duration::ZERO
                    } else {
                        age / 4
                    };
                    let n = self.purge_logged(now - age.as_millis() as i64, true).await;
                    if n > 0 || age.is_zero() {
                        break;
                    }
                }
            } else {
                age = keep;
                if now >= next_purge {
                    next_purge = now + RETENTION_PERIOD_MS;
                    self.purge_logged(now - keep.as_millis() as i64, false)
                        .await;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(DISK_LOOK) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Purges what finished before `before`; how many, logged.
    async fn purge_logged(&self, before: i64, early: bool) -> u64 {
        match self.inner.store.purge(before).await {
            Ok(0) => 0,
            Ok(n) if early => {
                tracing::warn!(
                    purged = n,
                    before,
                    "disk below min_free_disk: delivered and discarded messages purged early"
                );
                n
            }
            Ok(n) => {
                tracing::info!(
                    purged = n,
                    "retention purged delivered and discarded messages"
                );
                n
            }
            Err(e) => {
                if let Some(repeated) = quiet::check("purge", &e.to_string()) {
                    tracing::error!(error = %e, repeated, "retention purge failed")
                }
                0
            }
        }
    }
}
