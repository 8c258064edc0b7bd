//! `redrive mock`: a scripted HTTP endpoint that plays the failures the
//! platforms' error-handling guides describe, so integrations (and redrive's own
//! tests) can meet them on purpose.
//!
//! Seed 003 asks integrators to "simulate and test common API error scenarios:
//! invalid inputs, authentication failure, server unavailability". A scenario
//! ([`Scenario`]) routes requests by method and path to a sequence of steps
//! ("503, 503, then 200 for ever", per route or per idempotency key) or a seeded
//! weighted mix. Steps answer, wait, hang, reset the connection, close it
//! without a word, send garbage, dribble the body, or take the listener down.
//! Every request is journaled and counted; `/__mock/...` reads and resets the
//! journal and replaces the scenario at run time.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use redrive_mock::{MockServer, Scenario};
//!
//! let text = r#"
//! [[routes]]
//! path = "/v1/*"
//! steps = [{ status = 503, times = 2 }, { status = 200 }]
//! "#;
//! let scenario = Scenario::from_toml("inline", text, None).expect("valid");
//! let mock = MockServer::start(scenario, "127.0.0.1:0".parse().unwrap(), None).await?;
//! println!("listening on {}", mock.url());
//! # Ok(()) }
//! ```

mod admin;
pub mod journal;
pub mod oauth;
pub mod presets;
pub mod scenario;
mod server;
pub mod wire;

pub use journal::{Entry, JournalView};
pub use scenario::Scenario;
pub use server::{Counts, MockServer, RouteCount, StepCount};

/// A commented scenario that shows every step (`redrive mock --example`).
pub const EXAMPLE: &str = include_str!("example.toml");
