//! A person's changes on SQLite: revisions, resolutions, pauses, and the
//! audit record each writes in its own transaction (see `crate::people`).
//! All are rare next to deliveries, so they favour plain statements over
//! the writer's held ones.

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::json;

use super::counts::Delta;
use super::{db, destination_of, redrive_ids, Durability, SqliteStore};
use crate::people::{
    filter_json, page, AuditFilter, AuditPage, AuditRecord, Changed, Edit, Outcome, Pause, People,
    Resolution, Revision,
};
use crate::{Filter, MessageState, StoreError};

/// Writes one audit record.
pub(super) fn audit(
    conn: &Connection,
    at: i64,
    actor: &str,
    action: &str,
    target: &str,
    detail: &serde_json::Value,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO audit (at, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .map_err(db)?
    .execute(params![at, actor, action, target, detail.to_string()])
    .map_err(db)?;
    Ok(())
}

/// The state of message `id`, if there is one.
fn state_of(conn: &Connection, id: &str) -> Result<Option<MessageState>, StoreError> {
    let state: Option<String> = conn
        .prepare_cached("SELECT state FROM messages WHERE id = ?1")
        .map_err(db)?
        .query_row([id], |r| r.get(0))
        .optional()
        .map_err(db)?;
    Ok(state.as_deref().and_then(MessageState::parse))
}

/// `Changed::NotFound` or `Changed::NotParked` for a message that is not
/// parked, `None` for one that is.
fn unless_parked<T>(conn: &Connection, id: &str) -> Result<Option<Changed<T>>, StoreError> {
    Ok(match state_of(conn, id)? {
        None => Some(Changed::NotFound),
        Some(MessageState::Parked) => None,
        Some(other) => Some(Changed::NotParked(other)),
    })
}

impl People for SqliteStore {
    async fn redrive(
        &self,
        ids: Vec<String>,
        actor: String,
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        self.write_counted(Durability::Fsync, move |conn, delta| {
            let done = redrive_ids(conn, delta, &ids, now)?;
            for id in &done {
                audit(conn, now, &actor, "redrive", id, &json!({}))?;
            }
            Ok(done)
        })
        .await
    }

    async fn redrive_matching(
        &self,
        filter: Filter,
        actor: String,
        now: i64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.write_counted(Durability::Fsync, move |conn, delta| {
            let parked = Filter {
                state: Some(MessageState::Parked),
                ..filter.clone()
            };
            let ids = super::in_id_order(
                conn,
                "id",
                &parked,
                None,
                limit,
                |r| r.get::<_, String>(0),
                |id| id,
            )?;
            let done = redrive_ids(conn, delta, &ids, now)?;
            if !done.is_empty() {
                audit(
                    conn,
                    now,
                    &actor,
                    "bulk_redrive",
                    "messages",
                    &json!({ "filter": filter_json(&filter), "count": done.len() }),
                )?;
            }
            Ok(done)
        })
        .await
    }

    async fn discard(
        &self,
        ids: Vec<String>,
        actor: String,
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        self.write_counted(Durability::Fsync, move |conn, delta| {
            let mut stmt = conn
                .prepare_cached(
                    "UPDATE messages SET state = 'discarded', next_attempt_at = NULL, lease = NULL, updated_at = ?2 \
                     WHERE id = ?1 AND state = 'parked'",
                )
                .map_err(db)?;
            let mut done = Vec::new();
            for id in ids {
                if stmt.execute(params![id, now]).map_err(db)? == 1 {
                    let destination = destination_of(conn, &id)?;
                    delta.moved(&destination, MessageState::Parked, MessageState::Discarded);
                    audit(conn, now, &actor, "discard", &id, &json!({}))?;
                    done.push(id);
                }
            }
            Ok(done)
        })
        .await
    }

    async fn edit(
        &self,
        id: String,
        edit: Edit,
        actor: String,
        now: i64,
    ) -> Result<Changed<u32>, StoreError> {
        self.write_counted(Durability::Fsync, move |conn, _delta| {
            if let Some(refused) = unless_parked(conn, &id)? {
                return Ok(refused);
            }
            let revision: u32 = conn
                .query_row("SELECT revision FROM messages WHERE id = ?1", [&id], |r| {
                    r.get(0)
                })
                .map_err(db)?;
            // Revision 1 is the request as enqueued: kept the first time it
            // is replaced.
            conn.execute(
                "INSERT INTO revisions (message_id, n, created_at, actor, note, method, path, headers, body) \
                 SELECT id, 1, created_at, NULL, NULL, method, path, headers, body FROM messages \
                 WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM revisions WHERE message_id = ?1)",
                [&id],
            )
            .map_err(db)?;
            let next = revision + 1;
            let headers = serde_json::to_string(&edit.headers).map_err(|e| StoreError::Database(e.to_string()))?;
            conn.execute(
                "INSERT INTO revisions (message_id, n, created_at, actor, note, method, path, headers, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![id, next, now, actor, edit.note, edit.method, edit.path, headers, edit.body],
            )
            .map_err(db)?;
            conn.execute(
                "UPDATE messages SET method = ?2, path = ?3, headers = ?4, body = ?5, revision = ?6, updated_at = ?7 \
                 WHERE id = ?1",
                params![id, edit.method, edit.path, headers, edit.body, next, now],
            )
            .map_err(db)?;
            audit(
                conn,
                now,
                &actor,
                "edit",
                &id,
                &json!({ "revision": next, "note": edit.note }),
            )?;
            Ok(Changed::Done(next))
        })
        .await
    }

    async fn revisions(&self, id: String) -> Result<Vec<Revision>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT n, created_at, actor, note, method, path, headers, body FROM revisions \
                     WHERE message_id = ?1 ORDER BY n",
                )
                .map_err(db)?;
            let kept = stmt
                .query_map([&id], |r| {
                    let headers: String = r.get(6)?;
                    Ok(Revision {
                        n: r.get(0)?,
                        created_at: r.get(1)?,
                        actor: r.get(2)?,
                        note: r.get(3)?,
                        method: r.get(4)?,
                        path: r.get(5)?,
                        headers: serde_json::from_str(&headers).unwrap_or_default(),
                        body: r.get(7)?,
                    })
                })
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            if !kept.is_empty() {
                return Ok(kept);
            }
            // Never edited: the request as enqueued is revision 1.
            conn.prepare_cached(
                "SELECT created_at, method, path, headers, body FROM messages WHERE id = ?1",
            )
            .map_err(db)?
            .query_row([&id], |r| {
                let headers: String = r.get(3)?;
                Ok(Revision {
                    n: 1,
                    created_at: r.get(0)?,
                    actor: None,
                    note: None,
                    method: r.get(1)?,
                    path: r.get(2)?,
                    headers: serde_json::from_str(&headers).unwrap_or_default(),
                    body: r.get(4)?,
                })
            })
            .optional()
            .map_err(db)
            .map(|r| r.into_iter().collect())
        })
        .await
    }

    async fn resolve(&self, id: String, resolution: Resolution) -> Result<Changed<()>, StoreError> {
        self.write_counted(Durability::Fsync, move |conn, delta| {
            if let Some(refused) = unless_parked(conn, &id)? {
                return Ok(refused);
            }
            let at = resolution.at;
            let kept = serde_json::to_string(&resolution)
                .map_err(|e| StoreError::Database(e.to_string()))?;
            match resolution.outcome {
                Outcome::Applied => {
                    conn.execute(
                        "UPDATE messages SET state = 'delivered', park_reason = NULL, next_attempt_at = NULL, \
                         lease = NULL, resolution = ?2, updated_at = ?3 WHERE id = ?1 AND state = 'parked'",
                        params![id, kept, at],
                    )
                    .map_err(db)?;
                    let destination = destination_of(conn, &id)?;
                    delta.moved(&destination, MessageState::Parked, MessageState::Delivered);
                }
                Outcome::NotApplied => {
                    redrive_ids(conn, delta, std::slice::from_ref(&id), at)?;
                    conn.execute(
                        "UPDATE messages SET resolution = ?2 WHERE id = ?1",
                        params![id, kept],
                    )
                    .map_err(db)?;
                }
            }
            audit(
                conn,
                at,
                &resolution.actor,
                "resolve",
                &id,
                &json!({ "outcome": resolution.outcome.as_str(), "note": resolution.note }),
            )?;
            Ok(Changed::Done(()))
        })
        .await
    }

    async fn pause(&self, pause: Pause) -> Result<bool, StoreError> {
        self.write_counted(Durability::Fsync, move |conn, _delta: &mut Delta| {
            let added = conn
                .execute(
                    "INSERT INTO pauses (destination, paused_by, paused_at, note) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (destination) DO NOTHING",
                    params![pause.destination, pause.paused_by, pause.paused_at, pause.note],
                )
                .map_err(db)?
                == 1;
            if added {
                audit(
                    conn,
                    pause.paused_at,
                    &pause.paused_by,
                    "pause",
                    &pause.destination,
                    &json!({ "note": pause.note }),
                )?;
            }
            Ok(added)
        })
        .await
    }

    async fn resume(
        &self,
        destination: String,
        actor: String,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.write_counted(Durability::Fsync, move |conn, _delta| {
            let removed = conn
                .execute("DELETE FROM pauses WHERE destination = ?1", [&destination])
                .map_err(db)?
                == 1;
            if removed {
                audit(conn, now, &actor, "resume", &destination, &json!({}))?;
            }
            Ok(removed)
        })
        .await
    }

    async fn pauses(&self) -> Result<Vec<Pause>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT destination, paused_by, paused_at, note FROM pauses ORDER BY destination",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(Pause {
                        destination: r.get(0)?,
                        paused_by: r.get(1)?,
                        paused_at: r.get(2)?,
                        note: r.get(3)?,
                    })
                })
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db);
            rows
        })
        .await
    }

    async fn audit(
        &self,
        filter: AuditFilter,
        before: Option<i64>,
        limit: usize,
    ) -> Result<AuditPage, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, at, actor, action, target, detail FROM audit \
                     WHERE (?1 IS NULL OR actor = ?1) AND (?2 IS NULL OR action = ?2) \
                     AND (?3 IS NULL OR at >= ?3) AND (?4 IS NULL OR seq < ?4) \
                     ORDER BY seq DESC LIMIT ?5",
                )
                .map_err(db)?;
            let records = stmt
                .query_map(
                    params![
                        filter.actor,
                        filter.action,
                        filter.since,
                        before,
                        (limit + 1) as i64
                    ],
                    |r| {
                        Ok(AuditRecord {
                            seq: r.get(0)?,
                            at: r.get(1)?,
                            actor: r.get(2)?,
                            action: r.get(3)?,
                            target: r.get(4)?,
                            detail: r.get(5)?,
                        })
                    },
                )
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            Ok(page(records, limit))
        })
        .await
    }
}
