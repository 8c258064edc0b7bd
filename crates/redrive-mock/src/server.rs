//! The listener, the connections, and the state they share.
//!
//! One accept loop owns the listener so that a `down` step can close it
//! (connections are then refused) and bind it again on the same address.
//! Every connection runs as its own task and watches a "kill" epoch, so going
//! down also drops the connections a client pool kept alive.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::admin;
use crate::journal::{Journal, JournalView};
use crate::oauth::{key_of, Memory, OAuthCounts};
use crate::scenario::{Action, Per, Reply, Responder, Scenario, Step};
use crate::wire::{self, ReadError, Request};

/// A running mock. Dropping it stops it.
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    down: mpsc::UnboundedSender<Duration>,
    kill: watch::Sender<u64>,
    /// Where `body_file`s of a scenario replaced at run time are found.
    pub(crate) base_dir: Option<PathBuf>,
}

struct State {
    scenario: Arc<Scenario>,
    routes: Vec<RouteState>,
    default_count: u64,
    journal: Journal,
    memory: Memory,
}

struct RouteState {
    count: u64,
    by_step: Vec<u64>,
    position: u64,
    per_key: HashMap<String, u64>,
    rng: StdRng,
}

/// Requests per route and per step, and per idempotency key.
#[derive(Clone, Debug, Serialize)]
pub struct Counts {
    /// Requests received since the last reset (the mock's own API excluded).
    pub total: u64,
    /// Requests answered by the default step.
    pub default: u64,
    /// Each route, in scenario order.
    pub routes: Vec<RouteCount>,
    /// Requests per `Idempotency-Key` (or `webhook-id`).
    pub keys: HashMap<String, u64>,
    /// Keys not counted because the table was full.
    pub keys_dropped: u64,
    /// Journal entries dropped because the journal was full.
    pub journal_dropped: u64,
    /// The token endpoint's counts.
    pub oauth: OAuthCounts,
}

/// One route's counts.
#[derive(Clone, Debug, Serialize)]
pub struct RouteCount {
    /// The route's name.
    pub name: String,
    /// Requests it answered.
    pub count: u64,
    /// Requests each of its steps answered.
    pub steps: Vec<StepCount>,
}

/// One step's count.
#[derive(Clone, Debug, Serialize)]
pub struct StepCount {
    /// What the step does.
    pub answer: String,
    /// Requests it answered.
    pub count: u64,
}

impl State {
    fn new(scenario: Arc<Scenario>) -> State {
        let routes = scenario
            .routes
            .iter()
            .map(|r| RouteState {
                count: 0,
                by_step: vec![0; r.responder.steps().count()],
                position: 0,
                per_key: HashMap::new(),
                rng: StdRng::seed_from_u64(match r.responder {
                    Responder::Mix { seed, .. } => seed,
                    Responder::Sequence(_) => 0,
                }),
            })
            .collect();
        let journal = Journal::new(scenario.journal_limit);
        State {
            scenario,
            routes,
            default_count: 0,
            journal,
            memory: Memory::default(),
        }
    }

    /// Picks the step for `req`, advances the counters and journals it; or,
    /// for a route that demands a token the request lacks, the refusal.
    fn choose(&mut self, req: &Request) -> (Arc<Scenario>, Option<usize>, usize, Option<Reply>) {
        let scenario = Arc::clone(&self.scenario);
        let path = req.path();
        let found = scenario.routes.iter().position(|r| {
            r.path.matches(path)
                && r.method
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(&req.method))
        });
        let Some(i) = found else {
            self.default_count += 1;
            self.journal
                .record(req, "default", 0, &scenario.default.label);
            return (scenario, None, 0, None);
        };
        let route = &scenario.routes[i];
        if route.require_token {
            if let Some(refusal) = self.memory.check_token(req) {
                self.journal
                    .record(req, &route.name, 0, "respond 401 (invalid_token)");
                return (scenario, Some(i), 0, Some(refusal));
            }
        }
        let rs = &mut self.routes[i];
        let step = match &route.responder {
            Responder::Sequence(steps) => {
                let n = match (route.per, req.header(&route.key_header)) {
                    (Per::IdempotencyKey, Some(key)) => {
                        let n = rs.per_key.entry(key.to_owned()).or_insert(0);
                        *n += 1;
                        *n - 1
                    }
                    _ => {
                        rs.position += 1;
                        rs.position - 1
                    }
                };
                Responder::sequence_index(steps, n)
            }
            Responder::Mix { steps, .. } => {
                let total: u64 = steps.iter().map(|(_, w)| u64::from(*w)).sum();
                let mut draw = rs.rng.random_range(0..total.max(1));
                let mut chosen = steps.len() - 1;
                for (j, (_, w)) in steps.iter().enumerate() {
                    if draw < u64::from(*w) {
                        chosen = j;
                        break;
                    }
                    draw -= u64::from(*w);
                }
                chosen
            }
        };
        rs.count += 1;
        rs.by_step[step] += 1;
        let chosen = route.responder.steps().nth(step);
        if let (Some(pointer), Some(true)) = (&route.remember, chosen.map(|s| s.applies)) {
            if let Some(key) = key_of(&req.body, pointer) {
                self.memory.apply(key);
            }
        }
        let label = chosen.map_or("", |s| s.label.as_str());
        self.journal.record(req, &route.name, step, label);
        (scenario, Some(i), step, None)
    }

    fn counts(&self) -> Counts {
        let (keys, keys_dropped) = self.journal.keys();
        Counts {
            total: self.journal.total(),
            default: self.default_count,
            routes: self
                .scenario
                .routes
                .iter()
                .zip(&self.routes)
                .map(|(r, s)| RouteCount {
                    name: r.name.clone(),
                    count: s.count,
                    steps: r
                        .responder
                        .steps()
                        .zip(&s.by_step)
                        .map(|(step, n)| StepCount {
                            answer: step.label.clone(),
                            count: *n,
                        })
                        .collect(),
                })
                .collect(),
            keys: keys.clone(),
            keys_dropped,
            oauth: self.memory.counts(),
            journal_dropped: self.journal.dropped(),
        }
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves counters, not invariants, behind.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn scenario(&self) -> Arc<Scenario> {
        Arc::clone(&self.state().scenario)
    }

    pub(crate) fn replace(&self, scenario: Scenario) {
        *self.state() = State::new(Arc::new(scenario));
    }

    pub(crate) fn reset(&self) {
        let scenario = self.scenario();
        *self.state() = State::new(scenario);
    }

    pub(crate) fn journal(&self, limit: Option<usize>) -> JournalView {
        self.state().journal.view(limit)
    }

    pub(crate) fn counts(&self) -> Counts {
        self.state().counts()
    }

    pub(crate) fn go_down(&self, d: Duration) {
        let _ = self.down.send(d);
    }
}

impl MockServer {
    /// Binds `addr` (port 0 picks one) and serves `scenario` until stopped.
    /// `base_dir` resolves `body_file`s of scenarios replaced at run time.
    pub async fn start(
        scenario: Scenario,
        addr: SocketAddr,
        base_dir: Option<PathBuf>,
    ) -> io::Result<MockServer> {
        let listener = bind(addr)?;
        let addr = listener.local_addr()?;
        let (down_tx, down_rx) = mpsc::unbounded_channel();
        let (kill, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(Arc::new(scenario))),
            down: down_tx,
            kill,
            base_dir,
        });
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(
            listener,
            addr,
            Arc::clone(&shared),
            down_rx,
            stop_rx,
        ));
        Ok(MockServer {
            addr,
            shared,
            stop,
            task: Some(task),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the scenario and resets counts, sequences and the journal.
    pub fn replace_scenario(&self, scenario: Scenario) {
        self.shared.replace(scenario);
    }

    /// Clears counts, sequences and the journal.
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// The journal (the last `limit` entries when given).
    pub fn journal(&self, limit: Option<usize>) -> JournalView {
        self.shared.journal(limit)
    }

    /// Counts per route, step and key.
    pub fn counts(&self) -> Counts {
        self.shared.counts()
    }

    /// Stops listening, drops every connection and waits for the accept loop.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // So the address can be bound again after a `down` window, even with
    // connections of the last run in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(
    first: TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
    mut down: mpsc::UnboundedReceiver<Duration>,
    mut stop: watch::Receiver<bool>,
) {
    let mut listener = Some(first);
    loop {
        let l = match listener.take() {
            Some(l) => l,
            None => match bind(addr) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "cannot listen again; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                        _ = stop.changed() => return,
                    }
                }
            },
        };
        let window = loop {
            tokio::select! {
                accepted = l.accept() => match accepted {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(connection(stream, Arc::clone(&shared)));
                    }
                    // Out of file descriptors and the like: let them drain.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                },
                Some(d) = down.recv() => break d,
                _ = stop.changed() => {
                    shared.kill.send_modify(|e| *e += 1);
                    return;
                }
            }
        };
        drop(l);
        shared.kill.send_modify(|e| *e += 1);
        tracing::info!(%addr, "down for {}", redrive_core::HumanDuration(window));
        tokio::select! {
            _ = tokio::time::sleep(window) => {}
            _ = stop.changed() => return,
        }
        // Requests to go down that came while down do not extend the window.
        while down.try_recv().is_ok() {}
    }
}

async fn connection(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut kill = shared.kill.subscribe();
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        let read = tokio::select! {
            r = wire::read_request(&mut stream, &mut buf) => r,
            _ = kill.changed() => return,
        };
        let req = match read {
            Ok(Some(req)) => req,
            Ok(None) | Err(ReadError::Io(_)) => return,
            Err(e) => {
                let status = match e {
                    ReadError::HeadTooLarge => 431,
                    ReadError::BodyTooLarge => 413,
                    _ => 400,
                };
                let body = format!("{e}\n");
                let mut out = wire::head(status, &[], body.len(), false);
                out.extend_from_slice(body.as_bytes());
                let _ = stream.write_all(&out).await;
                return;
            }
        };
        if req.path() == "/__mock" || req.path().starts_with("/__mock/") {
            if admin::handle(&shared, &req, &mut stream).await.is_err() || !req.keep_alive {
                return;
            }
            continue;
        }
        let (scenario, route, step_index, refusal) = shared.state().choose(&req);
        if let Some(reply) = refusal {
            if write_reply(&mut stream, &reply, req.keep_alive)
                .await
                .is_err()
                || !req.keep_alive
            {
                return;
            }
            continue;
        }
        let step: &Step = match route {
            Some(i) => match scenario.routes[i].responder.steps().nth(step_index) {
                Some(s) => s,
                None => &scenario.default,
            },
            None => &scenario.default,
        };
        if let Some(d) = step.delay {
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = kill.changed() => return,
            }
        }
        match &step.action {
            Action::Respond(reply) => {
                let sent = tokio::select! {
                    r = write_reply(&mut stream, reply, req.keep_alive) => r,
                    _ = kill.changed() => return,
                };
                if sent.is_err() || !req.keep_alive {
                    let _ = stream.shutdown().await;
                    return;
                }
            }
            Action::Timeout => {
                // Keep the connection open and never answer, until the client
                // gives up (or the mock stops).
                let mut scratch = [0u8; 4096];
                loop {
                    tokio::select! {
                        n = stream.read(&mut scratch) => if !matches!(n, Ok(n) if n > 0) { return },
                        _ = kill.changed() => return,
                    }
                }
            }
            Action::Reset => {
                // SO_LINGER 0: closing sends RST instead of FIN.
                let _ = stream.set_zero_linger();
                return;
            }
            Action::Close => {
                let _ = stream.shutdown().await;
                return;
            }
            Action::Malformed => {
                let _ = stream
                    .write_all(b"SPLAT this is not HTTP \x00\x01\x02\r\n\r\n")
                    .await;
                let _ = stream.shutdown().await;
                return;
            }
            Action::Down(d) => {
                shared.go_down(*d);
                return;
            }
            Action::IssueToken | Action::Lookup(_) => {
                let reply = {
                    let mut state = shared.state();
                    match &step.action {
                        Action::Lookup(param) => state.memory.lookup(param, &req),
                        _ => state.memory.issue(scenario.oauth.as_ref(), &req),
                    }
                };
                if write_reply(&mut stream, &reply, req.keep_alive)
                    .await
                    .is_err()
                    || !req.keep_alive
                {
                    let _ = stream.shutdown().await;
                    return;
                }
            }
        }
    }
}

async fn write_reply(stream: &mut TcpStream, reply: &Reply, keep_alive: bool) -> io::Result<()> {
    let mut extra;
    let headers: &[(String, String)] = match reply.retry_after_date {
        Some(d) => {
            extra = reply.headers.clone();
            extra.push((
                "retry-after".to_owned(),
                httpdate::fmt_http_date(SystemTime::now() + d),
            ));
            &extra
        }
        None => &reply.headers,
    };
    let mut out = wire::head(reply.status, headers, reply.body.len(), keep_alive);
    match reply.slow_body {
        None => {
            out.extend_from_slice(&reply.body);
            stream.write_all(&out).await
        }
        Some((chunk, every)) => {
            stream.write_all(&out).await?;
            stream.flush().await?;
            for part in reply.body.chunks(chunk) {
                tokio::time::sleep(every).await;
                stream.write_all(part).await?;
                stream.flush().await?;
            }
            Ok(())
        }
    }
}
