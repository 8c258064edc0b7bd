//! What people do through the engine: redrive, discard, edit, resolve,
//! pause and resume (DESIGN.md, "People"). Each names its actor, which the
//! store audits in the same transaction as the change, and tells the
//! scheduler what it changed.

use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use redrive_store::{
    AuditFilter, AuditPage, Changed, Edit, Filter, Outcome, Pause, Resolution, Revision, Store,
    StoreError,
};

use crate::engine::Engine;

/// What a pause or a resume did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Paused {
    /// No such destination is configured.
    Unknown,
    /// It changed (and was audited).
    Changed,
    /// It was already so: nothing written.
    Already,
}

impl<S: Store> Engine<S> {
    /// Redrives parked messages now (a new cycle each) and wakes the
    /// scheduler; returns the ids that were parked.
    pub async fn redrive(&self, ids: Vec<String>, actor: &str) -> Result<Vec<String>, StoreError> {
        let done = self
            .inner
            .store
            .redrive(ids, actor.to_owned(), self.now_ms())
            .await?;
        if !done.is_empty() {
            // The store answers with ids; which destinations they were is
            // one read of the due times away (a person's action: rare).
            self.wake();
        }
        Ok(done)
    }

    /// Redrives up to `limit` parked messages matching `filter` and wakes the
    /// scheduler; returns their ids.
    pub async fn redrive_matching(
        &self,
        filter: Filter,
        limit: usize,
        actor: &str,
    ) -> Result<Vec<String>, StoreError> {
        let done = self
            .inner
            .store
            .redrive_matching(filter, actor.to_owned(), self.now_ms(), limit)
            .await?;
        if !done.is_empty() {
            self.wake();
        }
        Ok(done)
    }

    /// Discards parked messages now; returns the ids that were parked.
    pub async fn discard(&self, ids: Vec<String>, actor: &str) -> Result<Vec<String>, StoreError> {
        self.inner
            .store
            .discard(ids, actor.to_owned(), self.now_ms())
            .await
    }

    /// Replaces a parked message's request with a new revision; returns its
    /// number. The caller validates the request as at enqueue.
    pub async fn edit(
        &self,
        id: String,
        edit: Edit,
        actor: &str,
    ) -> Result<Changed<u32>, StoreError> {
        self.inner
            .store
            .edit(id, edit, actor.to_owned(), self.now_ms())
            .await
    }

    /// Every revision of a message's request, oldest first.
    pub async fn revisions(&self, id: String) -> Result<Vec<Revision>, StoreError> {
        self.inner.store.revisions(id).await
    }

    /// Resolves a parked message as a person found it; `not_applied`
    /// redrives it (and wakes the scheduler).
    pub async fn resolve(
        &self,
        id: String,
        outcome: Outcome,
        note: Option<String>,
        actor: &str,
    ) -> Result<Changed<()>, StoreError> {
        let resolution = Resolution {
            outcome,
            actor: actor.to_owned(),
            note,
            at: self.now_ms(),
        };
        let done = self.inner.store.resolve(id, resolution).await?;
        if done == Changed::Done(()) && outcome == Outcome::NotApplied {
            self.wake();
        }
        Ok(done)
    }

    /// Pauses a destination: its messages are accepted and kept, none is
    /// attempted (those in flight finish) until it is resumed, also across a
    /// restart.
    pub async fn pause(
        &self,
        destination: &str,
        note: Option<String>,
        actor: &str,
    ) -> Result<Paused, StoreError> {
        let Some(d) = self.inner.destinations.get(destination) else {
            return Ok(Paused::Unknown);
        };
        let pause = Pause {
            destination: destination.to_owned(),
            paused_by: actor.to_owned(),
            paused_at: self.now_ms(),
            note,
        };
        if !self.inner.store.pause(pause.clone()).await? {
            // Paused already (perhaps by another node): show it here too.
            self.wake();
            return Ok(Paused::Already);
        }
        d.paused.store(true, Ordering::SeqCst);
        *d.pause.lock().unwrap_or_else(PoisonError::into_inner) = Some(pause);
        Ok(Paused::Changed)
    }

    /// Resumes a paused destination: delivery continues where it stopped.
    pub async fn resume(&self, destination: &str, actor: &str) -> Result<Paused, StoreError> {
        let Some(d) = self.inner.destinations.get(destination) else {
            return Ok(Paused::Unknown);
        };
        let resumed = self
            .inner
            .store
            .resume(destination.to_owned(), actor.to_owned(), self.now_ms())
            .await?;
        d.paused.store(false, Ordering::SeqCst);
        *d.pause.lock().unwrap_or_else(PoisonError::into_inner) = None;
        // Its due messages are read again: they left the schedule.
        self.wake();
        Ok(if resumed {
            Paused::Changed
        } else {
            Paused::Already
        })
    }

    /// Who paused `destination`, when and why, if it is paused.
    pub fn pause_of(&self, destination: &str) -> Option<Pause> {
        self.inner.destinations.get(destination).and_then(|d| {
            d.pause
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        })
    }

    /// Reads the paused destinations from the store: before the server
    /// answers its first request (so a restart shows a pause at once), and
    /// with every resync (another node may have paused or resumed one).
    pub async fn load_pauses(&self) -> Result<(), StoreError> {
        let pauses = self.inner.store.pauses().await?;
        for d in &self.inner.by_index {
            let pause = pauses
                .iter()
                .find(|p| p.destination == d.config.name)
                .cloned();
            let was = d.paused.swap(pause.is_some(), Ordering::SeqCst);
            if was && pause.is_none() {
                // Resumed elsewhere: its messages are due again.
                self.note_due(d.index, self.now_ms());
            }
            *d.pause.lock().unwrap_or_else(PoisonError::into_inner) = pause;
        }
        Ok(())
    }

    /// Audit records, newest first.
    pub async fn audit(
        &self,
        filter: AuditFilter,
        before: Option<i64>,
        limit: usize,
    ) -> Result<AuditPage, StoreError> {
        self.inner.store.audit(filter, before, limit).await
    }
}
