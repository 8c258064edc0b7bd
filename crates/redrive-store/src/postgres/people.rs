//! A person's changes on PostgreSQL: revisions, resolutions, pauses, and
//! the audit record each writes in its own transaction (see
//! `crate::people`). A change to a message locks its row (`FOR UPDATE`), so
//! an edit cannot race a redrive from another node.

use deadpool_postgres::Transaction;
use serde_json::json;

use super::{db, filter_sql, in_id_order, redrive_ids, refs, Param, PostgresStore};
use crate::people::{
    filter_json, page, AuditFilter, AuditPage, AuditRecord, Changed, Edit, Outcome, Pause, People,
    Resolution, Revision,
};
use crate::{Filter, MessageState, StoreError};

async fn audit(
    tx: &Transaction<'_>,
    at: i64,
    actor: &str,
    action: &str,
    target: &str,
    detail: &serde_json::Value,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO audit (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
        &[&at, &actor, &action, &target, &detail.to_string()],
    )
    .await
    .map_err(db)?;
    Ok(())
}

/// Tells every node, on commit, that the pauses changed: a payload that
/// names no destination makes each read the store again (pauses first), so
/// a pause holds on every node at once, not at its next periodic resync.
async fn announce(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.execute(super::notify::NOTIFY, &[&super::notify::CHANNEL, &"pauses"])
        .await
        .map_err(db)?;
    Ok(())
}

/// Locks message `id` and says why it cannot change unless it is parked.
async fn unless_parked<T>(
    tx: &Transaction<'_>,
    id: &str,
) -> Result<Option<Changed<T>>, StoreError> {
    let row = tx
        .query_opt(
            "SELECT state FROM messages WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await
        .map_err(db)?;
    Ok(match row.map(|r| r.get::<_, String>(0)) {
        None => Some(Changed::NotFound),
        Some(s) => match MessageState::parse(&s) {
            Some(MessageState::Parked) => None,
            Some(other) => Some(Changed::NotParked(other)),
            None => Some(Changed::NotFound),
        },
    })
}

impl People for PostgresStore {
    async fn redrive(
        &self,
        ids: Vec<String>,
        actor: String,
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let done = redrive_ids(&tx, &ids, now).await?;
        for id in &done {
            audit(&tx, now, &actor, "redrive", id, &json!({})).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(done)
    }

    async fn redrive_matching(
        &self,
        filter: Filter,
        actor: String,
        now: i64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let parked = Filter {
            state: Some(MessageState::Parked),
            ..filter.clone()
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let mut params: Vec<Param> = Vec::new();
        let mut sql = "SELECT id FROM messages WHERE TRUE".to_owned();
        sql.push_str(&filter_sql(&parked, &mut params));
        params.push(Box::new(i64::try_from(limit).unwrap_or(i64::MAX)));
        let sql = in_id_order(&sql, &parked, params.len(), " FOR UPDATE SKIP LOCKED");
        let ids: Vec<String> = tx
            .query(&sql, &refs(&params))
            .await
            .map_err(db)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let done = redrive_ids(&tx, &ids, now).await?;
        if !done.is_empty() {
            let detail = json!({
                "filter": filter_json(&filter),
                "count": done.len(),
            });
            audit(&tx, now, &actor, "bulk_redrive", "messages", &detail).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(done)
    }

    async fn discard(
        &self,
        ids: Vec<String>,
        actor: String,
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let rows = tx
            .query(
                "UPDATE messages SET state = 'discarded', next_attempt_at = NULL, lease = NULL, updated_at = $2 \
                 WHERE id = ANY($1) AND state = 'parked' RETURNING id",
                &[&ids, &now],
            )
            .await
            .map_err(db)?;
        let mut done: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        done.sort_by_key(|id| ids.iter().position(|x| x == id));
        for id in &done {
            audit(&tx, now, &actor, "discard", id, &json!({})).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(done)
    }

    async fn edit(
        &self,
        id: String,
        edit: Edit,
        actor: String,
        now: i64,
    ) -> Result<Changed<u32>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        if let Some(refused) = unless_parked(&tx, &id).await? {
            return Ok(refused);
        }
        tx.execute(
            "INSERT INTO revisions (message_id, n, created_at, actor, note, method, path, headers, body) \
             SELECT id, 1, created_at, NULL, NULL, method, path, headers, body FROM messages \
             WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM revisions WHERE message_id = $1)",
            &[&id],
        )
        .await
        .map_err(db)?;
        let headers = serde_json::to_string(&edit.headers)
            .map_err(|e| StoreError::Database(e.to_string()))?;
        let next: i32 = tx
            .query_one(
                "UPDATE messages SET method = $2, path = $3, headers = $4, body = $5, revision = revision + 1, \
                 updated_at = $6 WHERE id = $1 RETURNING revision",
                &[&id, &edit.method, &edit.path, &headers, &edit.body, &now],
            )
            .await
            .map_err(db)?
            .get(0);
        tx.execute(
            "INSERT INTO revisions (message_id, n, created_at, actor, note, method, path, headers, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[&id, &next, &now, &actor, &edit.note, &edit.method, &edit.path, &headers, &edit.body],
        )
        .await
        .map_err(db)?;
        audit(
            &tx,
            now,
            &actor,
            "edit",
            &id,
            &json!({ "revision": next, "note": edit.note }),
        )
        .await?;
        tx.commit().await.map_err(db)?;
        Ok(Changed::Done(u32::try_from(next).unwrap_or(0)))
    }

    async fn revisions(&self, id: String) -> Result<Vec<Revision>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT n, created_at, actor, note, method, path, headers, body FROM revisions \
                 WHERE message_id = $1 \
                 UNION ALL SELECT 1, created_at, NULL, NULL, method, path, headers, body FROM messages \
                 WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM revisions WHERE message_id = $1) ORDER BY 1",
                &[&id],
            )
            .await
            .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| {
                let headers: String = r.get(6);
                Revision {
                    n: u32::try_from(r.get::<_, i32>(0)).unwrap_or(0),
                    created_at: r.get(1),
                    actor: r.get(2),
                    note: r.get(3),
                    method: r.get(4),
                    path: r.get(5),
                    headers: serde_json::from_str(&headers).unwrap_or_default(),
                    body: r.get(7),
                }
            })
            .collect())
    }

    async fn resolve(&self, id: String, resolution: Resolution) -> Result<Changed<()>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        if let Some(refused) = unless_parked(&tx, &id).await? {
            return Ok(refused);
        }
        let at = resolution.at;
        let kept =
            serde_json::to_string(&resolution).map_err(|e| StoreError::Database(e.to_string()))?;
        match resolution.outcome {
            Outcome::Applied => {
                tx.execute(
                    "UPDATE messages SET state = 'delivered', park_reason = NULL, next_attempt_at = NULL, \
                     lease = NULL, resolution = $2, updated_at = $3 WHERE id = $1",
                    &[&id, &kept, &at],
                )
                .await
                .map_err(db)?;
            }
            Outcome::NotApplied => {
                redrive_ids(&tx, std::slice::from_ref(&id), at).await?;
                tx.execute(
                    "UPDATE messages SET resolution = $2 WHERE id = $1",
                    &[&id, &kept],
                )
                .await
                .map_err(db)?;
            }
        }
        audit(
            &tx,
            at,
            &resolution.actor,
            "resolve",
            &id,
            &json!({ "outcome": resolution.outcome.as_str(), "note": resolution.note }),
        )
        .await?;
        tx.commit().await.map_err(db)?;
        Ok(Changed::Done(()))
    }

    async fn pause(&self, pause: Pause) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let added = tx
            .execute(
                "INSERT INTO pauses (destination, paused_by, paused_at, note) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (destination) DO NOTHING",
                &[&pause.destination, &pause.paused_by, &pause.paused_at, &pause.note],
            )
            .await
            .map_err(db)?
            == 1;
        if added {
            announce(&tx).await?;
            let detail = json!({ "note": pause.note });
            audit(
                &tx,
                pause.paused_at,
                &pause.paused_by,
                "pause",
                &pause.destination,
                &detail,
            )
            .await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(added)
    }

    async fn resume(
        &self,
        destination: String,
        actor: String,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let removed = tx
            .execute("DELETE FROM pauses WHERE destination = $1", &[&destination])
            .await
            .map_err(db)?
            == 1;
        if removed {
            announce(&tx).await?;
            audit(&tx, now, &actor, "resume", &destination, &json!({})).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(removed)
    }

    async fn pauses(&self) -> Result<Vec<Pause>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT destination, paused_by, paused_at, note FROM pauses ORDER BY destination",
                &[],
            )
            .await
            .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| Pause {
                destination: r.get(0),
                paused_by: r.get(1),
                paused_at: r.get(2),
                note: r.get(3),
            })
            .collect())
    }

    async fn audit(
        &self,
        filter: AuditFilter,
        before: Option<i64>,
        limit: usize,
    ) -> Result<AuditPage, StoreError> {
        let client = self.client().await?;
        let wanted = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let rows = client
            .query(
                "SELECT seq, at, actor, action, target, detail FROM audit \
                 WHERE ($1::text IS NULL OR actor = $1) AND ($2::text IS NULL OR action = $2) \
                 AND ($3::int8 IS NULL OR at >= $3) AND ($4::int8 IS NULL OR seq < $4) \
                 ORDER BY seq DESC LIMIT $5",
                &[
                    &filter.actor,
                    &filter.action,
                    &filter.since,
                    &before,
                    &wanted,
                ],
            )
            .await
            .map_err(db)?;
        let records = rows
            .iter()
            .map(|r| AuditRecord {
                seq: r.get(0),
                at: r.get(1),
                actor: r.get(2),
                action: r.get(3),
                target: r.get(4),
                detail: r.get(5),
            })
            .collect();
        Ok(page(records, limit))
    }
}
