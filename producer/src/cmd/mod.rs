//! One module per subcommand.

pub mod agents;
pub mod batch;
pub mod cancel;
pub mod doctor;
pub mod enqueue;
pub mod enqueue_when;
pub mod events;
pub mod fleet;
pub mod inspect;
pub mod list;
pub mod logs;
pub mod notify;
pub mod pool;
pub mod purge;
pub mod purge_branches;
pub mod resume;
pub mod retry;
pub mod schedules;
pub mod select;
pub mod stats;
pub mod status;
pub mod verify;
pub mod wait;
pub mod web;
pub mod workers;
