//! How many messages each destination has in each state, kept in memory.
//!
//! The gauges and the dashboard ask for these counts every few seconds; a
//! `GROUP BY` over the whole table costs time in proportion to every message
//! ever kept (about 0.15 s per 2,000,000 rows). The counts are read once when
//! the store opens, then moved by the writer as it commits: a job notes what
//! it changed ([`Delta`]) and the writer applies it after the job's group
//! committed, on its own thread, so an answer its caller never awaited still
//! counts and a rolled-back group counts nothing. One process writes a SQLite
//! file (`redrive serve` holds its delivery lock), so nothing else moves them.

use std::collections::HashMap;

use rusqlite::Connection;

use crate::model::MessageState;
use crate::StoreError;

const STATES: [MessageState; 4] = [
    MessageState::Pending,
    MessageState::Delivered,
    MessageState::Parked,
    MessageState::Discarded,
];

fn slot(state: MessageState) -> usize {
    match state {
        MessageState::Pending => 0,
        MessageState::Delivered => 1,
        MessageState::Parked => 2,
        MessageState::Discarded => 3,
    }
}

/// Messages per destination and state.
#[derive(Debug, Default)]
pub struct Counts {
    by_destination: HashMap<String, [u64; 4]>,
}

impl Counts {
    /// Counts what the database holds (one scan, when the store opens).
    pub fn load(conn: &Connection) -> Result<Counts, StoreError> {
        let db = |e: rusqlite::Error| StoreError::Database(e.to_string());
        let mut counts = Counts::default();
        let mut stmt = conn
            .prepare(
                "SELECT destination, state, COUNT(*) FROM messages GROUP BY destination, state",
            )
            .map_err(db)?;
        let mut rows = stmt.query([]).map_err(db)?;
        while let Some(row) = rows.next().map_err(db)? {
            let destination: String = row.get(0).map_err(db)?;
            let state: String = row.get(1).map_err(db)?;
            let n: i64 = row.get(2).map_err(db)?;
            if let Some(state) = MessageState::parse(&state) {
                counts.entry(destination)[slot(state)] = n.max(0) as u64;
            }
        }
        Ok(counts)
    }

    fn entry(&mut self, destination: String) -> &mut [u64; 4] {
        self.by_destination.entry(destination).or_default()
    }

    /// Applies what a committed job changed.
    pub fn apply(&mut self, delta: &Delta) {
        for (destination, changes) in &delta.changes {
            // A known destination is found without copying its name.
            let counts = match self.by_destination.get_mut(destination.as_str()) {
                Some(counts) => counts,
                None => self.entry(destination.clone()),
            };
            for (count, n) in counts.iter_mut().zip(changes) {
                *count = count.saturating_add_signed(*n);
            }
        }
    }

    /// The non-zero counts, as `Store::stats` reports them.
    pub fn snapshot(&self) -> Vec<(String, MessageState, u64)> {
        let mut out = Vec::new();
        for (destination, counts) in &self.by_destination {
            for state in STATES {
                let n = counts[slot(state)];
                if n > 0 {
                    out.push((destination.clone(), state, n));
                }
            }
        }
        out.sort_by(|a, b| (&a.0, slot(a.1)).cmp(&(&b.0, slot(b.1))));
        out
    }
}

/// What one writer job changed in the counts, and the earliest message it
/// made due without a lease per destination (for the claims' cursors);
/// applied only if its group commits.
///
/// Changes are kept per run of one destination (a slot per state), so a
/// record's move costs one entry and a batch of enqueues to one destination
/// one entry in all: the writer notes a change per message it writes.
#[derive(Debug, Default)]
pub struct Delta {
    changes: Vec<(String, [i64; 4])>,
    due: Vec<(String, i64, String)>,
}

impl Delta {
    /// Message `id` of `destination` is due at `at` and leased to nobody
    /// (enqueued, redriven). Only the earliest per destination is kept: a
    /// claim's cursor is sent back if any of them is behind it, so if the
    /// earliest is.
    pub fn made_due(&mut self, destination: &str, at: i64, id: &str) {
        match self.due.iter_mut().find(|(d, _, _)| d == destination) {
            Some(earliest) => {
                if (at, id) < (earliest.1, earliest.2.as_str()) {
                    earliest.1 = at;
                    earliest.2 = id.to_owned();
                }
            }
            None => self.due.push((destination.to_owned(), at, id.to_owned())),
        }
    }

    /// Message `id` of `destination`, parked, is due again at `at` (a
    /// redrive). Each is kept: its park's lease may not have ended yet, and
    /// that lease must learn of it (see `leases`).
    pub fn made_due_again(&mut self, destination: &str, at: i64, id: &str) {
        self.due.push((destination.to_owned(), at, id.to_owned()));
    }

    /// What [`Delta::made_due`] and [`Delta::made_due_again`] kept:
    /// `(destination, at, id)`.
    pub fn take_due(&mut self) -> Vec<(String, i64, String)> {
        std::mem::take(&mut self.due)
    }

    /// `n` messages of `destination` entered `state`.
    pub fn add(&mut self, destination: &str, state: MessageState, n: u64) {
        self.change(destination, state, i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// `n` messages of `destination` left `state`.
    pub fn remove(&mut self, destination: &str, state: MessageState, n: u64) {
        self.change(destination, state, -i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// One message of `destination` went from `from` to `to`.
    pub fn moved(&mut self, destination: &str, from: MessageState, to: MessageState) {
        if from != to {
            self.remove(destination, from, 1);
            self.add(destination, to, 1);
        }
    }

    /// Adds `n` to `destination`'s `state`: into the last entry when it is
    /// the same destination's, else in a new one.
    fn change(&mut self, destination: &str, state: MessageState, n: i64) {
        if !matches!(self.changes.last(), Some((d, _)) if d == destination) {
            self.changes.push((destination.to_owned(), [0; 4]));
        }
        if let Some((_, entry)) = self.changes.last_mut() {
            let slot = &mut entry[slot(state)];
            *slot = slot.saturating_add(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run of one destination's changes is one entry, and what they add
    /// up to is what the counts get, whatever the order of destinations.
    #[test]
    fn changes_merge_per_run_and_apply_as_their_sum() {
        let mut delta = Delta::default();
        for _ in 0..3 {
            delta.add("a", MessageState::Pending, 1);
        }
        delta.moved("a", MessageState::Pending, MessageState::Delivered);
        delta.add("b", MessageState::Pending, 2);
        delta.moved("a", MessageState::Pending, MessageState::Parked);
        delta.moved("a", MessageState::Parked, MessageState::Parked);
        assert_eq!(delta.changes.len(), 3, "{:?}", delta.changes);

        let mut counts = Counts::default();
        counts.apply(&delta);
        let mut removal = Delta::default();
        removal.remove("b", MessageState::Pending, 5);
        counts.apply(&removal);
        assert_eq!(
            counts.snapshot(),
            vec![
                ("a".to_owned(), MessageState::Pending, 1),
                ("a".to_owned(), MessageState::Delivered, 1),
                ("a".to_owned(), MessageState::Parked, 1),
            ]
        );
    }
}
