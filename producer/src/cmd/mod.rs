//! One module per subcommand.

pub mod enqueue;
pub mod pool;
pub mod resume;
pub mod stats;
pub mod status;
pub mod wait;
