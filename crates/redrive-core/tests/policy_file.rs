//! Policy files: what a valid file means, and the one-line error of each way a
//! file can be wrong. A bad file never falls back to a default.

mod support;

use std::time::Duration;

use redrive_core::{
    Condition, ErrorClass, IndeterminateAction, Jitter, PolicySet, Schedule, StatusRange,
};
use support::*;

fn load(text: &str) -> PolicySet {
    PolicySet::from_toml("policies.toml", text).unwrap_or_else(|e| panic!("{e}"))
}

fn error(text: &str) -> String {
    match PolicySet::from_toml("policies.toml", text) {
        Ok(_) => panic!("accepted a bad file:\n{text}"),
        Err(e) => {
            let line = e.to_string();
            assert!(!line.contains('\n'), "error spans lines: {line}");
            line
        }
    }
}

const DESIGN_EXAMPLE: &str = r#"
[policies.billing]
extends = "standard"
max_attempts = 6
schedule = ["1m", "10m", "1h", "24h"]
retry_on = ["network", 408, 429, "5xx", { problem_type = "https://example.com/retry-later" }]
retry_after = { honour = true, cap = "1h" }
indeterminate = "park"
idempotency_header = "Idempotency-Key"
attempt_timeout = "10s"
deadline = "72h"
"#;

#[test]
fn design_md_example_loads_as_written() {
    let set = load(DESIGN_EXAMPLE);
    let p = set.get("billing").expect("billing");
    assert_eq!(p.max_attempts, 6);
    assert_eq!(
        p.schedule,
        Schedule::Fixed(vec![secs(60), secs(600), secs(3600), secs(86_400)])
    );
    let conditions: Vec<_> = p.retry_on.iter().map(|r| r.when.clone()).collect();
    assert_eq!(
        conditions,
        vec![
            Condition::Class(ErrorClass::NetworkUnsent),
            Condition::Class(ErrorClass::NetworkIndeterminate),
            Condition::Status(StatusRange::one(408)),
            Condition::Status(StatusRange::one(429)),
            Condition::Status(StatusRange::hundreds(5)),
            Condition::ProblemType("https://example.com/retry-later".into()),
        ]
    );
    assert!(p
        .retry_on
        .iter()
        .all(|r| r.note == "policies.billing.retry_on"));
    assert_eq!(p.retry_after.cap, secs(3600));
    assert_eq!(p.indeterminate, IndeterminateAction::Park);
    assert_eq!(p.attempt_timeout, secs(10));
    assert_eq!(p.deadline, Some(secs(72 * 3600)));
    assert_eq!(p.idempotency_header.as_deref(), Some("Idempotency-Key"));
}

#[test]
fn unset_keys_come_from_the_extended_profile() {
    let set = load("[policies.mine]\nextends = \"intentplatform\"\nmax_attempts = 3\n");
    let mine = set.get("mine").unwrap();
    let base = profile("intentplatform");
    assert_eq!(mine.max_attempts, 3);
    assert_eq!(mine.retry_on, base.retry_on);
    assert_eq!(mine.schedule, base.schedule);
    // It behaves like intentplatform: 503 is a business error.
    assert_eq!(
        status(mine, req("POST"), 503).parked(),
        Some(redrive_core::ParkReason::NotRetryable)
    );
    assert!(status(mine, req("POST"), 502).retried());
}

#[test]
fn a_policy_may_extend_another_policy_of_the_file_and_defaults_to_standard() {
    let set = load(
        r#"
        [policies.child]
        extends = "parent"
        max_attempts = 2
        [policies.parent]
        schedule = { exponential = { base = "2s", factor = 3, cap = "1m", jitter = "full" } }
        "#,
    );
    let parent = set.get("parent").unwrap();
    assert_eq!(parent.retry_on, profile("standard").retry_on);
    let child = set.get("child").unwrap();
    assert_eq!(child.max_attempts, 2);
    assert_eq!(
        child.schedule,
        Schedule::Exponential {
            base: secs(2),
            factor: 3.0,
            cap: secs(60),
            jitter: Jitter::Full
        }
    );
}

#[test]
fn every_schedule_form_loads() {
    let set = load(
        r#"
        [policies.lin]
        schedule = { linear = { base = "1s", step = "500ms", cap = "5s" } }
        [policies.off]
        schedule = { offsets = ["1m", "10m", "1h"] }
        "#,
    );
    assert_eq!(
        set.get("lin").unwrap().schedule,
        Schedule::Linear {
            base: secs(1),
            step: Duration::from_millis(500),
            cap: secs(5),
            jitter: Jitter::None
        }
    );
    assert_eq!(
        set.get("off").unwrap().schedule,
        Schedule::Fixed(vec![secs(60), secs(540), secs(3000)])
    );
}

#[test]
fn body_rules_and_never_retry_load() {
    let set = load(
        r#"
        [policies.hive]
        extends = "synchive"
        retry_on = [{ type_code = "BUSY" }, { retryable = true }, "rate_limited", "500-504"]
        never_retry = [{ oauth_error = "invalid_grant" }]
        success = ["2xx", 304]
        idempotency_header = false
        idempotent_methods = ["get", "put"]
        indeterminate_statuses = ["5xx"]
        alert_on_park = true
        "#,
    );
    let p = set.get("hive").unwrap();
    assert_eq!(p.retry_on.len(), 4);
    assert_eq!(
        p.never_retry[0].when,
        Condition::OAuthError("invalid_grant".into())
    );
    assert_eq!(p.idempotency_header, None);
    assert_eq!(p.idempotent_methods, vec!["GET", "PUT"]);
    assert!(p.alert_on_park);
    assert_eq!(
        status(p, req("GET"), 304).decision,
        redrive_core::Decision::Delivered
    );
    assert!(response(p, req("POST"), 400, &[], r#"{"typeCode":"BUSY"}"#).retried());
}

#[test]
fn configuration_tables_may_sit_beside_the_policies() {
    let set = load(
        r#"
        [server]
        listen = "127.0.0.1:7878"
        [destinations.crm]
        url = "https://crm.example.com"
        [policies.billing]
        max_attempts = 4
        "#,
    );
    assert_eq!(set.names().collect::<Vec<_>>(), vec!["billing"]);
}

#[test]
fn an_unknown_key_names_the_file_line_and_key() {
    let e = error("[policies.billing]\nextends = \"standard\"\nmax_attempt = 6\n");
    assert!(e.starts_with("policies.toml:3:1: "), "{e}");
    assert!(e.contains("policies.billing"), "{e}");
    assert!(e.contains("unknown field `max_attempt`"), "{e}");
}

#[test]
fn an_unknown_top_level_table_is_refused() {
    let e = error("[policy.billing]\nextends = \"standard\"\n");
    assert!(e.contains("unknown field `policy`"), "{e}");
}

#[test]
fn an_empty_schedule_is_refused_with_an_example() {
    let e = error("[policies.billing]\nschedule = []\n");
    assert_eq!(
        e,
        "policies.toml: policies.billing.schedule: the schedule is empty; give at least one delay, for example schedule = [\"1m\"]"
    );
}

#[test]
fn a_cap_below_the_base_is_refused() {
    let e = error(
        "[policies.billing]\nschedule = { exponential = { base = \"10s\", cap = \"1s\" } }\n",
    );
    assert_eq!(
        e,
        "policies.toml: policies.billing.schedule.cap: the cap (1s) is below the base (10s); raise the cap or lower the base"
    );
}

#[test]
fn an_unparsable_duration_names_its_key_and_position() {
    let e = error("[policies.billing]\nattempt_timeout = \"10 seconds\"\n");
    assert!(
        e.starts_with("policies.toml:2:19: policies.billing.attempt_timeout: "),
        "{e}"
    );
    assert!(e.contains("`10 seconds` is not a duration"), "{e}");
    let e = error("[policies.billing]\nschedule = [\"1m\", \"soon\"]\n");
    assert!(e.contains("policies.billing.schedule"), "{e}");
    assert!(e.contains("`soon` is not a duration"), "{e}");
    let e = error("[policies.billing]\ndeadline = 72\n");
    assert!(e.contains("expected a duration in quotes"), "{e}");
}

#[test]
fn bad_conditions_say_what_is_allowed() {
    let e = error("[policies.b]\nretry_on = [\"sometimes\"]\n");
    assert!(e.contains("policies.b.retry_on"), "{e}");
    assert!(e.contains("`sometimes` is not a condition"), "{e}");
    let e = error("[policies.b]\nretry_on = [700]\n");
    assert!(e.contains("`700` is not a status"), "{e}");
    let e = error("[policies.b]\nretry_on = [{ header = \"x\" }]\n");
    assert!(e.contains("unknown condition `header`"), "{e}");
    let e = error("[policies.b]\nretry_on = [\"success\"]\n");
    assert!(e.contains("cannot be retried"), "{e}");
}

#[test]
fn out_of_range_numbers_are_refused() {
    let e = error("[policies.b]\nmax_attempts = 0\n");
    assert!(
        e.contains("policies.b.max_attempts: must be between 1 and 1000"),
        "{e}"
    );
    let e = error("[policies.b]\nschedule = { exponential = { base = \"1s\", cap = \"1m\", factor = 0.5 } }\n");
    assert!(
        e.contains("policies.b.schedule.factor: must be a number of at least 1"),
        "{e}"
    );
    let e = error("[policies.b]\nschedule = { offsets = [\"10m\", \"1m\"] }\n");
    assert!(e.contains("policies.b.schedule.offsets"), "{e}");
}

#[test]
fn extends_must_name_something_that_exists_and_not_go_round() {
    let e = error("[policies.b]\nextends = \"stripe\"\n");
    assert!(
        e.contains("policies.b.extends: `stripe` is neither a built-in profile"),
        "{e}"
    );
    let e = error("[policies.a]\nextends = \"b\"\n[policies.b]\nextends = \"a\"\n");
    assert!(e.contains("goes round in a circle: a -> b -> a"), "{e}");
}

#[test]
fn a_policy_cannot_take_a_built_in_name() {
    let e = error("[policies.standard]\nmax_attempts = 3\n");
    assert!(e.contains("`standard` is a built-in profile"), "{e}");
}

#[test]
fn a_toml_syntax_error_has_a_position() {
    let e = error("[policies.b\nmax_attempts = 3\n");
    assert!(e.starts_with("policies.toml:1:"), "{e}");
}

#[test]
fn a_file_without_policies_is_refused() {
    let e = error("# nothing here\n");
    assert!(e.contains("no policy found"), "{e}");
}
