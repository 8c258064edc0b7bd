//! What people do to messages and destinations, as the store keeps it:
//! revisions of a parked message's request, resolutions, pauses, and the
//! audit of every change a person makes (DESIGN.md, "People: correct,
//! resolve, pause, and who did what").
//!
//! Every change here is written in the same transaction as its audit
//! record: a change without its record, or a record without its change,
//! cannot be stored.

use std::future::Future;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{Filter, StoreError};

/// A person's changes to what is stored, each written in one transaction
/// with its audit record (the other half of [`crate::Store`]).
pub trait People: Send + Sync {
    /// Puts parked messages back into delivery as a new cycle; returns the ids
    /// that were parked (others are left alone). `actor` did it: one audit
    /// record per message redriven, in the same transaction.
    fn redrive(
        &self,
        ids: Vec<String>,
        actor: String,
        now: i64,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Redrives up to `limit` parked messages matching `filter` (its state is
    /// ignored); returns their ids. One audit record (`bulk_redrive`, with
    /// the filter and the count) when any was redriven.
    fn redrive_matching(
        &self,
        filter: Filter,
        actor: String,
        now: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Discards parked messages; returns the ids that were parked. One audit
    /// record per message discarded.
    fn discard(
        &self,
        ids: Vec<String>,
        actor: String,
        now: i64,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Replaces a parked message's request with a new revision (the earlier
    /// ones are kept) and audits it; returns the new revision's number.
    fn edit(
        &self,
        id: String,
        edit: Edit,
        actor: String,
        now: i64,
    ) -> impl Future<Output = Result<Changed<u32>, StoreError>> + Send;

    /// Every revision of a message's request, oldest first (just the request
    /// as enqueued when it was never edited; none for an unknown id).
    fn revisions(
        &self,
        id: String,
    ) -> impl Future<Output = Result<Vec<Revision>, StoreError>> + Send;

    /// Closes a parked message as a person found it: `applied` ends it
    /// delivered, `not_applied` redrives it; the resolution is kept on the
    /// message and audited.
    fn resolve(
        &self,
        id: String,
        resolution: Resolution,
    ) -> impl Future<Output = Result<Changed<()>, StoreError>> + Send;

    /// Pauses a destination (stored, so it survives a restart) and audits
    /// it; false, and nothing written, when it was paused already.
    fn pause(&self, pause: Pause) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Resumes a paused destination and audits it; false, and nothing
    /// written, when it was not paused.
    fn resume(
        &self,
        destination: String,
        actor: String,
        now: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The paused destinations, by name.
    fn pauses(&self) -> impl Future<Output = Result<Vec<Pause>, StoreError>> + Send;

    /// Audit records matching `filter`, newest first, below `before` (a
    /// `seq` from the previous page's `next`).
    fn audit(
        &self,
        filter: AuditFilter,
        before: Option<i64>,
        limit: usize,
    ) -> impl Future<Output = Result<AuditPage, StoreError>> + Send;
}

/// A person's new version of a parked message's request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edit {
    /// The method.
    pub method: String,
    /// The path (and query) below the destination's URL.
    pub path: String,
    /// The message's own headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Why, in the person's words.
    pub note: Option<String>,
}

/// One revision of a message's request. Revision 1 is the request as
/// enqueued; each edit makes the next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revision {
    /// Its number, from 1.
    pub n: u32,
    /// When it was made.
    pub created_at: i64,
    /// Who made it (`None` for the request as enqueued).
    pub actor: Option<String>,
    /// Why.
    pub note: Option<String>,
    /// The method.
    pub method: String,
    /// The path.
    pub path: String,
    /// The headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// What a person found out about a parked message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The request took effect: the message ends delivered.
    Applied,
    /// It did not: the message is sent again (a redrive).
    NotApplied,
}

impl Outcome {
    /// `applied` or `not_applied`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::NotApplied => "not_applied",
        }
    }
}

/// A person's resolution of a parked message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    /// What they found.
    pub outcome: Outcome,
    /// Who.
    pub actor: String,
    /// Why, in their words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// When.
    pub at: i64,
}

/// The result of a change to one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Changed<T> {
    /// Done.
    Done(T),
    /// No such message.
    NotFound,
    /// The message is not parked: nothing changed.
    NotParked(crate::MessageState),
}

/// A paused destination: its messages are kept, none is attempted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pause {
    /// The destination.
    pub destination: String,
    /// Who paused it.
    pub paused_by: String,
    /// When.
    pub paused_at: i64,
    /// Why.
    pub note: Option<String>,
}

/// One change a person made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// Its number: later records have larger ones.
    pub seq: i64,
    /// When.
    pub at: i64,
    /// Who: the token's name.
    pub actor: String,
    /// What: `edit`, `redrive`, `discard`, `resolve`, `bulk_redrive`,
    /// `pause`, `resume`.
    pub action: String,
    /// On what: a message id, a destination, or `messages` for a bulk action.
    pub target: String,
    /// The rest, as JSON (a note, a revision number, a filter and a count).
    pub detail: String,
}

/// Which audit records to list. Empty fields match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only records at or after this time.
    pub since: Option<i64>,
}

/// A page of audit records, newest first; `next` is the `seq` to continue
/// below.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditPage {
    /// The records.
    pub records: Vec<AuditRecord>,
    /// The cursor of the next page, if there is one.
    pub next: Option<i64>,
}

/// The first `limit` of `records` (one more was asked for, to know whether
/// another page follows).
pub(crate) fn page(mut records: Vec<AuditRecord>, limit: usize) -> AuditPage {
    let more = records.len() > limit;
    records.truncate(limit);
    let next = more.then(|| records.last().map(|r| r.seq)).flatten();
    AuditPage { records, next }
}

/// A filter as the audit shows it: the fields that were given.
pub(crate) fn filter_json(f: &Filter) -> serde_json::Value {
    let mut o = serde_json::Map::new();
    if let Some(d) = &f.destination {
        o.insert("destination".into(), json!(d));
    }
    if let Some(c) = &f.class {
        o.insert("class".into(), json!(c));
    }
    if let Some(r) = &f.reason {
        o.insert("reason".into(), json!(r));
    }
    if let Some(s) = f.since {
        o.insert("since".into(), json!(s));
    }
    serde_json::Value::Object(o)
}
