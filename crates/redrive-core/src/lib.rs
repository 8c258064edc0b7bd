//! redrive's policy core: classify an attempt's outcome and decide whether the
//! message is delivered, retried after a delay, or parked for a person.
//!
//! Every platform's "error handling" page says which failures are the caller's
//! fault, which are temporary, how to retry and when to give up. This crate holds
//! those pages as data ([`Policy`]), with built-in [`profiles`] for the platforms
//! of the seed documents, and one pure decision procedure ([`Policy::decide`]).
//!
//! **No I/O, no clock, no global randomness**: the current time and a random
//! source are arguments, so every decision can be replayed in a test.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use redrive_core::{profiles, AttemptContext, Decision, Outcome, ParkReason, RequestFacts, Response};
//!
//! let privo = profiles::builtin("privo").expect("built in");
//! let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
//! let ctx = AttemptContext { attempt: 1, now, cycle_started_at: now };
//! let outcome = Outcome::Response(Response { status: 500, headers: &[], body: b"" });
//! // Any `rand_core::RngCore` supplies the jitter; a constant one keeps this reproducible.
//! struct Zero;
//! impl rand_core::RngCore for Zero {
//!     fn next_u32(&mut self) -> u32 { 0 }
//!     fn next_u64(&mut self) -> u64 { 0 }
//!     fn fill_bytes(&mut self, d: &mut [u8]) { d.fill(0) }
//! }
//!
//! // seed 000: a 5xx is indeterminate; a POST without a key is parked for a person.
//! let post = privo.decide(&RequestFacts::new("POST"), &outcome, &ctx, &mut Zero);
//! assert_eq!(post.decision, Decision::Park { reason: ParkReason::Indeterminate });
//!
//! // ...while a GET is always safe to retry.
//! let get = privo.decide(&RequestFacts::new("GET"), &outcome, &ctx, &mut Zero);
//! assert_eq!(get.decision.as_str(), "retry");
//! ```

pub mod bodies;
pub mod class;
pub mod classify;
pub mod decide;
pub mod duration;
pub mod explain;
pub mod outcome;
pub mod policy;
pub mod profiles;
pub mod reconcile;
pub mod retry_after;
pub mod schedule;
pub mod since;
pub mod size;
pub mod toml_file;

pub use class::ErrorClass;
pub use classify::{classify, Classification, Signals};
pub use decide::{
    AttemptContext, Credentials, Decision, ParkReason, Probed, Recovery, RetryReason, Verdict, Why,
};
pub use duration::{format_duration, parse_duration, HumanDuration};
pub use outcome::{Outcome, RequestFacts, Response, TransportFailure};
pub use policy::file::PolicySet;
pub use policy::{Condition, IndeterminateAction, Policy, Rule, StatusRange};
pub use schedule::{Jitter, Schedule};
pub use toml_file::TomlError;
