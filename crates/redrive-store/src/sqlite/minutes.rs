//! Attempts per minute and error class, kept in a table of their own.
//!
//! The dashboard charts the last hours of attempts by minute and class. Read
//! from `attempts`, that chart costs a visit to every attempt of those hours
//! (at a drain's pace, hundreds of millions of rows), and keeping the index
//! it reads in time order cost every recorded attempt one more B-tree insert.
//! Instead the writer counts the attempts a commit group records ([`Tally`],
//! a few entries per group: its attempts share a minute or two and a class or
//! two) and adds them to `attempt_minutes` just before the group's commit, in
//! the same transaction: a rolled-back group counts nothing. The retention
//! purge takes the counts of the attempts it deletes back out, so the table
//! stays what a `GROUP BY` of `attempts` would say.

use rusqlite::{params, Connection};

use crate::chart::{minute_of, whole_minutes};

/// The table's definition, for the migration and for tests that build a
/// bare database.
macro_rules! table {
    () => {
        "CREATE TABLE attempt_minutes (
    minute INTEGER NOT NULL,
    class  TEXT NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (minute, class)
) WITHOUT ROWID;"
    };
}

/// The minute of an attempt's start in SQL, as `chart::minute_of` says it
/// (rounded down, also before the epoch, where `%` keeps the sign).
macro_rules! minute_of_start {
    () => {
        "started_at - ((started_at % 60000) + 60000) % 60000"
    };
}

/// Migration 6 (SQLite only: PostgreSQL records attempts from many
/// connections at once, and one counter row per minute would make them
/// wait for each other). The table, filled from the attempts already kept;
/// the failed attempts by start time for the report (successes, nearly all
/// attempts, no longer pay for an index by time).
pub const MIGRATION: &str = concat!(
    table!(),
    "
INSERT INTO attempt_minutes (minute, class, n)
    SELECT ",
    minute_of_start!(),
    ", class, COUNT(*)
    FROM attempts GROUP BY 1, 2;
CREATE INDEX attempts_failed ON attempts (started_at) WHERE class != 'success';
DROP INDEX attempts_by_start;
"
);

/// The table alone, as the migration creates it.
#[cfg(test)]
pub const TABLE: &str = table!();

/// The minute of an attempt's start in SQL (see `minute_of_start!`): the
/// purge's counts and the tests' check use the migration's expression.
pub const MINUTE_OF_START: &str = minute_of_start!();

/// Adds `n` (negative to take away) to a minute's count of a class; a count
/// that reaches zero is deleted (`FORGET_EMPTY`).
const ADD: &str = "INSERT INTO attempt_minutes (minute, class, n) VALUES (?1, ?2, ?3) \
     ON CONFLICT (minute, class) DO UPDATE SET n = n + excluded.n";
const FORGET_EMPTY: &str =
    "DELETE FROM attempt_minutes WHERE minute = ?1 AND class = ?2 AND n <= 0";

/// The attempts a commit group recorded, by minute and class, not yet in
/// the table.
#[derive(Debug, Default)]
pub struct Tally {
    counts: Vec<(i64, String, i64)>,
}

impl Tally {
    /// Counts one attempt started at `started_at`.
    pub fn note(&mut self, started_at: i64, class: &str) {
        let minute = minute_of(started_at);
        match self
            .counts
            .iter_mut()
            .find(|(m, c, _)| *m == minute && c == class)
        {
            Some(entry) => entry.2 += 1,
            None => self.counts.push((minute, class.to_owned(), 1)),
        }
    }

    /// Adds the counts to the table (in the group's transaction) and starts
    /// over.
    pub fn flush(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        for (minute, class, n) in self.counts.drain(..) {
            conn.prepare_cached(ADD)?
                .execute(params![minute, class, n])?;
        }
        Ok(())
    }

    /// Forgets the counts of a group that rolled back.
    pub fn clear(&mut self) {
        self.counts.clear();
    }
}

/// Takes the attempts of the messages `slice` selects (a `SELECT id`,
/// with `params`) out of the counts: the purge calls it before it deletes
/// them, in the same transaction. `pending` is what the running group has
/// tallied and not yet added: it goes in first, or an attempt recorded
/// earlier in the group and purged now would take a count below zero (the
/// empty row deleted), then come back at the commit with no attempt behind
/// it.
pub fn forget_attempts_of<P: rusqlite::Params>(
    conn: &Connection,
    pending: &mut Tally,
    slice: &str,
    params: P,
) -> rusqlite::Result<()> {
    pending.flush(conn)?;
    let counted: Vec<(i64, String, i64)> = conn
        .prepare_cached(&format!(
            "SELECT {MINUTE_OF_START}, class, COUNT(*) FROM attempts \
             WHERE message_id IN ({slice}) GROUP BY 1, 2"
        ))?
        .query_map(params, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (minute, class, n) in counted {
        conn.prepare_cached(ADD)?
            .execute(params![minute, class, -n])?;
        conn.prepare_cached(FORGET_EMPTY)?
            .execute(params![minute, class])?;
    }
    Ok(())
}

/// Attempts per bucket and class from `since` (rounded down to its minute),
/// oldest bucket first. Buckets are whole minutes (`bucket_ms` rounded up to
/// them, at least one), aligned to the epoch, also before it.
pub fn per_bucket(
    conn: &Connection,
    since: i64,
    bucket_ms: i64,
) -> rusqlite::Result<Vec<(i64, String, u64)>> {
    let bucket = whole_minutes(bucket_ms);
    conn.prepare_cached(
        "SELECT minute - ((minute % ?2) + ?2) % ?2 AS b, class, SUM(n) FROM attempt_minutes \
         WHERE minute >= ?1 GROUP BY b, class ORDER BY b, class",
    )?
    .query_map(params![minute_of(since), bucket], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?.max(0) as u64,
        ))
    })?
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart::MINUTE_MS;

    /// A group's tally has an entry per minute and class, however many
    /// attempts share it; the table adds groups up, and a purge's taking
    /// away leaves no empty row.
    #[test]
    fn a_tally_adds_up_by_minute_and_class_and_the_purge_takes_back() {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(&format!(
            "CREATE TABLE attempts (message_id TEXT, started_at INTEGER, class TEXT); {TABLE}"
        ))
        .expect("schema");
        let mut tally = Tally::default();
        for (at, class) in [
            (10, "success"),
            (20, "success"),
            (70_000, "server"),
            (30, "server"),
        ] {
            tally.note(at, class);
        }
        assert_eq!(tally.counts.len(), 3);
        tally.flush(&conn).expect("flush");
        assert!(tally.counts.is_empty());
        tally.note(59_000, "success");
        tally.flush(&conn).expect("flush");
        let rows = |since| per_bucket(&conn, since, MINUTE_MS).expect("rows");
        assert_eq!(
            rows(0),
            vec![
                (0, "server".to_owned(), 1),
                (0, "success".to_owned(), 3),
                (60_000, "server".to_owned(), 1)
            ]
        );
        assert_eq!(rows(61_000), vec![(60_000, "server".to_owned(), 1)]);
        assert_eq!(
            per_bucket(&conn, 0, 2 * MINUTE_MS).expect("two minutes"),
            vec![(0, "server".to_owned(), 2), (0, "success".to_owned(), 3)]
        );

        conn.execute_batch(
            "INSERT INTO attempts VALUES ('a', 10, 'success'), ('a', 30, 'server'), ('b', 70000, 'server');",
        )
        .expect("attempts");
        let mut none = Tally::default();
        forget_attempts_of(&conn, &mut none, "SELECT ?1", ["b"]).expect("forget b");
        forget_attempts_of(&conn, &mut none, "SELECT ?1", ["a"]).expect("forget a");
        assert_eq!(rows(0), vec![(0, "success".to_owned(), 2)]);
        let empty: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM attempt_minutes WHERE n <= 0",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(empty, 0);
    }

    /// The backfill and the purge round a start to its minute as
    /// `chart::minute_of` does, before the epoch too.
    #[test]
    fn sql_and_rust_agree_on_the_minute() {
        assert!(MIGRATION.contains(MINUTE_OF_START));
        let conn = Connection::open_in_memory().expect("open");
        for at in [
            -120_001,
            -60_000,
            -1,
            0,
            1,
            59_999,
            60_000,
            1_700_000_012_345,
        ] {
            let sql: i64 = conn
                .query_row(
                    &format!("SELECT {MINUTE_OF_START} FROM (SELECT ?1 AS started_at)"),
                    [at],
                    |r| r.get(0),
                )
                .expect("minute");
            assert_eq!(sql, minute_of(at), "{at}");
        }
    }
}
