//! What the store keeps: messages, their attempts, and the filters to find them.
//!
//! Times are milliseconds since the Unix epoch (`i64`): the engine passes the
//! clock in, so tests control it and the store never reads one.

use serde::{Deserialize, Serialize};

use crate::listing::Cursor;

/// A message's state. Transitions are listed in ARCHITECTURE.md and performed
/// only by the store's methods named after them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    /// Waiting for its next attempt (or being attempted under a lease).
    Pending,
    /// The receiver accepted it.
    Delivered,
    /// Waiting for a person: see `park_reason`.
    Parked,
    /// A person gave up on it; kept for audit until retention.
    Discarded,
}

impl MessageState {
    /// The name used in the API and the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            MessageState::Pending => "pending",
            MessageState::Delivered => "delivered",
            MessageState::Parked => "parked",
            MessageState::Discarded => "discarded",
        }
    }

    /// Parses a state name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => MessageState::Pending,
            "delivered" => MessageState::Delivered,
            "parked" => MessageState::Parked,
            "discarded" => MessageState::Discarded,
            _ => return None,
        })
    }
}

/// A message to enqueue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    /// Its id (a ULID: sortable by creation).
    pub id: String,
    /// The destination's name.
    pub destination: String,
    /// The HTTP method.
    pub method: String,
    /// The path (and query) appended to the destination's URL.
    pub path: String,
    /// The message's own headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The stable key sent on every attempt; unique across messages.
    pub idempotency_key: String,
    /// A hash of what the caller sent, to tell a retry of the same enqueue
    /// (same key, same request) from a different request reusing a key.
    pub request_hash: String,
    /// The caller vouched that the content blocks duplicates.
    pub marked_idempotent: bool,
    /// When it was accepted.
    pub created_at: i64,
    /// The inbound source it was received on (`[sources.NAME]`), if any.
    pub source: Option<String>,
}

impl NewMessage {
    /// The message as an enqueue stores it: pending, due at once, in its
    /// first cycle. A store that inserts a row builds the answer from this
    /// rather than reading the row back.
    pub fn into_pending(self) -> Message {
        Message {
            id: self.id,
            destination: self.destination,
            method: self.method,
            path: self.path,
            headers: self.headers,
            body: self.body,
            idempotency_key: self.idempotency_key,
            request_hash: self.request_hash,
            marked_idempotent: self.marked_idempotent,
            state: MessageState::Pending,
            park_reason: None,
            last_class: None,
            attempts: 0,
            total_attempts: 0,
            cycle: 1,
            cycle_started_at: self.created_at,
            next_attempt_at: Some(self.created_at),
            leased: false,
            created_at: self.created_at,
            updated_at: self.created_at,
            revision: 1,
            resolution: None,
            source: self.source,
        }
    }
}

/// What an enqueue did.
#[derive(Clone, Debug, PartialEq)]
pub enum Enqueued {
    /// A new message, now durable.
    Created(Message),
    /// The key was seen before with the same request: that message.
    Duplicate(Message),
    /// The key was seen before with a different request.
    Conflict {
        /// The message that holds the key.
        existing_id: String,
    },
}

/// A stored message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Message {
    /// Its id.
    pub id: String,
    /// The destination's name.
    pub destination: String,
    /// The HTTP method.
    pub method: String,
    /// The path appended to the destination's URL.
    pub path: String,
    /// The message's own headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    #[serde(skip)]
    pub body: Vec<u8>,
    /// The stable key sent on every attempt.
    pub idempotency_key: String,
    /// See [`NewMessage::request_hash`].
    #[serde(skip)]
    pub request_hash: String,
    /// The caller vouched that the content blocks duplicates.
    pub marked_idempotent: bool,
    /// Its state.
    pub state: MessageState,
    /// Why it is parked (`not_retryable`, `exhausted`, `expired`, `indeterminate`).
    pub park_reason: Option<String>,
    /// The error class of its last attempt.
    pub last_class: Option<String>,
    /// Attempts in the current cycle.
    pub attempts: u32,
    /// Attempts over every cycle.
    pub total_attempts: u32,
    /// The cycle number: 1, then one more per redrive.
    pub cycle: u32,
    /// When the current cycle began (deadlines count from here).
    pub cycle_started_at: i64,
    /// When it is due, while pending (while leased: when the lease ends).
    pub next_attempt_at: Option<i64>,
    /// True while a worker holds it for an attempt.
    pub leased: bool,
    /// When it was accepted.
    pub created_at: i64,
    /// When its state last changed.
    pub updated_at: i64,
    /// The revision of its request (1 as enqueued; each edit adds one).
    pub revision: u32,
    /// How a person resolved it, if one did.
    pub resolution: Option<crate::people::Resolution>,
    /// The inbound source it was received on, if any.
    pub source: Option<String>,
}

/// A message claimed for an attempt, under a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimed {
    /// The message.
    pub message: Message,
    /// The lease token: only its holder may record the attempt.
    pub lease: String,
    /// When it was due as the claim took it (the message shows the lease's
    /// end): how late its attempt starts is measured from here.
    pub due_at: i64,
}

/// One attempt, as recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// The attempt's number over the message's life, from 1.
    pub n: u32,
    /// The cycle it belongs to.
    pub cycle: u32,
    /// Its number within the cycle, from 1.
    pub attempt: u32,
    /// When it started.
    pub started_at: i64,
    /// How long it took.
    pub latency_ms: u64,
    /// The response status, when there was a response.
    pub status: Option<u16>,
    /// The transport failure, when there was none.
    pub transport: Option<String>,
    /// The error class.
    pub class: String,
    /// `delivered`, `retry` or `park`.
    pub decision: String,
    /// The decision's reason.
    pub reason: String,
    /// For a retry, the delay.
    pub delay_ms: Option<u64>,
    /// The start of the response body, secrets redacted.
    pub response_excerpt: Option<String>,
    /// The transport error's detail, or the rule that fired.
    pub detail: Option<String>,
    /// SyncHive's `linkIdentities`, as JSON, when the body had them.
    pub link_identities: Option<String>,
    /// The revision of the request it sent.
    pub revision: u32,
}

/// The state an attempt leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NextState {
    /// Delivered.
    Delivered,
    /// Pending again, due at this time.
    Retry {
        /// When it is due.
        at: i64,
    },
    /// Parked for a person.
    Parked {
        /// Why.
        reason: String,
    },
    /// Pending again, due at this time, spending none of the cycle's
    /// attempts: the attempt is recorded (it happened) but does not count
    /// against the policy's `max_attempts` (a renewed token, seed 001).
    Again {
        /// When it is due.
        at: i64,
    },
}

impl NextState {
    /// How many of the cycle's attempts the record spends (0 or 1).
    pub const fn spends(&self) -> u32 {
        match self {
            NextState::Again { .. } => 0,
            _ => 1,
        }
    }
}

/// Which messages to list or act on. Empty fields match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this state.
    pub state: Option<MessageState>,
    /// Only this destination.
    pub destination: Option<String>,
    /// Only this last error class.
    pub class: Option<String>,
    /// Only this park reason.
    pub reason: Option<String>,
    /// Only messages updated at or after this time.
    pub since: Option<i64>,
    /// Only messages received on this inbound source.
    pub source: Option<String>,
}

/// A page of messages in the listing's order (`ListOrder`); `next` is the
/// cursor for the next page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// The messages.
    pub messages: Vec<Message>,
    /// Pass this as the cursor to get the next page; `None` at the end.
    pub next: Option<Cursor>,
}

/// Counts for metrics and the overview.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Messages per (destination, state).
    pub by_destination_state: Vec<(String, MessageState, u64)>,
    /// When the oldest due pending message became due.
    pub oldest_due_at: Option<i64>,
}

/// Failures per destination and error class since a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReportRow {
    /// The destination.
    pub destination: String,
    /// The error class.
    pub class: String,
    /// Failed attempts.
    pub attempts: u64,
    /// Distinct messages they belong to.
    pub messages: u64,
    /// Of those, how many are parked now.
    pub parked: u64,
}
