//! Claims: the due entries of the destinations a claim names, read from
//! the due index `(destination, next_attempt_at, id)` in one snapshot, on the
//! claimer's own connection; and what the scheduler asks of the same index
//! (the destinations with pending messages, the earliest due time).
//!
//! Why a connection and a thread of their own: a claim then waits neither
//! for the writer's group to commit nor behind a slow read (a report), and
//! its reads leave the writer's thread. Measured when claims moved off the
//! writer: drains of 18.3k-21.2k msg/s became 21.6k-25.0k (AMD EPYC,
//! 2026-11-22).

use std::sync::Mutex;

use rusqlite::{params, Connection};

use super::leases::{lock, DueKey, DueNext, Leases};
use super::{db, message_from_row};
use crate::model::Claimed;
use crate::StoreError;

/// Each destination with pending messages, in name order, found by a skip
/// scan of the due index: one probe per destination, not one per row.
const PENDING_DESTINATIONS: &str = "WITH RECURSIVE d(name) AS ( \
       SELECT MIN(destination) FROM messages INDEXED BY messages_due_by_destination WHERE state = 'pending' \
       UNION ALL \
       SELECT (SELECT MIN(destination) FROM messages INDEXED BY messages_due_by_destination \
               WHERE state = 'pending' AND destination > d.name) FROM d WHERE d.name IS NOT NULL)";

/// The earliest due time of a pending message: the smallest of each
/// destination's (see [`due_by_destination`]).
pub(super) fn earliest_due(
    conn: &Connection,
    leases: &Mutex<Leases>,
) -> Result<Option<i64>, StoreError> {
    Ok(due_by_destination(conn, leases)?
        .into_iter()
        .map(|(_, at)| at)
        .min())
}

/// Each destination with pending messages and its earliest due time, in
/// name order: its first entry in the due index. A leased message is due
/// when its lease ends; the entries of leased messages come first in the
/// index, so each destination's scan reads at most its leases and one more.
pub(super) fn due_by_destination(
    conn: &Connection,
    leases: &Mutex<Leases>,
) -> Result<Vec<(String, i64)>, StoreError> {
    let leases = lock(leases);
    if leases.is_empty() {
        return conn
            .prepare_cached(&format!(
                "{PENDING_DESTINATIONS} SELECT name, (SELECT MIN(next_attempt_at) FROM messages \
                 INDEXED BY messages_due_by_destination WHERE state = 'pending' AND destination = d.name) \
                 FROM d WHERE d.name IS NOT NULL"
            ))
            .map_err(db)?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db);
    }
    let mut due = conn
        .prepare_cached(
            "SELECT id, next_attempt_at FROM messages INDEXED BY messages_due_by_destination \
             WHERE state = 'pending' AND destination = ?1 ORDER BY next_attempt_at, id",
        )
        .map_err(db)?;
    let mut out = Vec::new();
    for destination in pending_destinations(conn)? {
        let mut earliest: Option<i64> = None;
        let mut rows = due.query([&destination]).map_err(db)?;
        while let Some(row) = rows.next().map_err(db)? {
            let id: String = row.get(0).map_err(db)?;
            let at: i64 = row.get(1).map_err(db)?;
            let (at, leased) = match leases.until(&id) {
                Some(until) => (until, true),
                None => (at, false),
            };
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
            if !leased {
                break;
            }
        }
        drop(rows);
        if let Some(at) = earliest {
            out.push((destination, at));
        }
    }
    Ok(out)
}

/// The earliest due time after `now` of each destination's pending
/// messages: one seek of the due index each. Leased entries are due by the
/// time of their claim, so they are not among them (their record or
/// release tells the engine when they are due again).
pub(super) fn due_after(
    conn: &Connection,
    destinations: &[String],
    now: i64,
) -> Result<Vec<(String, Option<i64>)>, StoreError> {
    let mut stmt = conn.prepare_cached(DUE_AFTER).map_err(db)?;
    destinations
        .iter()
        .map(|d| {
            let at: Option<i64> = stmt.query_row(params![d, now], |r| r.get(0)).map_err(db)?;
            Ok((d.clone(), at))
        })
        .collect()
}

/// See [`due_after`]; `CAST` as in [`DUE_ENTRIES`].
const DUE_AFTER: &str =
    "SELECT MIN(next_attempt_at) FROM messages INDEXED BY messages_due_by_destination \
     WHERE state = 'pending' AND destination = CAST(?1 AS TEXT) AND next_attempt_at > ?2";

/// Each destination with pending messages, in name order.
pub(super) fn pending_destinations(conn: &Connection) -> Result<Vec<String>, StoreError> {
    conn.prepare_cached(&format!(
        "{PENDING_DESTINATIONS} SELECT name FROM d WHERE name IS NOT NULL"
    ))
    .map_err(db)?
    .query_map([], |r| r.get(0))
    .map_err(db)?
    .collect::<rusqlite::Result<Vec<String>>>()
    .map_err(db)
}

/// Where `id`, `next_attempt_at` and the row's rowid are in a row of
/// `DUE_ENTRIES_AFTER` (the columns, then the rowid).
const DUE_ID: usize = 0;
const DUE_AT: usize = 16;
const DUE_ROWID: usize = super::COLUMN_COUNT;

/// A destination's due entries, oldest due first, straight off the index
/// (`INDEXED BY`: the planner once took another index and sorted). SQLite
/// re-prepares a statement whenever a parameter its plan depended on is
/// bound again: a bound `LIMIT`, or a bare `?1`
/// compared with the partial indexes' constants. So no `LIMIT` (the caller
/// stops reading) and `CAST(?1 AS TEXT)`; a test counts the re-prepares.
///
/// From the front a claim reads past every leased entry: the index alone
/// (covering), and each taken message's row by [`CLAIMED_ROW`].
const DUE_ENTRIES: &str =
    "SELECT rowid, id, next_attempt_at FROM messages INDEXED BY messages_due_by_destination \
     WHERE state = 'pending' AND destination = CAST(?1 AS TEXT) AND next_attempt_at <= ?2 \
     ORDER BY next_attempt_at, id";

/// A message a claim from the front took, by rowid.
const CLAIMED_ROW: &str = concat!("SELECT ", columns!(), " FROM messages WHERE rowid = ?1");

/// [`DUE_ENTRIES`] after a key: the index is searched from the claim's
/// cursor, not stepped through from the front (see `leases`). A bare `?4`:
/// SQLite seeks on the pair only when the id's side has no affinity of its
/// own (with `CAST`, it seeks on the time and steps through every entry of
/// it, and a backlog stored in one millisecond is one time).
///
/// From the cursor few entries are leased, so each entry comes with its
/// message's columns: a taken message needs no second statement, a skipped
/// one costs a read of its row (SQLite computes every column of a row it
/// returns).
const DUE_ENTRIES_AFTER: &str = concat!(
    "SELECT ",
    columns!(),
    ", rowid FROM messages INDEXED BY messages_due_by_destination \
     WHERE state = 'pending' AND destination = CAST(?1 AS TEXT) AND next_attempt_at <= ?2 \
     AND (next_attempt_at, id) > (?3, ?4) \
     ORDER BY next_attempt_at, id"
);

/// A claim, in one read transaction (one snapshot): per destination, its due
/// entries oldest first, leased ones skipped, read from the destination's
/// cursor (after the last entry a claim took: every due entry before it is
/// leased) or, when the cursor was sent back, from the front, where it reads
/// past every leased message.
pub(super) fn claim_due(
    conn: &Connection,
    leases: &Mutex<Leases>,
    now: i64,
    want: &[(String, usize)],
    lease: &str,
    lease_until: i64,
) -> Result<Vec<Claimed>, StoreError> {
    let tx = conn.unchecked_transaction().map_err(db)?;
    let mut claimed = Vec::new();
    match take_due(&tx, leases, now, (want, lease, lease_until), &mut claimed) {
        Ok(()) => Ok(claimed),
        Err(e) => {
            // Nothing of this claim is delivered: the leases it granted end,
            // their messages where they were.
            let mut leases = lock(leases);
            for c in claimed {
                leases.end(c.message.id, lease.to_owned(), DueNext::Unknown);
            }
            Err(e)
        }
    }
}

/// The body of [`claim_due`]: appends to `claimed` each message it leases,
/// as it grants the lease (so that a failure ends them all).
fn take_due(
    tx: &Connection,
    leases: &Mutex<Leases>,
    now: i64,
    (want, lease, lease_until): (&[(String, usize)], &str, i64),
    claimed: &mut Vec<Claimed>,
) -> Result<(), StoreError> {
    let mut from_front = tx.prepare_cached(DUE_ENTRIES).map_err(db)?;
    let mut from_cursor = tx.prepare_cached(DUE_ENTRIES_AFTER).map_err(db)?;
    let mut claimed_row = tx.prepare_cached(CLAIMED_ROW).map_err(db)?;
    for (destination, n) in want.iter().filter(|(_, n)| *n > 0) {
        let after = lock(leases).read_after(destination, now);
        // From the cursor the entries carry their rows (`DUE_ENTRIES_AFTER`).
        let merged = after.is_some();
        let (at_rowid, at_id, at_due) = if merged {
            (DUE_ROWID, DUE_ID, DUE_AT)
        } else {
            (0, 1, 2)
        };
        let mut rows = match &after {
            Some(key) => from_cursor.query(params![destination, now, key.at, key.id]),
            None => from_front.query(params![destination, now]),
        }
        .map_err(db)?;
        let mut taken = 0;
        let mut last: Option<DueKey> = None;
        while taken < *n {
            let Some(row) = rows.next().map_err(db)? else {
                break;
            };
            let rowid: i64 = row.get(at_rowid).map_err(db)?;
            let id: String = row.get(at_id).map_err(db)?;
            let at: i64 = row.get(at_due).map_err(db)?;
            if lock(leases).is_held(&id, now) {
                continue;
            }
            // The row, in the claim's snapshot (the lock is not held
            // while it is read: records spend leases under it). Nothing
            // else grants a lease, and ends wait for the claim, so the
            // entry is still free when its lease is granted below.
            let mut message = if merged {
                message_from_row(row)
            } else {
                claimed_row.query_row([rowid], message_from_row)
            }
            .map_err(db)?;
            // Its record then knows the counters it writes (`Counters`).
            let counters = (message.total_attempts, message.cycle, message.attempts);
            lock(leases).grant(
                id.clone(),
                (destination, rowid, counters),
                lease,
                lease_until,
            );
            last = Some(DueKey { at, id });
            // Just leased: shown as `Leases::show` would, without its lock.
            message.leased = true;
            message.next_attempt_at = Some(lease_until);
            claimed.push(Claimed {
                message,
                lease: lease.to_owned(),
                due_at: at,
            });
            taken += 1;
        }
        drop(rows);
        if let Some(last) = last {
            lock(leases).advance(destination, last);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::{connect, migrate};

    /// Claims of different sizes reuse one prepared statement: a bound
    /// `LIMIT` made SQLite re-prepare it on every claim (a fifth of the
    /// claimer's time in a drain).
    #[test]
    fn claims_of_any_size_reuse_their_statement() {
        let dir = tempfile::tempdir().expect("dir");
        let conn = connect(&dir.path().join("x.db")).expect("open");
        migrate(&conn).expect("migrate");
        for i in 0..20 {
            conn.execute(
                "INSERT INTO messages (id, destination, method, path, headers, body, idempotency_key, \
                 request_hash, marked_idempotent, state, cycle_started_at, next_attempt_at, created_at, updated_at) \
                 VALUES (?1, 'crm', 'POST', '/', '[]', x'', ?1, 'h', 0, 'pending', 0, ?2, 0, 0)",
                params![format!("m{i:02}"), i % 7],
            )
            .expect("insert");
        }
        let leases = Mutex::new(Leases::default());
        let mut taken = 0;
        for n in 1..=5 {
            let want = vec![("crm".to_owned(), n)];
            taken += claim_due(&conn, &leases, 10, &want, "L", 100)
                .expect("claim")
                .len();
        }
        assert_eq!(
            taken, 15,
            "the first claim from the front, the others from the cursor"
        );
        for sql in [DUE_ENTRIES, DUE_ENTRIES_AFTER, CLAIMED_ROW] {
            let reprepares = conn
                .prepare_cached(sql)
                .expect("cached")
                .get_status(rusqlite::StatementStatus::RePrepare);
            assert_eq!(reprepares, 0, "{sql}");
        }
        // And it still reads one destination's due entries in claim order,
        // with no sort.
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {DUE_ENTRIES}"))
            .expect("plan")
            .query_map(params!["crm", 10], |r| r.get(3))
            .expect("rows")
            .collect::<rusqlite::Result<_>>()
            .expect("plan rows");
        assert_eq!(
            plan,
            ["SEARCH messages USING COVERING INDEX messages_due_by_destination (destination=? AND next_attempt_at<?)"],
            "{plan:?}"
        );
        // From a cursor: a search that starts at the cursor's key.
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {DUE_ENTRIES_AFTER}"))
            .expect("plan")
            .query_map(params!["crm", 10, 3, "m03"], |r| r.get(3))
            .expect("rows")
            .collect::<rusqlite::Result<_>>()
            .expect("plan rows");
        assert_eq!(
            plan,
            ["SEARCH messages USING INDEX messages_due_by_destination (destination=? AND (next_attempt_at,id)>(?,?) AND next_attempt_at<?)"],
            "{plan:?}"
        );
    }
}
