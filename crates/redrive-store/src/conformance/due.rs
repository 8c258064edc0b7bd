//! What a store tells the scheduler about which destinations have messages
//! due: claims that name many destinations, each destination's next due
//! time, and the earliest due time of each.

use super::{enqueue_one, failed, new_message, want};
use crate::{MessageState, NextState, Store};

/// The destinations of [`a_claim_takes_from_every_destination_with_something_due`]:
/// `d00` to `d47`, and four that hold nothing.
fn names() -> Vec<String> {
    (0..48)
        .map(|d| format!("d{d:02}"))
        .chain((0..4).map(|e| format!("empty{e}")))
        .collect()
}

/// A claim naming 52 destinations takes from each that has something due,
/// oldest first and no more than asked, and nothing from the others; then
/// each destination's next due time after the claim is that of its first
/// message not yet due (none for one with nothing left), and the due time
/// of each destination counts a leased message at its lease's end.
///
/// Destination `dNN` holds, by `NN % 3`: 0, one message due; 1, two due and
/// one due later; 2, only one due later.
pub async fn a_claim_takes_from_every_destination_with_something_due<S: Store>(s: S) {
    let mut n = 0;
    let mut message = |d: usize, at: i64| {
        n += 1;
        new_message(
            &format!("01D{d:02}{n:04}"),
            &format!("d{d:02}"),
            &format!("k{n}"),
            at,
        )
    };
    for d in 0..48usize {
        let d64 = d as i64;
        match d % 3 {
            0 => enqueue_one(&s, message(d, 100 + d64)).await,
            1 => {
                enqueue_one(&s, message(d, 200 + d64)).await;
                enqueue_one(&s, message(d, 300 + d64)).await;
                enqueue_one(&s, message(d, 5_000 + d64)).await;
            }
            _ => enqueue_one(&s, message(d, 2_000 + d64)).await,
        }
    }
    let before = s.due_by_destination().await.expect("due by destination");
    let expected: Vec<(String, i64)> = (0..48usize)
        .map(|d| {
            let d64 = d as i64;
            let at = [100 + d64, 200 + d64, 2_000 + d64][d % 3];
            (format!("d{d:02}"), at)
        })
        .collect();
    assert_eq!(
        before, expected,
        "each destination's earliest, in name order"
    );

    let want: Vec<(String, usize)> = names().into_iter().map(|d| (d, 3)).collect();
    let claimed = s
        .claim(1_000, want, "L".into(), 60_000)
        .await
        .expect("claim");
    for d in 0..48usize {
        let name = format!("d{d:02}");
        let mut got: Vec<i64> = claimed
            .iter()
            .filter(|c| c.message.destination == name)
            .map(|c| c.message.created_at)
            .collect();
        got.sort_unstable();
        let d64 = d as i64;
        let expected: Vec<i64> = match d % 3 {
            0 => vec![100 + d64],
            1 => vec![200 + d64, 300 + d64],
            _ => vec![],
        };
        assert_eq!(got, expected, "{name}");
    }
    assert_eq!(claimed.len(), 16 + 32);

    let next = s.due_after(names(), 1_000).await.expect("due after");
    let asked: Vec<&String> = next.iter().map(|(name, _)| name).collect();
    assert_eq!(
        asked,
        names().iter().collect::<Vec<_>>(),
        "in the order asked"
    );
    for (d, (name, at)) in next.iter().enumerate() {
        let d64 = d as i64;
        match (d < 48).then_some(d % 3) {
            Some(1) => assert_eq!(*at, Some(5_000 + d64), "{name}"),
            Some(2) => assert_eq!(*at, Some(2_000 + d64), "{name}"),
            // Its one message is leased: nothing, or (a store that keeps
            // leases in its rows) the lease's end.
            Some(_) => assert!(matches!(at, None | Some(60_000)), "{name}: {at:?}"),
            None => assert_eq!(*at, None, "{name}"),
        }
    }

    let after = s.due_by_destination().await.expect("due by destination");
    let expected: Vec<(String, i64)> = (0..48usize)
        .map(|d| {
            let d64 = d as i64;
            let at = [60_000, 5_000 + d64, 2_000 + d64][d % 3];
            (format!("d{d:02}"), at)
        })
        .collect();
    assert_eq!(
        after, expected,
        "a leased message is due when its lease ends"
    );
}

/// An attempt recorded with `NextState::Again` (a renewed token) is in the
/// history and due again, but spends none of the cycle's attempts: the next
/// one has the same number in its cycle.
pub async fn a_renewal_is_recorded_but_spends_no_attempt<S: Store>(s: S) {
    enqueue_one(&s, new_message("01A", "crm", "k1", 0)).await;
    let mut renewal = failed("auth", "retry", "credentials_renewed");
    renewal.status = Some(401);
    for (lease, record, next) in [
        ("L1", renewal, NextState::Again { at: 30 }),
        (
            "L2",
            failed("success", "delivered", "success"),
            NextState::Delivered,
        ),
    ] {
        let claimed = s
            .claim(40, want("crm", 1), lease.into(), 1_000)
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 1, "due again at once after a renewal");
        assert!(s
            .record("01A".into(), lease.into(), record, next, 30)
            .await
            .expect("record"));
    }
    let (m, attempts) = s.get("01A".into()).await.expect("get").expect("found");
    assert_eq!(
        (m.state, m.attempts, m.total_attempts),
        (MessageState::Delivered, 1, 2)
    );
    let numbered: Vec<(u32, u32, &str)> = attempts
        .iter()
        .map(|a| (a.n, a.attempt, a.reason.as_str()))
        .collect();
    assert_eq!(numbered, [(1, 1, "credentials_renewed"), (2, 1, "success")]);
}
