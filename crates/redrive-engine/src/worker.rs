//! One attempt of a claimed message: the destination's limits, a lease
//! check, the breaker, the signed request, the client; then the core's
//! decision, recorded by the store with the next state.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use rand::Rng;
use redrive_core::reconcile::MessageFacts;
use redrive_core::{Credentials, Decision, ErrorClass, Probed, Recovery};
use redrive_store::{AttemptRecord, Claimed, Message, NextState, Store};
use tokio::sync::OwnedSemaphorePermit;

use crate::alerts::{CredentialsAlert, ParkedAlert};
use crate::credentials::Grant;
use crate::destination::DestinationRuntime;
use crate::engine::Engine;
use crate::outcome::{decide, observe, Before, Decided};
use crate::probe;
use crate::quiet;
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
        // Paused since the claim: given back as due as it was.
        if dest.paused.load(Ordering::SeqCst) {
            self.release(&dest, message.id, lease, due_at).await;
            return;
        }
        // Renewable credentials: the token at hand, or one fetched for every
        // attempt waiting; a failing token URL holds the message.
        let grant = match &dest.config.credentials {
            None => None,
            // Boxed, like the probe below: rare or short paths that would
            // otherwise make every attempt's future (spawned per message)
            // as large as their own.
            Some(source) => match Box::pin(source.header(&inner.client, || self.now_ms())).await {
                Grant::Token { header, generation } => Some((header, generation)),
                Grant::Held {
                    until,
                    newly_failing,
                } => {
                    if newly_failing {
                        self.alert_credentials(&dest, source.health(self.now_ms()));
                    }
                    self.release(&dest, message.id, lease, due_at).await;
                    self.note_due(dest.index, until);
                    return;
                }
            },
        };
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
        // need it): moved, not copied; a probe needs it back.
        let body = std::mem::take(&mut message.body);
        let mut request = match build_request_with(&dest.config, &message, body, now) {
            Ok(r) => r,
            Err(detail) => {
                dest.breaker().cancel_probe();
                self.record_unsendable(&message, lease, now, detail).await;
                return;
            }
        };
        if let Some((header, _)) = &grant {
            request
                .headers
                .insert(http::header::AUTHORIZATION, header.clone());
        }
        let body = dest
            .config
            .reconcile
            .is_some()
            .then(|| request.body.clone());
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
        // A second rejection right after a renewal is an `auth` error only
        // if the new token was never taken by the receiver: one that other
        // attempts used up meanwhile (tokens that expire after N requests)
        // is renewed again.
        let just_renewed = match (&grant, &dest.config.credentials) {
            (Some((_, generation)), Some(source)) => {
                if matches!(&attempted.result, Ok(r) if r.status != 401) {
                    source.accepted(*generation);
                }
                dest.renewed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&message.id)
                    && !source.was_accepted(*generation)
            }
            _ => false,
        };
        let token = grant
            .as_ref()
            .and_then(|(h, _)| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "));
        let mut before = Before {
            recovery: Recovery {
                credentials: match (&grant, just_renewed) {
                    (None, _) => Credentials::Fixed,
                    (Some(_), false) => Credentials::Renewable,
                    (Some(_), true) => Credentials::JustRenewed,
                },
                reconcile: dest.config.reconcile.is_some(),
            },
            probed: None,
            token,
        };
        let excerpt_limit = inner.config.excerpt_limit;
        let decide_at = |before: Before<'_>, done: i64| {
            decide(
                &dest,
                &message,
                &attempted,
                now,
                done,
                excerpt_limit,
                jitter_seed,
                before,
            )
        };
        let mut decided = decide_at(before, done);
        if decided.decision == Decision::RenewCredentials {
            if let Some((_, generation)) = &grant {
                if let Some(source) = &dest.config.credentials {
                    source.reject(*generation);
                }
                let mut renewed = dest.renewed.lock().unwrap_or_else(PoisonError::into_inner);
                if renewed.len() >= 100_000 {
                    renewed.clear();
                }
                renewed.insert(message.id.clone());
            }
        }
        let mut probe_note = None;
        if decided.decision == Decision::Probe {
            let body = body.unwrap_or_default();
            let facts = MessageFacts {
                id: &message.id,
                key: &message.idempotency_key,
                path: &message.path,
                headers: &message.headers,
                body: &body,
            };
            let (probed, note) = Box::pin(probe::reconcile(
                &inner.client,
                &dest.config,
                &facts,
                || self.now_ms(),
                lease_until,
            ))
            .await;
            before.probed = Some(&probed);
            decided = decide_at(before, self.now_ms());
            probe_note = Some(note);
            dest.metrics()
                .reconciliations(match probed {
                    Probed::Applied => "applied",
                    Probed::NotApplied => "not_applied",
                    Probed::Unknown(_) => "unknown",
                })
                .increment(1);
        }
        let Decided {
            mut record,
            next,
            class,
            healthy,
            ..
        } = decided;
        // A probe's decision is never `Probe` again; stay safe regardless.
        let next = next.unwrap_or(NextState::Parked {
            reason: "indeterminate".into(),
        });
        let done = self.now_ms();
        if let Some(note) = probe_note {
            record.detail = Some(match record.detail.take() {
                Some(d) => format!("{note}; {d}"),
                None => note,
            });
        }
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
            NextState::Retry { at } | NextState::Again { at } => Some(at),
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
                if let Some(repeated) = quiet::check("record", &e.to_string()) {
                    tracing::error!(message_id = %message.id, error = %e, repeated, "cannot record the attempt; it will be retried when the lease expires")
                }
            }
        }
    }

    /// Reports credentials that started failing to the alert webhook.
    fn alert_credentials(
        &self,
        dest: &DestinationRuntime,
        health: crate::credentials::CredentialsState,
    ) {
        metrics::counter!("redrive_credentials_failures_total", "destination" => dest.config.name.clone()).increment(1);
        if let crate::credentials::CredentialsState::Failing { detail, .. } = health {
            if let Some(sender) = self
                .inner
                .alerts
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
            {
                sender.send_credentials(CredentialsAlert {
                    destination: dest.config.name.clone(),
                    detail,
                });
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
            revision: message.revision,
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
            if let Some(repeated) = quiet::check("record", &e.to_string()) {
                tracing::error!(message_id = %message.id, error = %e, repeated, "cannot record the attempt");
            }
            // Pending as it was: due at once (or when its lease ends).
            self.note_due_of(&message.destination, self.now_ms());
        }
    }
}
