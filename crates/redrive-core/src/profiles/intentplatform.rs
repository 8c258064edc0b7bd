//! `intentplatform`: calling intentPlatform (the French guide).
//!
//! Seed 004 (004_c91374d2826fed79.txt).

use std::borrow::Cow;
use std::time::Duration;

use crate::class::ErrorClass;
use crate::policy::{IndeterminateAction, Policy, RetryAfter, Rule};
use crate::schedule::Schedule;

pub(super) fn policy() -> Policy {
    let mut p = super::skeleton(
        "intentplatform",
        "intentPlatform (seed 004): 408, 500, 502 and connection failures resent at +1 min, +10 min, +1 h, +24 h",
    );
    p.retry_on = vec![
        // seed 004: "Par défaut, nous considérons comme erreurs temporaires :
        // 408 - Timeout; 500 et 502 - Problème interne au serveur".
        Rule::status(408, "seed 004: 408 Timeout is a temporary error"),
        Rule::status(
            500,
            "seed 004: 500 is a temporary error (problème interne au serveur)",
        ),
        Rule::status(
            502,
            "seed 004: 502 is a temporary error (problème interne au serveur)",
        ),
        // seed 004: "Connexion au provider temporairement impossible" (1.a).
        Rule::class(
            ErrorClass::NetworkUnsent,
            "seed 004: connexion au provider temporairement impossible",
        ),
        Rule::class(
            ErrorClass::NetworkIndeterminate,
            "seed 004: connection failures and timeouts are temporary errors",
        ),
    ];
    // seed 004 tells partners to resend every temporary error, so an outcome that
    // may have been applied is resent too.
    p.indeterminate = IndeterminateAction::Retry;
    // seed 004: "→ Echec de l'envoi (t0); 1er renvoi à +1min; 2ème renvoi à +10 min;
    // 3ème renvoi à +1 heure; 4ème renvoi à +24 heures; Action humaine": the first
    // try and four resends, each offset measured from t0, the first failure.
    p.schedule = Schedule::from_offsets(&[
        Duration::from_secs(60),
        Duration::from_secs(600),
        Duration::from_secs(3600),
        Duration::from_secs(86_400),
    ])
    .unwrap_or_else(|| unreachable!("the offsets increase"));
    p.max_attempts = 5;
    p.retry_after = RetryAfter {
        honour: false,
        cap: Duration::from_secs(86_400),
    };
    p.notes.schedule = Cow::Borrowed(
        "seed 004: first try at t0, then resends at t0 +1 min, +10 min, +1 h, +24 h (5 attempts)",
    );
    p.notes.idempotency = Cow::Borrowed(
        "seed 004 asks to resend every temporary error, even one that may have been applied",
    );
    // seed 004: "tout ce qui n'est pas listé comme une erreur temporaire sera
    // considéré comme une erreur métier et aucun ré-essai ne sera effectué".
    p.notes.after_last_try = Cow::Borrowed(
        "parked for human action (seed 004: action humaine); every other status is an erreur métier, never retried",
    );
    p
}
