//! Why a running agent is asked to stop: the one signal from the guard, the
//! shutdown and the cancel watcher to the container stage.

/// Why the guard asks a running agent to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Keep going.
    None,
    /// A person cancelled the job.
    Cancel,
    /// The worker is shutting down and its grace period ran out.
    Shutdown,
    /// The run lease could not be renewed in time, or another run took the job:
    /// stop at once, before another worker may start it.
    Fenced,
    /// The working tree grew past `workspace_limit_mb` (its size in bytes).
    WorkspaceTooBig(u64),
}
