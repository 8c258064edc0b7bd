//! What a person does to parked messages: redrive (one, or by filter) and
//! discard.

use super::*;

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
        .redrive(vec!["01A".into(), "nope".into()], "ops".into(), 5_000)
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
        s.redrive(vec!["01A".into()], "ops".into(), 6_000)
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
        s.discard(vec!["01A".into(), "01B".into()], "ops".into(), 7_000)
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
        s.redrive_matching(filter, "ops".into(), 10, 100)
            .await
            .expect("redrive"),
        vec!["010".to_owned()]
    );
    let all = s
        .redrive_matching(Filter::default(), "ops".into(), 10, 1)
        .await
        .expect("redrive");
    assert_eq!(all.len(), 1, "limit");
}
