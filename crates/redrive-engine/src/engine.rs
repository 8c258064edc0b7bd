//! The engine: its configuration and state, and the entry points the API
//! and the dashboard use (enqueue, redrive, discard, the listings). The
//! scheduler is in `scheduler`, the attempts in `worker`. **The engine never
//! decides policy**: the core does; **only the store changes a message's
//! state**: the engine reports.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Uri;
use rand::rngs::StdRng;
use rand::SeedableRng;
use redrive_store::{Store, StoreError};
use tokio::sync::{Notify, Semaphore};

use crate::alerts::AlertSender;
use crate::breaker::{BreakerConfig, CircuitState};
use crate::client::HttpClient;
use crate::destination::{Destination, DestinationRuntime};
use crate::due::DueSchedule;

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

/// How the engine runs.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// This node's name, in lease tokens and logs.
    pub node_id: String,
    /// The most messages claimed at once.
    pub claim_batch: usize,
    /// The most attempts in flight on this node. 1,024 by default: 16,384
    /// was tried (before the SQLite store's WAL syncer) and gave larger
    /// commit groups but a drain within the noise; slots are memory, and a
    /// quarter of them is kept for small destinations (see the scheduler).
    pub max_in_flight: usize,
    /// Added to the longest attempt timeout to make the lease.
    pub lease_margin: Duration,
    /// How long the scheduler waits after the store failed, or while due
    /// messages wait for the engine's slots (attempts that end wake it
    /// sooner). It never polls when something is due: it sleeps until the
    /// earliest due time it knows.
    pub idle_poll: Duration,
    /// How often the scheduler reads every destination's next due time from
    /// the store (`Store::due_by_destination`), which costs a probe per
    /// destination with pending messages: a safety net for what it was not
    /// told (an attempt task that died, another node that died holding
    /// leases), and when it parks the messages of destinations no longer
    /// configured.
    pub resync: Duration,
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
            resync: Duration::from_secs(30),
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
    pub(crate) inner: Arc<Inner<S>>,
}

impl<S: Store> Clone for Engine<S> {
    fn clone(&self) -> Self {
        Engine {
            inner: Arc::clone(&self.inner),
        }
    }
}

pub(crate) struct Inner<S> {
    pub(crate) store: S,
    pub(crate) destinations: HashMap<String, Arc<DestinationRuntime>>,
    /// The destinations by index (`DestinationRuntime::index`).
    pub(crate) by_index: Vec<Arc<DestinationRuntime>>,
    /// Their indexes in name order (listings page through it).
    pub(crate) by_name: Vec<usize>,
    /// Which destinations may have messages due, and from when.
    pub(crate) due: Mutex<DueSchedule>,
    /// Until when the scheduler sleeps (`i64::MAX` while it works): a note
    /// earlier than this wakes it.
    pub(crate) sleeping_until: AtomicI64,
    /// The store changed behind the engine's back (`Engine::wake`), or a
    /// redrive made messages due: read every destination's due time.
    pub(crate) resync: AtomicBool,
    pub(crate) client: HttpClient,
    pub(crate) config: EngineConfig,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) wake: Notify,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) draining: AtomicBool,
    pub(crate) alerts: Mutex<Option<AlertSender>>,
    pub(crate) rng: Mutex<StdRng>,
    pub(crate) lease_ms: i64,
    /// The last round left due destinations out for want of room: then every
    /// end of an attempt wakes the scheduler, so that it asks again soon.
    pub(crate) left_out: AtomicBool,
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
        // How long an attempt may hold its lease: its timeout, and with a
        // reconciliation probe the wait before it and its own timeout.
        let span = |d: &Destination| {
            d.policy.attempt_timeout
                + d.reconcile
                    .as_ref()
                    .map_or(Duration::ZERO, |r| r.after + d.policy.attempt_timeout)
        };
        let longest = destinations
            .iter()
            .map(span)
            .max()
            .unwrap_or(Duration::from_secs(30));
        let lease_ms = (longest + config.lease_margin).as_millis() as i64;
        let by_index: Vec<Arc<DestinationRuntime>> = destinations
            .into_iter()
            .enumerate()
            .map(|(i, d)| {
                // The lease outlasts this destination's timeout by the
                // margin, and by how much longer the longest is.
                let slack = longest.saturating_sub(span(&d)) + config.lease_margin;
                Arc::new(DestinationRuntime::at(i, d, config.breaker, slack))
            })
            .collect();
        let destinations = by_index
            .iter()
            .map(|d| (d.config.name.clone(), Arc::clone(d)))
            .collect();
        let mut by_name: Vec<usize> = (0..by_index.len()).collect();
        by_name.sort_by(|&a, &b| by_index[a].config.name.cmp(&by_index[b].config.name));
        Engine {
            inner: Arc::new(Inner {
                store,
                destinations,
                due: Mutex::new(DueSchedule::new(by_index.len())),
                by_index,
                by_name,
                sleeping_until: AtomicI64::new(i64::MAX),
                resync: AtomicBool::new(true),
                client,
                slots: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
                config,
                clock,
                wake: Notify::new(),
                draining: AtomicBool::new(false),
                alerts: Mutex::new(None),
                rng: Mutex::new(StdRng::from_os_rng()),
                lease_ms,
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

    /// Tells the scheduler that the store changed in ways the engine did
    /// not see (messages stored or made due without its methods, or a clock
    /// that jumped): it reads every destination's next due time again and
    /// claims what is due. The methods below tell it what they changed
    /// themselves; only callers that change the store some other way need
    /// this.
    pub fn wake(&self) {
        self.inner.resync.store(true, Ordering::SeqCst);
        self.inner.wake.notify_one();
    }

    /// Notes that destination `i` may have a message due at `at`, and wakes
    /// the scheduler if it sleeps past then.
    pub(crate) fn note_due(&self, i: usize, at: i64) {
        let inner = &self.inner;
        let moved = inner
            .due
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .note(i, at);
        if moved && at < inner.sleeping_until.load(Ordering::SeqCst) {
            inner.wake.notify_one();
        }
    }

    /// [`Engine::note_due`] by destination name (unknown ones are left to
    /// the sweep that parks them).
    pub(crate) fn note_due_of(&self, destination: &str, at: i64) {
        if let Some(d) = self.inner.destinations.get(destination) {
            self.note_due(d.index, at);
        }
    }

    /// Stores new messages (see [`Store::enqueue`]) and tells the scheduler
    /// which destinations they are due at.
    pub async fn enqueue(
        &self,
        batch: Vec<redrive_store::NewMessage>,
    ) -> Result<Vec<redrive_store::Enqueued>, StoreError> {
        let result = self.inner.store.enqueue(batch).await?;
        for e in &result {
            if let redrive_store::Enqueued::Created(m) = e {
                self.note_due_of(&m.destination, m.next_attempt_at.unwrap_or(m.created_at));
            }
        }
        Ok(result)
    }

    /// A destination's configuration.
    pub fn destination(&self, name: &str) -> Option<&Destination> {
        self.inner.destinations.get(name).map(|d| &d.config)
    }

    /// Every destination, by name.
    pub fn destinations(&self) -> Vec<&Destination> {
        self.inner
            .by_name
            .iter()
            .map(|&i| &self.inner.by_index[i].config)
            .collect()
    }

    /// Every destination's name, in order.
    pub fn destination_names(&self) -> Vec<String> {
        self.destinations().iter().map(|d| d.name.clone()).collect()
    }

    /// A destination's circuit state now.
    pub fn circuit(&self, name: &str) -> Option<CircuitState> {
        let now = self.now_ms();
        self.inner
            .destinations
            .get(name)
            .map(|d| d.breaker().state(now))
    }

    /// How many destinations are configured.
    pub fn destination_count(&self) -> usize {
        self.inner.by_index.len()
    }

    /// Up to `limit` destinations by name after `after` (from the first
    /// without), each with its circuit state now, and the name to ask after
    /// for the next page if there is one: a page costs what it holds, not
    /// the 10,000 destinations a deployment may have.
    pub fn destinations_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<(&Destination, CircuitState)>, Option<String>) {
        let inner = &self.inner;
        let start = after.map_or(0, |a| {
            inner
                .by_name
                .partition_point(|&i| inner.by_index[i].config.name.as_str() <= a)
        });
        let now = self.now_ms();
        let page: Vec<(&Destination, CircuitState)> = inner.by_name[start..]
            .iter()
            .take(limit)
            .map(|&i| {
                let d = &inner.by_index[i];
                (&d.config, d.breaker().state(now))
            })
            .collect();
        let more = start + page.len() < inner.by_name.len();
        let next = more
            .then(|| page.last().map(|(d, _)| d.name.clone()))
            .flatten();
        (page, next)
    }

    /// Each destination's circuit state now, by name.
    pub fn circuits(&self) -> Vec<(String, CircuitState)> {
        let now = self.now_ms();
        self.inner
            .by_name
            .iter()
            .map(|&i| {
                let d = &self.inner.by_index[i];
                (d.config.name.clone(), d.breaker().state(now))
            })
            .collect()
    }
}
