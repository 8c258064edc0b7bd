//! The structured bodies the seed documents define, as serde types.
//!
//! They serve three users: the classifier reads their fields, `redrive mock`
//! builds its presets from them, and integrators can use them to parse what a
//! platform sent. Unknown members are kept (`extensions`) so a round trip loses
//! nothing.

pub mod oauth;
pub mod privo;
pub mod problem;
pub mod synchive;

pub use oauth::OAuthError;
pub use privo::PrivoResponse;
pub use problem::ProblemDetails;
pub use synchive::{ConnectorError, LinkIdentities, LinkIdentity};
