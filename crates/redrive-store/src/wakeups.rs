//! What other processes say they made due: PostgreSQL's `NOTIFY redrive_due`,
//! whose payload names each destination and the earliest time it made one of
//! its messages due, so that a node's scheduler learns which destinations to
//! claim from without asking the database for every destination.
//!
//! A notification without a payload (one too large to send, or from an older
//! node), one that does not parse, or a listener that reconnected (and may
//! have missed some) says only "something is due": the scheduler then asks
//! the store for every destination's next due time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

/// The most bytes of a payload: PostgreSQL refuses one of 8,000 bytes or
/// more. A larger batch is announced without a payload.
pub const MAX_PAYLOAD: usize = 7_900;

/// What was noted since the scheduler last took the notes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notes {
    /// Destinations made due, each with the earliest time noted.
    pub due: HashMap<String, i64>,
    /// Something was made due that `due` may not name: ask the store.
    pub unknown: bool,
}

impl Notes {
    fn note(&mut self, destination: String, at: i64) {
        self.due
            .entry(destination)
            .and_modify(|t| *t = (*t).min(at))
            .or_insert(at);
    }
}

/// The receiving end: await [`Wakeups::changed`], then [`Wakeups::take`].
#[derive(Clone, Debug)]
pub struct Wakeups {
    signal: watch::Receiver<u64>,
    notes: Arc<Mutex<Notes>>,
}

/// The listening end, held by the store's listener.
#[derive(Debug)]
pub struct WakeupSender {
    signal: watch::Sender<u64>,
    notes: Arc<Mutex<Notes>>,
}

/// A connected pair.
pub fn channel() -> (WakeupSender, Wakeups) {
    let (signal, rx) = watch::channel(0);
    let notes = Arc::new(Mutex::new(Notes::default()));
    (
        WakeupSender {
            signal,
            notes: Arc::clone(&notes),
        },
        Wakeups { signal: rx, notes },
    )
}

impl Wakeups {
    /// Waits for a note; `false` once the sender is gone (then never again).
    pub async fn changed(&mut self) -> bool {
        self.signal.changed().await.is_ok()
    }

    /// The notes so far, emptied.
    pub fn take(&self) -> Notes {
        std::mem::take(&mut *self.notes.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl WakeupSender {
    /// Notes a notification's payload (see [`payload`]).
    pub fn payload(&self, text: &str) {
        {
            let mut notes = self.notes.lock().unwrap_or_else(PoisonError::into_inner);
            match parse(text) {
                Some(due) => due.into_iter().for_each(|(d, at)| notes.note(d, at)),
                None => notes.unknown = true,
            }
        }
        self.signal.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Notes that something may have been made due unannounced.
    pub fn unknown(&self) {
        self.notes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .unknown = true;
        self.signal.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Whether no one listens any more.
    pub fn is_closed(&self) -> bool {
        self.signal.is_closed()
    }
}

/// The payload announcing `due` (destination, time), each destination once
/// at its earliest time: a JSON array of pairs, or empty ("something is
/// due") when it would not fit.
pub fn payload<'a>(due: impl IntoIterator<Item = (&'a str, i64)>) -> String {
    let mut earliest: HashMap<&str, i64> = HashMap::new();
    for (d, at) in due {
        earliest
            .entry(d)
            .and_modify(|t| *t = (*t).min(at))
            .or_insert(at);
    }
    let mut pairs: Vec<(&str, i64)> = earliest.into_iter().collect();
    pairs.sort_unstable();
    match serde_json::to_string(&pairs) {
        Ok(text) if text.len() <= MAX_PAYLOAD => text,
        _ => String::new(),
    }
}

fn parse(text: &str) -> Option<Vec<(String, i64)>> {
    if text.is_empty() {
        return None;
    }
    serde_json::from_str(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn payloads_name_each_destination_at_its_earliest_time() {
        let text = payload([("crm", 30), ("billing", 5), ("crm", 10)]);
        assert_eq!(text, r#"[["billing",5],["crm",10]]"#);
        let (tx, mut rx) = channel();
        tx.payload(&text);
        tx.payload(r#"[["crm",7]]"#);
        assert!(rx.changed().await);
        let notes = rx.take();
        assert_eq!(notes.due.get("crm"), Some(&7));
        assert_eq!(notes.due.get("billing"), Some(&5));
        assert!(!notes.unknown);
        assert_eq!(rx.take(), Notes::default(), "taken once");
    }

    #[test]
    fn what_cannot_be_named_says_ask_the_store() {
        let names: Vec<String> = (0..2_000).map(|i| format!("destination-{i}")).collect();
        assert_eq!(payload(names.iter().map(|n| (n.as_str(), 1))), "");
        let (tx, rx) = channel();
        for text in ["", "not json", r#"{"crm":1}"#] {
            tx.payload(text);
            let notes = rx.take();
            assert!(notes.unknown, "{text:?}");
            assert!(notes.due.is_empty());
        }
        tx.unknown();
        assert!(rx.take().unknown);
    }
}
