//! The scheduler and the workers.
//!
//! The scheduler keeps in memory which destinations may have messages due
//! and from when (`due`), claims from those that are due in batches under a
//! lease (sharing the batch fairly between them, and setting aside
//! destinations whose circuit is open or whose claim window is full), sleeps
//! until the earliest due time, and spawns one task per message. A task waits for its destination's limits,
//! makes the attempt, asks the core for the decision and has the store record
//! the attempt and the next state in one transaction. **The engine never
//! decides policy**: the core does; **only the store changes a message's
//! state**: the engine reports.

use std::collections::HashMap;
use std::sync::atomic::{fence, AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Uri;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redrive_core::ErrorClass;
use redrive_store::{
    AttemptRecord, Claimed, Filter, Message, NextState, Store, StoreError, Wakeups,
};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};

use crate::alerts::{self, AlertSender, ParkedAlert};
use crate::breaker::{BreakerConfig, CircuitState};
use crate::client::HttpClient;
use crate::destination::{Destination, DestinationRuntime};
use crate::due::{shares, DueSchedule};
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

/// The least room a round gives a destination it asks (its window
/// allowing): with 1,000 destinations draining at once, a round that gave
/// one message to each of 256 of them had their records scattered over as
/// many places in the due and delivery indexes, so each commit wrote a page
/// per message (16 KiB of WAL); runs of 32 keep the records of a commit
/// together. A destination with fewer due takes what it has, and one that
/// waited longest is still asked first, so a single message beside a
/// backlog is not delayed.
const MIN_SHARE: usize = 32;

/// A destination holding fewer claims than this may take them from the
/// engine's reserved slots (see `claim_round`).
const SMALL: usize = 8;

/// What a claim round found.
enum Round {
    /// Some destination got all it asked for: more may be due now.
    Full,
    /// It asked and got less, or nothing was due: sleep until the earliest
    /// due time.
    Partial,
    /// The engine's slots are used up: attempts that end wake it.
    NoRoom,
    /// The store failed: wait before asking again.
    Failed,
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
    /// The destinations by index (`DestinationRuntime::index`).
    by_index: Vec<Arc<DestinationRuntime>>,
    /// Their indexes in name order (listings page through it).
    by_name: Vec<usize>,
    /// Which destinations may have messages due, and from when.
    due: Mutex<DueSchedule>,
    /// Until when the scheduler sleeps (`i64::MAX` while it works): a note
    /// earlier than this wakes it.
    sleeping_until: AtomicI64,
    /// The store changed behind the engine's back (`Engine::wake`), or a
    /// redrive made messages due: read every destination's due time.
    resync: AtomicBool,
    client: HttpClient,
    config: EngineConfig,
    clock: Arc<dyn Clock>,
    wake: Notify,
    slots: Arc<Semaphore>,
    draining: AtomicBool,
    alerts: Mutex<Option<AlertSender>>,
    rng: Mutex<StdRng>,
    lease_ms: i64,
    /// The last round left due destinations out for want of room: then every
    /// end of an attempt wakes the scheduler, so that it asks again soon.
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
        let by_index: Vec<Arc<DestinationRuntime>> = destinations
            .into_iter()
            .enumerate()
            .map(|(i, d)| {
                // The lease outlasts this destination's timeout by the
                // margin, and by how much longer the longest is.
                let slack = longest.saturating_sub(d.policy.attempt_timeout) + config.lease_margin;
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
    fn note_due(&self, i: usize, at: i64) {
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
    fn note_due_of(&self, destination: &str, at: i64) {
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

    /// Redrives parked messages now (a new cycle each) and wakes the scheduler;
    /// returns the ids that were parked.
    pub async fn redrive(&self, ids: Vec<String>) -> Result<Vec<String>, StoreError> {
        let done = self.inner.store.redrive(ids, self.now_ms()).await?;
        if !done.is_empty() {
            // The store answers with ids; which destinations they were is
            // one read of the due times away (a person's action: rare).
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
        self.inner
            .by_name
            .iter()
            .map(|&i| &self.inner.by_index[i].config)
            .collect()
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
        // Other nodes (PostgreSQL's NOTIFY) make messages due too, and say
        // which destinations.
        let mut external = inner.store.wakeups();
        let mut next_resync = i64::MIN;
        while !*shutdown.borrow() {
            inner.sleeping_until.store(i64::MAX, Ordering::SeqCst);
            if let Some(w) = &external {
                self.take_notes(w);
            }
            let now = self.now_ms();
            // The sweep at its period; a wake between them only rereads.
            let sweep = now >= next_resync;
            let asked = inner.resync.swap(false, Ordering::SeqCst);
            if sweep || asked {
                let read = self.resync(sweep).await;
                if sweep {
                    let period = if read {
                        inner.config.resync
                    } else {
                        inner.config.idle_poll
                    };
                    next_resync = now + period.as_millis() as i64;
                }
            }
            let wait = match self.claim_round().await {
                Round::Full => continue,
                Round::Failed => inner.config.idle_poll,
                Round::Partial | Round::NoRoom => {
                    let earliest = inner
                        .due
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .earliest();
                    let now = self.now_ms();
                    let until = earliest.unwrap_or(i64::MAX).min(next_resync);
                    if until > now {
                        inner.sleeping_until.store(until, Ordering::SeqCst);
                        Duration::from_millis((until - now) as u64)
                    } else if self.wait_for_slots() {
                        // Left out for want of batch room, or noted since
                        // the round, and slots are free: another round now.
                        continue;
                    } else {
                        // Due, and the slots bind: an attempt's end wakes
                        // the loop.
                        inner.config.idle_poll
                    }
                }
            };
            let woken = async {
                match external.as_mut() {
                    Some(w) => {
                        if !w.changed().await {
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

    /// Notes what other nodes announced (see [`redrive_store::wakeups`]).
    fn take_notes(&self, w: &Wakeups) {
        let notes = w.take();
        if notes.unknown {
            self.inner.resync.store(true, Ordering::SeqCst);
        }
        for (destination, at) in notes.due {
            self.note_due_of(&destination, at);
        }
    }

    /// Reads every destination's next due time from the store and notes
    /// them; with `sweep`, also parks the due messages of destinations no
    /// longer configured. Says whether the read worked.
    async fn resync(&self, sweep: bool) -> bool {
        let due = match self.inner.store.due_by_destination().await {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the destinations' due times");
                return false;
            }
        };
        let mut unknown = Vec::new();
        for (destination, at) in due {
            match self.inner.destinations.get(&destination) {
                Some(d) => self.note_due(d.index, at),
                None => unknown.push(destination),
            }
        }
        if sweep {
            self.park_unknown_destinations(unknown).await;
        }
        true
    }

    /// Claims one batch from the destinations due, starts its attempts, and
    /// says whether more may be due now.
    ///
    /// It takes the due destinations from the schedule, earliest first, as
    /// many as the batch has room for (each gets at least one), and shares
    /// the room between them ([`shares`]). A destination whose claim window
    /// is less than half free, or whose circuit's probe is out, is set aside
    /// until an attempt of it ends; one whose circuit is open goes back to
    /// the schedule at the end of its cool-down. The store then reads only
    /// rows it takes, however large the backlog held back. A window is
    /// refilled once half of it is free, so claims come in batches rather
    /// than one per finished attempt: a SQLite claim reads past every message
    /// still leased (in flight, or waiting for its record's commit), so each
    /// claim costs about as much however few it takes.
    ///
    /// Afterwards each destination goes back to the schedule: at once if it
    /// gave all it was asked for (more may be due), else when the store says
    /// its next message is due.
    async fn claim_round(&self) -> Round {
        let inner = &self.inner;
        let room = inner
            .slots
            .available_permits()
            .min(inner.config.claim_batch);
        if room < self.refill_at() {
            // Attempts that end wake the loop once enough are free (see
            // `wait_for_slots`).
            return Round::NoRoom;
        }
        let now = self.now_ms();
        // The last quarter of the engine's slots is kept for destinations
        // that hold few claims (fewer than `SMALL`): ten partners that hang
        // held every slot with the claims queued behind their attempts, and
        // a healthy destination's messages waited for their timeouts. A
        // destination holding more takes only from the rest, counted down
        // as the round grants it; one holding fewer may also take up to
        // `SMALL` from the reserve, so it takes many newly busy destinations
        // at once (32 at the defaults) to use the reserve up.
        let mut for_big = inner
            .slots
            .available_permits()
            .saturating_sub(self.reserve());
        let mut ready: Vec<(Arc<DestinationRuntime>, i64, usize)> = Vec::new();
        {
            let mut due = inner.due.lock().unwrap_or_else(PoisonError::into_inner);
            // At most one destination per `MIN_SHARE` of room: each asked
            // gets a run of its due entries, not one message.
            while ready.len() < (room / MIN_SHARE).max(1) {
                let Some((i, at)) = due.pop_due(now) else {
                    break;
                };
                let d = &inner.by_index[i];
                let free = d.window.available_permits();
                let breaker = d.breaker();
                if breaker.state(now) == CircuitState::Open {
                    let reopens = breaker.reopens_at().unwrap_or(now);
                    drop(breaker);
                    due.note(i, reopens);
                    continue;
                }
                // Half-open: one message is the probe; more would only be
                // given back.
                let half_open = breaker.state(now) == CircuitState::HalfOpen;
                drop(breaker);
                let big = |free: usize| d.window_size - free >= SMALL;
                // Read afresh each time: the probe may end between the two
                // checks below.
                // A destination holding many claims is asked only for a
                // run of them: claiming one or two per attempt that ended,
                // with the slots scarce, drained 1,000 destinations at two
                // thirds of one destination's pace.
                let run = MIN_SHARE.min((d.window_size / 2).max(1));
                let held_back = |free: usize| {
                    d.breaker().blocks_claims(now)
                        || free < (d.window_size / 2).max(1)
                        || (big(free) && for_big < run)
                };
                if held_back(free) {
                    // Set aside until an attempt of it ends. The flag goes
                    // up before the check below, and an attempt's end looks
                    // at the window after it frees its places: one of the
                    // two sees the other (the fences order the flag and the
                    // semaphore's count).
                    d.set_aside_due.store(at, Ordering::SeqCst);
                    d.set_aside.store(true, Ordering::SeqCst);
                    fence(Ordering::SeqCst);
                    let free = d.window.available_permits();
                    if held_back(free) || !d.set_aside.swap(false, Ordering::SeqCst) {
                        continue;
                    }
                }
                let free = d.window.available_permits();
                let held = d.window_size - free;
                let from_reserve = SMALL.saturating_sub(held);
                let room_for_it = if half_open {
                    free.min(1)
                } else {
                    free.min(from_reserve + for_big)
                };
                // What it may take beyond `SMALL` comes off the rest.
                for_big = for_big.saturating_sub(room_for_it.saturating_sub(from_reserve));
                ready.push((Arc::clone(d), at, room_for_it));
            }
            // More due than room: attempts that end wake the scheduler.
            inner
                .left_out
                .store(due.earliest().is_some_and(|t| t <= now), Ordering::SeqCst);
        }
        if ready.is_empty() {
            return Round::Partial;
        }
        let free: Vec<usize> = ready.iter().map(|(_, _, f)| *f).collect();
        let want: Vec<(String, usize)> = ready
            .iter()
            .zip(shares(room, &free))
            .map(|((d, _, _), n)| (d.config.name.clone(), n))
            .collect();
        let claimed = match self.claim(now, want.clone()).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot claim due messages");
                // Asked again once the store may have recovered.
                let later = now + inner.config.idle_poll.as_millis() as i64;
                for (d, _, _) in &ready {
                    self.note_due(d.index, later);
                }
                return Round::Failed;
            }
        };
        let mut got: HashMap<&str, usize> = HashMap::with_capacity(want.len());
        for (c, _) in &claimed {
            *got.entry(c.message.destination.as_str()).or_default() += 1;
        }
        let mut full = false;
        let mut emptied: Vec<String> = Vec::new();
        for ((d, _, _), (name, n)) in ready.iter().zip(&want) {
            if *n > 0 && got.get(name.as_str()).copied().unwrap_or(0) >= *n {
                full = true;
                self.note_due(d.index, now);
            } else {
                emptied.push(name.clone());
            }
        }
        drop(got);
        self.start(claimed, now).await;
        if !emptied.is_empty() {
            match inner.store.due_after(emptied.clone(), now).await {
                Ok(next) => {
                    for (name, at) in next {
                        if let Some(at) = at {
                            self.note_due_of(&name, at);
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read when messages are due next");
                    let later = now + inner.config.idle_poll.as_millis() as i64;
                    for name in &emptied {
                        self.note_due_of(name, later);
                    }
                }
            }
        }
        if full {
            Round::Full
        } else {
            Round::Partial
        }
    }

    /// Starts an attempt for each claimed message, each holding a place in
    /// its destination's window and one of the engine's slots.
    async fn start(&self, claimed: Vec<(Claimed, i64)>, now: i64) {
        let inner = &self.inner;
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
                let destination = c.message.destination.clone();
                let _ = inner
                    .store
                    .release(vec![(c.message.id, c.lease)], c.due_at)
                    .await;
                self.note_due_of(&destination, now);
                continue;
            };
            let engine = self.clone();
            tokio::spawn(async move {
                engine.attempt(c, lease_until, window).await;
                drop(slot);
                engine.wake_if_room(&dest);
            });
        }
    }

    /// The engine's slots kept for destinations holding few claims (see
    /// `claim_round`): a quarter.
    fn reserve(&self) -> usize {
        (self.inner.config.max_in_flight / 4).max(2 * self.refill_at())
    }

    /// How many of the engine's slots must be free for a round to claim:
    /// half a batch (at most half the slots). When the slots bind (many
    /// destinations draining at once), a round per attempt that ended
    /// claimed one or two messages at a time, and the claims' round trips
    /// set the pace (a drain of 1,000 destinations ran at 0.65 to 0.73 of
    /// one destination's, against 0.77 to 0.82 with this).
    fn refill_at(&self) -> usize {
        let config = &self.inner.config;
        (config.claim_batch.min(config.max_in_flight) / 2).max(1)
    }

    /// Says that due destinations wait for slots (so attempts that end wake
    /// the scheduler once enough are free), and whether enough are free
    /// already. The flag goes up before the slots are read, and an attempt's
    /// end reads the flag after giving its slot back: one of the two sees
    /// the other.
    fn wait_for_slots(&self) -> bool {
        let inner = &self.inner;
        inner.left_out.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        inner.slots.available_permits() >= self.refill_at()
    }

    /// Wakes the scheduler if a claim could now take more: `dest` was set
    /// aside and its window is half free again (the point at which a claim
    /// refills it) or its probe ended, or due destinations were left out
    /// for want of the engine's slots. Every other end of an attempt lets it sleep: a wake-up per
    /// attempt cost a scheduler round (and a timer) per message, for
    /// nothing.
    fn wake_if_room(&self, dest: &DestinationRuntime) {
        let inner = &self.inner;
        // After the window's and the slot's places were given back: pairs
        // with the scheduler's fence between its flags and its reads.
        fence(Ordering::SeqCst);
        let free = dest.window.available_permits();
        // One holding many claims comes back once a run of slots beyond the
        // reserve is free, or once it holds few (its last attempts ended).
        let slots_for_it = dest.window_size - free < SMALL
            || inner.slots.available_permits() >= self.reserve() + MIN_SHARE;
        if dest.set_aside.load(Ordering::SeqCst)
            && free >= (dest.window_size / 2).max(1)
            && slots_for_it
            && dest.set_aside.swap(false, Ordering::SeqCst)
        {
            let at = dest.set_aside_due.load(Ordering::SeqCst);
            inner
                .due
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .note(dest.index, at);
            inner.wake.notify_one();
        } else if inner.left_out.load(Ordering::SeqCst)
            && inner.slots.available_permits() >= self.refill_at()
        {
            inner.wake.notify_one();
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
    async fn park_unknown_destinations(&self, names: Vec<String>) {
        let inner = &self.inner;
        for name in names {
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
        let Claimed {
            mut message,
            lease,
            due_at,
        } = claimed;
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
            self.release(&dest, message.id, lease, due_at).await;
            return;
        }
        // Held by an open circuit: given back as due as it was (the
        // scheduler asks again when the circuit lets a probe through), so
        // that its attempt, when it comes, knows how long it was held.
        let acquired = {
            let mut breaker = dest.breaker();
            breaker
                .try_acquire(now)
                .then(|| breaker.held_for(due_at, now))
        };
        let Some(held) = acquired else {
            self.release(&dest, message.id, lease, due_at).await;
            return;
        };
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
        let (mut record, next, class, healthy) = decide(
            &dest,
            &message,
            &attempted,
            now,
            done,
            inner.config.excerpt_limit,
            jitter_seed,
        );
        if let Some(ms) = held {
            // Late, and why: the timeline shows it on the attempt.
            let held = redrive_core::HumanDuration(Duration::from_millis(ms as u64));
            record.detail = Some(match record.detail.take() {
                Some(d) => format!("held by the circuit breaker for {held}; {d}"),
                None => format!("held by the circuit breaker for {held}"),
            });
        }
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
        let retry_at = match next {
            NextState::Retry { at } => Some(at),
            _ => None,
        };
        let recorded = inner
            .store
            .record(message.id.clone(), lease, record, next, done)
            .await;
        // Due again: at its retry, or (not recorded, so pending as it was)
        // at once.
        match (&recorded, retry_at) {
            (Ok(true), Some(at)) => self.note_due(dest.index, at),
            (Ok(true), None) => {}
            (Ok(false) | Err(_), _) => self.note_due(dest.index, self.now_ms()),
        }
        match recorded {
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

    /// Gives a claimed message back unattempted, due at `due`, and notes it.
    async fn release(&self, dest: &DestinationRuntime, id: String, lease: String, due: i64) {
        let due = match self.inner.store.release(vec![(id, lease)], due).await {
            Ok(_) => due,
            // Pending as it was: due at once, or when its lease ends.
            Err(_) => self.now_ms(),
        };
        self.note_due(dest.index, due);
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
            // Pending as it was: due at once (or when its lease ends).
            self.note_due_of(&message.destination, self.now_ms());
        }
    }
}
