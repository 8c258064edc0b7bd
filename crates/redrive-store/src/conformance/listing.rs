//! Listings: pages, filters, each state in the order of its index.

use super::*;

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
        .redrive_matching(by_state(MessageState::Parked), "ops".into(), 20, 3)
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
        s.discard(vec!["01T8".into()], "ops".into(), 150)
            .await
            .expect("discard"),
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

/// A message received on an inbound source keeps its source (an enqueue
/// answer, a read, a duplicate), and listings filter by it.
pub async fn a_source_is_kept_and_listed<S: Store>(s: S) {
    let received = |id: &str, key: &str, source: Option<&str>| NewMessage {
        source: source.map(str::to_owned),
        ..new_message(id, "crm", key, 1)
    };
    for (id, source) in [
        ("01A", Some("privo")),
        ("01B", None),
        ("01C", Some("synchive")),
        ("01D", Some("privo")),
    ] {
        let stored = s
            .enqueue(vec![received(id, &format!("k-{id}"), source)])
            .await
            .expect("enqueue");
        match &stored[0] {
            Enqueued::Created(m) => assert_eq!(m.source.as_deref(), source),
            other => panic!("{other:?}"),
        }
    }
    let (m, _) = s.get("01A".into()).await.expect("get").expect("stored");
    assert_eq!(m.source.as_deref(), Some("privo"));
    let (m, _) = s.get("01B".into()).await.expect("get").expect("stored");
    assert_eq!(m.source, None);
    match &s
        .enqueue(vec![received("01E", "k-01A", Some("privo"))])
        .await
        .expect("again")[0]
    {
        Enqueued::Duplicate(m) => {
            assert_eq!((m.id.as_str(), m.source.as_deref()), ("01A", Some("privo")))
        }
        other => panic!("{other:?}"),
    }
    let of = |source: &str, state: Option<MessageState>| Filter {
        source: Some(source.to_owned()),
        state,
        ..Filter::default()
    };
    let ids = |p: crate::model::Page| p.messages.into_iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.list(of("privo", None), None, 10).await.expect("list")),
        ["01A", "01D"]
    );
    assert_eq!(
        ids(s
            .list(of("privo", Some(MessageState::Pending)), None, 10)
            .await
            .expect("list")),
        ["01A", "01D"]
    );
    assert_eq!(
        ids(s.list(of("synchive", None), None, 10).await.expect("list")),
        ["01C"]
    );
    assert!(ids(s.list(of("nope", None), None, 10).await.expect("list")).is_empty());
}
