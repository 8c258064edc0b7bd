//! redrive's delivery engine: the scheduler that claims due messages under a
//! lease, the workers that attempt them over pooled HTTP connections within
//! each destination's limits, and the pieces they stack: rate limit,
//! concurrency limit, circuit breaker, timeout, signing.
//!
//! The engine reports; it does not decide. Every outcome goes to
//! `redrive_core` for the decision and to the store, which records the attempt
//! and the next state in one transaction.

pub mod alerts;
pub mod breaker;
pub mod client;
pub mod credentials;
pub mod destination;
mod due;
pub mod engine;
pub mod limits;
pub mod observed;
mod outcome;
pub mod people;
pub mod probe;
pub mod quiet;
pub mod redact;
mod request;
mod retention;
mod scheduler;
pub mod signing;
mod worker;

pub use breaker::{BreakerConfig, CircuitState};
pub use client::{
    Attempted, ClientConfig, HttpClient, OutboundRequest, ReceivedResponse, TransportError,
};
pub use credentials::{ClientAuth, CredentialsState, OAuth2, TokenSource};
pub use destination::Destination;
pub use engine::{Clock, Engine, EngineConfig, SystemClock};
pub use limits::Rate;
pub use people::Paused;
pub use request::build_request;
pub use signing::SigningSecret;
