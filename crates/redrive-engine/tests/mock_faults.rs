//! The engine's HTTP client meets every step of `redrive mock`, and the core
//! classifies what it saw as DESIGN.md says: one test per step kind.
//!
//! Real HTTP over loopback on port 0. The only waits are the mock's own
//! scripted delays and timeouts, with margins of 10x or more either way.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use redrive_core::{
    profiles, AttemptContext, Decision, ErrorClass, ParkReason, RequestFacts, TransportFailure,
};
use redrive_engine::{Attempted, ClientConfig, HttpClient, OutboundRequest};
use redrive_mock::{MockServer, Scenario};

async fn mock(steps: &str) -> MockServer {
    let text = format!("[[routes]]\npath = \"*\"\nsteps = [{steps}]\n");
    let scenario = Scenario::from_toml("test", &text, None).expect("valid scenario");
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    MockServer::start(scenario, addr, None)
        .await
        .expect("mock starts")
}

fn client() -> HttpClient {
    HttpClient::new(ClientConfig {
        connect_timeout: Duration::from_secs(2),
        ..ClientConfig::default()
    })
    .expect("client")
}

async fn attempt_with(
    client: &HttpClient,
    url: &str,
    method: Method,
    timeout: Duration,
) -> Attempted {
    let mut headers = HeaderMap::new();
    headers.insert("idempotency-key", HeaderValue::from_static("k-1"));
    client
        .attempt(OutboundRequest {
            method,
            uri: url.parse().expect("uri"),
            headers,
            body: Bytes::from_static(b"{\"hello\":1}"),
            timeout,
        })
        .await
}

async fn attempt(url: &str, timeout: Duration) -> Attempted {
    attempt_with(&client(), url, Method::POST, timeout).await
}

/// Classifies and decides under `profile` for a request `method` without a key.
fn decide(
    a: &Attempted,
    profile: &str,
    method: &str,
) -> (ErrorClass, Decision, Option<serde_json::Value>) {
    let policy = profiles::builtin(profile).expect("profile");
    let now = SystemTime::now();
    let ctx = AttemptContext {
        attempt: 1,
        now,
        cycle_started_at: now,
    };
    a.with_outcome(|outcome| {
        let v = policy.decide(&RequestFacts::new(method), outcome, &ctx, &mut ZeroRng);
        (
            v.class(),
            v.decision,
            v.classification.signals.link_identities.clone(),
        )
    })
}

struct ZeroRng;
impl rand_core_shim::RngCore for ZeroRng {
    fn next_u32(&mut self) -> u32 {
        0
    }
    fn next_u64(&mut self) -> u64 {
        0
    }
    fn fill_bytes(&mut self, d: &mut [u8]) {
        d.fill(0)
    }
}

fn kind(a: &Attempted) -> Option<TransportFailure> {
    a.result.as_ref().err().map(|e| e.kind)
}

const SHORT: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(10);

#[tokio::test]
async fn respond_200_is_delivered_and_the_body_is_kept() {
    let m = mock(r#"{ status = 200, body = "ok!" }"#).await;
    let a = attempt(&m.url(), LONG).await;
    let r = a.result.as_ref().expect("a response");
    assert_eq!((r.status, &r.body[..]), (200, &b"ok!"[..]));
    assert_eq!(decide(&a, "standard", "POST").1, Decision::Delivered);
    let journal = m.journal(None);
    assert_eq!(journal.entries[0].idempotency_key.as_deref(), Some("k-1"));
    assert_eq!(journal.entries[0].body_size, 11);
}

#[tokio::test]
async fn respond_503_is_a_server_error_retried_by_standard() {
    let m = mock("{ status = 503 }").await;
    let a = attempt(&m.url(), LONG).await;
    let (class, decision, _) = decide(&a, "standard", "POST");
    assert_eq!(class, ErrorClass::Server);
    assert!(matches!(decision, Decision::Retry { .. }), "{decision:?}");
}

#[tokio::test]
async fn preset_invalid_token_is_auth_and_never_retried_under_privo() {
    let m = mock(r#"{ preset = "invalid_token" }"#).await;
    let a = attempt(&m.url(), LONG).await;
    let (class, decision, _) = decide(&a, "privo", "GET");
    assert_eq!(class, ErrorClass::Auth);
    assert_eq!(
        decision,
        Decision::Park {
            reason: ParkReason::NotRetryable
        }
    );
}

#[tokio::test]
async fn preset_privo_validation_error_is_a_content_error() {
    let m = mock(r#"{ preset = "privo_validation_error" }"#).await;
    let a = attempt(&m.url(), LONG).await;
    let (class, decision, _) = decide(&a, "privo", "POST");
    assert_eq!(class, ErrorClass::Content);
    assert_eq!(
        decision,
        Decision::Park {
            reason: ParkReason::NotRetryable
        }
    );
    let body: serde_json::Value =
        serde_json::from_slice(&a.result.as_ref().expect("response").body).expect("json");
    assert_eq!(body["status"], "fail");
    assert_eq!(body["validationErrors"][0]["field"], "email");
}

#[tokio::test]
async fn preset_retry_later_is_retried_under_synchive() {
    let m = mock(r#"{ preset = "retry_later" }"#).await;
    let a = attempt(&m.url(), LONG).await;
    let (class, decision, _) = decide(&a, "synchive", "POST");
    assert_eq!(class, ErrorClass::Server);
    assert!(matches!(decision, Decision::Retry { .. }), "{decision:?}");
}

#[tokio::test]
async fn preset_publish_error_not_retryable_parks_and_keeps_link_identities() {
    let m = mock(r#"{ preset = "publish_error", retryable = false }"#).await;
    let a = attempt(&m.url(), LONG).await;
    let (_, decision, links) = decide(&a, "synchive", "PUT");
    assert_eq!(
        decision,
        Decision::Park {
            reason: ParkReason::NotRetryable
        }
    );
    assert_eq!(
        links.expect("kept")["linkIdentities"][0]["externalId"],
        "632910392"
    );
}

#[tokio::test]
async fn preset_process_error_retryable_is_retried() {
    let m = mock(r#"{ preset = "process_error", retryable = true }"#).await;
    let a = attempt(&m.url(), LONG).await;
    assert!(matches!(
        decide(&a, "synchive", "PUT").1,
        Decision::Retry { .. }
    ));
    let m = mock(r#"{ preset = "process_error", retryable = false }"#).await;
    let a = attempt(&m.url(), LONG).await;
    assert_eq!(
        decide(&a, "synchive", "PUT").1,
        Decision::Park {
            reason: ParkReason::NotRetryable
        }
    );
}

#[tokio::test]
async fn preset_rate_limited_with_seconds_sets_the_next_delay_exactly() {
    let m = mock(r#"{ preset = "rate_limited", retry_after = 7 }"#).await;
    let a = attempt(&m.url(), LONG).await;
    let (class, decision, _) = decide(&a, "standard", "POST");
    assert_eq!(class, ErrorClass::RateLimited);
    assert_eq!(
        decision,
        Decision::Retry {
            delay: Duration::from_secs(7),
            reason: redrive_core::RetryReason::RetryAfter
        }
    );
}

#[tokio::test]
async fn preset_rate_limited_with_an_http_date_is_obeyed() {
    let m = mock(r#"{ preset = "rate_limited", retry_after_date = "30s" }"#).await;
    let a = attempt(&m.url(), LONG).await;
    let r = a.result.as_ref().expect("response");
    let header = r
        .headers
        .iter()
        .find(|(k, _)| k == "retry-after")
        .expect("Retry-After");
    assert!(
        httpdate::parse_http_date(&header.1).is_ok(),
        "an HTTP-date: {}",
        header.1
    );
    match decide(&a, "standard", "POST").1 {
        // HTTP-dates have whole seconds: 29 s and a fraction, or 30 s.
        Decision::Retry { delay, reason } => {
            assert_eq!(reason, redrive_core::RetryReason::RetryAfter);
            assert!(
                delay >= Duration::from_secs(28) && delay <= Duration::from_secs(30),
                "{delay:?}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn delay_within_the_timeout_is_answered_and_beyond_it_times_out() {
    let m = mock(r#"{ status = 200, delay = "3s" }"#).await;
    let a = attempt(&m.url(), SHORT).await;
    assert_eq!(kind(&a), Some(TransportFailure::Timeout));
    let m = mock(r#"{ status = 200, delay = "20ms" }"#).await;
    let a = attempt(&m.url(), LONG).await;
    assert_eq!(a.result.as_ref().map(|r| r.status).ok(), Some(200));
}

#[tokio::test]
async fn fault_timeout_is_network_indeterminate() {
    let m = mock(r#"{ fault = "timeout" }"#).await;
    let a = attempt(&m.url(), SHORT).await;
    assert_eq!(kind(&a), Some(TransportFailure::Timeout));
    let (class, decision, _) = decide(&a, "privo", "POST");
    assert_eq!(class, ErrorClass::NetworkIndeterminate);
    assert_eq!(
        decision,
        Decision::Park {
            reason: ParkReason::Indeterminate
        }
    );
}

#[tokio::test]
async fn fault_reset_is_network_indeterminate() {
    let m = mock(r#"{ fault = "reset" }"#).await;
    let a = attempt(&m.url(), LONG).await;
    assert_eq!(kind(&a), Some(TransportFailure::Reset), "{:?}", a.result);
    assert_eq!(
        decide(&a, "privo", "GET").0,
        ErrorClass::NetworkIndeterminate
    );
}

#[tokio::test]
async fn fault_close_is_an_empty_reply_and_network_indeterminate() {
    let m = mock(r#"{ fault = "close" }"#).await;
    let a = attempt(&m.url(), LONG).await;
    assert_eq!(kind(&a), Some(TransportFailure::Closed), "{:?}", a.result);
    assert_eq!(
        decide(&a, "standard", "POST").0,
        ErrorClass::NetworkIndeterminate
    );
}

#[tokio::test]
async fn fault_malformed_is_network_indeterminate() {
    let m = mock(r#"{ fault = "malformed" }"#).await;
    let a = attempt(&m.url(), LONG).await;
    assert_eq!(
        kind(&a),
        Some(TransportFailure::Malformed),
        "{:?}",
        a.result
    );
    assert_eq!(
        decide(&a, "standard", "POST").0,
        ErrorClass::NetworkIndeterminate
    );
}

#[tokio::test]
async fn slow_body_arrives_whole_in_time_and_times_out_when_too_slow() {
    let body = "0123456789".repeat(4);
    let m = mock(&format!(
        r#"{{ status = 200, body = "{body}", slow_body = {{ chunk = 4, every = "300ms" }} }}"#
    ))
    .await;
    let a = attempt(&m.url(), SHORT).await;
    assert_eq!(kind(&a), Some(TransportFailure::Timeout));
    let m = mock(&format!(
        r#"{{ status = 200, body = "{body}", slow_body = {{ chunk = 4, every = "5ms" }} }}"#
    ))
    .await;
    let a = attempt(&m.url(), LONG).await;
    assert_eq!(&a.result.expect("whole body").body[..], body.as_bytes());
}

#[tokio::test]
async fn down_refuses_connections_as_network_unsent_then_comes_back() {
    let m = mock(r#"{ down = "1s" }, { status = 200 }"#).await;
    let c = client();
    // The request that takes the mock down is closed unanswered.
    let first = attempt_with(&c, &m.url(), Method::POST, LONG).await;
    assert_eq!(
        decide(&first, "standard", "POST").0,
        ErrorClass::NetworkIndeterminate
    );
    let second = attempt_with(&c, &m.url(), Method::POST, LONG).await;
    assert_eq!(
        kind(&second),
        Some(TransportFailure::Refused),
        "{:?}",
        second.result
    );
    let (class, decision, _) = decide(&second, "privo", "POST");
    assert_eq!(class, ErrorClass::NetworkUnsent);
    assert!(
        matches!(decision, Decision::Retry { .. }),
        "never sent: safe even for a POST"
    );
    // It comes back on the same address.
    let mut back = None;
    for _ in 0..200 {
        let a = attempt_with(&c, &m.url(), Method::POST, LONG).await;
        if a.result.is_ok() {
            back = Some(a);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        back.expect("listening again").result.map(|r| r.status).ok(),
        Some(200)
    );
}

#[tokio::test]
async fn a_closed_port_is_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let a = attempt(&format!("http://{addr}/"), LONG).await;
    assert_eq!(kind(&a), Some(TransportFailure::Refused));
}

#[tokio::test]
async fn https_to_a_plain_http_server_is_a_tls_failure_never_sent() {
    let m = mock("{ status = 200 }").await;
    let a = attempt(&format!("https://{}/", m.addr()), LONG).await;
    assert_eq!(kind(&a), Some(TransportFailure::Tls), "{:?}", a.result);
    assert_eq!(decide(&a, "privo", "POST").0, ErrorClass::NetworkUnsent);
}

#[tokio::test]
async fn an_unresolvable_host_is_a_dns_failure() {
    let a = attempt("http://redrive-test.invalid/", LONG).await;
    assert_eq!(kind(&a), Some(TransportFailure::Dns), "{:?}", a.result);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let m = mock(r#"{ status = 302, headers = { location = "/elsewhere" } }"#).await;
    let a = attempt(&m.url(), LONG).await;
    assert_eq!(a.result.as_ref().map(|r| r.status).ok(), Some(302));
    assert_eq!(m.counts().total, 1);
}

#[tokio::test]
async fn a_pooled_connection_is_reused_across_attempts() {
    let m = mock("{ status = 200 }").await;
    let c = client();
    for _ in 0..5 {
        let a = attempt_with(&c, &m.url(), Method::GET, LONG).await;
        assert!(a.result.is_ok());
    }
    assert_eq!(m.counts().total, 5);
}
