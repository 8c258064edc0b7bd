//! `redrive serve`: configuration, the HTTP API over the store and the engine,
//! Prometheus metrics, and the lifecycle that ties them together (graceful
//! shutdown finishes or releases attempts in flight).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use redrive_engine::{ClientConfig, Engine, EngineConfig, HttpClient, SystemClock};
use redrive_store::{MessageState, Store};
use tokio::sync::watch;

pub mod api;
pub mod config;
pub mod credentials;
pub mod dashboard;
pub mod inbound;
mod openapi_doc;
pub mod problem;
pub mod roles;
pub mod views;

pub use config::Config;

/// The OpenAPI document served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// No token and a non-loopback address: refused.
    #[error("no API token is configured and {0} is not a loopback address: anyone could use the API; set server.api_tokens (for example [\"${{REDRIVE_API_TOKEN}}\"])")]
    NoToken(SocketAddr),
    /// The address could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// The server failed while running.
    #[error("the server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// How often the recorder's histograms are drained when nobody scrapes.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// The process-wide Prometheus recorder (installed once).
///
/// Its histograms keep every sample until a scrape or an upkeep drains them
/// into their buckets; a thread runs the upkeep every [`METRICS_UPKEEP`], so
/// memory stays bounded when `/metrics` is never scraped (without it, two
/// samples per attempt piled up for the life of the process).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("redrive_attempt_latency_seconds".to_owned()),
                    &[
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                        10.0, 30.0,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("redrive_delivery_seconds".to_owned()),
                        &[
                            0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3600.0, 86_400.0,
                        ],
                    )
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            let upkeep = recorder.handle();
            let started = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(METRICS_UPKEEP);
                    upkeep.run_upkeep();
                });
            if let Err(e) = started {
                tracing::warn!(error = %e, "cannot start the metrics upkeep; histograms are drained only when scraped");
            }
            // Another recorder may already be installed (tests); ours still renders.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Where a server listens, once bound (port 0 picks one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listening {
    /// The API, the dashboard and, without `inbound_listen`, `/in/*`.
    pub api: SocketAddr,
    /// `[server] inbound_listen`: `/in/*` and `/healthz` only.
    pub inbound: Option<SocketAddr>,
}

/// Runs the API and the engine on `store` until `shutdown` resolves.
/// `on_listen` is told the API's bound address (port 0 picks one).
pub async fn serve<S: Store>(
    config: Config,
    store: S,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_listen: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    serve_with(config, store, shutdown, |l: Listening| on_listen(l.api)).await
}

/// [`serve`], telling `on_listen` every bound address.
pub async fn serve_with<S: Store>(
    config: Config,
    store: S,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_listen: impl FnOnce(Listening),
) -> Result<(), ServeError> {
    if config.api_tokens.is_empty() {
        if !config.listen.ip().is_loopback() {
            return Err(ServeError::NoToken(config.listen));
        }
        tracing::warn!(
            listen = %config.listen,
            "NO API TOKEN IS CONFIGURED: the API is open to every process on this machine; set server.api_tokens before exposing it"
        );
    }
    let metrics = metrics_handle();
    let client =
        HttpClient::new(ClientConfig::default()).map_err(|e| ServeError::Client(e.to_string()))?;
    let engine_config = EngineConfig {
        node_id: config.node_id.clone(),
        retention: Some(config.retention),
        alert_webhook: config.alert_webhook.clone(),
        lease_margin: config.lease_margin,
        ..EngineConfig::default()
    };
    let engine = Engine::new(
        store,
        config.destinations.clone(),
        client,
        engine_config,
        Arc::new(SystemClock),
    );
    // Pauses before the first request: a destination paused before a
    // restart shows so at once (the scheduler reads them again as it starts).
    if let Err(e) = engine.load_pauses().await {
        tracing::warn!(error = %e, "cannot read the paused destinations yet; the scheduler will");
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| ServeError::Bind(config.listen, e))?;
    let addr = listener.local_addr()?;
    let inbound_listener = match config.inbound_listen {
        Some(at) => Some(
            tokio::net::TcpListener::bind(at)
                .await
                .map_err(|e| ServeError::Bind(at, e))?,
        ),
        None => None,
    };
    let inbound_addr = inbound_listener
        .as_ref()
        .map(tokio::net::TcpListener::local_addr)
        .transpose()?;
    on_listen(Listening {
        api: addr,
        inbound: inbound_addr,
    });
    tracing::info!(%addr, inbound = ?inbound_addr, source = %config.source, destinations = config.destinations.len(), sources = config.sources.len(), "redrive serving");

    let state = Arc::new(api::AppState {
        engine: engine.clone(),
        tokens: config.api_tokens.clone(),
        max_body: config.max_body,
        metrics,
        ready: AtomicBool::new(true),
        sessions: dashboard::session::Sessions::default(),
        inbound: inbound::Inbound::new(config.sources.clone(), inbound_addr.is_some()),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let engine_task = {
        let engine = engine.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move { engine.run(stop).await })
    };
    let gauges = tokio::spawn(update_gauges(engine.clone(), stop_rx.clone()));
    let app = api::router(Arc::clone(&state));
    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (inbound_stop_tx, mut inbound_stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = http_stop_tx.send(());
        let _ = inbound_stop_tx.send(true);
    });
    let inbound_task = inbound_listener.map(|listener| {
        let app = api::inbound_router(Arc::clone(&state));
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = inbound_stop_rx.changed().await;
                })
                .await
        })
    });
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = http_stop_rx.await;
        })
        .await;
    state.ready.store(false, Ordering::SeqCst);
    if let Some(task) = inbound_task {
        if let Ok(Err(e)) = task.await {
            tracing::warn!(error = %e, "the inbound listener failed");
        }
    }
    tracing::info!("shutting down: finishing attempts in flight");
    let _ = stop_tx.send(true);
    let _ = engine_task.await;
    gauges.abort();
    tracing::info!("stopped");
    result.map_err(ServeError::Io)
}

/// Keeps the gauges (messages by state, oldest due, circuits) current.
///
/// Only what changed is written: a series per destination and state that
/// holds or held messages (one that drops to none is written as zero), and a
/// circuit that left or came back to `closed`. With 10,000 idle destinations
/// configured, a pass writes nothing and registers no series for them (it
/// wrote 50,000 values every 5 s, each a registry lookup, and exported as
/// many lines).
async fn update_gauges<S: Store>(engine: Engine<S>, mut stop: watch::Receiver<bool>) {
    let mut counts_written: HashMap<(String, MessageState), u64> = HashMap::new();
    let mut circuits_written: HashMap<String, f64> = HashMap::new();
    loop {
        let now = engine.now_ms();
        if let Ok(stats) = engine.store().stats(now).await {
            let mut counts: HashMap<(String, MessageState), u64> = HashMap::new();
            for (d, st, n) in stats.by_destination_state {
                *counts.entry((d, st)).or_default() += n;
            }
            for key in counts_written.keys() {
                counts.entry(key.clone()).or_insert(0);
            }
            for (key, n) in counts {
                if counts_written.get(&key) != Some(&n) {
                    metrics::gauge!("redrive_messages", "destination" => key.0.clone(), "state" => key.1.as_str()).set(n as f64);
                    counts_written.insert(key, n);
                }
            }
            let age = stats
                .oldest_due_at
                .map_or(0.0, |t| ((now - t).max(0) as f64) / 1000.0);
            metrics::gauge!("redrive_oldest_due_age_seconds").set(age);
        }
        if let Some(disk) = engine.store().disk() {
            metrics::gauge!("redrive_disk_free_bytes").set(disk.free_bytes as f64);
            metrics::gauge!("redrive_disk_min_free_bytes").set(disk.min_free_bytes as f64);
            metrics::gauge!("redrive_disk_wal_reserve_bytes").set(disk.wal_reserve_bytes as f64);
        }
        for (destination, state) in engine.circuits() {
            let v = match state {
                redrive_engine::CircuitState::Closed => 0.0,
                redrive_engine::CircuitState::Open => 1.0,
                redrive_engine::CircuitState::HalfOpen => 2.0,
            };
            // A circuit that was never open has no series: closed.
            let was = circuits_written.get(&destination).copied().unwrap_or(0.0);
            if was != v {
                metrics::gauge!("redrive_circuit_state", "destination" => destination.clone())
                    .set(v);
                circuits_written.insert(destination, v);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.changed() => return,
        }
    }
}
