//! One module per subcommand.

pub mod enqueue;
pub mod resume;
pub mod status;
pub mod wait;
