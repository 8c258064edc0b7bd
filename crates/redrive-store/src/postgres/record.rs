//! Group commit for attempt records on PostgreSQL.
//!
//! A record is an update of the message (fenced by its lease) and an insert
//! of the attempt. One transaction per record made the drain a few thousand
//! messages a second, most of it round trips and WAL flushes. The store hands
//! every record to one task, which takes all that are waiting (up to
//! [`MAX_BATCH`]) and writes them with two statements in one transaction: an
//! `UPDATE ... FROM unnest(...)` that only touches rows whose lease still
//! matches, and an `INSERT ... SELECT FROM unnest(...)` of the attempts of
//! exactly those rows. Each caller learns whether its lease held.
//!
//! A batch shares its fate: if its transaction fails, every caller in it gets
//! the error and nothing of it is stored; their messages are attempted again
//! when their leases end.

use std::collections::HashMap;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use super::db;
use crate::model::{AttemptRecord, NextState};
use crate::StoreError;

/// The most records written in one transaction.
pub const MAX_BATCH: usize = 512;

/// One attempt to record.
pub struct Record {
    /// The message.
    pub id: String,
    /// The lease the attempt was made under.
    pub lease: String,
    /// What happened.
    pub attempt: AttemptRecord,
    /// The message's next state.
    pub next: NextState,
    /// When it was recorded.
    pub now: i64,
}

/// A record and where its answer goes (true: the lease held, it is stored).
pub type RecordJob = (Record, oneshot::Sender<Result<bool, StoreError>>);

/// Starts the record task on `pool`.
pub fn start(pool: Pool) -> mpsc::UnboundedSender<RecordJob> {
    let (tx, mut rx) = mpsc::unbounded_channel::<RecordJob>();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut jobs = vec![first];
            while jobs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let (records, answers): (Vec<Record>, Vec<_>) = jobs.into_iter().unzip();
            match record_all(&pool, &records).await {
                Ok(held) => {
                    for (answer, ok) in answers.into_iter().zip(held) {
                        let _ = answer.send(Ok(ok));
                    }
                }
                Err(e) => {
                    for answer in answers {
                        let _ = answer.send(Err(StoreError::Database(e.to_string())));
                    }
                }
            }
        }
    });
    tx
}

/// Writes `records` in one transaction; for each, whether its lease held.
async fn record_all(pool: &Pool, records: &[Record]) -> Result<Vec<bool>, StoreError> {
    let mut client = pool.get().await.map_err(db)?;
    let tx = client.transaction().await.map_err(db)?;
    let mut ids = Vec::with_capacity(records.len());
    let mut leases = Vec::with_capacity(records.len());
    let mut states = Vec::with_capacity(records.len());
    let mut reasons: Vec<Option<&str>> = Vec::with_capacity(records.len());
    let mut classes = Vec::with_capacity(records.len());
    let mut next_at: Vec<Option<i64>> = Vec::with_capacity(records.len());
    let mut nows = Vec::with_capacity(records.len());
    let mut spends: Vec<i32> = Vec::with_capacity(records.len());
    for r in records {
        spends.push(r.next.spends() as i32);
        let (state, reason, at) = match &r.next {
            NextState::Delivered => ("delivered", None, None),
            NextState::Retry { at } | NextState::Again { at } => ("pending", None, Some(*at)),
            NextState::Parked { reason } => ("parked", Some(reason.as_str()), None),
        };
        ids.push(r.id.as_str());
        leases.push(r.lease.as_str());
        states.push(state);
        reasons.push(reason);
        classes.push(r.attempt.class.as_str());
        next_at.push(at);
        nows.push(r.now);
    }
    // Only rows whose lease still matches: a stale holder writes nothing.
    let updated = tx
        .query(
            "UPDATE messages m SET state = r.state, park_reason = r.reason, last_class = r.class, \
             attempts = m.attempts + r.spends, total_attempts = m.total_attempts + 1, next_attempt_at = r.next_at, \
             lease = NULL, updated_at = r.now \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::int8[], $8::int4[]) \
               AS r(id, lease, state, reason, class, next_at, now, spends) \
             WHERE m.id = r.id AND m.lease = r.lease AND m.state = 'pending' \
             RETURNING m.id, m.total_attempts, m.cycle, m.attempts + 1 - r.spends",
            &[&ids, &leases, &states, &reasons, &classes, &next_at, &nows, &spends],
        )
        .await
        .map_err(db)?;
    let mut counters: HashMap<String, (i32, i32, i32)> = HashMap::with_capacity(updated.len());
    for row in &updated {
        let id: String = row.try_get(0).map_err(db)?;
        let n: (i32, i32, i32) = (
            row.try_get(1).map_err(db)?,
            row.try_get(2).map_err(db)?,
            row.try_get(3).map_err(db)?,
        );
        counters.insert(id, n);
    }
    let mut a = AttemptColumns::default();
    for r in records {
        if let Some(&(n, cycle, attempt)) = counters.get(&r.id) {
            a.push(r, n, cycle, attempt);
        }
    }
    if !a.ids.is_empty() {
        tx.execute(
            "INSERT INTO attempts (message_id, n, cycle, attempt, started_at, latency_ms, status, transport, class, \
             decision, reason, delay_ms, response_excerpt, detail, link_identities, revision) \
             SELECT * FROM unnest($1::text[], $2::int4[], $3::int4[], $4::int4[], $5::int8[], $6::int8[], \
               $7::int4[], $8::text[], $9::text[], $10::text[], $11::text[], $12::int8[], $13::text[], \
               $14::text[], $15::text[], $16::int4[])",
            &[
                &a.ids,
                &a.n,
                &a.cycle,
                &a.attempt,
                &a.started_at,
                &a.latency_ms,
                &a.status,
                &a.transport,
                &a.class,
                &a.decision,
                &a.reason,
                &a.delay_ms,
                &a.excerpt,
                &a.detail,
                &a.links,
                &a.revision,
            ],
        )
        .await
        .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    Ok(records
        .iter()
        .map(|r| counters.contains_key(&r.id))
        .collect())
}

/// The stored attempts as one array per column, for `unnest`.
#[derive(Default)]
struct AttemptColumns<'a> {
    ids: Vec<&'a str>,
    n: Vec<i32>,
    cycle: Vec<i32>,
    attempt: Vec<i32>,
    started_at: Vec<i64>,
    latency_ms: Vec<i64>,
    status: Vec<Option<i32>>,
    transport: Vec<Option<&'a str>>,
    class: Vec<&'a str>,
    decision: Vec<&'a str>,
    reason: Vec<&'a str>,
    delay_ms: Vec<Option<i64>>,
    excerpt: Vec<Option<&'a str>>,
    detail: Vec<Option<&'a str>>,
    links: Vec<Option<&'a str>>,
    revision: Vec<i32>,
}

impl<'a> AttemptColumns<'a> {
    fn push(&mut self, r: &'a Record, n: i32, cycle: i32, attempt: i32) {
        let a = &r.attempt;
        self.ids.push(&r.id);
        self.n.push(n);
        self.cycle.push(cycle);
        self.attempt.push(attempt);
        self.started_at.push(a.started_at);
        self.latency_ms
            .push(i64::try_from(a.latency_ms).unwrap_or(i64::MAX));
        self.status.push(a.status.map(i32::from));
        self.transport.push(a.transport.as_deref());
        self.class.push(&a.class);
        self.decision.push(&a.decision);
        self.reason.push(&a.reason);
        self.delay_ms
            .push(a.delay_ms.map(|d| i64::try_from(d).unwrap_or(i64::MAX)));
        self.excerpt.push(a.response_excerpt.as_deref());
        self.detail.push(a.detail.as_deref());
        self.links.push(a.link_identities.as_deref());
        self.revision
            .push(i32::try_from(a.revision.max(1)).unwrap_or(i32::MAX));
    }
}
