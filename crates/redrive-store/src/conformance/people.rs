//! A person's changes: an edit makes a revision, a resolution closes what
//! only a person can know, a pause holds a destination; each leaves exactly
//! one audit record, written with the change, and a change refused leaves
//! none (seeds 000, 004).

use super::*;
use crate::people::{AuditFilter, Changed, Edit, Outcome, Pause, Resolution};

/// Enqueues `id` and parks it.
async fn parked<S: Store>(s: &S, id: &str, at: i64) {
    enqueue_one(s, new_message(id, "crm", &format!("key-{id}"), at)).await;
    let lease = format!("L-{id}");
    let c = s
        .claim(at, want("crm", 1), lease.clone(), at + 1_000)
        .await
        .expect("claim");
    assert_eq!(c.len(), 1, "{id} claimed");
    assert!(s
        .record(
            id.into(),
            lease,
            failed("content", "park", "not_retryable"),
            NextState::Parked {
                reason: "not_retryable".into()
            },
            at + 10,
        )
        .await
        .expect("record"));
}

fn edit(body: &str) -> Edit {
    Edit {
        method: "PUT".into(),
        path: "/v1/things/fixed".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.as_bytes().to_vec(),
        note: Some("the email was misspelt".into()),
    }
}

async fn audit<S: Store>(s: &S) -> Vec<(String, String, String)> {
    let page = s
        .audit(AuditFilter::default(), None, 100)
        .await
        .expect("audit");
    page.records
        .into_iter()
        .map(|r| (r.actor, r.action, r.target))
        .collect()
}

/// An edit makes revision 2, keeps revision 1, is audited; the redrive sends
/// the new request and its attempt names revision 2.
pub async fn an_edit_makes_a_revision_and_keeps_the_old<S: Store>(s: S) {
    parked(&s, "01A", 0).await;
    let done = s
        .edit(
            "01A".into(),
            edit(r#"{"email":"ann@example.com"}"#),
            "alice".into(),
            100,
        )
        .await
        .expect("edit");
    assert_eq!(done, Changed::Done(2));
    let (m, attempts) = s.get("01A".into()).await.expect("get").expect("found");
    assert_eq!(
        (m.revision, m.method.as_str(), m.path.as_str()),
        (2, "PUT", "/v1/things/fixed")
    );
    assert_eq!(m.body, br#"{"email":"ann@example.com"}"#);
    assert_eq!(m.state, MessageState::Parked, "an edit does not redrive");
    assert_eq!(attempts[0].revision, 1);
    let revisions = s.revisions("01A".into()).await.expect("revisions");
    let seen: Vec<(u32, Option<&str>, &str, &[u8])> = revisions
        .iter()
        .map(|r| (r.n, r.actor.as_deref(), r.path.as_str(), r.body.as_slice()))
        .collect();
    assert_eq!(
        seen,
        [
            (1, None, "/v1/things", &br#"{"a":1}"#[..]),
            (
                2,
                Some("alice"),
                "/v1/things/fixed",
                &br#"{"email":"ann@example.com"}"#[..]
            ),
        ]
    );
    assert_eq!(revisions[1].note.as_deref(), Some("the email was misspelt"));
    assert_eq!(revisions[1].created_at, 100);
    // A second edit: revision 3; both earlier ones kept.
    assert_eq!(
        s.edit("01A".into(), edit("{}"), "bob".into(), 200)
            .await
            .expect("edit"),
        Changed::Done(3)
    );
    assert_eq!(s.revisions("01A".into()).await.expect("revisions").len(), 3);
    assert_eq!(
        s.redrive(vec!["01A".into()], "alice".into(), 300)
            .await
            .expect("redrive"),
        ["01A"]
    );
    let c = s
        .claim(300, want("crm", 1), "L2".into(), 1_300)
        .await
        .expect("claim");
    assert_eq!(
        (c[0].message.revision, c[0].message.body.as_slice()),
        (3, &b"{}"[..])
    );
    let mut delivered = failed("success", "delivered", "success");
    delivered.revision = c[0].message.revision;
    assert!(s
        .record(
            "01A".into(),
            "L2".into(),
            delivered,
            NextState::Delivered,
            310
        )
        .await
        .expect("record"));
    let (_, attempts) = s.get("01A".into()).await.expect("get").expect("found");
    let sent: Vec<u32> = attempts.iter().map(|a| a.revision).collect();
    assert_eq!(sent, [1, 3], "every attempt names the revision it sent");
    assert_eq!(
        audit(&s).await,
        [
            ("alice".into(), "redrive".into(), "01A".into()),
            ("bob".into(), "edit".into(), "01A".into()),
            ("alice".into(), "edit".into(), "01A".into()),
        ]
    );
}

/// Only parked messages are edited or resolved; a refusal changes nothing
/// and is not audited.
pub async fn a_change_to_a_message_not_parked_is_refused<S: Store>(s: S) {
    enqueue_one(&s, new_message("01P", "crm", "kp", 0)).await;
    assert_eq!(
        s.edit("01P".into(), edit("{}"), "alice".into(), 10)
            .await
            .expect("edit"),
        Changed::NotParked(MessageState::Pending)
    );
    assert_eq!(
        s.edit("nope".into(), edit("{}"), "alice".into(), 10)
            .await
            .expect("edit"),
        Changed::NotFound
    );
    let resolution = Resolution {
        outcome: Outcome::Applied,
        actor: "alice".into(),
        note: None,
        at: 10,
    };
    assert_eq!(
        s.resolve("01P".into(), resolution.clone())
            .await
            .expect("resolve"),
        Changed::NotParked(MessageState::Pending)
    );
    assert_eq!(
        s.resolve("nope".into(), resolution).await.expect("resolve"),
        Changed::NotFound
    );
    let (m, _) = s.get("01P".into()).await.expect("get").expect("found");
    assert_eq!(
        (m.revision, m.path.as_str(), m.resolution),
        (1, "/v1/things", None)
    );
    assert!(s.revisions("01P".into()).await.expect("revisions").len() <= 1);
    assert!(
        audit(&s).await.is_empty(),
        "a refused change leaves no record"
    );
}

/// `applied` ends a parked message delivered with the resolution;
/// `not_applied` redrives it, recording the resolution too.
pub async fn a_resolution_delivers_or_redrives<S: Store>(s: S) {
    parked(&s, "01A", 0).await;
    parked(&s, "01B", 0).await;
    let by = |outcome| Resolution {
        outcome,
        actor: "carol".into(),
        note: Some("checked in their console".into()),
        at: 500,
    };
    assert_eq!(
        s.resolve("01A".into(), by(Outcome::Applied))
            .await
            .expect("resolve"),
        Changed::Done(())
    );
    assert_eq!(
        s.resolve("01B".into(), by(Outcome::NotApplied))
            .await
            .expect("resolve"),
        Changed::Done(())
    );
    let (a, _) = s.get("01A".into()).await.expect("get").expect("found");
    assert_eq!(
        (a.state, a.resolution.clone()),
        (MessageState::Delivered, Some(by(Outcome::Applied)))
    );
    let (b, _) = s.get("01B".into()).await.expect("get").expect("found");
    assert_eq!(
        (b.state, b.cycle, b.next_attempt_at, b.resolution.clone()),
        (
            MessageState::Pending,
            2,
            Some(500),
            Some(by(Outcome::NotApplied))
        )
    );
    let stats = s.stats(600).await.expect("stats");
    let of = |state| {
        stats
            .by_destination_state
            .iter()
            .find(|(d, st, _)| d == "crm" && *st == state)
            .map_or(0, |(_, _, n)| *n)
    };
    assert_eq!(
        (
            of(MessageState::Parked),
            of(MessageState::Delivered),
            of(MessageState::Pending)
        ),
        (0, 1, 1),
        "the counts follow"
    );
    assert_eq!(
        audit(&s).await,
        [
            ("carol".into(), "resolve".into(), "01B".into()),
            ("carol".into(), "resolve".into(), "01A".into()),
        ]
    );
}

/// A pause is kept (across restarts: it is stored) and audited; pausing
/// what is paused, or resuming what is not, changes and records nothing.
pub async fn pauses_are_stored_and_audited<S: Store>(s: S) {
    let pause = Pause {
        destination: "crm".into(),
        paused_by: "dave".into(),
        paused_at: 1_000,
        note: Some("maintenance until 6pm".into()),
    };
    assert!(s.pause(pause.clone()).await.expect("pause"));
    assert!(!s.pause(pause.clone()).await.expect("pause again"));
    assert_eq!(s.pauses().await.expect("pauses"), [pause]);
    assert!(s
        .resume("crm".into(), "erin".into(), 2_000)
        .await
        .expect("resume"));
    assert!(!s
        .resume("crm".into(), "erin".into(), 2_001)
        .await
        .expect("resume again"));
    assert!(s.pauses().await.expect("pauses").is_empty());
    assert_eq!(
        audit(&s).await,
        [
            ("erin".into(), "resume".into(), "crm".into()),
            ("dave".into(), "pause".into(), "crm".into()),
        ]
    );
}

/// Redrives and discards are audited one record per message changed; a bulk
/// redrive one record with its filter and count; the audit filters and pages
/// newest first.
pub async fn every_action_is_audited_once_with_its_actor<S: Store>(s: S) {
    for (i, id) in ["01A", "01B", "01C", "01D"].into_iter().enumerate() {
        parked(&s, id, i as i64).await;
    }
    let redriven = s
        .redrive(vec!["01A".into(), "nope".into()], "alice".into(), 100)
        .await
        .expect("redrive");
    assert_eq!(redriven, ["01A"]);
    let discarded = s
        .discard(vec!["01B".into(), "01A".into()], "bob".into(), 200)
        .await
        .expect("discard");
    assert_eq!(discarded, ["01B"], "01A is no longer parked");
    let bulk = s
        .redrive_matching(
            Filter {
                destination: Some("crm".into()),
                ..Filter::default()
            },
            "alice".into(),
            300,
            10,
        )
        .await
        .expect("bulk");
    assert_eq!(bulk, ["01C", "01D"]);
    let all = s
        .audit(AuditFilter::default(), None, 100)
        .await
        .expect("audit");
    let seen: Vec<(&str, &str, &str, i64)> = all
        .records
        .iter()
        .map(|r| (r.actor.as_str(), r.action.as_str(), r.target.as_str(), r.at))
        .collect();
    assert_eq!(
        seen,
        [
            ("alice", "bulk_redrive", "messages", 300),
            ("bob", "discard", "01B", 200),
            ("alice", "redrive", "01A", 100),
        ]
    );
    let detail: serde_json::Value =
        serde_json::from_str(&all.records[0].detail).expect("detail is JSON");
    assert_eq!(detail["count"], 2);
    assert_eq!(detail["filter"]["destination"], "crm");
    let alice = s
        .audit(
            AuditFilter {
                actor: Some("alice".into()),
                ..AuditFilter::default()
            },
            None,
            1,
        )
        .await
        .expect("audit");
    assert_eq!(alice.records.len(), 1);
    assert_eq!(alice.records[0].action, "bulk_redrive");
    let rest = s
        .audit(
            AuditFilter {
                actor: Some("alice".into()),
                ..AuditFilter::default()
            },
            alice.next,
            10,
        )
        .await
        .expect("next page");
    assert_eq!(rest.records.len(), 1);
    assert_eq!(
        (rest.records[0].action.as_str(), rest.next),
        ("redrive", None)
    );
    let since = s
        .audit(
            AuditFilter {
                since: Some(200),
                action: Some("discard".into()),
                ..AuditFilter::default()
            },
            None,
            10,
        )
        .await
        .expect("audit");
    assert_eq!(since.records.len(), 1);
}
