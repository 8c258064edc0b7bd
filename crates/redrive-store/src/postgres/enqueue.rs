//! Group commit for enqueues on PostgreSQL.
//!
//! Each API request enqueues one message; one transaction each would make a
//! commit (a WAL flush) and half a dozen round trips per message. Instead the
//! store hands every enqueue to one task, which takes all that are waiting (up
//! to [`MAX_BATCH`] messages), inserts them with a single `INSERT ... SELECT
//! FROM unnest(...)` in one transaction, and answers each caller after the
//! commit: a 202 still means durable, and many share a flush.
//!
//! A batch shares its fate: if its transaction fails, every caller in it gets
//! the error and nothing of it is stored (callers retry with the same
//! idempotency key).

use std::collections::HashMap;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use super::{db, message, COLUMNS};
use crate::model::{Enqueued, Message, NewMessage};
use crate::StoreError;

/// The most messages inserted in one transaction.
pub const MAX_BATCH: usize = 1000;

/// One caller's messages and where its answer goes.
pub type EnqueueJob = (
    Vec<NewMessage>,
    oneshot::Sender<Result<Vec<Enqueued>, StoreError>>,
);

/// Starts the enqueue task on `pool`.
pub fn start(pool: Pool) -> mpsc::UnboundedSender<EnqueueJob> {
    let (tx, mut rx) = mpsc::unbounded_channel::<EnqueueJob>();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut jobs = vec![first];
            let mut size = jobs[0].0.len();
            while size < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => {
                        size += job.0.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            let (batches, answers): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
            let counts: Vec<usize> = batches.iter().map(Vec::len).collect();
            let all: Vec<NewMessage> = batches.into_iter().flatten().collect();
            match insert_all(&pool, all).await {
                Ok(results) => {
                    let mut results = results.into_iter();
                    for (answer, n) in answers.into_iter().zip(counts) {
                        let _ = answer.send(Ok(results.by_ref().take(n).collect()));
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

/// Inserts `batch` in one transaction; one answer per message, in order.
async fn insert_all(pool: &Pool, batch: Vec<NewMessage>) -> Result<Vec<Enqueued>, StoreError> {
    let mut client = pool.get().await.map_err(db)?;
    let tx = client.transaction().await.map_err(db)?;
    let mut columns = Columns::default();
    for m in &batch {
        columns.push(m)?;
    }
    // In the batch's order, so the first of two messages with one key is the
    // one stored; a key already stored, or repeated, inserts nothing.
    let inserted = tx
        .query(
            &format!(
                "INSERT INTO messages (id, destination, method, path, headers, body, idempotency_key, \
                 request_hash, marked_idempotent, state, cycle_started_at, next_attempt_at, created_at, updated_at, source) \
                 SELECT id, destination, method, path, headers, body, key, hash, marked, 'pending', at, at, at, at, source \
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[], \
                             $7::text[], $8::text[], $9::bool[], $10::int8[], $11::text[]) \
                   WITH ORDINALITY AS t(id, destination, method, path, headers, body, key, hash, marked, at, source, ord) \
                 ORDER BY ord \
                 ON CONFLICT (idempotency_key) DO NOTHING RETURNING {COLUMNS}"
            ),
            &[
                &columns.ids,
                &columns.destinations,
                &columns.methods,
                &columns.paths,
                &columns.headers,
                &columns.bodies,
                &columns.keys,
                &columns.hashes,
                &columns.marked,
                &columns.created_at,
                &columns.sources,
            ],
        )
        .await
        .map_err(db)?;
    let mut created: HashMap<String, Message> = inserted
        .iter()
        .map(|r| {
            let m = message(r);
            (m.id.clone(), m)
        })
        .collect();
    // Keys that inserted nothing: read what holds them.
    let missing: Vec<&str> = batch
        .iter()
        .filter(|m| !created.contains_key(&m.id))
        .map(|m| m.idempotency_key.as_str())
        .collect();
    let mut existing: HashMap<String, Message> = HashMap::new();
    if !missing.is_empty() {
        let rows = tx
            .query(
                &format!("SELECT {COLUMNS} FROM messages WHERE idempotency_key = ANY($1)"),
                &[&missing],
            )
            .await
            .map_err(db)?;
        for r in &rows {
            let m = message(r);
            existing.insert(m.idempotency_key.clone(), m);
        }
    }
    let mut out = Vec::with_capacity(batch.len());
    for m in &batch {
        if let Some(stored) = created.remove(&m.id) {
            existing.insert(stored.idempotency_key.clone(), stored.clone());
            out.push(Enqueued::Created(stored));
            continue;
        }
        let stored = existing.get(&m.idempotency_key).ok_or_else(|| {
            StoreError::Database("the key conflicted but no message holds it".into())
        })?;
        out.push(if stored.request_hash == m.request_hash {
            Enqueued::Duplicate(stored.clone())
        } else {
            Enqueued::Conflict {
                existing_id: stored.id.clone(),
            }
        });
    }
    let payload = super::notify::due_payload(out.iter().filter_map(|e| match e {
        Enqueued::Created(m) => Some((m.destination.as_str(), m.created_at)),
        _ => None,
    }));
    if let Some(payload) = payload {
        tx.execute(super::notify::NOTIFY, &[&super::notify::CHANNEL, &payload])
            .await
            .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    Ok(out)
}

/// A batch as one array per column, for `unnest`.
#[derive(Default)]
struct Columns {
    ids: Vec<String>,
    destinations: Vec<String>,
    methods: Vec<String>,
    paths: Vec<String>,
    headers: Vec<String>,
    bodies: Vec<Vec<u8>>,
    keys: Vec<String>,
    hashes: Vec<String>,
    marked: Vec<bool>,
    created_at: Vec<i64>,
    sources: Vec<Option<String>>,
}

impl Columns {
    fn push(&mut self, m: &NewMessage) -> Result<(), StoreError> {
        self.ids.push(m.id.clone());
        self.destinations.push(m.destination.clone());
        self.methods.push(m.method.clone());
        self.paths.push(m.path.clone());
        self.headers
            .push(serde_json::to_string(&m.headers).map_err(db)?);
        self.bodies.push(m.body.clone());
        self.keys.push(m.idempotency_key.clone());
        self.hashes.push(m.request_hash.clone());
        self.marked.push(m.marked_idempotent);
        self.created_at.push(m.created_at);
        self.sources.push(m.source.clone());
        Ok(())
    }
}
