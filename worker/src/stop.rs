//! Why a running agent is asked to stop: the one signal from the guard, the
//! shutdown and the cancel watcher to the container stage.

/// Why the guard asks a running agent to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The working tree is over `workspace_limit_mb` or `workspace_limit_files`,
    /// or could not be measured (unreadable, too slow to walk): how.
    WorkspaceOver(agentq_shared::fsutil::TreeOver),
    /// An operator stopped the job's pool (`agentq stop --now`): stopped as a
    /// shutdown stops it (SIGTERM, `stop_grace_secs`, SIGKILL) and handed back
    /// to `queued`, first in line, spending no attempt.
    StopNow,
}
