//! The operator alert: parked messages are reported to a webhook in batches.
//!
//! Never blocks delivery: the queue is bounded and a full queue drops the alert
//! (counted in `redrive_alerts_dropped_total`; every park is also logged at
//! WARN). The webhook call itself is retried a few times.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Uri};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::client::{HttpClient, OutboundRequest};

/// One parked message, as the alert reports it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ParkedAlert {
    /// The message id.
    pub id: String,
    /// Its destination.
    pub destination: String,
    /// Why it is parked.
    pub reason: String,
    /// The error class of its last attempt.
    pub class: String,
    /// Its last status, if there was a response.
    pub status: Option<u16>,
    /// Attempts in the cycle that ended.
    pub attempts: u32,
}

/// A destination whose credentials started failing: its messages wait.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CredentialsAlert {
    /// The destination.
    pub destination: String,
    /// What the token URL answered (never a secret).
    pub detail: String,
}

/// What the alert task reports.
#[derive(Clone, Debug)]
enum Alert {
    Parked(ParkedAlert),
    Credentials(CredentialsAlert),
}

/// Where parks are queued for the alert task.
#[derive(Clone, Debug)]
pub struct AlertSender(mpsc::Sender<Alert>);

/// The most alerts waiting to be sent.
pub const QUEUE: usize = 10_000;
/// The most parked messages in one webhook call.
pub const BATCH: usize = 100;

impl AlertSender {
    /// Queues an alert, or drops it (counted) when the queue is full.
    pub fn send(&self, alert: ParkedAlert) {
        if self.0.try_send(Alert::Parked(alert)).is_err() {
            metrics::counter!("redrive_alerts_dropped_total").increment(1);
        }
    }

    /// Queues the alert of credentials that started failing (sent alone,
    /// type `redrive.credentials_failing`).
    pub fn send_credentials(&self, alert: CredentialsAlert) {
        if self.0.try_send(Alert::Credentials(alert)).is_err() {
            metrics::counter!("redrive_alerts_dropped_total").increment(1);
        }
    }
}

/// Starts the alert task: it posts batches to `webhook` until every sender is
/// dropped.
pub fn start(client: HttpClient, webhook: Uri) -> (AlertSender, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Alert>(QUEUE);
    let task = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let first = match first {
                Alert::Parked(p) => p,
                Alert::Credentials(c) => {
                    post(&client, &webhook, "redrive.credentials_failing", &c, 1).await;
                    continue;
                }
            };
            let mut batch = vec![first];
            let mut others = Vec::new();
            // Collect what arrives within a second, up to a batch.
            let gather = tokio::time::sleep(Duration::from_secs(1));
            tokio::pin!(gather);
            while batch.len() < BATCH {
                tokio::select! {
                    more = rx.recv() => match more {
                        Some(Alert::Parked(a)) => batch.push(a),
                        Some(Alert::Credentials(c)) => others.push(c),
                        None => break,
                    },
                    _ = &mut gather => break,
                }
            }
            #[derive(Serialize)]
            struct Parked<'a> {
                parked: &'a [ParkedAlert],
            }
            post(
                &client,
                &webhook,
                "redrive.parked",
                &Parked { parked: &batch },
                batch.len(),
            )
            .await;
            for c in others {
                post(&client, &webhook, "redrive.credentials_failing", &c, 1).await;
            }
        }
    });
    (AlertSender(tx), task)
}

/// Posts `{"type": kind, ...content}`; `count` is how many alerts it holds.
async fn post<T: Serialize>(
    client: &HttpClient,
    webhook: &Uri,
    kind: &'static str,
    content: &T,
    count: usize,
) {
    #[derive(Serialize)]
    struct Body<'a, T> {
        r#type: &'static str,
        #[serde(flatten)]
        content: &'a T,
    }
    let body = match serde_json::to_vec(&Body {
        r#type: kind,
        content,
    }) {
        Ok(b) => Bytes::from(b),
        Err(_) => return,
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (i, wait) in [1u64, 2, 4, 0].into_iter().enumerate() {
        let attempted = client
            .attempt(OutboundRequest {
                method: Method::POST,
                uri: webhook.clone(),
                headers: headers.clone(),
                body: body.clone(),
                timeout: Duration::from_secs(10),
            })
            .await;
        match attempted.result {
            Ok(r) if (200..300).contains(&r.status) => {
                metrics::counter!("redrive_alerts_sent_total").increment(count as u64);
                return;
            }
            Ok(r) => tracing::warn!(
                attempt = i + 1,
                status = r.status,
                "the alert webhook refused the alert"
            ),
            Err(e) => {
                tracing::warn!(attempt = i + 1, error = %e, "the alert webhook is unreachable")
            }
        }
        if wait > 0 {
            tokio::time::sleep(Duration::from_secs(wait)).await;
        }
    }
    metrics::counter!("redrive_alerts_failed_total").increment(count as u64);
    tracing::error!(
        kind,
        alerts = count,
        "could not deliver an alert after 4 tries"
    );
}
