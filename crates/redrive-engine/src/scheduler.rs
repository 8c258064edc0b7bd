//! The scheduler: it keeps in memory which destinations may have messages
//! due and from when (`due`), claims from those that are due in batches
//! under a lease (sharing the batch fairly between them, and setting aside
//! destinations whose circuit is open or whose claim window is full),
//! sleeps until the earliest due time, and spawns one task per message
//! (`worker`).

use std::collections::HashMap;
use std::sync::atomic::{fence, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use rand::Rng;
use redrive_store::{Claimed, Store, StoreError, Wakeups};
use tokio::sync::watch;

use crate::alerts;
use crate::breaker::CircuitState;
use crate::destination::DestinationRuntime;
use crate::due::shares;
use crate::engine::Engine;
use crate::quiet;

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

impl<S: Store> Engine<S> {
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
            let stop = shutdown.clone();
            tokio::spawn(async move { engine.retain(keep, stop).await })
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
        // Pauses first (another node may have paused or resumed one).
        if let Err(e) = self.load_pauses().await {
            if let Some(repeated) = quiet::check("pauses", &e.to_string()) {
                tracing::error!(error = %e, repeated, "cannot read the paused destinations");
            }
            return false;
        }
        let due = match self.inner.store.due_by_destination().await {
            Ok(due) => due,
            Err(e) => {
                if let Some(repeated) = quiet::check("resync", &e.to_string()) {
                    tracing::error!(error = %e, repeated, "cannot read the destinations' due times");
                }
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
                // Paused: out of the schedule until resumed (which notes it).
                if d.paused.load(Ordering::SeqCst) {
                    continue;
                }
                // Credentials failing: nothing to send with until the token
                // URL is tried again.
                if let Some(until) = d
                    .config
                    .credentials
                    .as_ref()
                    .and_then(|c| c.held_until(now))
                {
                    due.note(i, until);
                    continue;
                }
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
                if let Some(repeated) = quiet::check("claim", &e.to_string()) {
                    tracing::error!(error = %e, repeated, "cannot claim due messages");
                }
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
                    if let Some(repeated) = quiet::check("due_after", &e.to_string()) {
                        tracing::error!(error = %e, repeated, "cannot read when messages are due next");
                    }
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
    pub(crate) fn wake_if_room(&self, dest: &DestinationRuntime) {
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
                        if let Some(repeated) = quiet::check("claim_unknown", &e.to_string()) {
                            tracing::error!(error = %e, destination = %name, repeated, "cannot claim messages of an unknown destination");
                        }
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
}
