//! Every attempt starts at its due time, whatever the number of
//! destinations: 1,000 destinations, messages stored at known times and
//! retried on a fixed schedule, in paused time.
//!
//! Time is tokio's, paused: it moves only when every task waits on a timer,
//! straight to the next one. The engine's clock reads it, so "due at T" and
//! "started at T" are the same instant exactly when the scheduler woke for T
//! and claimed at once. The store's threads are not tokio's, so the store is
//! called through `spawn_blocking`, which holds time still until it answers
//! (else time would jump ahead while a claim runs).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use redrive_core::profiles;
use redrive_engine::{ClientConfig, Clock, Destination, Engine, EngineConfig, HttpClient};
use redrive_mock::{MockServer, Scenario};
use redrive_store::{
    AttemptRecord, AuditFilter, AuditPage, Changed, Claimed, Cursor, Edit, Enqueued, Filter,
    Message, MessageState, NewMessage, NextState, Page, Pause, People, ReportRow, Resolution,
    Revision, SqliteStore, Stats, Store, StoreError,
};
use tokio::sync::watch;

const START: i64 = 1_767_225_600_000;

/// Milliseconds of tokio's (paused) clock, from `START`.
struct TokioClock(tokio::time::Instant);

impl Clock for TokioClock {
    fn now_ms(&self) -> i64 {
        START + self.0.elapsed().as_millis() as i64
    }
}

/// A store whose every call holds tokio's paused clock still until it
/// answers.
#[derive(Clone)]
struct HeldStill<S>(S);

async fn held<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> T {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || handle.block_on(f))
        .await
        .expect("store call")
}

/// Each method of the store, forwarded through [`held`].
macro_rules! forward {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        $(
            async fn $name(&self, $($arg: $ty),*) -> Result<$ret, StoreError> {
                let s = self.0.clone();
                held(async move { s.$name($($arg),*).await }).await
            }
        )*
    };
}

impl<S: Store> Store for HeldStill<S> {
    forward! {
        enqueue(batch: Vec<NewMessage>) -> Vec<Enqueued>;
        claim(now: i64, want: Vec<(String, usize)>, lease: String, lease_until: i64) -> Vec<Claimed>;
        pending_destinations() -> Vec<String>;
        record(id: String, lease: String, attempt: AttemptRecord, next: NextState, now: i64) -> bool;
        release(leases: Vec<(String, String)>, due_at: i64) -> u64;
        next_due() -> Option<i64>;
        due_by_destination() -> Vec<(String, i64)>;
        due_after(destinations: Vec<String>, now: i64) -> Vec<(String, Option<i64>)>;
        get(id: String) -> Option<(Message, Vec<AttemptRecord>)>;
        list(filter: Filter, cursor: Option<Cursor>, limit: usize) -> Page;
        purge(before: i64) -> u64;
        stats(now: i64) -> Stats;
        report(since: i64) -> Vec<ReportRow>;
        attempt_counts(since: i64, bucket_ms: i64) -> Vec<(i64, String, u64)>;
    }
}

impl<S: Store> People for HeldStill<S> {
    forward! {
        redrive(ids: Vec<String>, actor: String, now: i64) -> Vec<String>;
        redrive_matching(filter: Filter, actor: String, now: i64, limit: usize) -> Vec<String>;
        discard(ids: Vec<String>, actor: String, now: i64) -> Vec<String>;
        edit(id: String, edit: Edit, actor: String, now: i64) -> Changed<u32>;
        revisions(id: String) -> Vec<Revision>;
        resolve(id: String, resolution: Resolution) -> Changed<()>;
        pause(pause: Pause) -> bool;
        resume(destination: String, actor: String, now: i64) -> bool;
        pauses() -> Vec<Pause>;
        audit(filter: AuditFilter, before: Option<i64>, limit: usize) -> AuditPage;
    }
}

/// The engine over `store` for `destinations`, running on tokio's clock;
/// stop it with the sender.
fn start(
    store: &HeldStill<SqliteStore>,
    destinations: Vec<Destination>,
) -> (
    Engine<HeldStill<SqliteStore>>,
    Arc<TokioClock>,
    watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let clock = Arc::new(TokioClock(tokio::time::Instant::now()));
    let config = EngineConfig {
        retention: None,
        ..EngineConfig::default()
    };
    let client = HttpClient::new(ClientConfig::default()).expect("client");
    let engine = Engine::new(store.clone(), destinations, client, config, clock.clone());
    let (stop, stop_rx) = watch::channel(false);
    let runner = engine.clone();
    let task = tokio::spawn(async move { runner.run(stop_rx).await });
    (engine, clock, stop, task)
}

/// Two 503s, then 200, for every message.
const TWICE_THEN_OK: &str = r#"
[[routes]]
path = "*"
per = "idempotency_key"
key_header = "x-message"
steps = [{ status = 503, times = 2 }, { status = 200 }]
"#;

const DESTINATIONS: usize = 1_000;

/// 1,000 destinations under Operations1 (retries 1 s, then 2 s, after the
/// attempt: seed 003). Each gets one message, stored at its own time over
/// ten seconds (ten destinations per 100 ms, the others idle meanwhile);
/// each is answered 503 twice, then 200. Every attempt must start exactly
/// when it is due: the first when the message was stored, each retry at
/// the end of the attempt before it plus its delay.
#[tokio::test(start_paused = true)]
async fn every_attempt_starts_at_its_due_time_among_1000_destinations() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = SqliteStore::open(&dir.path().join("redrive.db")).expect("store");
    let store = HeldStill(sqlite.clone());
    let mock = MockServer::start(
        Scenario::from_toml("test", TWICE_THEN_OK, None).expect("scenario"),
        "127.0.0.1:0".parse::<SocketAddr>().expect("addr"),
        None,
    )
    .await
    .expect("mock");
    let policy = Arc::new(profiles::builtin("operations1").expect("profile"));
    let destinations: Vec<Destination> = (0..DESTINATIONS)
        .map(|k| Destination {
            name: format!("d{k:04}"),
            url: mock.url().parse().expect("url"),
            policy_name: "operations1".into(),
            policy: Arc::clone(&policy),
            headers: Vec::new(),
            max_in_flight: 32,
            rate_limit: None,
            signing: None,
            credentials: None,
            reconcile: None,
        })
        .collect();
    let (engine, clock, stop, task) = start(&store, destinations);

    // Stored at their own times, in an order unrelated to their names.
    let mut order: Vec<usize> = (0..DESTINATIONS)
        .map(|k| (k * 7_919) % DESTINATIONS)
        .collect();
    order.dedup();
    assert_eq!(order.len(), DESTINATIONS);
    for (n, k) in order.iter().enumerate() {
        let at = START + (n as i64 / 10) * 100;
        tokio::time::sleep_until(clock.0 + Duration::from_millis((at - START) as u64)).await;
        assert_eq!(clock.now_ms(), at);
        let id = format!("01SCHED{k:04}");
        let m = NewMessage {
            id: id.clone(),
            destination: format!("d{k:04}"),
            method: "POST".into(),
            path: "/v1/things".into(),
            headers: vec![("x-message".into(), id.clone())],
            body: b"{}".to_vec(),
            idempotency_key: format!("key-{id}"),
            request_hash: format!("h-{id}"),
            marked_idempotent: false,
            created_at: at,
            source: None,
        };
        let stored = engine.enqueue(vec![m]).await.expect("enqueue");
        assert!(matches!(stored[0], Enqueued::Created(_)));
    }

    // Then wait, in virtual time, for every message to be delivered.
    let deadline = clock.now_ms() + 60_000;
    loop {
        let stats = store.stats(clock.now_ms()).await.expect("stats");
        let delivered: u64 = stats
            .by_destination_state
            .iter()
            .filter(|(_, s, _)| *s == MessageState::Delivered)
            .map(|(_, _, n)| n)
            .sum();
        if delivered == DESTINATIONS as u64 {
            break;
        }
        assert!(
            clock.now_ms() < deadline,
            "{delivered} of {DESTINATIONS} delivered a minute after the last was stored"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let _ = stop.send(true);
    task.await.expect("engine");

    // Listings page through them by name.
    let (page, next) = engine.destinations_page(None, 100);
    assert_eq!(page.len(), 100);
    assert_eq!(
        (page[0].0.name.as_str(), next.as_deref()),
        ("d0000", Some("d0099"))
    );
    let (page, next) = engine.destinations_page(Some("d0950"), 100);
    assert_eq!(
        (page.len(), page[0].0.name.as_str(), next),
        (49, "d0951", None)
    );
    assert!(engine.destinations_page(Some("d0999"), 100).0.is_empty());

    let mut late = Vec::new();
    for k in 0..DESTINATIONS {
        let (m, attempts) = store
            .get(format!("01SCHED{k:04}"))
            .await
            .expect("get")
            .expect("found");
        assert_eq!(m.state, MessageState::Delivered);
        assert_eq!(
            attempts.iter().map(|a| a.status).collect::<Vec<_>>(),
            vec![Some(503), Some(503), Some(200)],
            "{}",
            m.id
        );
        let mut due = m.created_at;
        for a in &attempts {
            if a.started_at != due {
                late.push((m.id.clone(), a.attempt, due, a.started_at - due));
            }
            due = a.started_at + a.latency_ms as i64 + a.delay_ms.unwrap_or(0) as i64;
        }
        assert_eq!(
            attempts
                .iter()
                .filter_map(|a| a.delay_ms)
                .collect::<Vec<_>>(),
            vec![1_000, 2_000],
            "Operations1's schedule: 1 s, then 2 s"
        );
    }
    assert!(
        late.is_empty(),
        "{} of {} attempts started after their due time, e.g. {:?}",
        late.len(),
        3 * DESTINATIONS,
        &late[..late.len().min(5)]
    );
}

/// Ten destinations whose receiver hangs (it answers after 20 s; the
/// attempts time out at 5 s) hold 3,000 messages, more than the engine's
/// 1,024 slots; a healthy destination beside them still starts each of its
/// messages when it is due: the last quarter of the slots is kept for
/// destinations that are not saturated.
#[tokio::test(start_paused = true)]
async fn a_healthy_destination_starts_on_time_beside_ten_that_hang() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = HeldStill(SqliteStore::open(&dir.path().join("redrive.db")).expect("store"));
    let scenario = r#"
[[routes]]
path = "/hang/*"
steps = [{ status = 200, delay = "20s" }]

[default]
status = 200
"#;
    let mock = MockServer::start(
        Scenario::from_toml("test", scenario, None).expect("scenario"),
        "127.0.0.1:0".parse::<SocketAddr>().expect("addr"),
        None,
    )
    .await
    .expect("mock");
    let policy = Arc::new(profiles::builtin("operations1").expect("profile"));
    let destination = |name: String, base: &str| Destination {
        name,
        url: format!("{}{base}", mock.url()).parse().expect("url"),
        policy_name: "operations1".into(),
        policy: Arc::clone(&policy),
        headers: Vec::new(),
        max_in_flight: 64,
        rate_limit: None,
        signing: None,
        credentials: None,
        reconcile: None,
    };
    let mut destinations: Vec<Destination> = (0..10)
        .map(|k| destination(format!("hang{k}"), "/hang"))
        .collect();
    destinations.push(destination("healthy".into(), "/ok"));
    let (engine, clock, stop, task) = start(&store, destinations);

    let message = |id: String, destination: &str, at: i64| NewMessage {
        id: id.clone(),
        destination: destination.into(),
        method: "POST".into(),
        path: "/x".into(),
        headers: Vec::new(),
        body: b"{}".to_vec(),
        idempotency_key: format!("key-{id}"),
        request_hash: "h".into(),
        marked_idempotent: false,
        created_at: at,
        source: None,
    };
    for k in 0..10 {
        let batch = (0..300)
            .map(|i| message(format!("01HANG{k}{i:04}"), &format!("hang{k}"), START))
            .collect();
        engine.enqueue(batch).await.expect("enqueue");
    }
    // The hangers claim and start; then a message to the healthy one every
    // 250 ms for ten seconds, across the hangers' timeouts and retries.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut probes = Vec::new();
    for n in 0..40 {
        let at = START + 1_000 + n * 250;
        tokio::time::sleep_until(clock.0 + Duration::from_millis((at - START) as u64)).await;
        let id = format!("01OK{n:04}");
        engine
            .enqueue(vec![message(id.clone(), "healthy", at)])
            .await
            .expect("enqueue");
        probes.push(id);
    }
    let mut late = Vec::new();
    for id in &probes {
        let deadline = clock.now_ms() + 60_000;
        let first = loop {
            let (m, attempts) = store.get(id.clone()).await.expect("get").expect("found");
            if let Some(a) = attempts.first() {
                break a.started_at - m.created_at;
            }
            assert!(clock.now_ms() < deadline, "{id} never attempted");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if first != 0 {
            late.push((id.clone(), first));
        }
    }
    let _ = stop.send(true);
    task.await.expect("engine");
    assert!(late.is_empty(), "started late (ms): {late:?}");
}
