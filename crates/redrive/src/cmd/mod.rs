//! One module per subcommand.

pub mod classify;
pub mod mock;
pub mod policy;
pub mod serve;
pub mod signal;
