//! The store's hot paths on SQLite: what one message costs the writer.
//!
//! ```sh
//! cargo bench -p redrive-store --bench store
//! ```
//!
//! Each iteration runs what the engine does for a batch of 64 messages: one
//! claim of 64, then 64 records at once (they share a group commit, as the
//! engine's concurrent attempts do). The records are retries due at once, so
//! the backlog stays the same size for the whole run: the figure is the cost
//! at that backlog, not while it drains. A second case enqueues 64 messages
//! at once, as concurrent API requests do. The database is a real file with
//! `synchronous = FULL`: every commit is an fsync, as in production.
//! A third case asks for the stats (counts by destination and state, the
//! oldest due time) at each backlog size.
//! `REDRIVE_BENCH_DIR=/dev/shm` puts it on tmpfs, where an fsync costs
//! nothing: what is left is the CPU cost. `REDRIVE_BENCH_BACKLOGS=100000`
//! runs one backlog size.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use redrive_store::conformance::sample_message;
use redrive_store::{AttemptRecord, NewMessage, NextState, SqliteStore, Store};

const BATCH: usize = 64;
const NOW: i64 = 1_767_225_600_000;

fn message(i: u64) -> NewMessage {
    sample_message(i, "sink", NOW)
}

fn attempt() -> AttemptRecord {
    AttemptRecord {
        started_at: NOW,
        latency_ms: 1,
        status: Some(503),
        class: "server".into(),
        decision: "retry".into(),
        reason: "schedule".into(),
        delay_ms: Some(0),
        response_excerpt: Some("busy".into()),
        detail: Some("rule 3: 5xx is temporary".into()),
        ..AttemptRecord::default()
    }
}

/// A store holding `backlog` pending messages due now.
async fn filled(backlog: u64) -> (SqliteStore, tempfile::TempDir) {
    let dir = match std::env::var_os("REDRIVE_BENCH_DIR") {
        Some(parent) => tempfile::tempdir_in(parent),
        None => tempfile::tempdir(),
    }
    .expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("bench.db")).expect("open");
    let mut i = 0;
    while i < backlog {
        let batch = (i..(i + 1000).min(backlog)).map(message).collect();
        store.enqueue(batch).await.expect("fill");
        i += 1000;
    }
    (store, dir)
}

/// One claim of `BATCH`, then `BATCH` concurrent records of a retry due now.
async fn claim_and_record(store: &SqliteStore, round: u64) {
    let lease = format!("L{round}");
    let claimed = store
        .claim(
            NOW,
            vec![("sink".into(), BATCH)],
            lease.clone(),
            NOW + 60_000,
        )
        .await
        .expect("claim");
    assert_eq!(claimed.len(), BATCH, "the backlog ran dry");
    let records: Vec<_> = claimed
        .into_iter()
        .map(|c| {
            let store = store.clone();
            let lease = lease.clone();
            tokio::spawn(async move {
                store
                    .record(
                        c.message.id,
                        lease,
                        attempt(),
                        NextState::Retry { at: NOW },
                        NOW,
                    )
                    .await
            })
        })
        .collect();
    for r in records {
        assert!(r.await.expect("join").expect("record"), "lease lost");
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("sqlite");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.measurement_time(Duration::from_secs(10));
    // `REDRIVE_BENCH_BACKLOGS=100000` runs one size (for a profile).
    let backlogs: Vec<u64> = std::env::var("REDRIVE_BENCH_BACKLOGS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000, 1_000_000]);
    for backlog in backlogs {
        let (store, _dir) = rt.block_on(filled(backlog));
        let round = AtomicU64::new(0);
        let before = store.commit_counts();
        group.bench_with_input(
            BenchmarkId::new("claim 64 + record 64", format!("{backlog} pending")),
            &backlog,
            |b, _| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let r = round.fetch_add(1, Ordering::Relaxed);
                        rt.block_on(claim_and_record(&store, r));
                    }
                    start.elapsed()
                })
            },
        );
        // What the gauges and the dashboard ask every few seconds.
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(
            BenchmarkId::new("stats", format!("{backlog} pending")),
            &backlog,
            |b, _| b.iter(|| rt.block_on(store.stats(NOW)).expect("stats")),
        );
        group.throughput(Throughput::Elements(BATCH as u64));
        let after = store.commit_counts();
        eprintln!(
            "{backlog} pending: {:.1} jobs per commit",
            (after.1 - before.1) as f64 / (after.0 - before.0).max(1) as f64
        );
    }
    let (store, _dir) = rt.block_on(filled(0));
    let next = Arc::new(AtomicU64::new(10_000_000));
    group.bench_function("enqueue 64 at once", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                rt.block_on(async {
                    let tasks: Vec<_> = (0..BATCH)
                        .map(|_| {
                            let store = store.clone();
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            tokio::spawn(async move { store.enqueue(vec![message(i)]).await })
                        })
                        .collect();
                    for t in tasks {
                        t.await.expect("join").expect("enqueue");
                    }
                });
            }
            start.elapsed()
        })
    });
    group.finish();
    let (commits, jobs) = store.commit_counts();
    eprintln!(
        "enqueue: {:.1} jobs per commit",
        jobs as f64 / commits.max(1) as f64
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
