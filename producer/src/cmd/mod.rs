//! One module per subcommand.

pub mod enqueue;
pub mod status;
