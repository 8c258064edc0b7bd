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

use crate::{destination, fill, now_ms, pending, sqlite, Args};

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
                credentials: None,
                reconcile: None,
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
            source: None,
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

/// Stores `per` messages for each destination of `names`, due now, in batches.
pub async fn fill_each<S: Store>(store: &S, names: &[&str], per: usize) -> Result<()> {
    let at = now_ms();
    let mut batch = Vec::with_capacity(1000);
    let mut i = 0u64;
    for name in names {
        for _ in 0..per {
            i += 1;
            batch.push(redrive_store::conformance::sample_message(
                60_000_000 + i,
                name,
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

/// The scheduling rows (see `lateness`): lateness with 1 to 10,000
/// destinations idle and beside a drain, time to delivery beside a backlog,
/// a healthy destination beside hanging ones, start-up with 10,000
/// destinations, and the drain of 1,000 destinations of 100 against one of
/// 100,000, in one sitting.
pub async fn scheduling_rows(
    args: &Args,
    ok: &MockServer,
    row: &mut impl FnMut(&str, &'static str, String, String),
) -> Result<()> {
    let c = args.concurrency;
    let counts: &[usize] = if args.quick {
        &[1, 100, 1_000]
    } else {
        &[1, 100, 1_000, 10_000]
    };
    let probes = if args.quick { 50 } else { 200 };
    // Long enough that the drain outlasts the probes (about 5 s).
    let drain_n = if args.quick { 100_000 } else { 500_000 };
    let every = Duration::from_millis(20);
    let patience = Duration::from_secs(30);
    for &n in counts {
        let spread = move |k: usize| format!("d{:05}", (k * 7_919) % n);
        // Idle: only the probes.
        let (store, _dir) = sqlite()?;
        let (engine, stop, task) = run(store, destinations(&ok.url(), n, c)?)?;
        let (mut late, _, missing) = probe(&engine, probes, every, 200, spread, patience).await?;
        let (figure, note) = lateness_row(&mut late, missing);
        row(
            &format!("lateness, {n} destinations, idle"),
            "sqlite",
            figure,
            format!("{note}; probes due 200 ms after they are stored, one per 20 ms"),
        );
        let _ = stop.send(true);
        let _ = task.await;
        // Beside a drain of another destination's backlog.
        let (store, _dir) = sqlite()?;
        let mut all = destinations(&ok.url(), n, c)?;
        let mut busy = destination(&ok.url(), c)?;
        busy.name = "busy".into();
        all.push(busy);
        fill_each(&store, &["busy"], drain_n).await?;
        let (engine, stop, task) = run(store.clone(), all)?;
        let (mut late, _, missing) = probe(&engine, probes, every, 200, spread, patience).await?;
        let left = engine
            .store()
            .stats(now_ms())
            .await?
            .by_destination_state
            .iter()
            .filter(|(d, s, _)| d == "busy" && *s == MessageState::Pending)
            .map(|(_, _, n)| *n)
            .sum::<u64>();
        let (figure, note) = lateness_row(&mut late, missing);
        row(&format!("lateness, {n} destinations, beside a drain"), "sqlite", figure, format!("{note}; another destination drains {drain_n} ({left} of it still pending once every probe was delivered)"));
        let _ = stop.send(true);
        let _ = task.await;
    }

    // A single message's time to delivery beside a backlog.
    let backlog_n = if args.quick { 100_000 } else { 1_000_000 };
    let (store, _dir) = sqlite()?;
    let mut two = destinations(&ok.url(), 1, c)?;
    let mut busy = destination(&ok.url(), c)?;
    busy.name = "busy".into();
    two.push(busy);
    fill_each(&store, &["busy"], backlog_n).await?;
    let (engine, stop, task) = run(store.clone(), two)?;
    let (mut late, mut delivery, missing) = probe(
        &engine,
        probes,
        Duration::from_millis(50),
        0,
        |_| "d00000".into(),
        patience,
    )
    .await?;
    let (p50, p99, max) = percentiles(&mut delivery);
    let (_, late99, _) = percentiles(&mut late);
    row(&format!("time to delivery beside a backlog of {backlog_n}"), "sqlite", format!("p50 {p50} ms, p99 {p99} ms"), format!("max {max} ms; start p99 {late99} ms; {} probes to another destination, one per 50 ms, due when stored{}", delivery.len(), if missing > 0 { format!(", {missing} not delivered in time") } else { String::new() }));
    let _ = stop.send(true);
    let _ = task.await;

    // Start-up with 10,000 destinations: the configuration parsed and
    // checked, the engine built, the store's due times read.
    let mut toml = String::new();
    for k in 0..10_000 {
        toml.push_str(&format!(
            "[destinations.d{k:05}]\nurl = \"{}\"\npolicy = \"standard\"\n",
            ok.url()
        ));
    }
    let (store, _dir) = sqlite()?;
    let started = Instant::now();
    let config = redrive_server::config::Config::from_toml("bench", &toml, &Default::default())?;
    let parsed = started.elapsed();
    let engine = Engine::new(
        store.clone(),
        config.destinations,
        HttpClient::new(ClientConfig::default())?,
        EngineConfig::default(),
        Arc::new(SystemClock),
    );
    store.due_by_destination().await?;
    let ready = started.elapsed();
    drop(engine);
    row("start-up, 10,000 destinations", "sqlite", format!("{:.0} ms", ready.as_secs_f64() * 1000.0), format!("configuration parsed and checked in {:.0} ms, then the engine built and the due times read", parsed.as_secs_f64() * 1000.0));

    Ok(())
}

/// A healthy destination's lateness beside ten whose receiver hangs.
pub async fn beside_hanging(
    args: &Args,
    ok: &MockServer,
    row: &mut impl FnMut(&str, &'static str, String, String),
) -> Result<()> {
    let c = args.concurrency;
    let probes = if args.quick { 50 } else { 200 };
    let every = Duration::from_millis(20);
    let patience = Duration::from_secs(30);
    // A healthy destination beside ten that hang: 600 messages among them
    // (the issue's case), and 3,000 (more than the engine's 1,024 slots).
    let hang = hanging("20s").await?;
    for per in [60, 300] {
        let (store, _dir) = sqlite()?;
        let mut hangers = destinations(&hang.url(), 10, c)?;
        for h in &mut hangers {
            h.name = format!("hang-{}", h.name);
        }
        let names: Vec<&str> = hangers.iter().map(|d| d.name.as_str()).collect();
        fill_each(&store, &names, per).await?;
        let mut healthy = destinations(&ok.url(), 1, c)?;
        healthy.append(&mut hangers);
        let (engine, stop, task) = run(store.clone(), healthy)?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (mut late, _, missing) =
            probe(&engine, probes, every, 200, |_| "d00000".into(), patience).await?;
        let (figure, note) = lateness_row(&mut late, missing);
        row(&format!("healthy destination beside 10 hanging, {} waiting", 10 * per), "sqlite", figure, format!("{note}; 10 destinations whose receiver answers after 20 s (attempts time out at 5 s)"));
        let _ = stop.send(true);
        let _ = task.await;
    }

    Ok(())
}

/// The drain of 1,000 destinations of 100 against one of 100,000,
/// alternated in one sitting.
pub async fn many_destinations_drain(
    args: &Args,
    ok: &MockServer,
    row: &mut impl FnMut(&str, &'static str, String, String),
) -> Result<()> {
    let c = args.concurrency;
    let (many, per) = if args.quick { (100, 100) } else { (1_000, 100) };
    let total = many * per;
    let mut rates = (Vec::new(), Vec::new());
    for _ in 0..2 {
        let (store, _dir) = sqlite()?;
        fill(&store, total, 0, now_ms()).await?;
        rates
            .0
            .push(drain_all(store, ok, vec![destination(&ok.url(), c)?], total).await?);
        let (store, _dir) = sqlite()?;
        let dests = destinations(&ok.url(), many, c)?;
        let names: Vec<&str> = dests.iter().map(|d| d.name.as_str()).collect();
        fill_each(&store, &names, per).await?;
        rates.1.push(drain_all(store, ok, dests, total).await?);
    }
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    row(&format!("drain {many} destinations x {per}"), "sqlite", format!("{:.0} msg/s", mean(&rates.1)), format!("{:.2} of one destination's drain of {total} in the same sitting ({} against {} msg/s, alternated)", mean(&rates.1) / mean(&rates.0), fmt(&rates.1), fmt(&rates.0)));
    Ok(())
}
