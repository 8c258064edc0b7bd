//! The scheduler and the workers.
//!
//! The scheduler claims due messages in batches under a lease (skipping
//! destinations whose circuit is open or whose `max_in_flight` is used up) and
//! spawns one task per message. A task waits for its destination's limits,
//! makes the attempt, asks the core for the decision and has the store record
//! the attempt and the next state in one transaction. **The engine never
//! decides policy**: the core does; **only the store changes a message's
//! state**: the engine reports.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Uri;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redrive_core::ErrorClass;
use redrive_store::{AttemptRecord, Claimed, Filter, Message, NextState, Store, StoreError};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};

use crate::alerts::{self, AlertSender, ParkedAlert};
use crate::breaker::{BreakerConfig, CircuitState};
use crate::client::HttpClient;
use crate::destination::{Destination, DestinationRuntime};
use crate::outcome::{decide, observe};
use crate::request::build_request_with;

/// The engine's clock, in milliseconds since the Unix epoch. Tests may pass
/// their own.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

/// How often the scheduler looks for messages of destinations that are not
/// configured.
const UNKNOWN_SWEEP_MS: i64 = 60_000;

/// What a claim round found.
enum Round {
    /// Some destination got all it asked for: more may be due now.
    Full,
    /// It asked and got less: nothing more is due now.
    Partial,
    /// No destination had room to ask.
    NoRoom,
}

/// How the engine runs.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// This node's name, in lease tokens and logs.
    pub node_id: String,
    /// The most messages claimed at once.
    pub claim_batch: usize,
    /// The most attempts in flight on this node.
    pub max_in_flight: usize,
    /// Added to the longest attempt timeout to make the lease.
    pub lease_margin: Duration,
    /// The longest the scheduler sleeps without looking for due messages.
    pub idle_poll: Duration,
    /// Circuit breaker settings, for every destination.
    pub breaker: BreakerConfig,
    /// Delivered and discarded messages older than this are purged.
    pub retention: Option<Duration>,
    /// How long shutdown waits for attempts in flight.
    pub shutdown_grace: Duration,
    /// Response bytes kept on an attempt record.
    pub excerpt_limit: usize,
    /// Where parks are reported, if anywhere.
    pub alert_webhook: Option<Uri>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            node_id: "node".into(),
            claim_batch: 256,
            max_in_flight: 1024,
            lease_margin: Duration::from_secs(30),
            idle_poll: Duration::from_secs(1),
            breaker: BreakerConfig::default(),
            retention: Some(Duration::from_secs(7 * 86_400)),
            shutdown_grace: Duration::from_secs(10),
            excerpt_limit: 2048,
            alert_webhook: None,
        }
    }
}

/// The delivery engine. Cheap to clone.
pub struct Engine<S: Store> {
    inner: Arc<Inner<S>>,
}

impl<S: Store> Clone for Engine<S> {
    fn clone(&self) -> Self {
        Engine {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<S> {
    store: S,
    destinations: HashMap<String, Arc<DestinationRuntime>>,
    client: HttpClient,
    config: EngineConfig,
    clock: Arc<dyn Clock>,
    wake: Notify,
    slots: Arc<Semaphore>,
    draining: AtomicBool,
    alerts: Mutex<Option<AlertSender>>,
    rng: Mutex<StdRng>,
    lease_ms: i64,
    /// Destination names, sorted: the order claims visit them in, rotated.
    order: Vec<String>,
    /// Claim rounds so far, to rotate `order`.
    round: AtomicUsize,
    /// The last round left out a destination it could not ask: the batch
    /// was used up before its turn, or its circuit was open. Then every end
    /// of an attempt wakes the scheduler, so that it asks again soon.
    left_out: AtomicBool,
}

impl<S: Store> Engine<S> {
    /// An engine over `store` for `destinations`.
    pub fn new(
        store: S,
        destinations: Vec<Destination>,
        client: HttpClient,
        config: EngineConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let longest = destinations
            .iter()
            .map(|d| d.policy.attempt_timeout)
            .max()
            .unwrap_or(Duration::from_secs(30));
        let lease_ms = (longest + config.lease_margin).as_millis() as i64;
        let mut order: Vec<String> = destinations.iter().map(|d| d.name.clone()).collect();
        order.sort();
        let destinations = destinations
            .into_iter()
            .map(|d| {
                (d.name.clone(), {
                    // The lease outlasts this destination's timeout by
                    // the margin, and by how much longer the longest is.
                    let slack =
                        longest.saturating_sub(d.policy.attempt_timeout) + config.lease_margin;
                    Arc::new(DestinationRuntime::new(d, config.breaker, slack))
                })
            })
            .collect();
        Engine {
            inner: Arc::new(Inner {
                store,
                destinations,
                client,
                slots: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
                config,
                clock,
                wake: Notify::new(),
                draining: AtomicBool::new(false),
                alerts: Mutex::new(None),
                rng: Mutex::new(StdRng::from_os_rng()),
                lease_ms,
                order,
                round: AtomicUsize::new(0),
                left_out: AtomicBool::new(false),
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// The clock.
    pub fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// Tells the scheduler there may be new due messages, so it does not wait
    /// for its next poll. The methods below call it; callers that change the
    /// store some other way call it themselves.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Stores new messages (see [`Store::enqueue`]) and wakes the scheduler
    /// when one was created.
    pub async fn enqueue(
        &self,
        batch: Vec<redrive_store::NewMessage>,
    ) -> Result<Vec<redrive_store::Enqueued>, StoreError> {
        let result = self.inner.store.enqueue(batch).await?;
        if result
            .iter()
            .any(|e| matches!(e, redrive_store::Enqueued::Created(_)))
        {
            self.wake();
        }
        Ok(result)
    }

    /// Redrives parked messages now (a new cycle each) and wakes the scheduler;
    /// returns the ids that were parked.
    pub async fn redrive(&self, ids: Vec<String>) -> Result<Vec<String>, StoreError> {
        let done = self.inner.store.redrive(ids, self.now_ms()).await?;
        if !done.is_empty() {
            self.wake();
        }
        Ok(done)
    }

    /// Redrives up to `limit` parked messages matching `filter` and wakes the
    /// scheduler; returns their ids.
    pub async fn redrive_matching(
        &self,
        filter: Filter,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let done = self
            .inner
            .store
            .redrive_matching(filter, self.now_ms(), limit)
            .await?;
        if !done.is_empty() {
            self.wake();
        }
        Ok(done)
    }

    /// Discards parked messages now; returns the ids that were parked.
    pub async fn discard(&self, ids: Vec<String>) -> Result<Vec<String>, StoreError> {
        self.inner.store.discard(ids, self.now_ms()).await
    }

    /// A destination's configuration.
    pub fn destination(&self, name: &str) -> Option<&Destination> {
        self.inner.destinations.get(name).map(|d| &d.config)
    }

    /// Every destination, by name.
    pub fn destinations(&self) -> Vec<&Destination> {
        let mut v: Vec<_> = self
            .inner
            .destinations
            .values()
            .map(|d| &d.config)
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Each destination's circuit state now.
    pub fn circuits(&self) -> Vec<(String, CircuitState)> {
        let now = self.now_ms();
        let mut v: Vec<_> = self
            .inner
            .destinations
            .iter()
            .map(|(name, d)| (name.clone(), d.breaker().state(now)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Runs until `shutdown` turns true, then stops claiming, lets attempts in
    /// flight finish (up to the grace period) and releases what did not start.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let inner = &self.inner;
        let alert_task = inner.config.alert_webhook.clone().map(|hook| {
            let (sender, task) = alerts::start(inner.client.clone(), hook);
            *inner.alerts.lock().unwrap_or_else(PoisonError::into_inner) = Some(sender);
            task
        });
        let retention = inner.config.retention.map(|keep| {
            let engine = self.clone();
            let mut stop = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    let before = engine.now_ms() - keep.as_millis() as i64;
                    match engine.inner.store.purge(before).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(
                            purged = n,
                            "retention purged delivered and discarded messages"
                        ),
                        Err(e) => tracing::error!(error = %e, "retention purge failed"),
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                        _ = stop.changed() => return,
                    }
                }
            })
        });
        // Other nodes (PostgreSQL's NOTIFY) can make messages due too.
        let mut external = inner.store.wakeups();
        let mut next_sweep = i64::MIN;
        while !*shutdown.borrow() {
            if self.now_ms() >= next_sweep {
                self.park_unknown_destinations().await;
                next_sweep = self.now_ms() + UNKNOWN_SWEEP_MS;
            }
            let wait = match self.claim_round().await {
                Round::Full => continue,
                // Every window is busy (attempts in flight will wake the
                // loop) or every circuit is open: when the next message is
                // due does not matter, so it is not read on every wake.
                Round::NoRoom => inner.config.idle_poll,
                Round::Partial => self.until_next_due().await,
            };
            let woken = async {
                match external.as_mut() {
                    Some(rx) => {
                        if rx.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = inner.wake.notified() => {}
                _ = woken => {}
                _ = shutdown.changed() => {}
            }
        }
        // Drain.
        inner.draining.store(true, Ordering::SeqCst);
        let all = inner.config.max_in_flight.max(1) as u32;
        let drained =
            tokio::time::timeout(inner.config.shutdown_grace, inner.slots.acquire_many(all)).await;
        if drained.is_err() {
            tracing::warn!(
                "attempts still in flight at the end of the grace period; their leases will expire"
            );
        }
        if let Some(task) = retention {
            task.abort();
        }
        inner
            .alerts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = alert_task {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }

    /// Claims one batch and starts its attempts, and says whether more may
    /// be due now.
    ///
    /// It asks each destination for what its claim window has room for, and
    /// nothing for one whose circuit is open: the store then reads only rows
    /// it takes, however large the backlog held back. A window is refilled
    /// once half of it is free, so claims come in batches rather than one per
    /// finished attempt: a SQLite claim reads past every message still leased
    /// (in flight, or waiting for its record's commit), so each claim costs
    /// about as much however few it takes.
    async fn claim_round(&self) -> Round {
        let inner = &self.inner;
        let mut room = inner
            .slots
            .available_permits()
            .min(inner.config.claim_batch);
        if room == 0 {
            return Round::NoRoom;
        }
        let now = self.now_ms();
        // Start at a different destination each round, so a small batch is
        // shared between destinations over rounds.
        let start = inner.round.fetch_add(1, Ordering::Relaxed);
        let mut want: Vec<(String, usize)> = Vec::new();
        let mut left_out = false;
        for k in 0..inner.order.len() {
            let name = &inner.order[(start + k) % inner.order.len()];
            let Some(d) = inner.destinations.get(name) else {
                continue;
            };
            let free = d.window.available_permits();
            if free < (d.window_size / 2).max(1) {
                continue;
            }
            if room == 0 || d.breaker().blocks_claims(now) {
                left_out = true;
                continue;
            }
            let take = free.min(room);
            want.push((name.clone(), take));
            room -= take;
        }
        inner.left_out.store(left_out, Ordering::Relaxed);
        if want.is_empty() {
            return Round::NoRoom;
        }
        let claimed = match self.claim(now, want.clone()).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot claim due messages");
                return Round::Partial;
            }
        };
        let full = want.iter().any(|(name, n)| {
            claimed
                .iter()
                .filter(|(c, _)| &c.message.destination == name)
                .count()
                == *n
        });
        for (c, lease_until) in claimed {
            let permits = inner
                .destinations
                .get(&c.message.destination)
                .and_then(|d| {
                    let window = Arc::clone(&d.window).try_acquire_owned().ok()?;
                    let slot = Arc::clone(&inner.slots).try_acquire_owned().ok()?;
                    Some((Arc::clone(d), window, slot))
                });
            let Some((dest, window, slot)) = permits else {
                // Cannot happen (the room was counted); give it back if it does.
                let _ = inner
                    .store
                    .release(vec![(c.message.id, c.lease)], now)
                    .await;
                continue;
            };
            let engine = self.clone();
            tokio::spawn(async move {
                engine.attempt(c, lease_until, window).await;
                drop(slot);
                engine.wake_if_room(&dest);
            });
        }
        if full {
            Round::Full
        } else {
            Round::Partial
        }
    }

    /// Wakes the scheduler if a claim could now take more: `dest`'s window
    /// is half free (the point at which a claim refills it), the engine's
    /// slots are so few that they, not the windows, bound the claims, or the
    /// last round left a destination out (its batch was used up, or a
    /// circuit was open). Every other end of an attempt lets it sleep: a
    /// wake-up per attempt cost a scheduler round (and a timer) per message,
    /// for nothing.
    fn wake_if_room(&self, dest: &DestinationRuntime) {
        let inner = &self.inner;
        if dest.window.available_permits() >= (dest.window_size / 2).max(1)
            || inner.slots.available_permits() <= inner.config.claim_batch
            || inner.left_out.load(Ordering::Relaxed)
        {
            inner.wake.notify_one();
        }
    }

    /// How long the scheduler may sleep: until the next message is due, at
    /// most `idle_poll`.
    async fn until_next_due(&self) -> Duration {
        let idle = self.inner.config.idle_poll;
        match self.inner.store.next_due().await {
            Ok(Some(t)) => {
                let now = self.now_ms();
                if t > now {
                    Duration::from_millis((t - now) as u64).min(idle)
                } else {
                    // Due, but held back (circuit open, limits full): wait
                    // for an attempt to end or the next poll.
                    idle
                }
            }
            Ok(None) => idle,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the next due time");
                idle
            }
        }
    }

    /// Claims `want` under a fresh lease; each message comes with its
    /// lease's end.
    async fn claim(
        &self,
        now: i64,
        want: Vec<(String, usize)>,
    ) -> Result<Vec<(Claimed, i64)>, StoreError> {
        let inner = &self.inner;
        let token: u128 = inner
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .random();
        let lease = format!(
            "{}:{}",
            inner.config.node_id,
            ulid::Ulid::from_parts(now.max(0) as u64, token)
        );
        let lease_until = now + inner.lease_ms;
        let claimed = inner.store.claim(now, want, lease, lease_until).await?;
        Ok(claimed.into_iter().map(|c| (c, lease_until)).collect())
    }

    /// Parks the due messages of destinations that are not configured (any
    /// more): nothing can deliver them, and a person must see them. Runs at
    /// start and then every minute; a skip scan of the pending destinations
    /// makes it cheap.
    async fn park_unknown_destinations(&self) {
        let inner = &self.inner;
        let names = match inner.store.pending_destinations().await {
            Ok(names) => names,
            Err(e) => {
                tracing::error!(error = %e, "cannot list the pending destinations");
                return;
            }
        };
        for name in names
            .into_iter()
            .filter(|n| !inner.destinations.contains_key(n))
        {
            loop {
                let now = self.now_ms();
                let batch = inner.config.claim_batch.max(1);
                let claimed = match self.claim(now, vec![(name.clone(), batch)]).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(error = %e, destination = %name, "cannot claim messages of an unknown destination");
                        break;
                    }
                };
                let got = claimed.len();
                for (c, _) in claimed {
                    self.park_unknown_destination(c.message, c.lease).await;
                }
                if got < batch {
                    break;
                }
            }
        }
    }

    /// One attempt of a claimed message; `window` is its place in the
    /// destination's claim window, given back once the request is over.
    async fn attempt(&self, claimed: Claimed, lease_until: i64, window: OwnedSemaphorePermit) {
        let inner = &self.inner;
        let Claimed { mut message, lease } = claimed;
        let Some(dest) = inner.destinations.get(&message.destination).cloned() else {
            self.park_unknown_destination(message, lease).await;
            return;
        };
        let Ok(permit) = Arc::clone(&dest.in_flight).acquire_owned().await else {
            return;
        };
        if let Some(limiter) = &dest.limiter {
            limiter.acquire().await;
        }
        let now = self.now_ms();
        let timeout = dest.config.policy.attempt_timeout;
        // Too late to finish within the lease, or shutting down: give it back.
        if inner.draining.load(Ordering::SeqCst) || now + timeout.as_millis() as i64 >= lease_until
        {
            let _ = inner.store.release(vec![(message.id, lease)], now).await;
            return;
        }
        if !dest.breaker().try_acquire(now) {
            let due = dest.breaker().reopens_at().unwrap_or(now).max(now);
            let _ = inner.store.release(vec![(message.id, lease)], due).await;
            return;
        }
        // The body goes to the request (the record and the decision do not
        // need it): moved, not copied.
        let body = std::mem::take(&mut message.body);
        let request = match build_request_with(&dest.config, &message, body, now) {
            Ok(r) => r,
            Err(detail) => {
                dest.breaker().cancel_probe();
                self.record_unsendable(&message, lease, now, detail).await;
                return;
            }
        };
        let attempted = inner.client.attempt(request).await;
        // `max_in_flight` and the claim window bound requests at the
        // destination; recording the attempt does not involve it, so the next
        // request may start, and the next claim be made, now. The engine's
        // slot, held until the record is durable, bounds the rest.
        drop(permit);
        drop(window);
        self.wake_if_room(&dest);
        let done = self.now_ms();
        let jitter_seed: u64 = inner
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .random();
        let (record, next, class, healthy) = decide(
            &dest,
            &message,
            &attempted,
            now,
            done,
            inner.config.excerpt_limit,
            jitter_seed,
        );
        dest.breaker().on_result(healthy, done);
        observe(&dest, &message, &record, &attempted);
        let parked = matches!(next, NextState::Parked { .. });
        let alert = parked.then(|| ParkedAlert {
            id: message.id.clone(),
            destination: message.destination.clone(),
            reason: record.reason.clone(),
            class: class.as_str().to_owned(),
            status: record.status,
            attempts: message.attempts + 1,
        });
        match inner
            .store
            .record(message.id.clone(), lease, record, next, done)
            .await
        {
            Ok(true) => {
                if let Some(alert) = alert {
                    if let Some(sender) = inner
                        .alerts
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .as_ref()
                    {
                        sender.send(alert);
                    }
                }
            }
            Ok(false) => {
                tracing::warn!(message_id = %message.id, "the lease expired before the attempt was recorded; another attempt will follow")
            }
            Err(e) => {
                tracing::error!(message_id = %message.id, error = %e, "cannot record the attempt; it will be retried when the lease expires")
            }
        }
    }

    async fn park_unknown_destination(&self, message: Message, lease: String) {
        let now = self.now_ms();
        let detail = format!("destination `{}` is not configured", message.destination);
        self.record_unsendable(&message, lease, now, detail).await;
    }

    async fn record_unsendable(&self, message: &Message, lease: String, now: i64, detail: String) {
        tracing::warn!(message_id = %message.id, destination = %message.destination, %detail, "parked: cannot be sent");
        let record = AttemptRecord {
            started_at: now,
            class: ErrorClass::Content.as_str().to_owned(),
            decision: "park".into(),
            reason: "not_retryable".into(),
            detail: Some(detail),
            ..AttemptRecord::default()
        };
        let next = NextState::Parked {
            reason: "not_retryable".into(),
        };
        if let Err(e) = self
            .inner
            .store
            .record(message.id.clone(), lease, record, next, now)
            .await
        {
            tracing::error!(message_id = %message.id, error = %e, "cannot record the attempt");
        }
    }
}
