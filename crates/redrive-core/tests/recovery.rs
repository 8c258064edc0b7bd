//! What the engine may try before a failure stands: renewing a rejected token
//! (seed 001's `invalid_token`) and probing an indeterminate outcome (seed
//! 000's "reconciling failed requests with a server").

mod support;

use rand::rngs::SmallRng;
use rand::SeedableRng;
use redrive_core::{
    AttemptContext, Credentials, Decision, Outcome, ParkReason, Probed, Recovery, RequestFacts,
    Response, RetryReason,
};
use support::{now, profile};

fn ctx(attempt: u32) -> AttemptContext {
    AttemptContext {
        attempt,
        now: now(),
        cycle_started_at: now(),
    }
}

fn response<'a>(status: u16, headers: &'a [(&'a str, &'a str)], body: &'a [u8]) -> Outcome<'a> {
    Outcome::Response(Response {
        status,
        headers,
        body,
    })
}

const EXPIRED: &[u8] = br#"{"error": "invalid_token", "error_description": "Invalid access token: eyJhbGciOiJSUzIi.......3gZthv7Y"}"#;

fn decide(outcome: &Outcome<'_>, recovery: Recovery, method: &str) -> (Decision, &'static str) {
    let policy = profile("privo");
    let mut rng = SmallRng::seed_from_u64(1);
    let v = policy.decide_with(
        &RequestFacts::new(method),
        outcome,
        &ctx(1),
        recovery,
        &mut rng,
    );
    (v.decision, v.reason())
}

fn renewable() -> Recovery {
    Recovery {
        credentials: Credentials::Renewable,
        reconcile: false,
    }
}

#[test]
fn seed_001s_expired_token_body_renews_a_renewable_token() {
    let expired = response(401, &[], EXPIRED);
    assert_eq!(
        decide(&expired, renewable(), "POST"),
        (Decision::RenewCredentials, "credentials_renewed")
    );
    // Static credentials: an auth error, parked as before.
    assert_eq!(
        decide(&expired, Recovery::NONE, "POST").0,
        Decision::Park {
            reason: ParkReason::NotRetryable
        }
    );
    // Right after a renewal, a second rejection is an auth error too.
    let again = Recovery {
        credentials: Credentials::JustRenewed,
        reconcile: false,
    };
    assert_eq!(
        decide(&expired, again, "POST").0,
        Decision::Park {
            reason: ParkReason::NotRetryable
        }
    );
}

#[test]
fn an_rfc_6750_challenge_renews_too_but_other_auth_errors_do_not() {
    let challenge = [(
        "WWW-Authenticate",
        r#"Bearer realm="privo", error="invalid_token", error_description="expired""#,
    )];
    assert_eq!(
        decide(&response(401, &challenge, b""), renewable(), "GET").0,
        Decision::RenewCredentials
    );
    let scope = [("www-authenticate", r#"Bearer error="insufficient_scope""#)];
    assert_eq!(
        decide(&response(403, &scope, b""), renewable(), "GET").0,
        Decision::Park {
            reason: ParkReason::NotRetryable
        }
    );
    assert_eq!(
        decide(&response(401, &[], b"nope"), renewable(), "GET").0,
        Decision::Park {
            reason: ParkReason::NotRetryable
        }
    );
}

#[test]
fn an_indeterminate_post_is_probed_before_it_is_parked() {
    let probe = Recovery {
        credentials: Credentials::Fixed,
        reconcile: true,
    };
    let failed = response(500, &[], b"");
    assert_eq!(decide(&failed, probe, "POST").0, Decision::Probe);
    assert_eq!(
        decide(&failed, Recovery::NONE, "POST").0,
        Decision::Park {
            reason: ParkReason::Indeterminate
        }
    );
    // An idempotent request is retried as before: nothing to reconcile.
    assert!(matches!(
        decide(&failed, probe, "GET").0,
        Decision::Retry { .. }
    ));
}

#[test]
fn the_probes_answer_decides() {
    let policy = profile("privo");
    let failed = response(500, &[], b"");
    let post = RequestFacts::new("POST");
    let after = |probed: &Probed, attempt: u32| {
        let mut rng = SmallRng::seed_from_u64(1);
        let v = policy.after_probe(&post, &failed, &ctx(attempt), probed, &mut rng);
        (v.decision, v.reason())
    };
    assert_eq!(
        after(&Probed::Applied, 1),
        (Decision::Delivered, "reconciled_applied")
    );
    let (decision, reason) = after(&Probed::NotApplied, 1);
    assert!(
        matches!(
            decision,
            Decision::Retry {
                reason: RetryReason::ReconciledNotApplied,
                ..
            }
        ),
        "{decision:?}"
    );
    assert_eq!(reason, "reconciled_not_applied");
    // Not applied, but the attempts are spent: exhausted, as the policy says.
    assert_eq!(
        after(&Probed::NotApplied, policy.max_attempts).0,
        Decision::Park {
            reason: ParkReason::Exhausted
        }
    );
    assert_eq!(
        after(&Probed::Unknown("the probe answered 500".into()), 1),
        (
            Decision::Park {
                reason: ParkReason::Indeterminate
            },
            "indeterminate"
        )
    );
}
