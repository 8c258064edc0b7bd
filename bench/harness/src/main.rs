//! redrive's end-to-end benchmark harness.
//!
//! ```sh
//! cargo run --release -p redrive-bench                 # the default sizes
//! cargo run --release -p redrive-bench -- --quick      # a smoke run
//! REDRIVE_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo run --release -p redrive-bench
//! ```
//!
//! Everything runs in this process on the same 2-core machine and in the same
//! run, so figures are reported next to the raw ceiling measured minutes
//! before: machines here are shared and noisy, ratios travel better than
//! absolutes. The sink is `redrive mock` with its journal off.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Parser;
use http::{HeaderMap, HeaderValue, Method};
use redrive_core::profiles;
use redrive_engine::{
    ClientConfig, Destination, Engine, EngineConfig, HttpClient, OutboundRequest, SystemClock,
};
use redrive_mock::{MockServer, Scenario};
use redrive_store::{Filter, MessageState, NewMessage, SqliteStore, Store};
use tokio::sync::watch;

mod lateness;

/// The allocator the `redrive` binary uses, so that the engine is measured as
/// it ships.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The harness's options.
#[derive(Parser, Debug)]
#[command(about = "redrive end-to-end benchmarks; prints one table")]
struct Args {
    /// Seconds per timed phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrency of the clients and of the engine per destination.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Backlog sizes to drain.
    #[arg(long, value_delimiter = ',', default_values_t = [100_000usize, 1_000_000])]
    drain: Vec<usize>,
    /// Backlog sizes to drain on PostgreSQL (when REDRIVE_TEST_DATABASE_URL is set).
    #[arg(long, value_delimiter = ',', default_values_t = [100_000usize])]
    pg_drain: Vec<usize>,
    /// Backlog sizes waiting far in the future, for the claim-time and memory rows.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000_000usize])]
    backlog: Vec<usize>,
    /// Small sizes and 3-second phases: a smoke run.
    #[arg(long)]
    quick: bool,
    /// Run only these phases (the raw ceiling always runs: the other rows are
    /// ratios to it). Phases: drain, ingest, steady, storm, backlog,
    /// lateness (many destinations; includes hang and many), hang (a healthy
    /// destination beside hanging ones), many (the drain of many destinations
    /// against one), postgres.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The drain's destination sends `Authorization: Bearer ...` (a static
    /// credential, `auth = { bearer = ... }`): what credentials cost.
    #[arg(long)]
    bearer: bool,
}

/// Set from `--bearer` before any destination is built.
static BEARER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Args {
    fn wants(&self, phase: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == phase)
    }
}

struct Row {
    scenario: String,
    store: &'static str,
    figure: String,
    note: String,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The name and the user + system CPU seconds in a `/proc/.../stat` line:
/// `pid (comm) state ...`, where the name may hold spaces and the fields
/// after the last `)` do not.
fn stat_cpu(stat: &str) -> Option<(&str, f64)> {
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Some((stat.get(open + 1..close)?, (ticks(11) + ticks(12)) / 100.0))
}

/// User + system CPU seconds of this process.
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| stat_cpu(&stat).map(|(_, seconds)| seconds))
        .unwrap_or(0.0)
}

/// CPU seconds the whole machine spent working (user, system, interrupts;
/// not idle, I/O wait or stolen), every process and kernel thread included:
/// the kernel's writeback and journal threads do a durable store's I/O
/// outside this process.
fn machine_busy_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    // user nice system idle iowait irq softirq steal (guest is in user).
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    let at = |i: usize| ticks.get(i).copied().unwrap_or(0.0);
    (at(0) + at(1) + at(2) + at(5) + at(6)) / 100.0
}

/// The text after `key` on the line of `/proc` file `path` that starts
/// with it (`write_bytes:` of `/proc/self/io`, say), trimmed.
fn proc_field(path: &str, key: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()))
}

/// Bytes this process has caused to be written to storage so far.
fn written_bytes() -> u64 {
    proc_field("/proc/self/io", "write_bytes:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user + system) of this process's threads, summed by thread
/// name: where a phase's CPU went (the runtime's workers, the SQLite writer,
/// the claimer, ...).
fn cpu_by_thread() -> std::collections::BTreeMap<String, f64> {
    let mut by_name = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return by_name;
    };
    for task in tasks.filter_map(|t| t.ok()) {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        if let Some((name, seconds)) = stat_cpu(&stat) {
            *by_name.entry(name.to_owned()).or_insert(0.0) += seconds;
        }
    }
    by_name
}

/// µs of CPU per message of the threads that did the work between two
/// [`cpu_by_thread`] readings, largest first: `"runtime 50, writer 20, ..."`.
fn cpu_split(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
    messages: usize,
) -> String {
    let mut parts: Vec<(String, f64)> = Vec::new();
    for (name, seconds) in after {
        let used = seconds - before.get(name).copied().unwrap_or(0.0);
        let label = match name.as_str() {
            "tokio-rt-worker" => "runtime",
            "sqlite-writer" => "writer",
            "sqlite-claimer" => "claimer",
            other => other,
        };
        let us = used * 1e6 / messages.max(1) as f64;
        if us >= 0.5 {
            match parts.iter_mut().find(|(l, _)| l == label) {
                Some(part) => part.1 += us,
                None => parts.push((label.to_owned(), us)),
            }
        }
    }
    parts.sort_by(|a, b| b.1.total_cmp(&a.1));
    parts
        .iter()
        .map(|(label, us)| format!("{label} {us:.1}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Peak resident memory of this process, in MiB.
fn peak_rss_mib() -> f64 {
    proc_field("/proc/self/status", "VmHWM:")
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn sink(status: u16) -> Result<MockServer> {
    let scenario = Scenario::from_toml(
        "sink",
        &format!("[journal]\nlimit = 0\n[default]\nstatus = {status}\n"),
        None,
    )?;
    Ok(MockServer::start(scenario, "127.0.0.1:0".parse()?, None).await?)
}

fn destination(url: &str, concurrency: usize) -> Result<Destination> {
    let mut policy = profiles::builtin("standard").context("standard")?;
    policy.attempt_timeout = Duration::from_secs(5);
    Ok(Destination {
        name: "sink".into(),
        url: url.parse()?,
        policy_name: "standard".into(),
        policy: Arc::new(policy),
        headers: if BEARER.load(std::sync::atomic::Ordering::Relaxed) {
            vec![(
                http::header::AUTHORIZATION,
                http::HeaderValue::from_static("Bearer bench-token-0123456789abcdef"),
            )]
        } else {
            Vec::new()
        },
        max_in_flight: concurrency,
        rate_limit: None,
        signing: None,
        credentials: None,
        reconcile: None,
    })
}

fn message(i: usize, at: i64) -> NewMessage {
    redrive_store::conformance::sample_message(i as u64, "sink", at)
}

/// Requests per second of the engine's HTTP client alone against the sink,
/// and the process's CPU time per request in µs (the sink's share included).
/// The bare client's requests per second, and its CPU per request in µs:
/// this process's, and the whole machine's.
async fn raw_client(url: &str, concurrency: usize, seconds: u64) -> Result<(f64, f64, f64)> {
    let client = HttpClient::new(ClientConfig::default())?;
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let uri: http::Uri = format!("{url}/raw").parse()?;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, done, stop, uri) = (
                client.clone(),
                Arc::clone(&done),
                Arc::clone(&stop),
                uri.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let a = client
                        .attempt(OutboundRequest {
                            method: Method::POST,
                            uri: uri.clone(),
                            headers: HeaderMap::new(),
                            body: Bytes::from_static(br#"{"event":"order.created","amount":42}"#),
                            timeout: Duration::from_secs(5),
                        })
                        .await;
                    if a.result.is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let start = Instant::now();
    let (cpu0, machine0) = (cpu_seconds(), machine_busy_seconds());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let n = done.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_us = (cpu_seconds() - cpu0) * 1e6 / n.max(1) as f64;
    let machine_us = (machine_busy_seconds() - machine0) * 1e6 / n.max(1) as f64;
    for t in tasks {
        let _ = t.await;
    }
    Ok((n as f64 / elapsed, cpu_us, machine_us))
}

/// What `wrk --latency` printed: requests/s, p50 and p99 in ms, and the
/// count of answers that were not 2xx/3xx.
struct WrkRun {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

/// Runs `wrk` (one thread) against `url`, with a Lua `script` if given, on
/// a blocking thread: the runtime's two workers stay free for the servers.
/// `None` when wrk is not installed.
async fn wrk(url: &str, concurrency: usize, seconds: u64, script: Option<&str>) -> Option<WrkRun> {
    let dir = tempfile::tempdir().ok()?;
    let mut args = vec![
        "-t1".to_owned(),
        format!("-c{concurrency}"),
        format!("-d{seconds}s"),
        "--latency".to_owned(),
    ];
    if let Some(lua) = script {
        let path = dir.path().join("script.lua");
        std::fs::write(&path, lua).ok()?;
        args.push("-s".to_owned());
        args.push(path.display().to_string());
    }
    args.push(url.to_owned());
    let out =
        tokio::task::spawn_blocking(move || std::process::Command::new("wrk").args(&args).output())
            .await
            .ok()?
            .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |prefix: &str| -> Option<String> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| {
                l[prefix.len()..]
                    .split_whitespace()
                    .next()
                    .map(str::to_owned)
            })
    };
    let ms = |v: String| -> Option<f64> {
        let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic())?);
        let n: f64 = num.parse().ok()?;
        Some(match unit {
            "us" => n / 1000.0,
            "ms" => n,
            "s" => n * 1000.0,
            _ => return None,
        })
    };
    Some(WrkRun {
        rps: field("Requests/sec:")?.parse().ok()?,
        p50_ms: field("50%").and_then(ms).unwrap_or(f64::NAN),
        p99_ms: field("99%").and_then(ms).unwrap_or(f64::NAN),
        errors: field("Non-2xx or 3xx responses:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    })
}

/// wrk's Lua script for the ingest rows: every request a new message with
/// its own idempotency key.
const INGEST_LUA: &str = r#"
local n = 0
request = function()
  n = n + 1
  local body = '{"destination":"sink","path":"/m/' .. n .. '","body":{"n":' .. n .. '}}'
  return wrk.format("POST", "/v1/messages",
    { ["Content-Type"] = "application/json", ["Idempotency-Key"] = "wrk-" .. n }, body)
end
"#;

async fn fill<S: Store>(store: &S, n: usize, offset: usize, at: i64) -> Result<f64> {
    let start = Instant::now();
    let mut i = 0;
    while i < n {
        let batch: Vec<NewMessage> = (i..(i + 1000).min(n))
            .map(|k| message(offset + k, at))
            .collect();
        store.enqueue(batch).await?;
        i += 1000;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// 1 while any message is pending, else 0: the first entry of each
/// destination's part of the index by state. (`next_due`, used before,
/// reads past every leased message to the first due one: a few hundred rows
/// per poll in a drain.)
async fn pending<S: Store>(store: &S) -> Result<u64> {
    let filter = Filter {
        state: Some(MessageState::Pending),
        ..Filter::default()
    };
    Ok(u64::from(
        !store.list(filter, None, 1).await?.messages.is_empty(),
    ))
}

fn engine<S: Store>(store: S, url: &str, concurrency: usize) -> Result<Engine<S>> {
    let config = EngineConfig {
        retention: None,
        idle_poll: Duration::from_millis(50),
        ..EngineConfig::default()
    };
    Ok(Engine::new(
        store,
        vec![destination(url, concurrency)?],
        HttpClient::new(ClientConfig::default())?,
        config,
        Arc::new(SystemClock),
    ))
}

/// Messages per second delivered from a stored backlog of `n`.
/// Also the process's CPU time per delivered message in µs (the sink's share
/// included, as in the raw ceiling). The backlog is stored before.
async fn drain<S: Store>(
    store: S,
    sink: &MockServer,
    n: usize,
    concurrency: usize,
) -> Result<(f64, f64)> {
    let cpu0 = cpu_seconds();
    let engine = engine(store.clone(), &sink.url(), concurrency)?;
    let (stop, stop_rx) = watch::channel(false);
    let runner = engine.clone();
    let sent_before = sink.counts().total;
    let start = Instant::now();
    let task = tokio::spawn(async move { runner.run(stop_rx).await });
    // Until nothing is pending. The store is asked once the sink has seen a
    // request per message (a counter), or every few seconds in case some
    // never reach it: the poll must not weigh on what it measures, under
    // valgrind either, where the drain runs forty times slower than the
    // poll's clock.
    let mut asked = Instant::now();
    loop {
        let seen = sink.counts().total.saturating_sub(sent_before);
        let sent = seen >= n as u64;
        if sent || asked.elapsed() >= Duration::from_secs(5) {
            if pending(&store).await? == 0 {
                break;
            }
            asked = Instant::now();
        }
        tokio::time::sleep(until_next_look(n as u64, seen, start.elapsed())).await;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let cpu_us = (cpu_seconds() - cpu0) * 1e6 / n as f64;
    let _ = stop.send(true);
    let _ = task.await;
    Ok((rate, cpu_us))
}

/// How long the drain's watch sleeps: until about when the sink should have
/// seen the last request, at the pace so far (at most 50 ms), and a
/// millisecond once it has (only the last records' commits are left). A
/// fixed 50 ms added up to 100 ms to a drain's time, 3 to 7% of a drain of
/// 100,000 on a fast machine.
fn until_next_look(n: u64, seen: u64, elapsed: Duration) -> Duration {
    let most = Duration::from_millis(50);
    let least = Duration::from_millis(1);
    if seen >= n {
        return least;
    }
    let pace = seen as f64 / elapsed.as_secs_f64().max(1e-9);
    if pace <= 0.0 {
        return most;
    }
    Duration::from_secs_f64((n - seen) as f64 / pace).clamp(least, most)
}

/// Serves the API on `store`; with `deliver`, the engine runs too.
async fn serve_api<S: Store>(
    store: S,
    url: &str,
    concurrency: usize,
    deliver: bool,
) -> Result<(String, watch::Sender<bool>, Engine<S>)> {
    let engine = engine(store, url, concurrency)?;
    let state = Arc::new(redrive_server::api::AppState {
        engine: engine.clone(),
        tokens: Vec::new(),
        max_body: 1 << 20,
        metrics: redrive_server::metrics_handle(),
        ready: AtomicBool::new(true),
        sessions: Default::default(),
        inbound: redrive_server::inbound::Inbound::new(vec![inbound_source()], false),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let (stop, stop_rx) = watch::channel(false);
    let app = redrive_server::api::router(state);
    let mut http_stop = stop_rx.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_stop.changed().await;
            })
            .await;
    });
    if deliver {
        let runner = engine.clone();
        tokio::spawn(async move { runner.run(stop_rx).await });
    }
    Ok((format!("http://{addr}"), stop, engine))
}

/// The inbound source of the harness's API: Standard Webhooks signatures,
/// deduplicated by `webhook-id`, delivered to the sink.
fn inbound_source() -> redrive_server::inbound::Source {
    redrive_server::inbound::Source {
        name: "hooks".into(),
        path: "/in/hooks".into(),
        destination: "sink".into(),
        verify: redrive_server::inbound::Verify::StandardWebhooks(inbound_secret()),
        dedupe: Some(redrive_server::inbound::Dedupe::Header(
            http::HeaderName::from_static("webhook-id"),
        )),
        respond: redrive_server::inbound::Respond::Accepted,
        max_body: 1 << 20,
        read_timeout: Duration::from_secs(30),
    }
}

fn inbound_secret() -> redrive_engine::SigningSecret {
    // 24 bytes of base64: a fixed secret for the load, not a real one.
    redrive_engine::SigningSecret::parse("whsec_cmVkcml2ZS1iZW5jaC1pbmJvdW5kLXNlY3JldA==")
        .unwrap_or_else(|e| panic!("the harness's secret: {e}"))
}

/// What a load generator sends: `POST /v1/messages` (an enqueue) or a
/// signed webhook to the inbound source, the same JSON event either way.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Enqueue,
    Inbound,
}

/// The `i`-th request of a load of `shape`.
fn load_request(
    shape: Shape,
    i: u64,
    secret: &redrive_engine::SigningSecret,
) -> (&'static str, HeaderMap, String) {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    match shape {
        Shape::Enqueue => {
            if let Ok(v) = HeaderValue::from_str(&format!("load-{i}")) {
                headers.insert("idempotency-key", v);
            }
            let body = format!(r#"{{"destination":"sink","path":"/m/{i}","body":{{"n":{i}}}}}"#);
            ("/v1/messages", headers, body)
        }
        Shape::Inbound => {
            let body = format!(r#"{{"n":{i}}}"#);
            let id = format!("evt_{i}");
            let ts = now_ms() / 1000;
            let signature = secret.sign(&id, ts, body.as_bytes());
            for (k, v) in [
                ("webhook-id", id),
                ("webhook-timestamp", ts.to_string()),
                ("webhook-signature", signature),
            ] {
                if let Ok(v) = HeaderValue::from_str(&v) {
                    headers.insert(k, v);
                }
            }
            ("/in/hooks/m", headers, body)
        }
    }
}

/// The median of `values` (0 for none).
fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Enqueues over HTTP for `seconds`: requests/s, p50 and p99 in ms.
async fn load(
    api: &str,
    concurrency: usize,
    seconds: u64,
    offset: usize,
) -> Result<(f64, f64, f64)> {
    load_shaped(api, concurrency, seconds, offset, Shape::Enqueue).await
}

/// [`load`] with requests of `shape`.
async fn load_shaped(
    api: &str,
    concurrency: usize,
    seconds: u64,
    offset: usize,
    shape: Shape,
) -> Result<(f64, f64, f64)> {
    let client = HttpClient::new(ClientConfig::default())?;
    let secret = inbound_secret();
    let next = Arc::new(AtomicU64::new(offset as u64));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, api, next, stop, secret) = (
                client.clone(),
                api.to_owned(),
                Arc::clone(&next),
                Arc::clone(&stop),
                secret.clone(),
            );
            tokio::spawn(async move {
                let mut latencies: Vec<u32> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let (path, headers, body) = load_request(shape, i, &secret);
                    let Ok(uri) = format!("{api}{path}").parse::<http::Uri>() else {
                        break;
                    };
                    let t = Instant::now();
                    let a = client
                        .attempt(OutboundRequest {
                            method: Method::POST,
                            uri,
                            headers,
                            body: Bytes::from(body),
                            timeout: Duration::from_secs(10),
                        })
                        .await;
                    if matches!(&a.result, Ok(r) if r.status == 202) {
                        latencies.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                    }
                }
                latencies
            })
        })
        .collect();
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all: Vec<u32> = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |v| *v as f64 / 1000.0)
    };
    Ok((all.len() as f64 / elapsed, pct(0.5), pct(0.99)))
}

/// The sink answers 503 to everything: attempts/s the engine sends, CPU, and
/// how long delivery takes once the sink recovers.
async fn retry_storm<S: Store>(
    store: S,
    n: usize,
    concurrency: usize,
    seconds: u64,
) -> Result<(f64, f64, f64)> {
    let failing = sink(503).await?;
    fill(&store, n, 10_000_000, now_ms()).await?;
    let engine = engine(store.clone(), &failing.url(), concurrency)?;
    let (stop, stop_rx) = watch::channel(false);
    let runner = engine.clone();
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let task = tokio::spawn(async move { runner.run(stop_rx).await });
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let attempts = failing.counts().total as f64 / start.elapsed().as_secs_f64();
    let cpu = (cpu_seconds() - cpu0) / start.elapsed().as_secs_f64();
    failing.replace_scenario(Scenario::from_toml(
        "ok",
        "[journal]\nlimit = 0\n[default]\nstatus = 200\n",
        None,
    )?);
    let recovered = Instant::now();
    // Messages wait out their backoff (full jitter, up to the cap reached).
    let deadline = Instant::now() + Duration::from_secs(600);
    while pending(&store).await? > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovery = recovered.elapsed().as_secs_f64();
    let _ = stop.send(true);
    let _ = task.await;
    Ok((attempts, cpu, recovery))
}

/// `n` messages due in ten days and 1,000 due now: how long claiming the due
/// ones takes, and the database's size.
async fn backlog<S: Store>(store: S, n: usize) -> Result<(f64, f64)> {
    let later = now_ms() + 10 * 86_400_000;
    fill(&store, n, 20_000_000, later).await?;
    fill(&store, 1000, 40_000_000, now_ms()).await?;
    let start = Instant::now();
    let mut claimed = 0;
    while claimed < 1000 {
        let got = store
            .claim(
                now_ms(),
                vec![("sink".into(), 256)],
                "bench".into(),
                now_ms() + 60_000,
            )
            .await?;
        if got.is_empty() {
            break;
        }
        claimed += got.len();
    }
    Ok((start.elapsed().as_secs_f64() * 1000.0, claimed as f64))
}

fn dir_size_mib(dir: &std::path::Path) -> f64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum::<u64>()
        })
        .unwrap_or(0) as f64
        / (1024.0 * 1024.0)
}

fn sqlite() -> Result<(SqliteStore, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("bench.db"))?;
    Ok((store, dir))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut args = Args::parse();
    BEARER.store(args.bearer, std::sync::atomic::Ordering::Relaxed);
    if args.quick {
        args.seconds = 3;
        args.drain = vec![10_000];
        args.pg_drain = vec![10_000];
        args.backlog = vec![100_000];
    }
    let (s, c) = (args.seconds, args.concurrency);
    // The Prometheus recorder `redrive serve` installs, from the start: every
    // phase pays for its metrics as the server does.
    let _metrics = redrive_server::metrics_handle();
    let mut rows: Vec<Row> = Vec::new();
    let mut row = |scenario: &str, store: &'static str, figure: String, note: String| {
        eprintln!("{scenario:<34} {store:<9} {figure:<28} {note}");
        rows.push(Row {
            scenario: scenario.to_owned(),
            store,
            figure,
            note,
        });
    };
    let ok = sink(200).await?;

    let (raw, raw_cpu, _) = raw_client(&ok.url(), c, s).await?;
    row(
        "raw ceiling: engine's HTTP client",
        "-",
        format!("{raw:.0} req/s"),
        format!("{c} concurrent, POST, keep-alive; {raw_cpu:.1} µs CPU/req"),
    );
    if let Some(w) = wrk(&format!("{}/raw", ok.url()), c, s, None)
        .await
        .map(|w| w.rps)
    {
        row(
            "raw ceiling: wrk",
            "-",
            format!("{w:.0} req/s"),
            format!("wrk -t1 -c{c} -d{s}s"),
        );
    }

    for &n in args.drain.iter().filter(|_| args.wants("drain")) {
        let (store, _dir) = sqlite()?;
        let insert = fill(&store, n, 0, now_ms()).await?;
        // The ceiling again, right before the drain: on a shared machine the
        // one measured at the start may be minutes and a different speed away.
        let (near, near_cpu, near_machine) = raw_client(&ok.url(), c, s).await?;
        let busy0 = store.writer_busy_seconds();
        let (commits0, jobs0) = store.commit_counts();
        let threads0 = cpu_by_thread();
        let (machine0, written0) = (machine_busy_seconds(), written_bytes());
        let (rate, cpu) = drain(store.clone(), &ok, n, c).await?;
        let split = cpu_split(&threads0, &cpu_by_thread(), n);
        let machine = (machine_busy_seconds() - machine0) * 1e6 / n as f64;
        let written = (written_bytes() - written0) as f64 / 1024.0 / n as f64;
        // Of the drain's wall time, the writer's share spent on groups.
        let busy = (store.writer_busy_seconds() - busy0) / (n as f64 / rate);
        let (commits, jobs) = store.commit_counts();
        let per_commit = (jobs - jobs0) as f64 / (commits - commits0).max(1) as f64;
        row(
            &format!("drain {n}"),
            "sqlite",
            format!("{rate:.0} msg/s"),
            format!(
                "{:.2} of the client ceiling just before it ({near:.0} req/s; {:.2} of the first); {cpu:.1} µs CPU/msg ({split}); {:.2} cores busy (the ceiling {:.2}); the machine {machine:.1} µs CPU/msg (the ceiling {near_machine:.1} per request); {written:.1} KiB written/msg; {per_commit:.0} writes per commit; writer busy {:.0}%; stored at {insert:.0} msg/s",
                rate / near,
                rate / raw,
                // What the drain keeps busy, against what the bare client
                // did: a drain that waits (a stalled writer) shows here.
                rate * cpu / 1e6,
                near * near_cpu / 1e6,
                busy * 100.0
            ),
        );
    }

    if args.wants("ingest") {
        // The API's enqueue and the inbound half (signed webhooks to a
        // source, each verified, deduplicated by its id and made durable),
        // alternated in rounds on fresh stores: this machine's speed drifts
        // by half within a minute, so one row after the other compares
        // moments, not paths. Each row gives the median round and the range;
        // the ratio is the median of the rounds' ratios.
        let rounds = if args.quick { 1 } else { 3 };
        let mut ingest: Vec<(f64, f64, f64)> = Vec::new();
        let mut inbound: Vec<(f64, f64, f64)> = Vec::new();
        for _ in 0..rounds {
            for shape in [Shape::Enqueue, Shape::Inbound] {
                let (store, _dir) = sqlite()?;
                let (api, stop, _engine) = serve_api(store, &ok.url(), c, false).await?;
                let r = load_shaped(&api, c, s, 0, shape).await?;
                let _ = stop.send(true);
                match shape {
                    Shape::Enqueue => ingest.push(r),
                    Shape::Inbound => inbound.push(r),
                }
            }
        }
        let ratios: Vec<f64> = ingest
            .iter()
            .zip(&inbound)
            .map(|(a, b)| b.0 / a.0)
            .collect();
        for (name, runs, extra) in [
            ("ingest (POST /v1/messages, 202)", &ingest, String::new()),
            (
                "inbound (Standard Webhooks to /in/hooks, 202)",
                &inbound,
                format!(
                    "; {:.2} of the ingest row (median of the rounds' ratios: {})",
                    median(&ratios),
                    ratios
                        .iter()
                        .map(|r| format!("{r:.2}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        ] {
            let rps: Vec<f64> = runs.iter().map(|r| r.0).collect();
            let mid = runs
                .iter()
                .min_by(|a, b| {
                    (a.0 - median(&rps))
                        .abs()
                        .total_cmp(&(b.0 - median(&rps)).abs())
                })
                .copied()
                .unwrap_or_default();
            row(
                name,
                "sqlite",
                format!("{:.0} req/s", mid.0),
                format!(
                    "p50 {:.2} ms, p99 {:.2} ms, {c} concurrent; {rounds} rounds {:.0}-{:.0} req/s{extra}",
                    mid.1,
                    mid.2,
                    rps.iter().copied().fold(f64::INFINITY, f64::min),
                    rps.iter().copied().fold(0.0, f64::max),
                ),
            );
        }
        // The same with wrk as the load generator: it costs less CPU than the
        // in-process client, which shares the server's two cores.
        let (store, _dir) = sqlite()?;
        let (api, stop, _engine) = serve_api(store.clone(), &ok.url(), c, false).await?;
        if let Some(w) = wrk(&api, c, s, Some(INGEST_LUA)).await {
            let stored = store.stats(now_ms()).await?;
            let pending: u64 = stored.by_destination_state.iter().map(|(_, _, n)| n).sum();
            row(
                "ingest, wrk (POST /v1/messages, 202)",
                "sqlite",
                format!("{:.0} req/s", w.rps),
                format!(
                    "p50 {:.2} ms, p99 {:.2} ms, wrk -t1 -c{c}; {} not 202; {pending} stored",
                    w.p50_ms, w.p99_ms, w.errors
                ),
            );
        }
        let _ = stop.send(true);
    }

    if args.wants("steady") {
        let (store, _dir) = sqlite()?;
        let (api, stop, _engine) = serve_api(store.clone(), &ok.url(), c, true).await?;
        let delivered0 = ok.counts().total;
        let (rps, p50, p99) = load(&api, c, s, 50_000_000).await?;
        let delivered = (ok.counts().total - delivered0) as f64 / s as f64;
        row(
            "steady state (ingest + delivery)",
            "sqlite",
            format!("{rps:.0} in/s, {delivered:.0} out/s"),
            format!("ingest p50 {p50:.2} ms, p99 {p99:.2} ms"),
        );
        let _ = stop.send(true);
    }

    if args.wants("storm") {
        let (store, _dir) = sqlite()?;
        let storm_n = if args.quick { 2_000 } else { 10_000 };
        let (attempts, cpu, recovery) = retry_storm(store, storm_n, c, s).await?;
        row(
            &format!("retry storm ({storm_n} msgs, sink 503)"),
            "sqlite",
            format!("{attempts:.0} attempts/s"),
            format!(
                "CPU {:.0}% of a core; all delivered {recovery:.1} s after the sink recovered",
                cpu * 100.0
            ),
        );
    }

    for &n in args.backlog.iter().filter(|_| args.wants("backlog")) {
        let (store, dir) = sqlite()?;
        let (ms, claimed) = backlog(store, n).await?;
        row(
            &format!("backlog {n} waiting, claim 1000 due"),
            "sqlite",
            format!("{ms:.1} ms"),
            format!(
                "claimed {claimed:.0}; database {:.0} MiB; peak RSS so far {:.0} MiB",
                dir_size_mib(dir.path()),
                peak_rss_mib()
            ),
        );
    }

    if args.wants("lateness") {
        lateness::scheduling_rows(&args, &ok, &mut row).await?;
    }
    if args.wants("lateness") || args.wants("hang") {
        lateness::beside_hanging(&args, &ok, &mut row).await?;
    }
    if args.wants("lateness") || args.wants("many") {
        lateness::many_destinations_drain(&args, &ok, &mut row).await?;
    }

    if !args.wants("postgres") {
    } else if std::env::var("REDRIVE_TEST_DATABASE_URL").is_ok() {
        for &n in &args.pg_drain {
            if let Some(db) = redrive_store::testdb::TestDatabase::create("bench drain").await {
                let store = db.store().await;
                let insert = fill(&store, n, 0, now_ms()).await?;
                let (near, _, _) = raw_client(&ok.url(), c, s).await?;
                let (rate, cpu) = drain(store, &ok, n, c).await?;
                row(
                    &format!("drain {n}"),
                    "postgres",
                    format!("{rate:.0} msg/s"),
                    format!(
                        "{:.2} of the client ceiling just before it ({near:.0} req/s; {:.2} of the first); {cpu:.1} µs CPU/msg (this process; PostgreSQL's own not counted); stored at {insert:.0} msg/s",
                        rate / near,
                        rate / raw
                    ),
                );
            }
        }
        if let Some(db) = redrive_store::testdb::TestDatabase::create("bench ingest").await {
            let (api, stop, _engine) = serve_api(db.store().await, &ok.url(), c, false).await?;
            let (rps, p50, p99) = load(&api, c, s, 0).await?;
            row(
                "ingest (POST /v1/messages, 202)",
                "postgres",
                format!("{rps:.0} req/s"),
                format!("p50 {p50:.2} ms, p99 {p99:.2} ms"),
            );
            let _ = stop.send(true);
        }
    } else {
        eprintln!("(PostgreSQL rows skipped: set REDRIVE_TEST_DATABASE_URL)");
    }

    let machine = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    println!("| scenario | store | figure | notes |");
    println!("| --- | --- | --- | --- |");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} |",
            r.scenario, r.store, r.figure, r.note
        );
    }
    println!();
    println!(
        "{} cores ({machine}); {s} s phases; {c} concurrent; peak RSS {:.0} MiB",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        peak_rss_mib()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The watch sleeps in proportion to what is left at the pace so far,
    /// within 1 and 50 ms, and a millisecond once every request was seen.
    #[test]
    fn the_drain_watch_naps_by_what_is_left() {
        let second = Duration::from_secs(1);
        assert_eq!(until_next_look(100, 100, second), Duration::from_millis(1));
        assert_eq!(until_next_look(100, 0, second), Duration::from_millis(50));
        // 1,000 a second, 10 left: 10 ms.
        assert_eq!(
            until_next_look(1_010, 1_000, second),
            Duration::from_millis(10)
        );
        assert_eq!(
            until_next_look(1_000_000, 1_000, second),
            Duration::from_millis(50)
        );
        assert_eq!(
            until_next_look(1_000, 999_999, Duration::ZERO),
            Duration::from_millis(1)
        );
    }
}
