//! Every rule of every built-in profile, one test per rule, named after the seed
//! sentence it checks. Seeds live in `../shared/seeds/`.

mod support;

use redrive_core::{Decision, ErrorClass, ParkReason, RetryReason, TransportFailure as T};
use support::*;

/// seed 000 (000_5da3dfe82e83dc70.txt) and seed 001 (001_148219df6d5fd025.txt).
mod privo {
    use super::*;

    fn p() -> redrive_core::Policy {
        profile("privo")
    }

    #[test]
    fn seed001_200_201_and_208_already_reported_count_as_delivered() {
        for s in [200, 201, 208] {
            let got = status(&p(), req("POST"), s);
            assert_eq!(got.decision, Decision::Delivered, "{s}");
            assert_eq!(got.class, ErrorClass::Success);
        }
    }

    #[test]
    fn seed001_302_found_is_a_successful_redirection() {
        assert_eq!(status(&p(), req("GET"), 302).decision, Decision::Delivered);
    }

    #[test]
    fn seed000_content_errors_4xx_are_corrected_not_retried() {
        for s in [400, 403, 404, 409, 422] {
            let got = status(&p(), req("GET"), s);
            assert_eq!(got.parked(), Some(ParkReason::NotRetryable), "{s}");
        }
        assert_eq!(status(&p(), req("POST"), 400).class, ErrorClass::Content);
    }

    #[test]
    fn seed001_401_invalid_token_is_an_auth_error_never_retried() {
        let body = r#"{"error": "invalid_token", "error_description": "Invalid access token: eyJhbGciOiJSUzIi.......3gZthv7Y"}"#;
        let got = response(&p(), req("GET"), 401, &[], body);
        assert_eq!(got.class, ErrorClass::Auth);
        assert_eq!(got.parked(), Some(ParkReason::NotRetryable));
    }

    #[test]
    fn seed001_429_backs_off_exponentially_for_every_method() {
        for method in ["GET", "POST", "PATCH"] {
            let (delays, end) = delays_until_parked(&p(), req(method), 429);
            assert_eq!(delays.len(), 7, "{method}: 8 attempts, 7 waits");
            assert_eq!(end, Some(ParkReason::Exhausted));
        }
        // Exponential: the upper bound of each (jittered) wait doubles.
        let sched = &p().schedule;
        let bounds: Vec<_> = (1..=4).map(|n| sched.nominal_delay(n)).collect();
        assert_eq!(bounds, vec![secs(1), secs(2), secs(4), secs(8)]);
    }

    #[test]
    fn seed000_get_and_delete_are_always_safe_to_retry_after_a_5xx() {
        for method in ["GET", "DELETE", "get"] {
            let got = status(&p(), req(method), 500);
            assert!(got.retried(), "{method}: {got:?}");
        }
    }

    #[test]
    fn seed000_a_5xx_on_a_post_is_indeterminate_and_parked_for_reconciliation() {
        for method in ["POST", "PATCH", "PUT"] {
            let got = status(&p(), req(method), 503);
            assert_eq!(got.parked(), Some(ParkReason::Indeterminate), "{method}");
            assert_eq!(got.class, ErrorClass::Server);
        }
    }

    #[test]
    fn seed000_a_post_whose_content_blocks_duplicates_is_retried_after_a_5xx() {
        assert!(status(&p(), req("POST").marked_idempotent(), 500).retried());
        assert!(status(&p(), req("POST").with_key(), 502).retried());
    }

    #[test]
    fn seed000_network_errors_on_get_or_delete_are_retried() {
        for kind in [T::Timeout, T::Reset, T::Closed] {
            assert!(transport(&p(), req("GET"), kind).retried(), "{kind}");
            assert!(transport(&p(), req("DELETE"), kind).retried(), "{kind}");
        }
    }

    #[test]
    fn seed000_a_post_that_may_have_reached_the_server_is_not_blindly_retried() {
        for kind in [T::Timeout, T::Reset] {
            let got = transport(&p(), req("POST"), kind);
            assert_eq!(got.parked(), Some(ParkReason::Indeterminate), "{kind}");
            assert_eq!(got.class, ErrorClass::NetworkIndeterminate);
        }
    }

    #[test]
    fn seed000_a_post_that_never_left_is_retried() {
        for kind in [T::Refused, T::Dns, T::Tls, T::ConnectTimeout] {
            let got = transport(&p(), req("POST"), kind);
            assert!(got.retried(), "{kind}: {got:?}");
            assert_eq!(got.class, ErrorClass::NetworkUnsent);
        }
    }

    #[test]
    fn seed000_privo_documents_no_idempotency_header() {
        assert_eq!(p().idempotency_header, None);
    }
}

/// seed 000 (000_5da3dfe82e83dc70.txt), Server Errors, last paragraph.
mod privo_webhook {
    use super::*;

    fn p() -> redrive_core::Policy {
        profile("privo-webhook")
    }

    #[test]
    fn seed000_client_side_server_errors_are_attempted_up_to_3_times_within_a_minute() {
        let (delays, end) = delays_until_parked(&p(), req("POST"), 500);
        assert_eq!(delays.len(), 2, "3 attempts");
        assert!(delays.iter().sum::<std::time::Duration>() <= secs(60));
        assert_eq!(end, Some(ParkReason::Exhausted));
    }

    #[test]
    fn seed000_webhook_network_errors_are_retried_too() {
        assert!(transport(&p(), req("POST"), T::Timeout).retried());
        assert!(transport(&p(), req("POST"), T::Refused).retried());
    }

    #[test]
    fn seed000_after_the_last_try_a_report_reaches_the_engineers() {
        assert!(p().alert_on_park);
    }

    #[test]
    fn seed000_a_4xx_from_the_webhook_is_not_retried() {
        assert_eq!(
            status(&p(), req("POST"), 400).parked(),
            Some(ParkReason::NotRetryable)
        );
        assert_eq!(
            status(&p(), req("POST"), 429).parked(),
            Some(ParkReason::NotRetryable)
        );
    }

    #[test]
    fn seed000_retries_stop_when_the_minute_is_over() {
        // 50 s into the cycle, a 20 s wait would end after the minute.
        let got = status(&p(), req("POST").attempt(2).elapsed(secs(50)), 500);
        assert_eq!(got.parked(), Some(ParkReason::Expired));
    }
}

/// seed 002 (002_1b80dde5662858d4.txt).
mod synchive {
    use super::*;

    const RETRY_LATER: &str = r#"{
        "type": "http://www.meaningful.co.nz/limber-sync/retry-later",
        "typeCode": "RETRY_LATER",
        "status": 500,
        "title": "Retry later",
        "detail": "Retry later",
        "uuid": "3721a351-9285-4375-99db-f1fe1d8277b7",
        "message": "Oops, something went wrong"
    }"#;

    fn p() -> redrive_core::Policy {
        profile("synchive")
    }

    #[test]
    fn seed002_the_retry_later_problem_type_is_retried_whatever_the_status() {
        for s in [500, 400, 409] {
            let got = response(&p(), req("POST"), s, &[], RETRY_LATER);
            assert!(got.retried(), "{s}: {got:?}");
            assert!(got.rule.unwrap().contains("seed 002"));
        }
    }

    #[test]
    fn seed002_type_code_retry_later_alone_is_retried() {
        let got = response(&p(), req("POST"), 500, &[], r#"{"typeCode":"RETRY_LATER"}"#);
        assert!(got.retried());
    }

    #[test]
    fn seed002_502_503_and_504_are_retryable() {
        for s in [502, 503, 504] {
            assert!(status(&p(), req("POST"), s).retried(), "{s}");
        }
    }

    #[test]
    fn seed002_a_plain_500_is_not_retried() {
        assert_eq!(
            status(&p(), req("POST"), 500).parked(),
            Some(ParkReason::NotRetryable)
        );
    }

    #[test]
    fn seed002_a_process_error_with_retryable_true_is_retried() {
        let body = r#"{"type": "http://www.synchive.com/common/process-error", "detail": "Could not connect to ShopifyNZ.", "logCode": "4003E", "retryable": true}"#;
        assert!(response(&p(), req("PUT"), 500, &[], body).retried());
    }

    #[test]
    fn seed002_a_publish_error_with_retryable_false_is_never_retried_and_keeps_link_identities() {
        let body = r#"{"type": "http://www.synchive.com/common/publish-error", "detail": "Could not connect to ShopifyNZ.", "logCode": "4005E", "retryable": false,
            "linkIdentities": {"integrationKey": "shopify_nz_integration", "linkIdentities": [{"iri": "https://schema.limbergraph.com/limber/Product#00006e95-ed86-46b6-a36e-b7e339bfb0b2", "externalId": "632910392"}]}}"#;
        // Even on a status that would otherwise be retried.
        for s in [500, 503] {
            let got = response(&p(), req("PUT"), s, &[], body);
            assert_eq!(got.parked(), Some(ParkReason::NotRetryable), "{s}");
            let links = got.link_identities.expect("kept");
            assert_eq!(links["linkIdentities"][0]["externalId"], "632910392");
        }
    }

    #[test]
    fn seed002_everything_else_is_not_retried() {
        for s in [400, 401, 404, 429, 501] {
            assert_eq!(
                status(&p(), req("PUT"), s).parked(),
                Some(ParkReason::NotRetryable),
                "{s}"
            );
        }
    }

    #[test]
    fn a_connection_that_never_opened_is_retried_and_a_timeout_only_when_idempotent() {
        assert!(transport(&p(), req("POST"), T::Refused).retried());
        assert!(transport(&p(), req("PUT"), T::Timeout).retried());
        assert_eq!(
            transport(&p(), req("POST"), T::Timeout).parked(),
            Some(ParkReason::Indeterminate)
        );
    }
}

/// seed 003 (003_7503dfbdfb3ddf6d.txt).
mod operations1 {
    use super::*;

    fn p() -> redrive_core::Policy {
        profile("operations1")
    }

    #[test]
    fn seed003_429_and_503_are_retried_5_times_at_1_2_4_8_seconds() {
        for s in [429, 503] {
            let (delays, end) = delays_until_parked(&p(), req("GET"), s);
            assert_eq!(delays, vec![secs(1), secs(2), secs(4), secs(8)], "{s}");
            assert_eq!(end, Some(ParkReason::Exhausted));
        }
    }

    #[test]
    fn seed003_the_delays_are_exact_even_with_retry_after() {
        let got = response(&p(), req("GET"), 429, &[("Retry-After", "30")], "");
        assert_eq!(got.delay(), Some(secs(1)));
    }

    #[test]
    fn seed003_other_4xx_and_5xx_are_not_retried() {
        for s in [400, 401, 403, 404, 500, 502] {
            assert_eq!(
                status(&p(), req("GET"), s).parked(),
                Some(ParkReason::NotRetryable),
                "{s}"
            );
        }
    }

    #[test]
    fn seed003_each_attempt_times_out_after_5_seconds() {
        assert_eq!(p().attempt_timeout, secs(5));
    }

    #[test]
    fn seed003_request_exceptions_are_retried() {
        assert!(transport(&p(), req("GET"), T::Timeout).retried());
        assert!(transport(&p(), req("POST"), T::Refused).retried());
    }
}

/// seed 004 (004_c91374d2826fed79.txt).
mod intentplatform {
    use super::*;

    fn p() -> redrive_core::Policy {
        profile("intentplatform")
    }

    #[test]
    fn seed004_408_500_and_502_are_temporary_errors() {
        for s in [408, 500, 502] {
            assert!(status(&p(), req("POST"), s).retried(), "{s}");
        }
    }

    #[test]
    fn intentplatform_parks_503_as_business_error() {
        let got = status(&p(), req("POST"), 503);
        assert_eq!(got.parked(), Some(ParkReason::NotRetryable));
    }

    #[test]
    fn seed004_everything_not_listed_is_an_erreur_metier_never_retried() {
        for s in [400, 401, 404, 409, 429, 501, 504] {
            assert_eq!(
                status(&p(), req("POST"), s).parked(),
                Some(ParkReason::NotRetryable),
                "{s}"
            );
        }
    }

    #[test]
    fn seed004_connection_failures_are_temporary_even_for_a_post() {
        for kind in [T::Refused, T::Timeout, T::Reset] {
            assert!(transport(&p(), req("POST"), kind).retried(), "{kind}");
        }
    }

    #[test]
    fn seed004_resends_at_t0_plus_1min_10min_1h_24h_then_human_action() {
        let (delays, end) = delays_until_parked(&p(), req("POST"), 500);
        let mut at = std::time::Duration::ZERO;
        let offsets: Vec<_> = delays
            .iter()
            .map(|d| {
                at += *d;
                at
            })
            .collect();
        assert_eq!(offsets, vec![secs(60), secs(600), secs(3600), secs(86_400)]);
        assert_eq!(end, Some(ParkReason::Exhausted));
    }

    #[test]
    fn seed004_the_delays_are_exact() {
        let got = response(&p(), req("POST"), 500, &[("Retry-After", "5")], "");
        assert_eq!(got.delay(), Some(secs(60)));
    }
}

/// redrive's own `standard` (DESIGN.md's table).
mod standard {
    use super::*;

    fn p() -> redrive_core::Policy {
        profile("standard")
    }

    #[test]
    fn design_network_408_429_500_502_503_504_are_retried() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(status(&p(), req("POST"), s).retried(), "{s}");
        }
        for kind in T::ALL {
            assert!(transport(&p(), req("POST"), kind).retried(), "{kind}");
        }
    }

    #[test]
    fn design_other_4xx_are_never_retried() {
        for s in [400, 401, 403, 404, 409, 410, 422] {
            assert_eq!(
                status(&p(), req("POST"), s).parked(),
                Some(ParkReason::NotRetryable),
                "{s}"
            );
        }
    }

    #[test]
    fn design_8_attempts_then_exhausted() {
        let (delays, end) = delays_until_parked(&p(), req("POST"), 503);
        assert_eq!(delays.len(), 7);
        assert_eq!(end, Some(ParkReason::Exhausted));
        // Full jitter below a nominal 1 s, 2 s, 4 s, ... bound.
        for (i, d) in delays.iter().enumerate() {
            assert!(*d <= secs(1 << i), "wait {i}: {d:?}");
        }
    }

    #[test]
    fn design_retry_after_in_seconds_is_obeyed_exactly() {
        let got = response(&p(), req("POST"), 429, &[("retry-after", "17")], "");
        assert_eq!(
            got.decision,
            Decision::Retry {
                delay: secs(17),
                reason: RetryReason::RetryAfter
            }
        );
    }

    #[test]
    fn design_retry_after_as_an_http_date_is_obeyed_and_clamped_to_the_cap() {
        let in_90s = httpdate::fmt_http_date(now() + secs(90));
        assert_eq!(
            response(&p(), req("POST"), 503, &[("Retry-After", &in_90s)], "").delay(),
            Some(secs(90))
        );
        let in_a_week = httpdate::fmt_http_date(now() + secs(7 * 86_400));
        assert_eq!(
            response(&p(), req("POST"), 503, &[("Retry-After", &in_a_week)], "").delay(),
            Some(secs(3600))
        );
    }

    #[test]
    fn design_an_idempotency_key_makes_every_post_idempotent() {
        assert_eq!(p().idempotency_header.as_deref(), Some("Idempotency-Key"));
        assert!(transport(&p(), req("POST"), T::Reset).retried());
    }
}
