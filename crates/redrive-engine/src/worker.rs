//! One attempt of a claimed message: the destination's limits, a lease
//! check, the breaker, the signed request, the client; then the core's
//! decision, recorded by the store with the next state.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use rand::Rng;
use redrive_core::ErrorClass;
use redrive_store::{AttemptRecord, Claimed, Message, NextState, Store};
use tokio::sync::OwnedSemaphorePermit;

use crate::alerts::ParkedAlert;
use crate::destination::DestinationRuntime;
use crate::engine::Engine;
use crate::outcome::{decide, observe};
use crate::request::build_request_with;

impl<S: Store> Engine<S> {
    /// One attempt of a claimed message; `window` is its place in the
    /// destination's claim window, given back once the request is over.
    pub(crate) async fn attempt(
        &self,
        claimed: Claimed,
        lease_until: i64,
        window: OwnedSemaphorePermit,
    ) {
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

    pub(crate) async fn park_unknown_destination(&self, message: Message, lease: String) {
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
