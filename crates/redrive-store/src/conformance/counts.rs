//! What is counted and kept: the retention purge, the stats and report,
//! the chart's buckets.

use super::*;

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
