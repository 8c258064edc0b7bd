//! The reconciliation probe (seed 000: "Clients need a way of reconciling
//! failed requests with a server"): after an indeterminate outcome, ask the
//! destination whether the request took effect. The core builds the path
//! and judges the answer (`redrive_core::reconcile`); this sends it, with
//! the destination's headers and credentials.

use redrive_core::reconcile::MessageFacts;
use redrive_core::Probed;

use crate::client::{HttpClient, OutboundRequest};
use crate::credentials::Grant;
use crate::destination::Destination;

/// Waits the probe's `after`, asks, and says what it found, with a line for
/// the attempt's record. Skipped (an unknown answer) when the destination
/// has no probe, the message has no value for a placeholder, the
/// credentials are failing, or the answer could not come before `deadline`.
pub async fn reconcile(
    client: &HttpClient,
    dest: &Destination,
    facts: &MessageFacts<'_>,
    now: impl Fn() -> i64,
    deadline: i64,
) -> (Probed, String) {
    let skipped = |why: String| {
        let line = format!("the reconciliation probe was skipped: {why}");
        (Probed::Unknown(line.clone()), line)
    };
    let Some(spec) = dest.reconcile.as_deref() else {
        return skipped("no probe is configured".into());
    };
    tokio::time::sleep(spec.after).await;
    let path = match spec.path.render(facts) {
        Ok(p) => p,
        Err(e) => return skipped(e.to_string()),
    };
    let timeout = dest.policy.attempt_timeout;
    if now().saturating_add(timeout.as_millis() as i64) >= deadline {
        return skipped("no time left in the lease".into());
    }
    let Ok(method) = http::Method::from_bytes(spec.method.as_bytes()) else {
        return skipped(format!("`{}` is not a method", spec.method));
    };
    let uri = match dest.url_for(&path) {
        Ok(u) => u,
        Err(e) => return skipped(format!("`{path}` is not a path: {e}")),
    };
    let mut headers = http::HeaderMap::new();
    for (name, value) in &dest.headers {
        headers.insert(name.clone(), value.clone());
    }
    if let Some(source) = &dest.credentials {
        match source.header(client, &now).await {
            Grant::Token { header, .. } => {
                headers.insert(http::header::AUTHORIZATION, header);
            }
            Grant::Held { .. } => {
                return skipped("the destination's credentials are failing".into())
            }
        }
    }
    let attempted = client
        .attempt(OutboundRequest {
            method,
            uri,
            headers,
            body: bytes::Bytes::new(),
            timeout,
        })
        .await;
    let probed = attempted.with_outcome(|o| spec.judge(o));
    let answered = match &attempted.result {
        Ok(r) => format!("answered {}", r.status),
        Err(e) => format!("failed ({})", e.kind),
    };
    let verdict = match &probed {
        Probed::Applied => "the request took effect".to_owned(),
        Probed::NotApplied => "the request did not take effect".to_owned(),
        Probed::Unknown(why) => format!("no clear answer: {why}"),
    };
    let line = format!(
        "reconciliation probe {} {path} {answered}: {verdict}",
        spec.method
    );
    (probed, line)
}
