//! Properties every policy decision must keep, whatever the outcome, attempt,
//! clock or random draw.

mod support;

use std::time::Duration;

use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use redrive_core::{
    profiles, AttemptContext, Decision, ErrorClass, IndeterminateAction, Jitter, Outcome,
    ParkReason, Policy, RequestFacts, Response, Schedule, TransportFailure,
};
use support::now;

fn any_schedule() -> impl Strategy<Value = Schedule> {
    let ms = 1u64..10_000_000;
    let jitter = prop_oneof![Just(Jitter::None), Just(Jitter::Full)];
    prop_oneof![
        prop::collection::vec(ms.clone(), 1..8)
            .prop_map(|v| Schedule::Fixed(v.into_iter().map(Duration::from_millis).collect())),
        (ms.clone(), 1.0f64..10.0, ms.clone(), jitter.clone()).prop_map(
            |(base, factor, extra, jitter)| {
                Schedule::Exponential {
                    base: Duration::from_millis(base),
                    factor,
                    cap: Duration::from_millis(base + extra),
                    jitter,
                }
            }
        ),
        (ms.clone(), 0u64..1_000_000, ms, jitter).prop_map(|(base, step, extra, jitter)| {
            Schedule::Linear {
                base: Duration::from_millis(base),
                step: Duration::from_millis(step),
                cap: Duration::from_millis(base + extra),
                jitter,
            }
        }),
    ]
}

fn any_policy() -> impl Strategy<Value = Policy> {
    (
        0..profiles::NAMES.len(),
        any_schedule(),
        1u32..20,
        prop::option::of(1u64..200_000),
        any::<bool>(),
    )
        .prop_map(|(i, schedule, max_attempts, deadline_s, park)| {
            let mut p = profiles::builtin(profiles::NAMES[i]).expect("built in");
            p.schedule = schedule;
            p.max_attempts = max_attempts;
            p.deadline = deadline_s.map(Duration::from_secs);
            p.indeterminate = if park {
                IndeterminateAction::Park
            } else {
                IndeterminateAction::Retry
            };
            p
        })
}

#[derive(Debug, Clone)]
enum AnyOutcome {
    Status(u16, Option<String>, String),
    Transport(TransportFailure),
}

fn any_outcome() -> impl Strategy<Value = AnyOutcome> {
    let bodies = prop_oneof![
        Just(String::new()),
        Just(r#"{"typeCode":"RETRY_LATER"}"#.to_owned()),
        Just(r#"{"type":"http://www.meaningful.co.nz/limber-sync/retry-later"}"#.to_owned()),
        Just(r#"{"retryable":true}"#.to_owned()),
        Just(r#"{"retryable":false}"#.to_owned()),
        Just(r#"{"error":"invalid_token"}"#.to_owned()),
        ".*",
    ];
    let retry_after = prop::option::of(prop_oneof![
        (0u64..1_000_000_000).prop_map(|s| s.to_string()),
        Just("Sun, 06 Nov 1994 08:49:37 GMT".to_owned()),
        Just("Fri, 31 Dec 2100 23:59:59 GMT".to_owned()),
        ".*",
    ]);
    prop_oneof![
        (100u16..600, retry_after, bodies).prop_map(|(s, ra, b)| AnyOutcome::Status(s, ra, b)),
        (0..TransportFailure::ALL.len())
            .prop_map(|i| AnyOutcome::Transport(TransportFailure::ALL[i])),
    ]
}

fn any_method() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("GET"),
        Just("POST"),
        Just("PUT"),
        Just("PATCH"),
        Just("DELETE"),
        Just("HEAD")
    ]
}

struct Case {
    decision: Decision,
    class: ErrorClass,
    idempotent: bool,
    indeterminate: bool,
}

fn run(
    p: &Policy,
    o: &AnyOutcome,
    method: &str,
    key: bool,
    attempt: u32,
    elapsed: Duration,
    seed: u64,
) -> (Case, Duration) {
    let headers_owned: Vec<(String, String)> = match o {
        AnyOutcome::Status(_, Some(ra), _) => vec![("Retry-After".to_owned(), ra.clone())],
        _ => vec![],
    };
    let headers: Vec<(&str, &str)> = headers_owned
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let outcome = match o {
        AnyOutcome::Status(s, _, body) => Outcome::Response(Response {
            status: *s,
            headers: &headers,
            body: body.as_bytes(),
        }),
        AnyOutcome::Transport(k) => Outcome::Transport(*k),
    };
    let ctx = AttemptContext {
        attempt,
        now: now(),
        cycle_started_at: now() - elapsed,
    };
    let facts = RequestFacts {
        method,
        idempotency_key: key,
        marked_idempotent: false,
    };
    let v = p.decide(&facts, &outcome, &ctx, &mut SmallRng::seed_from_u64(seed));
    (
        Case {
            decision: v.decision,
            class: v.class(),
            idempotent: v.idempotent,
            indeterminate: v.indeterminate,
        },
        elapsed,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn a_scheduled_delay_never_exceeds_the_cap(s in any_schedule(), attempt in 1u32..200, seed in any::<u64>()) {
        let d = s.delay(attempt, &mut SmallRng::seed_from_u64(seed));
        prop_assert!(d <= s.cap(), "{d:?} > {:?}", s.cap());
    }

    #[test]
    fn a_retry_delay_never_exceeds_the_policy_cap(
        p in any_policy(), o in any_outcome(), m in any_method(), key in any::<bool>(),
        attempt in 1u32..25, elapsed in 0u64..300_000, seed in any::<u64>(),
    ) {
        let (case, _) = run(&p, &o, m, key, attempt, Duration::from_secs(elapsed), seed);
        if let Decision::Retry { delay, .. } = case.decision {
            prop_assert!(delay <= p.max_delay(), "{delay:?} > {:?}", p.max_delay());
        }
    }

    #[test]
    fn no_decision_retries_past_max_attempts_or_the_deadline(
        p in any_policy(), o in any_outcome(), m in any_method(), key in any::<bool>(),
        attempt in 1u32..25, elapsed in 0u64..300_000, seed in any::<u64>(),
    ) {
        let (case, elapsed) = run(&p, &o, m, key, attempt, Duration::from_secs(elapsed), seed);
        if let Decision::Retry { delay, .. } = case.decision {
            prop_assert!(attempt < p.max_attempts, "retry after attempt {attempt} of {}", p.max_attempts);
            if let Some(deadline) = p.deadline {
                prop_assert!(elapsed + delay <= deadline, "retry at {:?} past the deadline {deadline:?}", elapsed + delay);
            }
        }
    }

    #[test]
    fn close_to_the_deadline_no_retry_lands_past_it(
        p in any_policy(), deadline_s in 1u64..100_000, o in any_outcome(), m in any_method(),
        before_ms in 0u64..20_000, attempt in 1u32..3, seed in any::<u64>(),
    ) {
        // Elapsed times just before the deadline, where an off-by-a-little
        // comparison would let a retry through.
        let mut p = p;
        p.max_attempts = p.max_attempts.max(3);
        let deadline = Duration::from_secs(deadline_s);
        p.deadline = Some(deadline);
        let elapsed = deadline.saturating_sub(Duration::from_millis(before_ms));
        let (case, elapsed) = run(&p, &o, m, true, attempt, elapsed, seed);
        if let Decision::Retry { delay, .. } = case.decision {
            prop_assert!(elapsed + delay <= deadline, "retry at {:?} past the deadline {deadline:?}", elapsed + delay);
        }
    }

    #[test]
    fn no_builtin_profile_ever_retries_a_content_error(
        i in 0..profiles::NAMES.len(), status in 400u16..500, m in any_method(), key in any::<bool>(),
        attempt in 1u32..10, seed in any::<u64>(),
    ) {
        let p = profiles::builtin(profiles::NAMES[i]).expect("built in");
        let o = AnyOutcome::Status(status, None, String::new());
        let (case, _) = run(&p, &o, m, key, attempt, Duration::ZERO, seed);
        if case.class == ErrorClass::Content {
            prop_assert!(matches!(case.decision, Decision::Park { reason: ParkReason::NotRetryable }), "{}: {status}", p.name);
        }
    }

    #[test]
    fn a_non_idempotent_indeterminate_outcome_is_never_retried_where_the_policy_says_park(
        p in any_policy(), o in any_outcome(), attempt in 1u32..25, seed in any::<u64>(),
    ) {
        let (case, _) = run(&p, &o, "POST", false, attempt, Duration::ZERO, seed);
        if p.indeterminate == IndeterminateAction::Park && case.indeterminate && !case.idempotent {
            prop_assert!(!matches!(case.decision, Decision::Retry { .. }), "{} retried an indeterminate POST", p.name);
        }
    }

    #[test]
    fn the_same_inputs_give_the_same_decision(
        p in any_policy(), o in any_outcome(), m in any_method(), attempt in 1u32..25, seed in any::<u64>(),
    ) {
        let (a, _) = run(&p, &o, m, false, attempt, Duration::ZERO, seed);
        let (b, _) = run(&p, &o, m, false, attempt, Duration::ZERO, seed);
        prop_assert_eq!(a.decision, b.decision);
    }
}
