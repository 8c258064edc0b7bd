//! Classification + decision on representative outcomes.
//!
//! Run: `cargo bench -p redrive-core --bench decide`. The figure per decision is
//! reported in BENCHMARKS.md; the target is under 1 µs.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use redrive_core::{profiles, AttemptContext, Outcome, RequestFacts, Response, TransportFailure};

const RETRY_LATER: &[u8] = br#"{
"type": "http://www.meaningful.co.nz/limber-sync/retry-later",
"typeCode": "RETRY_LATER",
"status": 500,
"title": "Retry later",
"detail": "Retry later",
"uuid": "3721a351-9285-4375-99db-f1fe1d8277b7",
"message": "Oops, something went wrong"
}"#;

fn bench(c: &mut Criterion) {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let ctx = AttemptContext {
        attempt: 2,
        now,
        cycle_started_at: now,
    };
    let mut rng = SmallRng::seed_from_u64(1);
    let standard = profiles::builtin("standard").expect("built in");
    let synchive = profiles::builtin("synchive").expect("built in");
    let privo = profiles::builtin("privo").expect("built in");
    let post = RequestFacts::new("POST");
    let get = RequestFacts::new("GET");

    let html_headers = [("Content-Type", "text/html"), ("Server", "nginx")];
    let plain = Outcome::Response(Response {
        status: 503,
        headers: &html_headers,
        body: b"<html><body>Service Unavailable</body></html>",
    });
    let ra_headers = [("Content-Type", "application/json"), ("Retry-After", "30")];
    let retry_after = Outcome::Response(Response {
        status: 429,
        headers: &ra_headers,
        body: b"",
    });
    let ra_date_headers = [("Retry-After", "Thu, 01 Jan 2026 00:01:00 GMT")];
    let retry_after_date = Outcome::Response(Response {
        status: 503,
        headers: &ra_date_headers,
        body: b"",
    });
    let problem_headers = [("Content-Type", "application/problem+json")];
    let problem = Outcome::Response(Response {
        status: 500,
        headers: &problem_headers,
        body: RETRY_LATER,
    });
    let ok = Outcome::Response(Response {
        status: 200,
        headers: &[],
        body: b"{\"id\":1}",
    });
    let timeout = Outcome::Transport(TransportFailure::Timeout);

    let mut g = c.benchmark_group("classify_and_decide");
    g.bench_function("plain_503_standard", |b| {
        b.iter(|| {
            black_box(
                standard
                    .decide(&post, black_box(&plain), &ctx, &mut rng)
                    .decision,
            )
        })
    });
    g.bench_function("429_retry_after_seconds_standard", |b| {
        b.iter(|| {
            black_box(
                standard
                    .decide(&post, black_box(&retry_after), &ctx, &mut rng)
                    .decision,
            )
        })
    });
    g.bench_function("503_retry_after_http_date_standard", |b| {
        b.iter(|| {
            black_box(
                standard
                    .decide(&post, black_box(&retry_after_date), &ctx, &mut rng)
                    .decision,
            )
        })
    });
    g.bench_function("problem_json_retry_later_synchive", |b| {
        b.iter(|| {
            black_box(
                synchive
                    .decide(&post, black_box(&problem), &ctx, &mut rng)
                    .decision,
            )
        })
    });
    g.bench_function("200_json_privo", |b| {
        b.iter(|| black_box(privo.decide(&get, black_box(&ok), &ctx, &mut rng).decision))
    });
    g.bench_function("timeout_post_privo", |b| {
        b.iter(|| {
            black_box(
                privo
                    .decide(&post, black_box(&timeout), &ctx, &mut rng)
                    .decision,
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
