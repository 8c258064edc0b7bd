//! A destination's metric handles, registered once.
//!
//! `metrics::counter!(name, labels...)` builds the label set and looks the
//! metric up in the recorder on every call: at tens of thousands of attempts
//! a second that is a measurable share of an attempt's CPU. The handles are
//! registered on a destination's first attempt (by then the process's
//! recorder is installed; a handle taken before would record nowhere) and
//! reused.

use std::fmt;
use std::sync::Mutex;

use metrics::{Counter, Histogram};

/// The handles of one destination's metrics.
pub struct DestinationMetrics {
    destination: String,
    /// `redrive_attempt_latency_seconds`.
    pub latency: Histogram,
    /// `redrive_delivery_seconds`.
    pub delivery: Histogram,
    /// `redrive_attempts_total` by (class, decision): a handful per
    /// destination, so a short list.
    attempts: Mutex<Vec<(String, String, Counter)>>,
}

impl DestinationMetrics {
    /// Registers `destination`'s metrics with the installed recorder.
    pub fn new(destination: &str) -> DestinationMetrics {
        let labels = [("destination", destination.to_owned())];
        DestinationMetrics {
            destination: destination.to_owned(),
            latency: metrics::histogram!("redrive_attempt_latency_seconds", &labels),
            delivery: metrics::histogram!("redrive_delivery_seconds", &labels),
            attempts: Mutex::new(Vec::new()),
        }
    }

    /// The `redrive_attempts_total` counter of attempts of this class that
    /// ended with this decision.
    pub fn attempts(&self, class: &str, decision: &str) -> Counter {
        let mut known = self
            .attempts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, _, counter)) = known.iter().find(|(c, d, _)| c == class && d == decision) {
            return counter.clone();
        }
        let counter = metrics::counter!(
            "redrive_attempts_total",
            "destination" => self.destination.clone(),
            "class" => class.to_owned(),
            "decision" => decision.to_owned()
        );
        known.push((class.to_owned(), decision.to_owned(), counter.clone()));
        counter
    }

    /// `redrive_reconciliations_total` by outcome (`applied`, `not_applied`,
    /// `unknown`): rare, so registered when used.
    pub fn reconciliations(&self, outcome: &'static str) -> Counter {
        metrics::counter!(
            "redrive_reconciliations_total",
            "destination" => self.destination.clone(),
            "outcome" => outcome
        )
    }
}

impl fmt::Debug for DestinationMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DestinationMetrics")
            .field("destination", &self.destination)
            .finish_non_exhaustive()
    }
}
