//! The claims' cursors (see `leases`), against a model of what a claim must
//! take: the oldest due messages that no lease holds, exactly as a claim that
//! read every due entry from the front would.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::leases::lock;
use super::SqliteStore;
use crate::conformance::new_message;
use crate::{AttemptRecord, NextState, People, Store};

/// One message as the model sees it.
#[derive(Clone, Debug)]
struct Modelled {
    destination: &'static str,
    /// Due at, while pending.
    due: Option<i64>,
    parked: bool,
    /// `(token, until)` of its lease.
    lease: Option<(String, i64)>,
}

impl Modelled {
    fn claimable(&self, destination: &str, now: i64) -> bool {
        self.destination == destination
            && self.due.is_some_and(|at| at <= now)
            && self.lease.as_ref().is_none_or(|(_, until)| *until <= now)
    }
}

/// What a claim of `n` of `destination`'s messages at `now` must take.
fn expected(
    model: &BTreeMap<String, Modelled>,
    destination: &str,
    n: usize,
    now: i64,
) -> Vec<String> {
    let mut due: Vec<(i64, &String)> = model
        .iter()
        .filter(|(_, m)| m.claimable(destination, now))
        .filter_map(|(id, m)| Some((m.due?, id)))
        .collect();
    due.sort();
    due.into_iter().take(n).map(|(_, id)| id.clone()).collect()
}

/// A held lease of the model, picked at random.
fn some_lease(model: &BTreeMap<String, Modelled>, rng: &mut StdRng) -> Option<(String, String)> {
    let held: Vec<(String, String)> = model
        .iter()
        .filter_map(|(id, m)| Some((id.clone(), m.lease.as_ref()?.0.clone())))
        .collect();
    (!held.is_empty()).then(|| held[rng.random_range(0..held.len())].clone())
}

/// A random run of enqueues (some due behind the cursor), claims of one or
/// two destinations, records (deliveries, parks, retries due behind the
/// cursor), releases, redrives and a clock that moves on (leases expire),
/// every claim checked against the model. It also counts the claims that
/// read from a cursor, so it cannot pass by always reading from the front.
#[tokio::test]
async fn claims_from_a_cursor_take_what_a_claim_from_the_front_would() {
    const DESTINATIONS: [&str; 2] = ["a", "b"];
    let mut claims = 0;
    let mut from_cursor = 0;
    for seed in 0..12u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("redrive.db")).expect("open");
        let mut model: BTreeMap<String, Modelled> = BTreeMap::new();
        let mut now = 1_000i64;
        for step in 0..300 {
            match rng.random_range(0..20) {
                0..=3 => {
                    let mut batch = Vec::new();
                    for _ in 0..rng.random_range(1..=4) {
                        let id = format!("{:08}", rng.random_range(0..100_000_000u32));
                        if model.contains_key(&id) {
                            continue;
                        }
                        let destination = DESTINATIONS[rng.random_range(0..2)];
                        let at = now + rng.random_range(-30..=5);
                        batch.push(new_message(&id, destination, &id, at));
                        model.insert(
                            id,
                            Modelled {
                                destination,
                                due: Some(at),
                                parked: false,
                                lease: None,
                            },
                        );
                    }
                    store.enqueue(batch).await.expect("enqueue");
                }
                4..=9 => {
                    let mut want = vec![(
                        DESTINATIONS[rng.random_range(0..2)],
                        rng.random_range(1..=6),
                    )];
                    if rng.random_bool(0.3) {
                        let other = if want[0].0 == "a" { "b" } else { "a" };
                        want.push((other, rng.random_range(1..=6)));
                    }
                    let token = format!("t{step}");
                    let until = now + rng.random_range(5..200);
                    let mut wanted = Vec::new();
                    for (destination, n) in &want {
                        if lock(&store.leases).cursor_of(destination).is_some() {
                            from_cursor += 1;
                        }
                        claims += 1;
                        wanted.extend(expected(&model, destination, *n, now));
                    }
                    let got: Vec<String> = store
                        .claim(
                            now,
                            want.iter().map(|(d, n)| ((*d).to_owned(), *n)).collect(),
                            token.clone(),
                            until,
                        )
                        .await
                        .expect("claim")
                        .into_iter()
                        .map(|c| c.message.id)
                        .collect();
                    assert_eq!(
                        got, wanted,
                        "seed {seed}, step {step}, now {now}, want {want:?}"
                    );
                    for id in got {
                        if let Some(m) = model.get_mut(&id) {
                            m.lease = Some((token.clone(), until));
                        }
                    }
                }
                10..=13 => {
                    let Some((id, token)) = some_lease(&model, &mut rng) else {
                        continue;
                    };
                    let (next, due, parked) = match rng.random_range(0..3) {
                        0 => (NextState::Delivered, None, false),
                        1 => (
                            NextState::Parked {
                                reason: "exhausted".into(),
                            },
                            None,
                            true,
                        ),
                        _ => {
                            let at = now + rng.random_range(-20..=40);
                            (NextState::Retry { at }, Some(at), false)
                        }
                    };
                    let recorded = store
                        .record(id.clone(), token, AttemptRecord::default(), next, now)
                        .await
                        .expect("record");
                    assert!(recorded, "seed {seed}, step {step}: the holder records");
                    if let Some(m) = model.get_mut(&id) {
                        (m.due, m.parked, m.lease) = (due, parked, None);
                    }
                }
                14..=15 => {
                    let Some((id, token)) = some_lease(&model, &mut rng) else {
                        continue;
                    };
                    let at = now + rng.random_range(-20..=20);
                    store
                        .release(vec![(id.clone(), token)], at)
                        .await
                        .expect("release");
                    if let Some(m) = model.get_mut(&id) {
                        (m.due, m.lease) = (Some(at), None);
                    }
                }
                16 => {
                    let parked: Vec<String> = model
                        .iter()
                        .filter(|(_, m)| m.parked)
                        .map(|(id, _)| id.clone())
                        .collect();
                    if parked.is_empty() {
                        continue;
                    }
                    let id = parked[rng.random_range(0..parked.len())].clone();
                    let done = store
                        .redrive(vec![id.clone()], "ops".into(), now)
                        .await
                        .expect("redrive");
                    assert_eq!(done, vec![id.clone()]);
                    if let Some(m) = model.get_mut(&id) {
                        (m.due, m.parked) = (Some(now), false);
                    }
                }
                _ => now += rng.random_range(0..40),
            }
        }
    }
    assert!(
        from_cursor * 3 > claims,
        "only {from_cursor} of {claims} claims read from a cursor"
    );
}
