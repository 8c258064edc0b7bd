//! One module per subcommand.

pub mod classify;
pub mod messages;
pub mod mock;
pub mod people;
pub mod policy;
pub mod send;
pub mod serve;
pub mod signal;
pub mod wait;
