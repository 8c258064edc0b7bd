//! The JSON the API returns: messages and attempts as DESIGN.md shows them.

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use redrive_engine::destination::is_secret_header;
use redrive_store::{AttemptRecord, Message, Revision};
use serde::Serialize;

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
        .to_string()
}

/// A message.
#[derive(Serialize)]
pub struct MessageView {
    pub id: String,
    pub destination: String,
    pub method: String,
    pub path: String,
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub park_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    pub idempotency_key: String,
    pub idempotent: bool,
    pub headers: Vec<(String, String)>,
    pub attempts_in_cycle: u32,
    pub total_attempts: u32,
    pub cycle: u32,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Vec<AttemptView>>,
    /// The revision of its request that is sent next (1 as enqueued).
    pub revision: u32,
    /// Every revision, when one message is shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revisions: Option<Vec<RevisionView>>,
    /// How a person resolved it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution: Option<ResolutionView>,
    /// The inbound source it was received on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// One revision of a message's request (secret header values redacted).
#[derive(Serialize)]
pub struct RevisionView {
    pub n: u32,
    pub created_at: String,
    pub actor: Option<String>,
    pub note: Option<String>,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The body as text when it is UTF-8, else `body_base64`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
}

/// A person's resolution.
#[derive(Serialize)]
pub struct ResolutionView {
    pub outcome: &'static str,
    pub actor: String,
    pub note: Option<String>,
    pub at: String,
}

/// Header values that are secrets shown as `[redacted]`.
pub fn redacted_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            let v = if is_secret_header(&k.to_ascii_lowercase()) {
                "[redacted]".to_owned()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

/// One attempt.
#[derive(Serialize)]
pub struct AttemptView {
    pub n: u32,
    pub cycle: u32,
    pub attempt: u32,
    pub started_at: String,
    pub latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    pub class: String,
    pub decision: String,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_excerpt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_identities: Option<serde_json::Value>,
    /// The revision of the request it sent.
    pub revision: u32,
    /// What a reconciliation probe found: `applied` or `not_applied`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconciled: Option<&'static str>,
}

impl MessageView {
    /// The view of `m`, with its attempts when given. Secret header values
    /// are redacted.
    pub fn new(m: &Message, attempts: Option<&[AttemptRecord]>) -> Self {
        MessageView {
            id: m.id.clone(),
            destination: m.destination.clone(),
            method: m.method.clone(),
            path: m.path.clone(),
            state: m.state.as_str(),
            park_reason: m.park_reason.clone(),
            class: m.last_class.clone(),
            idempotency_key: m.idempotency_key.clone(),
            idempotent: m.marked_idempotent,
            headers: redacted_headers(&m.headers),
            attempts_in_cycle: m.attempts,
            total_attempts: m.total_attempts,
            cycle: m.cycle,
            created_at: rfc3339(m.created_at),
            updated_at: rfc3339(m.updated_at),
            next_attempt_at: m.next_attempt_at.map(rfc3339),
            attempts: attempts.map(|a| a.iter().map(AttemptView::new).collect()),
            revision: m.revision,
            revisions: None,
            resolution: m.resolution.as_ref().map(|r| ResolutionView {
                outcome: r.outcome.as_str(),
                actor: r.actor.clone(),
                note: r.note.clone(),
                at: rfc3339(r.at),
            }),
            source: m.source.clone(),
        }
    }

    /// With every revision of its request.
    pub fn with_revisions(mut self, revisions: &[Revision]) -> Self {
        self.revisions = Some(
            revisions
                .iter()
                .map(|r| {
                    let text = std::str::from_utf8(&r.body).ok();
                    RevisionView {
                        n: r.n,
                        created_at: rfc3339(r.created_at),
                        actor: r.actor.clone(),
                        note: r.note.clone(),
                        method: r.method.clone(),
                        path: r.path.clone(),
                        headers: redacted_headers(&r.headers),
                        body: text.map(str::to_owned),
                        body_base64: text
                            .is_none()
                            .then(|| base64::engine::general_purpose::STANDARD.encode(&r.body)),
                    }
                })
                .collect(),
        );
        self
    }
}

impl AttemptView {
    fn new(a: &AttemptRecord) -> Self {
        AttemptView {
            n: a.n,
            cycle: a.cycle,
            attempt: a.attempt,
            started_at: rfc3339(a.started_at),
            latency_ms: a.latency_ms,
            status: a.status,
            transport: a.transport.clone(),
            class: a.class.clone(),
            decision: a.decision.clone(),
            reason: a.reason.clone(),
            delay_ms: a.delay_ms,
            response_excerpt: a.response_excerpt.clone(),
            detail: a.detail.clone(),
            link_identities: a
                .link_identities
                .as_deref()
                .and_then(|l| serde_json::from_str(l).ok()),
            revision: a.revision.max(1),
            reconciled: match a.reason.as_str() {
                "reconciled_applied" => Some("applied"),
                "reconciled_not_applied" => Some("not_applied"),
                _ => None,
            },
        }
    }
}

/// `1d1h`, `10m`, `250ms`: a millisecond count for people.
pub fn human_ms(ms: u64) -> String {
    redrive_core::HumanDuration(Duration::from_millis(ms)).to_string()
}
