//! Scheduling rows: how late attempts start with many destinations
//! configured, idle and beside a drain; a message's time to delivery beside
//! another destination's backlog; a healthy destination beside hanging
//! ones; and the drain of many destinations against the drain of one.
//!
//! Lateness is an attempt's start (its record's `started_at`) minus when its
//! message was due: probes are stored due a little in the future, so the
//! figure is the scheduler's alone (not the enqueue's commit). Everything
//! runs in this process on the system clock, like the other rows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use redrive_core::profiles;
use redrive_engine::{ClientConfig, Destination, Engine, EngineConfig, HttpClient, SystemClock};
use redrive_mock::{MockServer, Scenario};
use redrive_store::{MessageState, NewMessage, Store};
use tokio::sync::watch;

use crate::{now_ms, pending};

/// Destinations named `d00000`..., all to `url`, under the standard policy
/// with 5 s attempts.
pub fn destinations(url: &str, n: usize, concurrency: usize) -> Result<Vec<Destination>> {
    let mut policy = profiles::builtin("standard").context("standard")?;
    policy.attempt_timeout = Duration::from_secs(5);
    let policy = Arc::new(policy);
    (0..n)
        .map(|k| {
            Ok(Destination {
                name: format!("d{k:05}"),
                url: url.parse()?,
                policy_name: "standard".into(),
                policy: Arc::clone(&policy),
                headers: Vec::new(),
                max_in_flight: concurrency,
                rate_limit: None,
                signing: None,
            })
        })
        .collect()
}

/// An engine over `store` for `destinations`, running; stop it with the
/// sender.
pub fn run<S: Store>(
    store: S,
    destinations: Vec<Destination>,
) -> Result<(Engine<S>, watch::Sender<bool>, tokio::task::JoinHandle<()>)> {
    let config = EngineConfig {
        retention: None,
        ..EngineConfig::default()
    };
    let engine = Engine::new(
        store,
        destinations,
        HttpClient::new(ClientConfig::default())?,
        config,
        Arc::new(SystemClock),
    );
    let (stop, stop_rx) = watch::channel(false);
    let runner = engine.clone();
    let task = tokio::spawn(async move { runner.run(stop_rx).await });
    Ok((engine, stop, task))
}

/// p50, p99 and max of `v` (sorted here).
pub fn percentiles(v: &mut [i64]) -> (i64, i64, i64) {
    if v.is_empty() {
        return (0, 0, 0);
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    (at(0.5), at(0.99), v[v.len() - 1])
}

/// Stores `count` probes through the engine, one every `every`, each to
/// the destination `pick(k)` and due `ahead` after it is stored; waits until
/// each is delivered (or `patience` after the last) and returns, per probe,
/// its first attempt's start minus its due time and its delivery minus its
/// due time, in ms.
pub async fn probe<S: Store>(
    engine: &Engine<S>,
    count: usize,
    every: Duration,
    ahead: i64,
    pick: impl Fn(usize) -> String,
    patience: Duration,
) -> Result<(Vec<i64>, Vec<i64>, usize)> {
    let tag = now_ms();
    let mut ids = Vec::with_capacity(count);
    for k in 0..count {
        let due = now_ms() + ahead;
        let id = format!("01PROBE{tag}{k:06}");
        let m = NewMessage {
            id: id.clone(),
            destination: pick(k),
            method: "POST".into(),
            path: format!("/probe/{k}"),
            headers: vec![("content-type".into(), "application/json".into())],
            body: br#"{"probe":true}"#.to_vec(),
            idempotency_key: id.clone(),
            request_hash: "h".into(),
            marked_idempotent: false,
            created_at: due,
        };
        engine.enqueue(vec![m]).await?;
        ids.push((id, due));
        tokio::time::sleep(every).await;
    }
    let deadline = Instant::now() + patience;
    let (mut late, mut delivery, mut missing) = (Vec::new(), Vec::new(), 0);
    for (id, due) in ids {
        loop {
            let got = engine.store().get(id.clone()).await?;
            match got {
                Some((m, attempts)) if m.state == MessageState::Delivered => {
                    if let (Some(first), Some(last)) = (attempts.first(), attempts.last()) {
                        late.push(first.started_at - due);
                        delivery.push(last.started_at + last.latency_ms as i64 - due);
                    }
                    break;
                }
                _ if Instant::now() >= deadline => {
                    missing += 1;
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
    Ok((late, delivery, missing))
}

/// The row's figure and note for lateness samples.
pub fn lateness_row(late: &mut [i64], missing: usize) -> (String, String) {
    let n = late.len();
    let (p50, p99, max) = percentiles(late);
    (
        format!("p50 {p50} ms, p99 {p99} ms"),
        format!(
            "max {max} ms; {n} probes{}",
            if missing > 0 {
                format!(", {missing} not delivered in time")
            } else {
                String::new()
            }
        ),
    )
}

/// A mock whose every answer waits `delay` (a receiver that hangs).
pub async fn hanging(delay: &str) -> Result<MockServer> {
    let scenario = Scenario::from_toml(
        "hang",
        &format!("[journal]\nlimit = 0\n[default]\nstatus = 200\ndelay = \"{delay}\"\n"),
        None,
    )?;
    Ok(MockServer::start(scenario, "127.0.0.1:0".parse()?, None).await?)
}

/// Stores `per` messages for each of `destinations` due now, in batches.
pub async fn fill_each<S: Store>(
    store: &S,
    destinations: &[Destination],
    per: usize,
) -> Result<()> {
    let at = now_ms();
    let mut batch = Vec::with_capacity(1000);
    let mut i = 0u64;
    for d in destinations {
        for _ in 0..per {
            i += 1;
            batch.push(redrive_store::conformance::sample_message(
                60_000_000 + i,
                &d.name,
                at,
            ));
            if batch.len() == 1000 {
                store.enqueue(std::mem::take(&mut batch)).await?;
            }
        }
    }
    if !batch.is_empty() {
        store.enqueue(batch).await?;
    }
    Ok(())
}

/// Messages per second delivered once the engine starts over what is
/// stored (every destination of `destinations`), `n` messages to `sink`. The
/// watch counts the sink's requests and asks the store only once it has
/// seen `n` (asking it every few ms for a pending message read each of
/// 1,000 destinations' index and took the reader thread's whole core).
pub async fn drain_all<S: Store>(
    store: S,
    sink: &MockServer,
    destinations: Vec<Destination>,
    n: usize,
) -> Result<f64> {
    let before = sink.counts().total;
    let start = Instant::now();
    let (_engine, stop, task) = run(store.clone(), destinations)?;
    loop {
        let seen = sink.counts().total.saturating_sub(before);
        if seen >= n as u64 && pending(&store).await? == 0 {
            break;
        }
        tokio::time::sleep(crate::until_next_look(n as u64, seen, start.elapsed())).await;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let _ = stop.send(true);
    let _ = task.await;
    Ok(rate)
}

/// Stores `n` messages for destination `name` (a backlog beside probes).
pub async fn backlog_of<S: Store>(store: &S, name: &str, n: usize) -> Result<()> {
    let at = now_ms();
    let mut i = 0;
    while i < n {
        let batch: Vec<NewMessage> = (i..(i + 1000).min(n))
            .map(|k| redrive_store::conformance::sample_message(70_000_000 + k as u64, name, at))
            .collect();
        store.enqueue(batch).await?;
        i += 1000;
    }
    Ok(())
}
