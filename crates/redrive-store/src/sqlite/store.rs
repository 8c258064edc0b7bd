//! The `Store` trait's methods on [`SqliteStore`]: each sends its
//! statements to the writer, the reader or the claimer thread (see the
//! parent module for why each runs where it does).

use super::*;

fn get_by_key(conn: &Connection, key: &str) -> rusqlite::Result<Option<Message>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM messages WHERE idempotency_key = ?1"
    ))?
    .query_row([key], message_from_row)
    .optional()
}

pub(super) fn redrive_ids(
    conn: &Connection,
    delta: &mut Delta,
    ids: &[String],
    now: i64,
) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "UPDATE messages SET state = 'pending', park_reason = NULL, attempts = 0, cycle = cycle + 1, \
             cycle_started_at = ?2, next_attempt_at = ?2, lease = NULL, updated_at = ?2 \
             WHERE id = ?1 AND state = 'parked'",
        )
        .map_err(db)?;
    let mut done = Vec::new();
    for id in ids {
        if stmt.execute(params![id, now]).map_err(db)? == 1 {
            let destination = destination_of(conn, id)?;
            delta.moved(&destination, MessageState::Parked, MessageState::Pending);
            delta.made_due_again(&destination, now, id);
            done.push(id.clone());
        }
    }
    Ok(done)
}

/// The destination of message `id` (for the counts of an operator's change).
pub(super) fn destination_of(conn: &Connection, id: &str) -> Result<String, StoreError> {
    conn.prepare_cached("SELECT destination FROM messages WHERE id = ?1")
        .map_err(db)?
        .query_row([id], |r| r.get(0))
        .map_err(db)
}

impl Store for SqliteStore {
    fn disk(&self) -> Option<DiskState> {
        Some(self.disk.state())
    }

    async fn enqueue(&self, batch: Vec<NewMessage>) -> Result<Vec<Enqueued>, StoreError> {
        if self.disk.is_low() {
            return Err(StoreError::DiskFull(self.disk.state()));
        }
        self.disk.spend(
            batch
                .iter()
                .map(|m| (m.body.len() + m.path.len() + m.idempotency_key.len() + 256) as u64)
                .sum(),
        );
        let leases = Arc::clone(&self.leases);
        self.write_counted(Durability::Fsync, move |conn, delta| {
            let mut out = Vec::with_capacity(batch.len());
            // No RETURNING: SQLite runs a statement with RETURNING through an
            // ephemeral table and a statement journal (a copy of every page
            // it touches), which cost more than the insert. A new message is
            // what was inserted; only a duplicate key costs a lookup.
            for m in batch {
                let headers = serde_json::to_string(&m.headers)
                    .map_err(|e| StoreError::Database(e.to_string()))?;
                let inserted = conn
                    .held(ENQUEUE_INSERT, |s| {
                        s.execute(params![
                            m.id,
                            m.destination,
                            m.method,
                            m.path,
                            headers,
                            m.body,
                            m.idempotency_key,
                            m.request_hash,
                            m.marked_idempotent,
                            m.created_at,
                            m.source
                        ])
                    })
                    .map_err(db)?;
                if inserted == 1 {
                    delta.add(&m.destination, MessageState::Pending, 1);
                    delta.made_due(&m.destination, m.created_at, &m.id);
                    out.push(Enqueued::Created(m.into_pending()));
                    continue;
                }
                let mut stored = get_by_key(conn, &m.idempotency_key)
                    .map_err(db)?
                    .ok_or_else(|| {
                        StoreError::Database("the key conflicted but no message holds it".into())
                    })?;
                lock(&leases).show(&mut stored);
                out.push(if stored.request_hash == m.request_hash {
                    Enqueued::Duplicate(stored)
                } else {
                    Enqueued::Conflict {
                        existing_id: stored.id,
                    }
                });
            }
            Ok(out)
        })
        .await
    }

    async fn claim(
        &self,
        now: i64,
        want: Vec<(String, usize)>,
        lease: String,
        lease_until: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        self.delivery.take()?;
        let leases = Arc::clone(&self.leases);
        // On the claimer's own connection, beside the writer: a claim writes
        // nothing, and deliveries wait for it, not for the writer's group.
        let (tx, rx) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            lock(&leases).begin_claim();
            let result = claim_due(conn, &leases, now, &want, &lease, lease_until);
            lock(&leases).finish_claim();
            let _ = tx.send(result);
        });
        self.claimer.send(job).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn pending_destinations(&self) -> Result<Vec<String>, StoreError> {
        self.read(pending_destinations).await
    }

    async fn record(
        &self,
        id: String,
        lease: String,
        attempt: AttemptRecord,
        next: NextState,
        now: i64,
    ) -> Result<bool, StoreError> {
        // The lease ends in the writer's answer, as the commit's answer
        // comes, not here after the await: a caller that stopped waiting
        // leaves no lease behind.
        let (tx, rx) = oneshot::channel();
        let leases = Arc::clone(&self.leases);
        let fence = Arc::clone(&self.leases);
        let ended = (id.clone(), lease.clone());
        let due_next = match &next {
            NextState::Retry { at } | NextState::Again { at } => DueNext::At(*at),
            NextState::Delivered | NextState::Parked { .. } => DueNext::Gone,
        };
        self.write_counted_then(
            Durability::Written,
            move |conn, delta| {
                // The fence: only the lease's holder records, once. The lease
                // ends once the record is committed (below): until then the
                // message stays leased, so no claim takes it.
                let Some((rowid, destination, known)) = lock(&fence)
                    .spend(&id, &lease)
                    .map(|s| (s.rowid, s.destination.to_owned(), s.counters))
                else {
                    return Ok((false, false));
                };
                let (state, reason, next_at) = match &next {
                    NextState::Delivered => ("delivered", None, None),
                    NextState::Retry { at } | NextState::Again { at } => {
                        ("pending", None, Some(*at))
                    }
                    NextState::Parked { reason } => ("parked", Some(reason.as_str()), None),
                };
                let spends = next.spends();
                // No RETURNING (see `enqueue`): the update, and the counters
                // it wrote are the claim's plus one (see `Counters`), or read
                // back from the row. (Not an INSERT ... SELECT of them: SQLite
                // gives a statement that may insert several rows a statement
                // journal, a copy of every page it touches.)
                let update = |known_total: Option<u32>| {
                    conn.held(RECORD_UPDATE, |s| {
                        s.execute(params![
                            state,
                            reason,
                            attempt.class,
                            next_at,
                            now,
                            rowid,
                            id,
                            known_total,
                            spends
                        ])
                    })
                    .map_err(db)
                };
                let (total, cycle, in_cycle) = known;
                // The attempt's number in its cycle is the one it was to
                // be, whether or not it spends one.
                let counters: Option<(u32, u32, u32)> = if update(Some(total))? == 1 {
                    Some((total.saturating_add(1), cycle, in_cycle.saturating_add(1)))
                } else if update(None)? == 1 {
                    // The counters moved since the claim read them (a record
                    // of an expired lease committed since): read back.
                    conn.held(RECORD_COUNTERS, |s| {
                        s.query_row([rowid], |r| {
                            let after: u32 = r.get(2)?;
                            Ok((r.get(0)?, r.get(1)?, after + 1 - spends))
                        })
                        .optional()
                    })
                    .map_err(db)?
                } else {
                    // Fenced off: the message is no longer pending.
                    None
                };
                let Some((n, cycle, in_cycle)) = counters else {
                    return Ok((false, true));
                };
                match &next {
                    NextState::Delivered => {
                        delta.moved(&destination, MessageState::Pending, MessageState::Delivered)
                    }
                    NextState::Parked { .. } => {
                        delta.moved(&destination, MessageState::Pending, MessageState::Parked)
                    }
                    NextState::Retry { .. } | NextState::Again { .. } => {}
                }
                conn.held(RECORD_ATTEMPT, |s| {
                    s.execute(params![
                        id,
                        n,
                        cycle,
                        in_cycle,
                        attempt.started_at,
                        attempt.latency_ms as i64,
                        attempt.status,
                        attempt.transport,
                        attempt.class,
                        attempt.decision,
                        attempt.reason,
                        attempt.delay_ms.map(|d| d as i64),
                        attempt.response_excerpt,
                        attempt.detail,
                        attempt.link_identities,
                        attempt.revision.max(1)
                    ])
                })
                .map_err(db)?;
                conn.tally_attempt(attempt.started_at, &attempt.class);
                Ok((true, true))
            },
            move |outcome| {
                let recorded = match outcome {
                    Ok((recorded, spent)) => {
                        if spent {
                            let next = if recorded { due_next } else { DueNext::Gone };
                            lock(&leases).end(ended.0, ended.1, next);
                        }
                        Ok(recorded)
                    }
                    // Rolled back: the message is pending again, and due at once.
                    Err(e) => {
                        lock(&leases).end(ended.0, ended.1, DueNext::Unknown);
                        Err(e)
                    }
                };
                let _ = tx.send(recorded);
            },
        );
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn release(&self, given: Vec<(String, String)>, due_at: i64) -> Result<u64, StoreError> {
        let leases = Arc::clone(&self.leases);
        let fence = Arc::clone(&self.leases);
        let ended = given.clone();
        let (tx, rx) = oneshot::channel();
        self.write_as_then(
            Durability::Written,
            move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "UPDATE messages SET lease = NULL, next_attempt_at = ?3 \
                         WHERE rowid = ?1 AND id = ?2 AND state = 'pending'",
                    )
                    .map_err(db)?;
                let mut n = 0;
                for (id, token) in &given {
                    let Some(rowid) = lock(&fence).spend(id, token).map(|s| s.rowid) else {
                        continue;
                    };
                    n += stmt.execute(params![rowid, id, due_at]).map_err(db)? as u64;
                }
                Ok(n)
            },
            // Committed or rolled back, the leases end (only those the
            // tokens hold) as the writer answers, whether or not the caller
            // still waits: the messages are due at `due_at`, or at once.
            move |outcome: Result<u64, StoreError>| {
                let next = if outcome.is_ok() {
                    DueNext::At(due_at)
                } else {
                    DueNext::Unknown
                };
                {
                    let mut leases = lock(&leases);
                    for (id, token) in ended {
                        leases.end(id, token, next.clone());
                    }
                }
                let _ = tx.send(outcome);
            },
        );
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        let leases = Arc::clone(&self.leases);
        self.read(move |conn| earliest_due(conn, &leases)).await
    }

    async fn due_by_destination(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let leases = Arc::clone(&self.leases);
        self.read(move |conn| due_by_destination(conn, &leases))
            .await
    }

    async fn due_after(
        &self,
        destinations: Vec<String>,
        now: i64,
    ) -> Result<Vec<(String, Option<i64>)>, StoreError> {
        // On the claimer's connection, in line with the claims it follows.
        read_on(&self.claimer, move |conn| {
            due_after(conn, &destinations, now)
        })
        .await
    }

    async fn get(&self, id: String) -> Result<Option<(Message, Vec<AttemptRecord>)>, StoreError> {
        let leases = Arc::clone(&self.leases);
        self.read(move |conn| {
            let Some(mut m) = conn
                .prepare_cached(&format!("SELECT {COLUMNS} FROM messages WHERE id = ?1"))
                .map_err(db)?
                .query_row([&id], message_from_row)
                .optional()
                .map_err(db)?
            else {
                return Ok(None);
            };
            let mut stmt = conn
                .prepare_cached(
                    "SELECT n, cycle, attempt, started_at, latency_ms, status, transport, class, decision, reason, \
                     delay_ms, response_excerpt, detail, link_identities, revision FROM attempts WHERE message_id = ?1 ORDER BY n",
                )
                .map_err(db)?;
            let attempts = stmt
                .query_map([&id], attempt_from_row)
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            lock(&leases).show(&mut m);
            Ok(Some((m, attempts)))
        })
        .await
    }

    async fn list(
        &self,
        filter: Filter,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let leases = Arc::clone(&self.leases);
        self.read(move |conn| {
            // One snapshot for the page, which may take a query per
            // destination.
            let snapshot = conn.unchecked_transaction().map_err(db)?;
            let order = ListOrder::of(&filter);
            let mut keyed: Vec<(i64, Message)> = match order.by_time() {
                None => in_id_order(
                    &snapshot,
                    COLUMNS,
                    &filter,
                    cursor.as_ref().map(Cursor::id),
                    limit.saturating_add(1),
                    message_from_row,
                    |m| &m.id,
                )?
                .into_iter()
                .map(|m| (0, m))
                .collect(),
                Some(key) => in_time_order(
                    &snapshot,
                    key,
                    &filter,
                    cursor.as_ref(),
                    limit.saturating_add(1),
                )?,
            };
            // The cursor from the stored key, before a lease shows its end
            // as the due time.
            let next = if keyed.len() > limit {
                keyed.truncate(limit);
                keyed
                    .last()
                    .map(|(at, m)| Cursor::after(order, *at, m.id.clone()))
            } else {
                None
            };
            let mut messages: Vec<Message> = keyed.into_iter().map(|(_, m)| m).collect();
            {
                let leases = lock(&leases);
                for m in &mut messages {
                    leases.show(m);
                }
            }
            Ok(Page { messages, next })
        })
        .await
    }

    async fn purge(&self, before: i64) -> Result<u64, StoreError> {
        // Delivered messages one destination at a time (their index is by
        // destination, then delivery time), then the discarded ones (few:
        // each was discarded by a person). In slices, so the writer is never
        // held long.
        let delivered = self
            .read(|conn| destinations_holding(conn, MessageState::Delivered))
            .await?;
        let mut total = 0;
        for slice in delivered.into_iter().map(Some).chain(std::iter::once(None)) {
            loop {
                let n = self.purge_slice(before, slice.clone()).await?;
                total += n;
                if n == 0 {
                    break;
                }
            }
        }
        Ok(total)
    }

    async fn stats(&self, _now: i64) -> Result<Stats, StoreError> {
        let leases = Arc::clone(&self.leases);
        // The counts from memory (see `counts`); only the oldest due time
        // reads the database, a probe per destination.
        let by_destination_state = lock(&self.counts).snapshot();
        let oldest_due_at = self.read(move |conn| earliest_due(conn, &leases)).await?;
        Ok(Stats {
            by_destination_state,
            oldest_due_at,
        })
    }

    async fn report(&self, since: i64) -> Result<Vec<ReportRow>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(REPORT).map_err(db)?;
            let rows = stmt
                .query_map([since], |r| {
                    Ok(ReportRow {
                        destination: r.get(0)?,
                        class: r.get(1)?,
                        attempts: r.get::<_, i64>(2)?.max(0) as u64,
                        messages: r.get::<_, i64>(3)?.max(0) as u64,
                        parked: r.get::<_, i64>(4)?.max(0) as u64,
                    })
                })
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            Ok(rows)
        })
        .await
    }

    async fn attempt_counts(
        &self,
        since: i64,
        bucket_ms: i64,
    ) -> Result<Vec<(i64, String, u64)>, StoreError> {
        // From the counts by minute, not the attempts (see `minutes`).
        self.read(move |conn| minutes::per_bucket(conn, since, bucket_ms).map_err(db))
            .await
    }
}
