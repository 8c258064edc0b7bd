//! A message and an attempt as their rows: the columns selected, in the
//! order the readers below take them.

use tokio_postgres::Row;

use crate::model::{AttemptRecord, Message, MessageState};

pub(super) const COLUMNS: &str = "id, destination, method, path, headers, body, idempotency_key, request_hash, \
    marked_idempotent, state, park_reason, last_class, attempts, total_attempts, cycle, cycle_started_at, \
    next_attempt_at, created_at, updated_at, lease IS NOT NULL, revision, resolution, source";
/// How many columns `COLUMNS` names: a column selected after them is this one.
pub(super) const COLUMN_COUNT: usize = 23;

pub(super) fn message(r: &Row) -> Message {
    let headers: String = r.get(4);
    let state: String = r.get(9);
    let u = |i: usize| u32::try_from(r.get::<_, i32>(i)).unwrap_or(0);
    Message {
        id: r.get(0),
        destination: r.get(1),
        method: r.get(2),
        path: r.get(3),
        headers: serde_json::from_str(&headers).unwrap_or_default(),
        body: r.get(5),
        idempotency_key: r.get(6),
        request_hash: r.get(7),
        marked_idempotent: r.get(8),
        state: MessageState::parse(&state).unwrap_or(MessageState::Pending),
        park_reason: r.get(10),
        last_class: r.get(11),
        attempts: u(12),
        total_attempts: u(13),
        cycle: u(14),
        cycle_started_at: r.get(15),
        next_attempt_at: r.get(16),
        created_at: r.get(17),
        updated_at: r.get(18),
        leased: r.get(19),
        revision: u(20),
        resolution: r
            .get::<_, Option<String>>(21)
            .and_then(|j| serde_json::from_str(&j).ok()),
        source: r.get(22),
    }
}

pub(super) fn attempt(r: &Row) -> AttemptRecord {
    let u = |i: usize| u32::try_from(r.get::<_, i32>(i)).unwrap_or(0);
    AttemptRecord {
        n: u(0),
        cycle: u(1),
        attempt: u(2),
        started_at: r.get(3),
        latency_ms: r.get::<_, i64>(4).max(0) as u64,
        status: r
            .get::<_, Option<i32>>(5)
            .and_then(|s| u16::try_from(s).ok()),
        transport: r.get(6),
        class: r.get(7),
        decision: r.get(8),
        reason: r.get(9),
        delay_ms: r.get::<_, Option<i64>>(10).map(|d| d.max(0) as u64),
        response_excerpt: r.get(11),
        detail: r.get(12),
        link_identities: r.get(13),
        revision: u(14),
    }
}
