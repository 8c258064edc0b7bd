//! The journal: every request the mock received and which step answered it,
//! plus counts per route, per step and per idempotency key.
//!
//! Bounded: past its limit the oldest entries are dropped (and counted), so a
//! mock under a benchmark's load keeps a fixed memory.

use std::collections::{HashMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::wire::Request;

/// Headers whose values are secrets: the journal keeps only that they were sent.
const REDACTED: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
];

/// One request, as the journal keeps it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Entry {
    /// Its number, from 1, since the last reset.
    pub seq: u64,
    /// When it was read, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The method.
    pub method: String,
    /// The request target (path and query).
    pub path: String,
    /// The route that answered (`default` when none matched).
    pub route: String,
    /// The index of the step in its route.
    pub step: usize,
    /// What the step did (`respond 503`, `reset`, ...).
    pub answer: String,
    /// The `Idempotency-Key` header, if sent.
    pub idempotency_key: Option<String>,
    /// Every header, lower-case names, secrets redacted.
    pub headers: Vec<(String, String)>,
    /// The body's length in bytes.
    pub body_size: usize,
    /// The body's SHA-256, in hex.
    pub body_sha256: String,
}

impl Entry {
    /// The value of a header (lower-case name) as journaled.
    pub fn header(&self, lower_name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == lower_name)
            .map(|(_, v)| v.as_str())
    }
}

/// The journal and its counts.
#[derive(Debug, Default)]
pub struct Journal {
    entries: VecDeque<Entry>,
    limit: usize,
    seq: u64,
    dropped: u64,
    keys: HashMap<String, u64>,
    keys_dropped: u64,
}

/// What `GET /__mock/journal` returns.
#[derive(Clone, Debug, Serialize)]
pub struct JournalView {
    /// Requests received since the last reset.
    pub total: u64,
    /// Entries dropped because the journal was full.
    pub dropped: u64,
    /// The entries kept, oldest first.
    pub entries: Vec<Entry>,
}

impl Journal {
    /// An empty journal keeping at most `limit` entries.
    pub fn new(limit: usize) -> Self {
        Journal {
            limit,
            ..Journal::default()
        }
    }

    /// Records `req`, answered by `route`'s step `step`.
    pub fn record(&mut self, req: &Request, route: &str, step: usize, answer: &str) {
        self.seq += 1;
        let key = req
            .header("idempotency-key")
            .or_else(|| req.header("webhook-id"));
        if let Some(key) = key {
            let within = self.keys.len() < self.limit.max(1);
            match self.keys.get_mut(key) {
                Some(n) => *n += 1,
                None if within => {
                    self.keys.insert(key.to_owned(), 1);
                }
                None => self.keys_dropped += 1,
            }
        }
        if self.limit == 0 {
            self.dropped += 1;
            return;
        }
        if self.entries.len() == self.limit {
            self.entries.pop_front();
            self.dropped += 1;
        }
        let headers = req
            .headers
            .iter()
            .map(|(k, v)| {
                let v = if REDACTED.contains(&k.as_str()) {
                    "[redacted]".to_owned()
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .collect();
        self.entries.push_back(Entry {
            seq: self.seq,
            at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            method: req.method.clone(),
            path: req.target.clone(),
            route: route.to_owned(),
            step,
            answer: answer.to_owned(),
            idempotency_key: req.header("idempotency-key").map(str::to_owned),
            headers,
            body_size: req.body.len(),
            body_sha256: hex(&Sha256::digest(&req.body)),
        });
    }

    /// The entries (the last `limit` of them when given).
    pub fn view(&self, limit: Option<usize>) -> JournalView {
        let skip = limit.map_or(0, |l| self.entries.len().saturating_sub(l));
        JournalView {
            total: self.seq,
            dropped: self.dropped,
            entries: self.entries.iter().skip(skip).cloned().collect(),
        }
    }

    /// Requests per idempotency key (or `webhook-id`), and how many keys were
    /// not counted because the table was full.
    pub fn keys(&self) -> (&HashMap<String, u64>, u64) {
        (&self.keys, self.keys_dropped)
    }

    /// Requests received since the last reset.
    pub fn total(&self) -> u64 {
        self.seq
    }

    /// Entries dropped because the journal was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}
