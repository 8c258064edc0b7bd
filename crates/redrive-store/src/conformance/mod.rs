//! The behaviour every [`Store`] must have. Each check takes a fresh, empty
//! store; [`conformance_tests!`](crate::conformance_tests) turns them into
//! tests for an implementation.

use crate::model::{AttemptRecord, Enqueued, Filter, MessageState, NewMessage, NextState};
use crate::Store;

mod due;
pub use due::*;

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
                .redrive(vec!["01A".into()], now - 50)
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

/// Parked messages keep their history, can be redriven as a new cycle, or
/// discarded; only parked ones.
pub async fn park_redrive_and_discard<S: Store>(s: S) {
    enqueue_one(&s, new_message("01A", "crm", "k1", 0)).await;
    enqueue_one(&s, new_message("01B", "crm", "k2", 0)).await;
    for id in ["01A", "01B"] {
        let c = s
            .claim(10, want("crm", 1), format!("L-{id}"), 1_000)
            .await
            .expect("claim");
        assert_eq!(c.len(), 1);
        let parked = s
            .record(
                id.into(),
                format!("L-{id}"),
                failed("content", "park", "not_retryable"),
                NextState::Parked {
                    reason: "not_retryable".into(),
                },
                20,
            )
            .await
            .expect("record");
        assert!(parked);
    }
    let (m, _) = s.get("01A".into()).await.expect("get").expect("found");
    assert_eq!(
        (m.state, m.park_reason.as_deref(), m.next_attempt_at),
        (MessageState::Parked, Some("not_retryable"), None)
    );
    assert!(
        s.claim(10_000, want("crm", 10), "L".into(), 20_000)
            .await
            .expect("claim")
            .is_empty(),
        "parked is never claimed"
    );

    let redriven = s
        .redrive(vec!["01A".into(), "nope".into()], 5_000)
        .await
        .expect("redrive");
    assert_eq!(redriven, vec!["01A".to_owned()]);
    let (m, attempts) = s.get("01A".into()).await.expect("get").expect("found");
    assert_eq!(
        (
            m.state,
            m.cycle,
            m.attempts,
            m.cycle_started_at,
            m.next_attempt_at
        ),
        (MessageState::Pending, 2, 0, 5_000, Some(5_000))
    );
    assert_eq!(m.park_reason, None);
    assert_eq!(attempts.len(), 1, "history kept");
    assert!(
        s.redrive(vec!["01A".into()], 6_000)
            .await
            .expect("redrive")
            .is_empty(),
        "only parked ones"
    );

    let c = s
        .claim(5_000, want("crm", 1), "L2".into(), 9_000)
        .await
        .expect("claim");
    assert_eq!(c[0].message.id, "01A");
    s.record(
        "01A".into(),
        "L2".into(),
        failed("success", "delivered", "success"),
        NextState::Delivered,
        5_100,
    )
    .await
    .expect("record");
    let (_, attempts) = s.get("01A".into()).await.expect("get").expect("found");
    assert_eq!(
        (attempts[1].n, attempts[1].cycle, attempts[1].attempt),
        (2, 2, 1)
    );

    assert_eq!(
        s.discard(vec!["01A".into(), "01B".into()], 7_000)
            .await
            .expect("discard"),
        vec!["01B".to_owned()]
    );
    let (m, _) = s.get("01B".into()).await.expect("get").expect("found");
    assert_eq!(m.state, MessageState::Discarded);
}

/// Bulk redrive by filter touches only parked messages that match.
pub async fn redrive_by_filter<S: Store>(s: S) {
    for (i, (dest, reason)) in [
        ("crm", "exhausted"),
        ("crm", "not_retryable"),
        ("erp", "exhausted"),
    ]
    .iter()
    .enumerate()
    {
        let id = format!("01{i}");
        enqueue_one(&s, new_message(&id, dest, &format!("k{i}"), 0)).await;
        s.claim(1, want(dest, 1), format!("L{i}"), 100)
            .await
            .expect("claim");
        s.record(
            id,
            format!("L{i}"),
            failed("server", "park", reason),
            NextState::Parked {
                reason: (*reason).into(),
            },
            2,
        )
        .await
        .expect("record");
    }
    enqueue_one(&s, new_message("01P", "crm", "kp", 0)).await;
    let filter = Filter {
        destination: Some("crm".into()),
        reason: Some("exhausted".into()),
        ..Filter::default()
    };
    assert_eq!(
        s.redrive_matching(filter, 10, 100).await.expect("redrive"),
        vec!["010".to_owned()]
    );
    let all = s
        .redrive_matching(Filter::default(), 10, 1)
        .await
        .expect("redrive");
    assert_eq!(all.len(), 1, "limit");
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

/// Listing pages by id with a cursor and filters.
pub async fn list_pages_and_filters<S: Store>(s: S) {
    for i in 0..7 {
        let dest = if i % 2 == 0 { "crm" } else { "erp" };
        enqueue_one(
            &s,
            new_message(&format!("01{i}"), dest, &format!("k{i}"), i),
        )
        .await;
    }
    let first = s.list(Filter::default(), None, 3).await.expect("list");
    assert_eq!(
        first
            .messages
            .iter()
            .map(|m| m.id.as_str())
            .collect::<Vec<_>>(),
        vec!["010", "011", "012"]
    );
    let second = s
        .list(Filter::default(), first.next.clone(), 3)
        .await
        .expect("list");
    assert_eq!(second.messages[0].id, "013");
    let third = s
        .list(Filter::default(), second.next.clone(), 3)
        .await
        .expect("list");
    assert_eq!((third.messages.len(), third.next.clone()), (1, None));
    // Limits as large as the type allows: one page of everything, no error
    // (one more than the page is read to know whether another follows).
    for limit in [i64::MAX as usize, usize::MAX] {
        let all = s.list(Filter::default(), None, limit).await.expect("list");
        assert_eq!((all.messages.len(), all.next), (7, None), "limit {limit}");
    }
    let crm = s
        .list(
            Filter {
                destination: Some("crm".into()),
                ..Filter::default()
            },
            None,
            100,
        )
        .await
        .expect("list");
    assert_eq!(crm.messages.len(), 4);
    let parked = s
        .list(
            Filter {
                state: Some(MessageState::Parked),
                ..Filter::default()
            },
            None,
            100,
        )
        .await
        .expect("list");
    assert!(parked.messages.is_empty());
}

/// A state listed across destinations pages in id order, each message once,
/// however the destinations' ids interleave and though each destination
/// holds more than a page; so does a filter on the state and a class.
pub async fn list_a_state_across_destinations<S: Store>(s: S) {
    let names = ["crm", "erp", "billing"];
    // Interleaved, then a run of one destination's (the end of the state
    // comes from one destination alone).
    for i in 0..22usize {
        let dest = if i < 18 { names[i % 3] } else { "crm" };
        enqueue_one(
            &s,
            new_message(&format!("01S{i:02}"), dest, &format!("ks{i}"), 0),
        )
        .await;
    }
    // Park the oldest of each destination, and one more of crm's.
    for (k, dest) in ["crm", "erp", "billing", "crm"].into_iter().enumerate() {
        let lease = format!("P{k}");
        let claimed = s
            .claim(1, want(dest, 1), lease.clone(), 100)
            .await
            .expect("claim");
        let id = claimed[0].message.id.clone();
        let next = NextState::Parked {
            reason: "exhausted".into(),
        };
        assert!(s
            .record(id, lease, failed("server", "park", "exhausted"), next, 10)
            .await
            .expect("record"));
    }
    let ids = |page: &crate::model::Page| {
        page.messages
            .iter()
            .map(|m| m.id.clone())
            .collect::<Vec<_>>()
    };
    let parked: Vec<String> = (0..4).map(|i| format!("01S{i:02}")).collect();
    let by_state = |state| Filter {
        state: Some(state),
        ..Filter::default()
    };
    for (filter, expected) in [
        (by_state(MessageState::Parked), parked.clone()),
        (
            by_state(MessageState::Pending),
            (4..22).map(|i| format!("01S{i:02}")).collect(),
        ),
        (
            Filter {
                class: Some("server".into()),
                ..by_state(MessageState::Parked)
            },
            parked.clone(),
        ),
    ] {
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = s.list(filter.clone(), cursor, 2).await.expect("list");
            assert!(page.messages.len() <= 2, "{filter:?}");
            seen.extend(ids(&page));
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, expected, "{filter:?}");
    }
    // A bulk redrive takes the oldest parked messages first, whatever their
    // destination.
    let taken = s
        .redrive_matching(by_state(MessageState::Parked), 20, 3)
        .await
        .expect("redrive");
    assert_eq!(taken, parked[..3]);
}

/// Pending messages are listed by when they are due and delivered ones by
/// when they were delivered (ties by id), across destinations or for one,
/// in pages of any size resumed by the cursor; discarded ones by id. The
/// retention purge then takes the old delivered messages of every
/// destination and the old discarded ones.
pub async fn list_each_state_in_its_order<S: Store>(s: S) {
    let dest = |i: usize| if i.is_multiple_of(2) { "crm" } else { "erp" };
    for i in 0..9usize {
        enqueue_one(
            &s,
            new_message(&format!("01T{i}"), dest(i), &format!("kt{i}"), i as i64),
        )
        .await;
    }
    let claimed = s
        .claim(
            10,
            vec![("crm".into(), 5), ("erp".into(), 4)],
            "L".into(),
            1_000,
        )
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 9);
    // Due again in the reverse of id order; delivered likewise, two at once.
    for (i, next, now) in [
        (0, NextState::Retry { at: 100 }, 20),
        (1, NextState::Retry { at: 90 }, 20),
        (2, NextState::Retry { at: 80 }, 20),
        (3, NextState::Retry { at: 70 }, 20),
        (4, NextState::Delivered, 196),
        (5, NextState::Delivered, 195),
        (6, NextState::Delivered, 193),
        (7, NextState::Delivered, 193),
        (
            8,
            NextState::Parked {
                reason: "exhausted".into(),
            },
            30,
        ),
    ] {
        assert!(s
            .record(
                format!("01T{i}"),
                "L".into(),
                failed("server", "x", "y"),
                next,
                now
            )
            .await
            .expect("record"));
    }
    assert_eq!(
        s.discard(vec!["01T8".into()], 150).await.expect("discard"),
        ["01T8"]
    );
    let filter = |state, destination: Option<&str>| Filter {
        state: Some(state),
        destination: destination.map(str::to_owned),
        ..Filter::default()
    };
    let ids = |v: &[&str]| v.iter().map(|i| format!("01T{i}")).collect::<Vec<_>>();
    for (f, expected) in [
        (
            filter(MessageState::Pending, None),
            ids(&["3", "2", "1", "0"]),
        ),
        (filter(MessageState::Pending, Some("crm")), ids(&["2", "0"])),
        (
            filter(MessageState::Delivered, None),
            ids(&["6", "7", "5", "4"]),
        ),
        (
            filter(MessageState::Delivered, Some("erp")),
            ids(&["7", "5"]),
        ),
        (
            Filter {
                since: Some(195),
                ..filter(MessageState::Delivered, None)
            },
            ids(&["5", "4"]),
        ),
        (filter(MessageState::Discarded, None), ids(&["8"])),
    ] {
        for size in [1, 2, 3, 10] {
            let mut seen = Vec::new();
            let mut cursor = None;
            loop {
                let page = s.list(f.clone(), cursor, size).await.expect("list");
                assert!(page.messages.len() <= size, "{f:?}");
                seen.extend(page.messages.iter().map(|m| m.id.clone()));
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            assert_eq!(seen, expected, "{f:?}, pages of {size}");
        }
    }
    // Before 195: the two delivered at 193 (one per destination) and the
    // message discarded at 150; never a pending one.
    assert_eq!(s.purge(195).await.expect("purge"), 3);
    let left = s
        .list(Filter::default(), None, 100)
        .await
        .expect("list")
        .messages
        .iter()
        .map(|m| m.id.clone())
        .collect::<Vec<_>>();
    assert_eq!(left, ids(&["0", "1", "2", "3", "4", "5"]));
}

/// Retention deletes old delivered and discarded messages, never parked or
/// pending ones.
pub async fn purge_keeps_parked_and_pending<S: Store>(s: S) {
    for (i, next) in [
        NextState::Delivered,
        NextState::Parked {
            reason: "exhausted".into(),
        },
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("01{i}");
        enqueue_one(&s, new_message(&id, "crm", &format!("k{i}"), 0)).await;
        s.claim(1, want("crm", 1), format!("L{i}"), 100)
            .await
            .expect("claim");
        s.record(id, format!("L{i}"), failed("server", "x", "y"), next, 10)
            .await
            .expect("record");
    }
    enqueue_one(&s, new_message("01P", "crm", "kp", 0)).await;
    let attempts = |counts: Vec<(i64, String, u64)>| counts.iter().map(|c| c.2).sum::<u64>();
    assert_eq!(
        attempts(s.attempt_counts(0, 60_000).await.expect("counts")),
        2
    );
    assert_eq!(s.purge(1_000_000).await.expect("purge"), 1);
    assert!(s.get("010".into()).await.expect("get").is_none());
    assert!(s.get("011".into()).await.expect("get").is_some());
    assert!(s.get("01P".into()).await.expect("get").is_some());
    assert_eq!(
        attempts(s.attempt_counts(0, 60_000).await.expect("counts")),
        1,
        "the purged message's attempts went with it"
    );
}

/// Stats count by destination and state; the report counts failed attempts.
pub async fn stats_and_report<S: Store>(s: S) {
    enqueue_one(&s, new_message("01A", "crm", "k1", 100)).await;
    enqueue_one(&s, new_message("01B", "crm", "k2", 50)).await;
    s.claim(200, want("crm", 1), "L".into(), 1_000)
        .await
        .expect("claim");
    let mut a = failed("server", "park", "exhausted");
    a.started_at = 300;
    s.record(
        "01B".into(),
        "L".into(),
        a,
        NextState::Parked {
            reason: "exhausted".into(),
        },
        300,
    )
    .await
    .expect("record");
    let stats = s.stats(400).await.expect("stats");
    let mut by = stats.by_destination_state.clone();
    by.sort_by_key(|(_, st, _)| st.as_str());
    assert_eq!(
        by,
        vec![
            ("crm".to_owned(), MessageState::Parked, 1),
            ("crm".to_owned(), MessageState::Pending, 1)
        ]
    );
    assert_eq!(stats.oldest_due_at, Some(100));
    let report = s.report(0).await.expect("report");
    assert_eq!(report.len(), 1);
    assert_eq!(
        (
            report[0].class.as_str(),
            report[0].attempts,
            report[0].parked
        ),
        ("server", 1, 1)
    );
    assert!(s.report(301).await.expect("report").is_empty());
    let counts = s.attempt_counts(0, 60_000).await.expect("counts");
    assert_eq!(counts, vec![(0, "server".to_owned(), 1)]);
    // Whole minutes: a `since` inside the attempt's minute still counts it.
    assert_eq!(s.attempt_counts(301, 60_000).await.expect("counts"), counts);
    assert!(s
        .attempt_counts(60_000, 60_000)
        .await
        .expect("counts")
        .is_empty());
}

/// The chart's buckets are whole minutes aligned to the epoch in every
/// store: a finer bucket is a minute, a wider one rounds up to whole
/// minutes.
pub async fn chart_buckets_are_whole_minutes<S: Store>(s: S) {
    for (i, at) in [(0, 300), (1, 61_000)] {
        let id = format!("01W{i}");
        enqueue_one(&s, new_message(&id, "crm", &format!("w{i}"), 0)).await;
        s.claim(at, want("crm", 1), format!("L{i}"), at + 1_000)
            .await
            .expect("claim");
        let mut a = failed("server", "retry", "retryable");
        a.started_at = at;
        s.record(id, format!("L{i}"), a, NextState::Retry { at: at + 1 }, at)
            .await
            .expect("record");
    }
    assert_eq!(
        s.attempt_counts(0, 1_000).await.expect("counts"),
        vec![
            (0, "server".to_owned(), 1),
            (60_000, "server".to_owned(), 1)
        ]
    );
    // 90 s rounds up to two minutes: one bucket from 0.
    assert_eq!(
        s.attempt_counts(0, 90_000).await.expect("counts"),
        vec![(0, "server".to_owned(), 2)]
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
            list_pages_and_filters,
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
