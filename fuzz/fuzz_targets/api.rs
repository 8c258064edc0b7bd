//! The HTTP API and the inbound routes as a sender meets them: any method,
//! path and query, any body, through the real router on a real SQLite file
//! (the engine does not deliver). Whatever comes in, the answer is never a
//! 500 (bad input gets a 4xx that names what was wrong), except from the
//! source that answers as seed 002's connectors must (`/in/open`).
//!
//! Input: the first line is `METHOD TARGET`, the rest is the body.
#![no_main]

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use libfuzzer_sys::fuzz_target;
use redrive_engine::{ClientConfig, Engine, EngineConfig, HttpClient, SigningSecret, SystemClock};
use redrive_server::inbound::{Dedupe, Inbound, Respond, Source, Verify};
use redrive_store::SqliteStore;
use tower::ServiceExt;

struct Rig {
    runtime: tokio::runtime::Runtime,
    router: Router,
    _dir: std::path::PathBuf,
}

fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = std::env::temp_dir().join(format!("redrive-fuzz-api-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let config = redrive_server::Config::from_toml(
            "fuzz.toml",
            "[destinations.crm]\nurl = \"http://127.0.0.1:9\"\n",
            &Default::default(),
        )
        .expect("config");
        let router = runtime.block_on(async {
            let store = SqliteStore::open(&dir.join("fuzz.db")).expect("store");
            let client = HttpClient::new(ClientConfig::default()).expect("client");
            let engine = Engine::new(
                store,
                config.destinations.clone(),
                client,
                EngineConfig::default(),
                Arc::new(SystemClock),
            );
            let secret =
                SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
            let source = |name: &str, verify: Verify, dedupe, respond| Source {
                name: name.into(),
                path: format!("/in/{name}"),
                destination: "crm".into(),
                verify,
                dedupe,
                respond,
                max_body: 4096,
                read_timeout: Duration::from_secs(1),
            };
            let sources = vec![
                source(
                    "sw",
                    Verify::StandardWebhooks(secret),
                    None,
                    Respond::Accepted,
                ),
                source(
                    "hmac",
                    Verify::HmacSha256 {
                        secret: b"s3cret".to_vec(),
                        header: http::HeaderName::from_static("x-signature"),
                        encoding: redrive_server::inbound::source::Encoding::Hex,
                        prefix: "sha256=".into(),
                    },
                    None,
                    Respond::Accepted,
                ),
                source(
                    "open",
                    Verify::None,
                    Some(Dedupe::Json("/id".into())),
                    Respond::SynchiveProcess,
                ),
            ];
            let state = Arc::new(redrive_server::api::AppState {
                engine,
                tokens: Vec::new(),
                max_body: 4096,
                metrics: redrive_server::metrics_handle(),
                ready: AtomicBool::new(true),
                sessions: Default::default(),
                inbound: Inbound::new(sources, false),
            });
            redrive_server::api::router(state)
        });
        Rig {
            runtime,
            router,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let Ok(head) = std::str::from_utf8(&data[..split]) else {
        return;
    };
    let body = data.get(split + 1..).unwrap_or_default().to_vec();
    let Some((method, target)) = head.split_once(' ') else {
        return;
    };
    let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let Ok(uri) = target.parse::<http::Uri>() else {
        return;
    };
    let Ok(req) = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .header("webhook-id", "msg_1")
        .header("webhook-timestamp", "1765000000")
        .header("x-signature", "sha256=00")
        .body(Body::from(body))
    else {
        return;
    };
    let seed_002 = target.starts_with("/in/open");
    let rig = rig();
    let res = rig
        .runtime
        .block_on(rig.router.clone().oneshot(req))
        .expect("the router answers");
    if !seed_002 {
        assert_ne!(
            res.status(),
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "{res:?}"
        );
    }
});
