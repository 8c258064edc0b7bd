//! The PostgreSQL store: several `redrive serve` nodes sharing one queue.
//!
//! - Claims are one statement with `FOR UPDATE SKIP LOCKED`, committed before
//!   any delivery starts (no transaction is ever held across an HTTP call);
//!   nodes never wait on each other's rows.
//! - Every record is fenced by the lease token: a node whose lease expired
//!   cannot overwrite the newer attempt of another.
//! - Enqueue dedupe is a unique index on the idempotency key (no read-then-write
//!   race between nodes); concurrent enqueues share one transaction and one
//!   statement (`enqueue`: group commit), and so do concurrent records
//!   (`record`).
//! - `NOTIFY redrive_due` after enqueues, redrives and releases names the
//!   destinations and when their messages are due (`wakeups`): every node
//!   `LISTEN`s and claims from those, instead of polling every destination.
//! - Migrations and the retention purge take advisory locks, so nodes that
//!   start together migrate once and only one node purges at a time.

mod enqueue;
mod listing;
mod migrations;
mod notify;
mod people;
mod record;
mod rows;

use listing::{
    destinations_in, filter_sql, in_id_order, in_time_order, refs, stats_by_state, Param, LIST_KEY,
};
use migrations::migrate;
use notify::{due_payload, listen, CHANNEL, NOTIFY};
use rows::{attempt, message, COLUMNS, COLUMN_COUNT};

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use crate::listing::{Cursor, ListOrder};
use crate::model::{
    AttemptRecord, Claimed, Enqueued, Filter, Message, MessageState, NewMessage, NextState, Page,
    ReportRow, Stats,
};
use crate::wakeups::{self, Wakeups};
use crate::{Store, StoreError};

/// The advisory lock key for the retention purge.
const PURGE_LOCK: i64 = 0x7265_6472_6976_6502;

/// Each destination with pending messages, in name order, found by a skip
/// scan of the due index: one probe per destination, not one per row.
const PENDING_DESTINATIONS: &str = "WITH RECURSIVE d(name) AS ( \
       SELECT MIN(destination) FROM messages WHERE state = 'pending' \
       UNION ALL \
       SELECT (SELECT MIN(destination) FROM messages WHERE state = 'pending' AND destination > d.name) \
       FROM d WHERE d.name IS NOT NULL)";

/// The earliest due time of a pending message (see [`EARLIEST_DUE`]).
async fn earliest_due(client: &tokio_postgres::Client) -> Result<Option<i64>, StoreError> {
    client
        .query_one(&format!("{PENDING_DESTINATIONS} {EARLIEST_DUE}"), &[])
        .await
        .map_err(db)?
        .try_get(0)
        .map_err(db)
}

/// The earliest due time of a pending message: the smallest of each
/// destination's first entry in the due index.
const EARLIEST_DUE: &str = "SELECT MIN((SELECT MIN(next_attempt_at) FROM messages \
     WHERE state = 'pending' AND destination = d.name)) FROM d WHERE d.name IS NOT NULL";

/// How to connect.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// Connections in the pool.
    pub pool_size: usize,
    /// `statement_timeout` of every connection.
    pub statement_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            pool_size: 16,
            statement_timeout: Duration::from_secs(30),
        }
    }
}

/// The PostgreSQL store. Cheap to clone.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    due: Wakeups,
    enqueuer: tokio::sync::mpsc::UnboundedSender<enqueue::EnqueueJob>,
    recorder: tokio::sync::mpsc::UnboundedSender<record::RecordJob>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PostgresStore")
    }
}

fn db(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(e.to_string())
}

/// TLS with the server's certificate verified against the Mozilla roots.
fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError::Config(format!("cannot set up TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user[:pass]@host[:port]/db[?sslmode=require]`),
    /// runs pending migrations under an advisory lock, and starts listening
    /// for wake-ups.
    pub async fn connect(
        url: &str,
        options: &PostgresOptions,
    ) -> Result<PostgresStore, StoreError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            StoreError::Config(format!(
                "`{}` is not a PostgreSQL URL: {e}",
                redact_url(url)
            ))
        })?;
        config.options(format!(
            "-c statement_timeout={}",
            options.statement_timeout.as_millis()
        ));
        config.application_name("redrive");
        config.connect_timeout(Duration::from_secs(10));
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        // `sslmode=require`: TLS, with the server's certificate verified against
        // the Mozilla roots. Otherwise (`disable`, or the default `prefer`): plain.
        let require_tls = config.get_ssl_mode() == tokio_postgres::config::SslMode::Require;
        let manager = if require_tls {
            Manager::from_config(config.clone(), tls()?, manager_config)
        } else {
            Manager::from_config(config.clone(), tokio_postgres::NoTls, manager_config)
        };
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .build()
            .map_err(|e| StoreError::Config(format!("cannot build the connection pool: {e}")))?;
        let client = pool.get().await.map_err(|e| {
            StoreError::Config(format!("cannot connect to {}: {e}", redact_url(url)))
        })?;
        migrate(&client).await?;
        drop(client);
        let (tx, due) = wakeups::channel();
        tokio::spawn(listen(config, require_tls, tx));
        let enqueuer = enqueue::start(pool.clone());
        let recorder = record::start(pool.clone());
        Ok(PostgresStore {
            pool,
            due,
            enqueuer,
            recorder,
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(db)
    }
}

/// `postgres://user:secret@host/db` without the secret, for error messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

async fn redrive_ids(
    tx: &deadpool_postgres::Transaction<'_>,
    ids: &[String],
    now: i64,
) -> Result<Vec<String>, StoreError> {
    let rows = tx
        .query(
            "UPDATE messages SET state = 'pending', park_reason = NULL, attempts = 0, cycle = cycle + 1, \
             cycle_started_at = $2, next_attempt_at = $2, lease = NULL, updated_at = $2 \
             WHERE id = ANY($1) AND state = 'parked' RETURNING id, destination",
            &[&ids, &now],
        )
        .await
        .map_err(db)?;
    let mut done: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    done.sort_by_key(|id| ids.iter().position(|x| x == id));
    if let Some(payload) = due_payload(rows.iter().map(|r| (r.get::<_, &str>(1), now))) {
        tx.execute(NOTIFY, &[&CHANNEL, &payload])
            .await
            .map_err(db)?;
    }
    Ok(done)
}

impl Store for PostgresStore {
    async fn enqueue(&self, batch: Vec<NewMessage>) -> Result<Vec<Enqueued>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // Group commit with the other enqueues waiting (see `enqueue`).
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.enqueuer
            .send((batch, tx))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn claim(
        &self,
        now: i64,
        want: Vec<(String, usize)>,
        lease: String,
        lease_until: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        let (destinations, limits): (Vec<String>, Vec<i64>) = want
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(d, n)| (d, i64::try_from(n).unwrap_or(i64::MAX)))
            .unzip();
        if destinations.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        // One statement, committed before any delivery: per destination, its
        // due rows oldest first that no other node holds; their due time
        // becomes the lease's end.
        let rows = client
            .query(
                &format!(
                    "WITH due AS (SELECT d.id, d.was_due \
                       FROM unnest($2::text[], $3::int8[]) AS w(destination, n) \
                       CROSS JOIN LATERAL (SELECT id, next_attempt_at AS was_due FROM messages \
                         WHERE state = 'pending' AND destination = w.destination AND next_attempt_at <= $1 \
                         ORDER BY next_attempt_at, id LIMIT w.n FOR UPDATE SKIP LOCKED) d) \
                     UPDATE messages m SET lease = $4, next_attempt_at = $5 FROM due WHERE m.id = due.id \
                     RETURNING {}, due.was_due",
                    COLUMNS
                        .split(", ")
                        .map(|c| if c.starts_with("lease") { "m.lease IS NOT NULL".to_owned() } else { format!("m.{c}") })
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                &[&now, &destinations, &limits, &lease, &lease_until],
            )
            .await
            .map_err(db)?;
        let mut claimed: Vec<(i64, Claimed)> = rows
            .iter()
            .map(|r| {
                (
                    r.get::<_, i64>(COLUMN_COUNT),
                    Claimed {
                        message: message(r),
                        lease: lease.clone(),
                        due_at: r.get::<_, i64>(COLUMN_COUNT),
                    },
                )
            })
            .collect();
        claimed.sort_by(|a, b| (a.0, &a.1.message.id).cmp(&(b.0, &b.1.message.id)));
        Ok(claimed.into_iter().map(|(_, c)| c).collect())
    }

    async fn pending_destinations(&self) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("{PENDING_DESTINATIONS} SELECT name FROM d WHERE name IS NOT NULL"),
                &[],
            )
            .await
            .map_err(db)?;
        rows.iter().map(|r| r.try_get(0).map_err(db)).collect()
    }

    async fn record(
        &self,
        id: String,
        lease: String,
        attempt: AttemptRecord,
        next: NextState,
        now: i64,
    ) -> Result<bool, StoreError> {
        // Group commit with the other records waiting (see `record`).
        let (tx, rx) = tokio::sync::oneshot::channel();
        let r = record::Record {
            id,
            lease,
            attempt,
            next,
            now,
        };
        self.recorder
            .send((r, tx))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn release(&self, leases: Vec<(String, String)>, due_at: i64) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let (ids, tokens): (Vec<String>, Vec<String>) = leases.into_iter().unzip();
        let rows = client
            .query(
                "UPDATE messages m SET lease = NULL, next_attempt_at = $3 \
                 FROM unnest($1::text[], $2::text[]) AS l(id, lease) \
                 WHERE m.id = l.id AND m.lease = l.lease AND m.state = 'pending' \
                 RETURNING m.destination",
                &[&ids, &tokens, &due_at],
            )
            .await
            .map_err(db)?;
        if let Some(payload) = due_payload(rows.iter().map(|r| (r.get::<_, &str>(0), due_at))) {
            client
                .execute(NOTIFY, &[&CHANNEL, &payload])
                .await
                .map_err(db)?;
        }
        Ok(rows.len() as u64)
    }

    async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        let client = self.client().await?;
        earliest_due(&client).await
    }

    async fn due_by_destination(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "{PENDING_DESTINATIONS} SELECT name, (SELECT MIN(next_attempt_at) FROM messages \
                     WHERE state = 'pending' AND destination = d.name) FROM d WHERE d.name IS NOT NULL"
                ),
                &[],
            )
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| Ok((r.try_get(0).map_err(db)?, r.try_get(1).map_err(db)?)))
            .collect()
    }

    async fn due_after(
        &self,
        destinations: Vec<String>,
        now: i64,
    ) -> Result<Vec<(String, Option<i64>)>, StoreError> {
        let client = self.client().await?;
        // A row another claim leased is due at its lease's end, which is
        // its `next_attempt_at`.
        let rows = client
            .query(
                "SELECT w.d, (SELECT MIN(next_attempt_at) FROM messages \
                 WHERE state = 'pending' AND destination = w.d AND next_attempt_at > $2) \
                 FROM unnest($1::text[]) WITH ORDINALITY AS w(d, i) ORDER BY w.i",
                &[&destinations, &now],
            )
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| Ok((r.try_get(0).map_err(db)?, r.try_get(1).map_err(db)?)))
            .collect()
    }

    async fn get(&self, id: String) -> Result<Option<(Message, Vec<AttemptRecord>)>, StoreError> {
        let client = self.client().await?;
        let Some(row) = client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM messages WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(db)?
        else {
            return Ok(None);
        };
        let attempts = client
            .query(
                "SELECT n, cycle, attempt, started_at, latency_ms, status, transport, class, decision, reason, \
                 delay_ms, response_excerpt, detail, link_identities, revision FROM attempts WHERE message_id = $1 ORDER BY n",
                &[&id],
            )
            .await
            .map_err(db)?;
        Ok(Some((
            message(&row),
            attempts.iter().map(attempt).collect(),
        )))
    }

    async fn list(
        &self,
        filter: Filter,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let client = self.client().await?;
        let mut params: Vec<Param> = Vec::new();
        // One more than the page, to know whether another follows.
        let wanted = limit.saturating_add(1);
        let order = ListOrder::of(&filter);
        let sql = match order.by_time() {
            None => {
                let mut sql = format!("SELECT {COLUMNS}, 0::BIGINT FROM messages WHERE TRUE");
                sql.push_str(&filter_sql(&filter, &mut params));
                if let Some(c) = &cursor {
                    params.push(Box::new(c.id().to_owned()));
                    sql.push_str(&format!(" AND id > ${}", params.len()));
                }
                params.push(Box::new(i64::try_from(wanted).unwrap_or(i64::MAX)));
                in_id_order(&sql, &filter, params.len(), "")
            }
            Some(key) => in_time_order(key, &filter, cursor.as_ref(), wanted, &mut params),
        };
        let rows = client.query(&sql, &refs(&params)).await.map_err(db)?;
        let mut keyed: Vec<(Option<i64>, Message)> =
            rows.iter().map(|r| (r.get(LIST_KEY), message(r))).collect();
        let next = if keyed.len() > limit {
            keyed.truncate(limit);
            keyed
                .last()
                .map(|(at, m)| Cursor::after(order, at.unwrap_or(i64::MIN), m.id.clone()))
        } else {
            None
        };
        let messages = keyed.into_iter().map(|(_, m)| m).collect();
        Ok(Page { messages, next })
    }

    async fn purge(&self, before: i64) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(db)?;
            // Only one node purges at a time; the others skip this round.
            let mine: bool = tx
                .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&PURGE_LOCK])
                .await
                .map_err(db)?
                .get(0);
            if !mine {
                return Ok(total);
            }
            // Delivered messages by their index, one range per destination
            // (destination, delivery time): with the destinations only in a
            // semi-join the planner chose a scan of the table even where few
            // were left to purge (EXPLAIN at 2,000,000 rows). Then the
            // discarded ones, few.
            let n = tx
                .execute(
                    &format!(
                        "{} DELETE FROM messages WHERE id IN (SELECT m.id FROM d CROSS JOIN LATERAL \
                         (SELECT id FROM messages WHERE state = 'delivered' AND destination = d.name \
                          AND updated_at < $1 LIMIT 5000) m WHERE d.name IS NOT NULL LIMIT 5000)",
                        destinations_in(MessageState::Delivered)
                    ),
                    &[&before],
                )
                .await
                .map_err(db)?;
            let n = if n > 0 {
                n
            } else {
                tx.execute(
                    "DELETE FROM messages WHERE id IN (SELECT id FROM messages \
                     WHERE state = 'discarded' AND updated_at < $1 LIMIT 5000)",
                    &[&before],
                )
                .await
                .map_err(db)?
            };
            tx.commit().await.map_err(db)?;
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    async fn stats(&self, _now: i64) -> Result<Stats, StoreError> {
        let client = self.client().await?;
        let rows = client
            // A count per state, each naming its state, so that the planner
            // counts pending, parked and discarded messages from their
            // partial indexes alone (EXPLAIN ANALYZE at 2,000,000 rows: 346 to
            // 455 ms, against 598 to 692 ms for one GROUP BY over the table).
            .query(&stats_by_state(), &[])
            .await
            .map_err(db)?;
        let by_destination_state = rows
            .iter()
            .filter_map(|r| {
                let state: String = r.get(1);
                MessageState::parse(&state)
                    .map(|s| (r.get::<_, String>(0), s, r.get::<_, i64>(2).max(0) as u64))
            })
            .collect();
        let oldest_due_at = earliest_due(&client).await?;
        Ok(Stats {
            by_destination_state,
            oldest_due_at,
        })
    }

    async fn report(&self, since: i64) -> Result<Vec<ReportRow>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT m.destination, a.class, COUNT(*), COUNT(DISTINCT a.message_id), \
                 COUNT(DISTINCT CASE WHEN m.state = 'parked' THEN m.id END) \
                 FROM attempts a JOIN messages m ON m.id = a.message_id \
                 WHERE a.started_at >= $1 AND a.class <> 'success' \
                 GROUP BY m.destination, a.class ORDER BY m.destination, COUNT(*) DESC, a.class",
                &[&since],
            )
            .await
            .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| ReportRow {
                destination: r.get(0),
                class: r.get(1),
                attempts: r.get::<_, i64>(2).max(0) as u64,
                messages: r.get::<_, i64>(3).max(0) as u64,
                parked: r.get::<_, i64>(4).max(0) as u64,
            })
            .collect())
    }

    async fn attempt_counts(
        &self,
        since: i64,
        bucket_ms: i64,
    ) -> Result<Vec<(i64, String, u64)>, StoreError> {
        let client = self.client().await?;
        // Whole minutes, as SQLite counts them (see `chart`).
        let bucket = crate::chart::whole_minutes(bucket_ms);
        let since = crate::chart::minute_of(since);
        let rows = client
            .query(
                "SELECT started_at - ((started_at % $2) + $2) % $2 AS b, class, COUNT(*) \
                 FROM attempts WHERE started_at >= $1 GROUP BY b, class ORDER BY b, class",
                &[&since, &bucket],
            )
            .await
            .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get::<_, i64>(0),
                    r.get::<_, String>(1),
                    r.get::<_, i64>(2).max(0) as u64,
                )
            })
            .collect())
    }

    fn wakeups(&self) -> Option<Wakeups> {
        Some(self.due.clone())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(
            super::redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }
}
