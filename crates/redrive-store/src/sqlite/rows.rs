//! Reading a message's and an attempt's row.

use rusqlite::types::ValueRef;
use rusqlite::Row;

use crate::model::{AttemptRecord, Message, MessageState};

/// A message from a row of `COLUMNS`. The headers' JSON and the state are
/// read in place rather than copied first: every claimed message comes
/// through here, and its allocations are freed on another thread (the
/// allocator's costliest pattern).
pub(super) fn message_from_row(r: &Row<'_>) -> rusqlite::Result<Message> {
    let headers = match r.get_ref(4)? {
        ValueRef::Text(json) | ValueRef::Blob(json) => {
            serde_json::from_slice(json).unwrap_or_default()
        }
        _ => Vec::new(),
    };
    let state = match r.get_ref(9)? {
        ValueRef::Text(name) => std::str::from_utf8(name).ok().and_then(MessageState::parse),
        _ => None,
    };
    Ok(Message {
        id: r.get(0)?,
        destination: r.get(1)?,
        method: r.get(2)?,
        path: r.get(3)?,
        headers,
        body: r.get(5)?,
        idempotency_key: r.get(6)?,
        request_hash: r.get(7)?,
        marked_idempotent: r.get(8)?,
        state: state.unwrap_or(MessageState::Pending),
        park_reason: r.get(10)?,
        last_class: r.get(11)?,
        attempts: r.get(12)?,
        total_attempts: r.get(13)?,
        cycle: r.get(14)?,
        cycle_started_at: r.get(15)?,
        next_attempt_at: r.get(16)?,
        created_at: r.get(17)?,
        updated_at: r.get(18)?,
        leased: r.get(19)?,
        revision: r.get(20)?,
        resolution: match r.get_ref(21)? {
            ValueRef::Text(json) => serde_json::from_slice(json).ok(),
            _ => None,
        },
        source: r.get(22)?,
    })
}

pub(super) fn attempt_from_row(r: &Row<'_>) -> rusqlite::Result<AttemptRecord> {
    Ok(AttemptRecord {
        n: r.get(0)?,
        cycle: r.get(1)?,
        attempt: r.get(2)?,
        started_at: r.get(3)?,
        latency_ms: r.get::<_, i64>(4)?.max(0) as u64,
        status: r.get(5)?,
        transport: r.get(6)?,
        class: r.get(7)?,
        decision: r.get(8)?,
        reason: r.get(9)?,
        delay_ms: r.get::<_, Option<i64>>(10)?.map(|d| d.max(0) as u64),
        response_excerpt: r.get(11)?,
        detail: r.get(12)?,
        link_identities: r.get(13)?,
        revision: r.get(14)?,
    })
}
