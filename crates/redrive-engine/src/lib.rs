//! redrive's delivery engine.
//!
//! Today it holds the part every other piece builds on: [`client`], the HTTP
//! client that makes one attempt and reports its outcome in the core's terms
//! (a response, or a named transport failure that says whether the request may
//! have reached the receiver). The scheduler, workers, limits and breakers come
//! with the engine issue.

pub mod client;

pub use client::{
    Attempted, ClientConfig, HttpClient, OutboundRequest, ReceivedResponse, TransportError,
};
