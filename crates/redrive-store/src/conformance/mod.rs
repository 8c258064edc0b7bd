//! The behaviour every [`Store`] must have. Each check takes a fresh, empty
//! store; [`conformance_tests!`](crate::conformance_tests) turns them into
//! tests for an implementation.

use crate::model::{AttemptRecord, Enqueued, Filter, MessageState, NewMessage, NextState};
use crate::Store;

mod counts;
mod due;
mod listing;
mod operator;
mod people;
pub use counts::*;
pub use due::*;
pub use listing::*;
pub use operator::*;
pub use people::*;

/// A message to `destination` with key `key`, created at `at`.
pub fn new_message(id: &str, destination: &str, key: &str, at: i64) -> NewMessage {
    NewMessage {
        id: id.to_owned(),
        destination: destination.to_owned(),
        method: "POST".to_owned(),
        path: "/v1/things".to_owned(),
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        body: br#"{"a":1}"#.to_vec(),
        idempotency_key: key.to_owned(),
        request_hash: format!("hash-of-{key}"),
        marked_idempotent: false,
        created_at: at,
        source: None,
    }
}

/// The `i`-th message of a benchmark's backlog for `destination`: a small
/// JSON POST with its own id and key, as the benchmarks store by the million.
pub fn sample_message(i: u64, destination: &str, at: i64) -> NewMessage {
    NewMessage {
        id: format!("01BENCH{i:019}"),
        destination: destination.to_owned(),
        method: "POST".into(),
        path: format!("/m/{i}"),
        headers: vec![("content-type".into(), "application/json".into())],
        body: br#"{"event":"order.created","amount":42}"#.to_vec(),
        idempotency_key: format!("bench-{i}"),
        request_hash: "h".into(),
        marked_idempotent: false,
        created_at: at,
        source: None,
    }
}

/// A claim of up to `n` messages of `destination`.
pub fn want(destination: &str, n: usize) -> Vec<(String, usize)> {
    vec![(destination.to_owned(), n)]
}

fn failed(class: &str, decision: &str, reason: &str) -> AttemptRecord {
    AttemptRecord {
        started_at: 0,
        latency_ms: 3,
        status: Some(503),
        class: class.to_owned(),
        decision: decision.to_owned(),
        reason: reason.to_owned(),
        ..AttemptRecord::default()
    }
}

async fn enqueue_one<S: Store>(s: &S, m: NewMessage) {
    let r = s.enqueue(vec![m]).await.expect("enqueue");
    assert!(matches!(r[0], Enqueued::Created(_)), "{r:?}");
}

/// An enqueued message is pending, due at once, and readable with no attempts;
/// the enqueue answers with the message exactly as stored (a store may build
/// that answer rather than read the row back).
pub async fn enqueue_then_get<S: Store>(s: S) {
    let answer = s
        .enqueue(vec![new_message("01A", "crm", "k1", 1_000)])
        .await
        .expect("enqueue");
    let (m, attempts) = s.get("01A".into()).await.expect("get").expect("found");
    assert_eq!(answer, vec![Enqueued::Created(m.clone())]);
    assert_eq!(m.state, MessageState::Pending);
    assert_eq!(
        (m.next_attempt_at, m.attempts, m.cycle),
        (Some(1_000), 0, 1)
    );
    assert_eq!(m.body, br#"{"a":1}"#);
    assert_eq!(
        m.headers,
        vec![("content-type".to_owned(), "application/json".to_owned())]
    );
    assert!(attempts.is_empty());
    assert!(s.get("nope".into()).await.expect("get").is_none());
}

/// The same key with the same request is the same message; with another
/// request it is a conflict; nothing is stored twice.
pub async fn enqueue_dedupes_by_idempotency_key<S: Store>(s: S) {
    enqueue_one(&s, new_message("01A", "crm", "k1", 1_000)).await;
    let again = s
        .enqueue(vec![new_message("01B", "crm", "k1", 2_000)])
        .await
        .expect("enqueue");
    match &again[0] {
        Enqueued::Duplicate(m) => assert_eq!(m.id, "01A"),
        other => panic!("{other:?}"),
    }
    let mut different = new_message("01C", "crm", "k1", 3_000);
    different.request_hash = "another".into();
    let r = s.enqueue(vec![different]).await.expect("enqueue");
    assert_eq!(
        r[0],
        Enqueued::Conflict {
            existing_id: "01A".into()
        }
    );
    // Within one batch too.
    let r = s
        .enqueue(vec![
            new_message("01D", "crm", "k2", 1),
            new_message("01E", "crm", "k2", 1),
        ])
        .await
        .expect("enqueue");
    assert!(
        matches!(r[0], Enqueued::Created(_))
            && matches!(&r[1], Enqueued::Duplicate(m) if m.id == "01D")
    );
    let page = s.list(Filter::default(), None, 100).await.expect("list");
    assert_eq!(page.messages.len(), 2);
}

/// Concurrent enqueues (which a store may commit together) each get their
/// own answer, and one key is stored once.
pub async fn concurrent_enqueues_each_get_their_own_answer<S: Store>(s: S) {
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let m = new_message(&format!("01C{i:02}"), "crm", &format!("c{i}"), i);
            (format!("01C{i:02}"), s.enqueue(vec![m]).await)
        }));
    }
    for id in ["01SAME1", "01SAME2"] {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            (
                id.to_owned(),
                s.enqueue(vec![new_message(id, "crm", "same", 0)]).await,
            )
        }));
    }
    let mut same = Vec::new();
    for t in tasks {
        let (id, r) = t.await.expect("join");
        let r = r.expect("enqueue");
        assert_eq!(r.len(), 1, "one answer per message");
        if id.starts_with("01SAME") {
            same.push(r[0].clone());
        } else {
            assert!(
                matches!(&r[0], Enqueued::Created(m) if m.id == id),
                "{id}: {r:?}"
            );
        }
    }
    let created: Vec<&str> = same
        .iter()
        .filter_map(|e| match e {
            Enqueued::Created(m) => Some(m.id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(created.len(), 1, "{same:?}");
    assert!(
        same.iter()
            .any(|e| matches!(e, Enqueued::Duplicate(m) if m.id == created[0])),
        "{same:?}"
    );
    let page = s.list(Filter::default(), None, 100).await.expect("list");
    assert_eq!(page.messages.len(), 41);
}

/// Claims take due messages oldest due first, lease them, and give them again
/// only after the lease ends.
pub async fn claim_leases_due_messages<S: Store>(s: S) {
    enqueue_one(&s, new_message("01B", "crm", "k2", 2_000)).await;
    enqueue_one(&s, new_message("01A", "crm", "k1", 1_000)).await;
    enqueue_one(&s, new_message("01C", "crm", "k3", 9_000)).await;
    let got = s
        .claim(5_000, want("crm", 10), "L1".into(), 65_000)
        .await
        .expect("claim");
    let ids: Vec<_> = got.iter().map(|c| c.message.id.as_str()).collect();
    assert_eq!(
        ids,
        vec!["01A", "01B"],
        "due ones, oldest due first; 01C is not due"
    );
    assert!(got.iter().all(|c| c.lease == "L1" && c.message.leased));
    let (m, _) = s.get("01A".into()).await.expect("get").expect("found");
    assert!(
        m.leased && m.next_attempt_at == Some(65_000),
        "leased until its lease ends"
    );
    assert!(s
        .claim(6_000, want("crm", 10), "L2".into(), 66_000)
        .await
        .expect("claim")
        .is_empty());
    assert_eq!(s.next_due().await.expect("next"), Some(9_000));
    // The lease ends: they are due again (a crashed worker's messages come back).
    let again = s
        .claim(70_000, want("crm", 10), "L3".into(), 130_000)
        .await
        .expect("claim");
    assert_eq!(again.len(), 3);
}

/// Each destination gets at most its own count, and only the named
/// destinations are read.
pub async fn claim_takes_what_each_destination_wants<S: Store>(s: S) {
    for i in 0..5 {
        for (prefix, dest) in [("A", "crm"), ("B", "erp"), ("C", "wms")] {
            enqueue_one(
                &s,
                new_message(&format!("01{prefix}{i}"), dest, &format!("{prefix}{i}"), i),
            )
            .await;
        }
    }
    let got = s
        .claim(
            100,
            vec![("erp".into(), 3), ("wms".into(), 1), ("crm".into(), 0)],
            "L".into(),
            1_000,
        )
        .await
        .expect("claim");
    let mut ids: Vec<&str> = got.iter().map(|c| c.message.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        ["01B0", "01B1", "01B2", "01C0"],
        "oldest due first, per destination"
    );
    assert!(s
        .claim(100, Vec::new(), "L2".into(), 1_000)
        .await
        .expect("claim")
        .is_empty());
    assert_eq!(
        s.pending_destinations().await.expect("destinations"),
        ["crm", "erp", "wms"]
    );
}

/// Destinations with pending messages, due or leased, and none other.
pub async fn pending_destinations_skip_finished_ones<S: Store>(s: S) {
    assert!(s.pending_destinations().await.expect("empty").is_empty());
    enqueue_one(&s, new_message("01A", "crm", "k1", 0)).await;
    enqueue_one(&s, new_message("01B", "erp", "k2", 5_000)).await;
    let c = s
        .claim(10, want("crm", 1), "L".into(), 1_000)
        .await
        .expect("claim");
    assert_eq!(c.len(), 1);
    assert_eq!(
        s.pending_destinations().await.expect("leased"),
        ["crm", "erp"],
        "a leased message is still pending"
    );
    s.record(
        "01A".into(),
        "L".into(),
        failed("success", "delivered", "delivered"),
        NextState::Delivered,
        20,
    )
    .await
    .expect("record");
    assert_eq!(s.pending_destinations().await.expect("after"), ["erp"]);
}

/// Only the lease holder records; the attempt and the next state land together.
pub async fn record_is_fenced_by_the_lease<S: Store>(s: S) {
    enqueue_one(&s, new_message("01A", "crm", "k1", 0)).await;
    let c = s
        .claim(10, want("crm", 1), "L1".into(), 1_000)
        .await
        .expect("claim");
    assert_eq!(c.len(), 1);
    let wrong = s
        .record(
            "01A".into(),
            "other".into(),
            failed("server", "retry", "schedule"),
            NextState::Retry { at: 500 },
            20,
        )
        .await
        .expect("record");
    assert!(!wrong, "a stale lease writes nothing");
    assert!(s
        .get("01A".into())
        .await
        .expect("get")
        .expect("found")
        .1
        .is_empty());
    let ok = s
        .record(
            "01A".into(),
            "L1".into(),
            failed("server", "retry", "schedule"),
            NextState::Retry { at: 500 },
            20,
        )
        .await
        .expect("record");
    assert!(ok);
    let (m, attempts) = s.get("01A".into()).await.expect("get").expect("found");
    assert_eq!(
        (
            m.state,
            m.next_attempt_at,
            m.attempts,
            m.last_class.as_deref()
        ),
        (MessageState::Pending, Some(500), 1, Some("server"))
    );
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (attempts[0].n, attempts[0].cycle, attempts[0].attempt),
        (1, 1, 1)
    );
    // Recording twice with the same lease does nothing: the lease was spent.
    let twice = s
        .record(
            "01A".into(),
            "L1".into(),
            failed("server", "retry", "schedule"),
            NextState::Retry { at: 500 },
            20,
        )
        .await
        .expect("record");
    assert!(!twice);
}

/// A worker whose lease expired cannot overwrite the attempt of the worker that
/// took the message over.
pub async fn an_expired_lease_loses_to_the_new_holder<S: Store>(s: S) {
    enqueue_one(&s, new_message("01A", "crm", "k1", 0)).await;
    s.claim(10, want("crm", 1), "old".into(), 100)
        .await
        .expect("claim");
    let taken = s
        .claim(200, want("crm", 1), "new".into(), 1_000)
        .await
        .expect("claim");
    assert_eq!(taken.len(), 1);
    let new = s
        .record(
            "01A".into(),
            "new".into(),
            failed("success", "delivered", "success"),
            NextState::Delivered,
            300,
        )
        .await
        .expect("record");
    let old = s
        .record(
            "01A".into(),
            "old".into(),
            failed("server", "park", "exhausted"),
            NextState::Parked {
                reason: "exhausted".into(),
            },
            400,
        )
        .await
        .expect("record");
    assert!(new && !old);
    let (m, attempts) = s.get("01A".into()).await.expect("get").expect("found");
    assert_eq!(m.state, MessageState::Delivered);
    assert_eq!(attempts.len(), 1);
}

/// Every attempt is numbered over the message's life (`n`), by cycle and
/// within its cycle, through retries, a park and a redrive; the message's
/// counters say the same.
pub async fn attempts_are_numbered_through_retries_and_cycles<S: Store>(s: S) {
    enqueue_one(&s, new_message("01A", "crm", "k1", 0)).await;
    let steps: [(&str, NextState); 4] = [
        ("retry", NextState::Retry { at: 50 }),
        ("retry", NextState::Retry { at: 150 }),
        (
            "park",
            NextState::Parked {
                reason: "exhausted".into(),
            },
        ),
        ("delivered", NextState::Delivered),
    ];
    let mut now = 0;
    for (i, (decision, next)) in steps.into_iter().enumerate() {
        if i == 3 {
            let redriven = s
                .redrive(vec!["01A".into()], "ops".into(), now - 50)
                .await
                .expect("redrive");
            assert_eq!(redriven, vec!["01A".to_owned()]);
        }
        let lease = format!("L{i}");
        let c = s
            .claim(now, want("crm", 1), lease.clone(), now + 1_000)
            .await
            .expect("claim");
        assert_eq!(c.len(), 1, "step {i}");
        let ok = s
            .record(
                "01A".into(),
                lease,
                failed("server", decision, "schedule"),
                next,
                now + 10,
            )
            .await
            .expect("record");
        assert!(ok, "step {i}");
        now += 100;
    }
    let (m, attempts) = s.get("01A".into()).await.expect("get").expect("found");
    let numbers: Vec<(u32, u32, u32)> =
        attempts.iter().map(|a| (a.n, a.cycle, a.attempt)).collect();
    assert_eq!(numbers, vec![(1, 1, 1), (2, 1, 2), (3, 1, 3), (4, 2, 1)]);
    assert_eq!(
        (m.state, m.total_attempts, m.cycle, m.attempts),
        (MessageState::Delivered, 4, 2, 1)
    );
}

/// Released messages are due again without spending an attempt.
pub async fn release_spends_no_attempt<S: Store>(s: S) {
    enqueue_one(&s, new_message("01A", "crm", "k1", 0)).await;
    s.claim(1, want("crm", 1), "L".into(), 1_000)
        .await
        .expect("claim");
    assert_eq!(
        s.release(
            vec![("01A".into(), "L".into()), ("01A".into(), "x".into())],
            50
        )
        .await
        .expect("release"),
        1
    );
    let (m, attempts) = s.get("01A".into()).await.expect("get").expect("found");
    assert_eq!((m.attempts, m.next_attempt_at), (0, Some(50)));
    assert!(attempts.is_empty());
    assert_eq!(
        s.claim(50, want("crm", 1), "L2".into(), 1_000)
            .await
            .expect("claim")
            .len(),
        1
    );
}

/// Generates one `#[tokio::test]` per conformance check. `$make` is an async
/// expression giving `Some((store, guard))`, a fresh store and whatever keeps
/// it alive (a temp directory, a database dropped on drop), or `None` when the
/// backend is not available (the generator of `$make` says why, and fails
/// under `CI=true`).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make;
            enqueue_then_get,
            enqueue_dedupes_by_idempotency_key,
            concurrent_enqueues_each_get_their_own_answer,
            claim_leases_due_messages,
            claim_takes_what_each_destination_wants,
            a_claim_takes_from_every_destination_with_something_due,
            pending_destinations_skip_finished_ones,
            record_is_fenced_by_the_lease,
            an_expired_lease_loses_to_the_new_holder,
            attempts_are_numbered_through_retries_and_cycles,
            park_redrive_and_discard,
            redrive_by_filter,
            release_spends_no_attempt,
            a_renewal_is_recorded_but_spends_no_attempt,
            an_edit_makes_a_revision_and_keeps_the_old,
            a_change_to_a_message_not_parked_is_refused,
            a_resolution_delivers_or_redrives,
            pauses_are_stored_and_audited,
            every_action_is_audited_once_with_its_actor,
            list_pages_and_filters,
            a_source_is_kept_and_listed,
            list_a_state_across_destinations,
            list_each_state_in_its_order,
            purge_keeps_parked_and_pending,
            stats_and_report,
            chart_buckets_are_whole_minutes
        );
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test]
            async fn $name() {
                if let Some((store, _guard)) = $make.await {
                    $crate::conformance::$name(store).await;
                }
            }
        )*
    };
}
