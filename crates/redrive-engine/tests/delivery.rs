//! End to end: the engine delivers messages from a real SQLite store to
//! `redrive mock` over real HTTP, and each built-in profile plays out as its
//! seed says. The clock is manual: a test moves it to the next due time, so a
//! 24-hour schedule runs in milliseconds and nothing depends on timing.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use redrive_core::profiles;
use redrive_core::reconcile::ReconcileProbe;
use redrive_engine::{
    BreakerConfig, ClientConfig, Clock, Destination, Engine, EngineConfig, HttpClient, OAuth2,
    SigningSecret, TokenSource,
};
use redrive_mock::{MockServer, Scenario};
use redrive_store::{
    AttemptRecord, Enqueued, Message, MessageState, NewMessage, People, SqliteStore, Store,
};
use tokio::sync::watch;

const START: i64 = 1_767_225_600_000;

#[derive(Default)]
struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

struct Rig {
    engine: Engine<SqliteStore>,
    store: SqliteStore,
    clock: Arc<ManualClock>,
    mock: MockServer,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
    next_id: u32,
}

struct DestSpec<'a> {
    profile: &'a str,
    max_in_flight: usize,
    signing: Option<&'a str>,
    headers: Vec<(&'static str, &'static str)>,
    /// Renewable credentials; `{mock}` in the token URL is the mock's URL.
    credentials: Option<OAuth2>,
    reconcile: Option<ReconcileProbe>,
}

fn dest<'a>(profile: &'a str) -> DestSpec<'a> {
    DestSpec {
        profile,
        max_in_flight: 8,
        signing: None,
        credentials: None,
        reconcile: None,
        headers: Vec::new(),
    }
}

async fn rig(scenario: &str, spec: DestSpec<'_>, tweak: impl FnOnce(&mut EngineConfig)) -> Rig {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("redrive.db")).expect("store");
    let mock = MockServer::start(
        Scenario::from_toml("test", scenario, None).unwrap_or_else(|e| panic!("{e}")),
        "127.0.0.1:0".parse::<SocketAddr>().expect("addr"),
        None,
    )
    .await
    .expect("mock");
    let destination = Destination {
        name: "crm".into(),
        url: mock.url().parse().expect("url"),
        policy_name: spec.profile.into(),
        policy: Arc::new(profiles::builtin(spec.profile).expect("profile")),
        headers: spec
            .headers
            .iter()
            .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect(),
        max_in_flight: spec.max_in_flight,
        rate_limit: None,
        signing: spec
            .signing
            .map(|s| SigningSecret::parse(s).expect("secret")),
        credentials: spec.credentials.map(|mut g| {
            g.token_url = format!("{}{}", mock.url(), g.token_url)
                .parse()
                .expect("token url");
            Arc::new(TokenSource::new("crm", g))
        }),
        reconcile: spec.reconcile.map(Arc::new),
    };
    let clock = Arc::new(ManualClock(AtomicI64::new(START)));
    let mut config = EngineConfig {
        idle_poll: Duration::from_millis(20),
        retention: None,
        ..EngineConfig::default()
    };
    tweak(&mut config);
    let client = HttpClient::new(ClientConfig::default()).expect("client");
    let engine = Engine::new(
        store.clone(),
        vec![destination],
        client,
        config,
        clock.clone(),
    );
    let (stop, stop_rx) = watch::channel(false);
    let runner = engine.clone();
    let task = tokio::spawn(async move { runner.run(stop_rx).await });
    Rig {
        engine,
        store,
        clock,
        mock,
        stop,
        task: Some(task),
        _dir: dir,
        next_id: 0,
    }
}

impl Rig {
    async fn enqueue(&mut self, method: &str, path: &str) -> String {
        self.enqueue_to("crm", method, path).await
    }

    async fn enqueue_to(&mut self, destination: &str, method: &str, path: &str) -> String {
        self.next_id += 1;
        let id = format!("01TEST{:04}", self.next_id);
        let m = NewMessage {
            id: id.clone(),
            destination: destination.into(),
            method: method.into(),
            path: path.into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: br#"{"hello":"world"}"#.to_vec(),
            idempotency_key: format!("key-{id}"),
            request_hash: format!("h-{id}"),
            marked_idempotent: false,
            created_at: self.clock.now_ms(),
            source: None,
        };
        let r = self.store.enqueue(vec![m]).await.expect("enqueue");
        assert!(matches!(r[0], Enqueued::Created(_)));
        self.engine.wake();
        id
    }

    async fn get(&self, id: &str) -> (Message, Vec<AttemptRecord>) {
        self.store
            .get(id.into())
            .await
            .expect("get")
            .expect("found")
    }

    /// Runs the message's schedule: whenever it waits for its next attempt,
    /// the clock jumps there. Returns once it is delivered or parked.
    async fn settle(&self, id: &str) -> (Message, Vec<AttemptRecord>) {
        for _ in 0..4000 {
            let (m, attempts) = self.get(id).await;
            match m.state {
                MessageState::Delivered | MessageState::Parked | MessageState::Discarded => {
                    return (m, attempts)
                }
                MessageState::Pending if !m.leased => {
                    if let Some(due) = m.next_attempt_at {
                        self.clock.0.fetch_max(due, Ordering::SeqCst);
                    }
                    self.engine.wake();
                }
                MessageState::Pending => {}
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("message {id} did not settle: {:?}", self.get(id).await);
    }

    async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

fn delays(attempts: &[AttemptRecord]) -> Vec<u64> {
    attempts.iter().filter_map(|a| a.delay_ms).collect()
}

const FAIL_TWICE: &str = r#"
[[routes]]
path = "*"
per = "idempotency_key"
steps = [{ status = 503, times = 2 }, { status = 200 }]
"#;

#[tokio::test]
async fn standard_delivers_after_temporary_failures_with_the_same_key_on_every_attempt() {
    let mut r = rig(FAIL_TWICE, dest("standard"), |_| {}).await;
    let id = r.enqueue("POST", "/v1/users").await;
    let (m, attempts) = r.settle(&id).await;
    assert_eq!((m.state, m.attempts), (MessageState::Delivered, 3));
    assert_eq!(
        attempts.iter().map(|a| a.status).collect::<Vec<_>>(),
        vec![Some(503), Some(503), Some(200)]
    );
    let journal = r.mock.journal(None);
    assert_eq!(journal.entries.len(), 3);
    for e in &journal.entries {
        assert_eq!(
            e.idempotency_key.as_deref(),
            Some(format!("key-{id}").as_str()),
            "same key every time"
        );
        assert_eq!(e.path, "/v1/users");
        assert_eq!(e.method, "POST");
    }
    r.stop().await;
}

#[tokio::test]
async fn standard_parks_a_content_error_at_once() {
    let mut r = rig(
        "[default]\nstatus = 400\nbody = '{\"error\":\"missing field\"}'\n",
        dest("standard"),
        |_| {},
    )
    .await;
    let id = r.enqueue("POST", "/v1/users").await;
    let (m, attempts) = r.settle(&id).await;
    assert_eq!(
        (m.state, m.park_reason.as_deref(), m.attempts),
        (MessageState::Parked, Some("not_retryable"), 1)
    );
    assert_eq!(attempts[0].class, "content");
    assert_eq!(
        attempts[0].response_excerpt.as_deref(),
        Some(r#"{"error":"missing field"}"#)
    );
    r.stop().await;
}

#[tokio::test]
async fn operations1_exhausts_after_exactly_5_attempts_at_1_2_4_8_seconds() {
    let mut r = rig("[default]\nstatus = 503\n", dest("operations1"), |_| {}).await;
    let id = r.enqueue("GET", "/tenants/t/users/u").await;
    let (m, attempts) = r.settle(&id).await;
    assert_eq!(
        (m.state, m.park_reason.as_deref()),
        (MessageState::Parked, Some("exhausted"))
    );
    assert_eq!(attempts.len(), 5);
    assert_eq!(delays(&attempts), vec![1000, 2000, 4000, 8000]);
    assert_eq!(r.mock.counts().total, 5);
    r.stop().await;
}

#[tokio::test]
async fn privo_parks_a_post_with_a_5xx_as_indeterminate_and_retries_a_get() {
    let scenario = "[[routes]]\npath = \"/api/v1/account/*\"\nsteps = [{ status = 500 }]\n\
                    [[routes]]\npath = \"/api/v1/users/*\"\nsteps = [{ status = 502, times = 2 }, { status = 200 }]\n";
    let mut r = rig(scenario, dest("privo"), |_| {}).await;
    let post = r.enqueue("POST", "/api/v1/account/register").await;
    let (m, attempts) = r.settle(&post).await;
    assert_eq!(
        (m.state, m.park_reason.as_deref()),
        (MessageState::Parked, Some("indeterminate"))
    );
    assert_eq!(attempts.len(), 1, "not blindly retried (seed 000)");
    let get = r.enqueue("GET", "/api/v1/users/1").await;
    let (m, attempts) = r.settle(&get).await;
    assert_eq!((m.state, attempts.len()), (MessageState::Delivered, 3));
    r.stop().await;
}

#[tokio::test]
async fn retry_after_is_obeyed_exactly() {
    let scenario = "[[routes]]\npath = \"*\"\nsteps = [{ preset = \"rate_limited\", retry_after = 7 }, { status = 200 }]\n";
    let mut r = rig(scenario, dest("privo"), |_| {}).await;
    let id = r.enqueue("POST", "/api/v1/account/register").await;
    let (m, attempts) = r.settle(&id).await;
    assert_eq!(m.state, MessageState::Delivered);
    assert_eq!(
        delays(&attempts),
        vec![7000],
        "429 is refused, not applied: retried even for a POST"
    );
    assert_eq!(attempts[1].started_at - attempts[0].started_at, 7000);
    r.stop().await;
}

#[tokio::test]
async fn synchive_retries_retry_later_and_keeps_link_identities_when_it_parks() {
    let scenario = "[[routes]]\npath = \"/limber-sync/*\"\nsteps = [{ preset = \"retry_later\" }, { status = 200 }]\n\
                    [[routes]]\npath = \"/v1/data\"\nsteps = [{ preset = \"publish_error\", retryable = false }]\n";
    let mut r = rig(scenario, dest("synchive"), |_| {}).await;
    let ok = r.enqueue("PUT", "/limber-sync/items").await;
    let (m, attempts) = r.settle(&ok).await;
    assert_eq!((m.state, attempts.len()), (MessageState::Delivered, 2));
    let parked = r.enqueue("PUT", "/v1/data").await;
    let (m, attempts) = r.settle(&parked).await;
    assert_eq!(
        (m.state, m.park_reason.as_deref()),
        (MessageState::Parked, Some("not_retryable"))
    );
    let links: serde_json::Value =
        serde_json::from_str(attempts[0].link_identities.as_deref().expect("kept")).expect("json");
    assert_eq!(links["linkIdentities"][0]["externalId"], "632910392");
    r.stop().await;
}

#[tokio::test]
async fn intentplatform_resends_at_t0_plus_1min_10min_1h_24h_and_parks_503() {
    let scenario =
        "[[routes]]\npath = \"/push/*\"\nsteps = [{ status = 500, times = 4 }, { status = 200 }]\n\
                    [[routes]]\npath = \"/maintenance/*\"\nsteps = [{ status = 503 }]\n";
    let mut r = rig(scenario, dest("intentplatform"), |_| {}).await;
    let id = r.enqueue("POST", "/push/order").await;
    let (m, attempts) = r.settle(&id).await;
    assert_eq!((m.state, attempts.len()), (MessageState::Delivered, 5));
    let t0 = attempts[0].started_at;
    let offsets: Vec<i64> = attempts.iter().skip(1).map(|a| a.started_at - t0).collect();
    assert_eq!(offsets, vec![60_000, 600_000, 3_600_000, 86_400_000]);
    let business = r.enqueue("POST", "/maintenance/x").await;
    let (m, _) = r.settle(&business).await;
    assert_eq!(
        (m.state, m.park_reason.as_deref()),
        (MessageState::Parked, Some("not_retryable"))
    );
    r.stop().await;
}

#[tokio::test]
async fn privo_webhook_tries_3_times_within_the_minute_then_parks() {
    let scenario = "[[routes]]\npath = \"/webhooks/*\"\nsteps = [{ status = 500 }]\n";
    let mut r = rig(scenario, dest("privo-webhook"), |_| {}).await;
    assert!(
        r.engine
            .destination("crm")
            .expect("crm")
            .policy
            .alert_on_park
    );
    let id = r.enqueue("POST", "/webhooks/privo").await;
    let (m, attempts) = r.settle(&id).await;
    assert_eq!(
        (m.state, m.park_reason.as_deref(), attempts.len()),
        (MessageState::Parked, Some("exhausted"), 3)
    );
    assert!(attempts[2].started_at - attempts[0].started_at <= 60_000);
    r.stop().await;
}

#[tokio::test]
async fn a_park_is_reported_to_the_alert_webhook() {
    // One mock is the destination, another the operator's webhook.
    let alerts = MockServer::start(
        Scenario::from_toml("alerts", "[default]\nstatus = 204\n", None).expect("scenario"),
        "127.0.0.1:0".parse().expect("addr"),
        None,
    )
    .await
    .expect("mock");
    let hook: http::Uri = format!("{}/hooks/redrive", alerts.url())
        .parse()
        .expect("uri");
    let mut r = rig("[default]\nstatus = 422\n", dest("standard"), move |c| {
        c.alert_webhook = Some(hook)
    })
    .await;
    let id = r.enqueue("POST", "/v1/x").await;
    r.settle(&id).await;
    let mut got = None;
    for _ in 0..600 {
        if let Some(e) = alerts.journal(None).entries.first().cloned() {
            got = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let entry = got.expect("an alert arrived");
    assert_eq!(
        (entry.method.as_str(), entry.path.as_str()),
        ("POST", "/hooks/redrive")
    );
    r.stop().await;
}

#[tokio::test]
async fn a_redriven_message_is_delivered_in_a_new_cycle() {
    let mut r = rig("[default]\nstatus = 400\n", dest("standard"), |_| {}).await;
    let id = r.enqueue("POST", "/v1/users").await;
    let (m, _) = r.settle(&id).await;
    assert_eq!(m.state, MessageState::Parked);
    // The person fixed the receiver; now redrive.
    r.mock.replace_scenario(
        Scenario::from_toml("fixed", "[default]\nstatus = 201\n", None).expect("scenario"),
    );
    let redriven = r
        .store
        .redrive(vec![id.clone()], "ops".into(), r.clock.now_ms())
        .await
        .expect("redrive");
    assert_eq!(redriven, vec![id.clone()]);
    r.engine.wake();
    let (m, attempts) = r.settle(&id).await;
    assert_eq!(
        (m.state, m.cycle, m.attempts, m.total_attempts),
        (MessageState::Delivered, 2, 1, 2)
    );
    assert_eq!(
        (attempts[1].cycle, attempts[1].attempt, attempts[1].status),
        (2, 1, Some(201))
    );
    r.stop().await;
}

#[tokio::test]
async fn an_open_circuit_holds_due_messages_without_spending_their_attempts() {
    let spec = DestSpec {
        max_in_flight: 1,
        ..dest("standard")
    };
    let mut r = rig("[default]\nstatus = 503\n", spec, |c| {
        c.breaker = BreakerConfig {
            failure_threshold: 3,
            cool_down: Duration::from_secs(30),
            max_cool_down: Duration::from_secs(60),
        };
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(r.enqueue("POST", "/v1/x").await);
    }
    // Wait until three attempts failed and the circuit opened.
    for _ in 0..2000 {
        if r.mock.counts().total >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Give the scheduler time to (not) claim more; the clock stays still.
    for _ in 0..20 {
        r.engine.wake();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        r.mock.counts().total,
        3,
        "no attempt while the circuit is open"
    );
    let circuits = r.engine.circuits();
    assert_eq!(circuits[0].1, redrive_engine::CircuitState::Open);
    let mut untouched = 0;
    for id in &ids {
        let (m, _) = r.get(id).await;
        if m.attempts == 0 {
            untouched += 1;
        }
    }
    assert_eq!(
        untouched, 3,
        "three messages waited with their attempts intact"
    );
    // After the cool-down one probe goes through.
    r.clock.0.fetch_add(31_000, Ordering::SeqCst);
    r.engine.wake();
    for _ in 0..2000 {
        if r.mock.counts().total >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..20 {
        r.engine.wake();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(r.mock.counts().total, 4, "exactly one probe");
    // The probe's message was due when the circuit opened: its timeline
    // says why its attempt came 31 s late; the attempts before say nothing.
    let mut held = Vec::new();
    for id in &ids {
        let (_, attempts) = r.get(id).await;
        held.extend(attempts.into_iter().filter_map(|a| a.detail));
    }
    let held: Vec<&String> = held
        .iter()
        .filter(|d| d.contains("circuit breaker"))
        .collect();
    assert_eq!(held.len(), 1, "{held:?}");
    assert!(
        held[0].starts_with("held by the circuit breaker for 31s; "),
        "{}",
        held[0]
    );
    r.stop().await;
}

#[tokio::test]
async fn signatures_and_destination_headers_are_sent_and_secrets_stay_out_of_records() {
    let spec = DestSpec {
        signing: Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        headers: vec![("authorization", "Bearer s3cr3t-token-value")],
        ..dest("standard")
    };
    let scenario = "[default]\nstatus = 500\nbody = '{\"echo\":\"Bearer s3cr3t-token-value\",\"password\":\"hunter2\"}'\n";
    let mut r = rig(scenario, spec, |c| c.breaker.failure_threshold = 100).await;
    let id = r.enqueue("POST", "/hooks").await;
    let (_, attempts) = r.settle(&id).await;
    let e = &r.mock.journal(None).entries[0];
    assert_eq!(e.header("webhook-id"), Some(id.as_str()));
    let ts: i64 = e
        .header("webhook-timestamp")
        .expect("timestamp")
        .parse()
        .expect("number");
    assert_eq!(ts, START / 1000);
    let expected = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .expect("secret")
        .sign(&id, ts, br#"{"hello":"world"}"#);
    assert_eq!(e.header("webhook-signature"), Some(expected.as_str()));
    assert_eq!(
        e.header("authorization"),
        Some("[redacted]"),
        "the mock got it (and redacted it)"
    );
    for a in &attempts {
        let text = format!("{a:?}");
        assert!(
            !text.contains("s3cr3t") && !text.contains("hunter2"),
            "{text}"
        );
    }
    r.stop().await;
}

/// Every built-in profile, the same three stories: temporary failures then
/// success (the right number of attempts, the same key on each where the
/// policy sends one), a content error (parked at once), and a failure that
/// never ends (parked as exhausted after exactly `max_attempts`).
#[tokio::test]
async fn every_profile_delivers_after_temporary_failures_parks_content_errors_and_exhausts() {
    for (profile, temporary) in [
        ("standard", 503),
        ("privo", 500),
        ("privo-webhook", 502),
        ("synchive", 503),
        ("operations1", 429),
        ("intentplatform", 408),
    ] {
        let scenario = format!(
            "[[routes]]\npath = \"/ok/*\"\nsteps = [{{ status = {temporary}, times = 2 }}, {{ status = 200 }}]\n\
             [[routes]]\npath = \"/bad/*\"\nsteps = [{{ status = 400 }}]\n\
             [[routes]]\npath = \"/down/*\"\nsteps = [{{ status = {temporary} }}]\n"
        );
        let mut r = rig(&scenario, dest(profile), |c| {
            c.breaker.failure_threshold = 1000
        })
        .await;
        let policy = profiles::builtin(profile).expect("profile");

        let ok = r.enqueue("GET", "/ok/1").await;
        let (m, attempts) = r.settle(&ok).await;
        assert_eq!(
            (m.state, attempts.len()),
            (MessageState::Delivered, 3),
            "{profile}"
        );
        let sent = r.mock.journal(None).entries;
        let keys: Vec<Option<String>> = sent
            .iter()
            .filter(|e| e.path == "/ok/1")
            .map(|e| {
                policy
                    .idempotency_header
                    .as_ref()
                    .and_then(|h| e.header(&h.to_ascii_lowercase()).map(str::to_owned))
            })
            .collect();
        match &policy.idempotency_header {
            Some(_) => assert!(
                keys.iter()
                    .all(|k| k.as_deref() == Some(format!("key-{ok}").as_str())),
                "{profile}: {keys:?}"
            ),
            None => assert!(
                sent.iter().all(|e| e.idempotency_key.is_none()),
                "{profile} documents no idempotency header, so none is sent"
            ),
        }

        let bad = r.enqueue("GET", "/bad/1").await;
        let (m, attempts) = r.settle(&bad).await;
        assert_eq!(
            (m.state, m.park_reason.as_deref(), attempts.len()),
            (MessageState::Parked, Some("not_retryable"), 1),
            "{profile}"
        );

        let down = r.enqueue("GET", "/down/1").await;
        let (m, attempts) = r.settle(&down).await;
        assert_eq!(
            (m.state, m.park_reason.as_deref(), attempts.len() as u32),
            (MessageState::Parked, Some("exhausted"), policy.max_attempts),
            "{profile}"
        );
        r.stop().await;
    }
}

#[tokio::test]
async fn messages_for_a_destination_no_longer_configured_are_parked_not_lost() {
    let mut r = rig("[default]\nstatus = 200\n", dest("standard"), |_| {}).await;
    let gone = r.enqueue_to("gone", "POST", "/v1/users").await;
    let kept = r.enqueue("POST", "/v1/users").await;
    assert_eq!(r.settle(&kept).await.0.state, MessageState::Delivered);
    // The scheduler looks for unknown destinations once a minute.
    r.clock.0.fetch_add(61_000, Ordering::SeqCst);
    r.engine.wake();
    let (m, attempts) = r.settle(&gone).await;
    assert_eq!(
        (m.state, m.park_reason.as_deref(), attempts.len()),
        (MessageState::Parked, Some("not_retryable"), 1)
    );
    let detail = attempts[0].detail.as_deref().unwrap_or_default();
    assert!(detail.contains("`gone` is not configured"), "{detail}");
    assert_eq!(
        r.mock.journal(None).entries.len(),
        1,
        "only `kept` was sent"
    );
    r.stop().await;
}
