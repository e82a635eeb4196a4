//! What every job handler shares: configuration, the store, the Docker engine and
//! this worker's identity.

use agentq_shared::{
    config::{AgentRunIds, Config},
    store::JobStore,
};
use bollard::Docker;

/// Shared by all handlers of one worker process.
#[derive(Debug)]
pub struct WorkerCtx {
    /// Configuration.
    pub cfg: Config,
    /// Redis.
    pub store: JobStore,
    /// The local Docker engine.
    pub docker: Docker,
    /// This process's unique worker id (fresh on every start).
    pub worker_id: String,
    /// Host name.
    pub host: String,
    /// [`StopReason::Shutdown`](crate::stop::StopReason) once the shutdown grace
    /// period has run out: running agents stop and their jobs go back to the queue.
    pub shutdown: tokio::sync::watch::Receiver<crate::stop::StopReason>,
    /// Ids of the jobs this worker runs now (for the worker registry and metrics).
    pub running: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Prometheus metrics.
    pub metrics: crate::metrics::Metrics,
    /// The agent pools this worker runs (see [`crate::preflight`]).
    pub served: crate::preflight::Served,
    /// The forge, if one is configured.
    pub forge: Option<agentq_shared::forge::ForgeClient>,
    /// The host circuit breaker.
    pub breaker: crate::breaker::Breaker,
    /// Where the agents' watchdog binary is installed (mounted read-only).
    pub watchdog_dir: std::path::PathBuf,
    /// The engine keeps containers on `fuse-overlayfs`: held containers'
    /// root directory loses its group bits before they run (see
    /// [`crate::fuse_root`]).
    pub fuse_rootfs: bool,
    /// Bytes this host's workspaces and mirrors used at the last housekeeping.
    pub workspace_bytes: std::sync::atomic::AtomicU64,
    /// Room of a pool without a limit: the live workers' total concurrency
    /// (refreshed by [`crate::waker`]).
    pub window: std::sync::atomic::AtomicU32,
    /// Notified when deliveries were pushed: the apalis worker looks at once.
    pub poke: tokio::sync::Notify,
    /// This worker's `--concurrency` places: every job it runs holds one,
    /// however it was claimed (see [`crate::room`]).
    pub room: crate::room::Room,
    /// The background services (see [`crate::services`]), stopped by `main`.
    pub services: crate::services::Services,
    /// The tasks of the jobs this worker runs, however they came (the intake,
    /// affinity): `main` waits for them at shutdown before it stops the
    /// services.
    pub jobs: tokio_util::task::TaskTracker,
    /// Wake-ups for the loops that wait instead of polling (timers,
    /// affinity, verify requests): see [`crate::waker`].
    pub wakes: crate::waker::Wakes,
}

impl WorkerCtx {
    /// `uid:gid` agents run as: `docker.agent_user` when this worker is root
    /// (it gives them the working tree), else this worker's own ids.
    pub fn agent_ids(&self) -> (u32, u32) {
        self.cfg.agent_run_ids()
    }

    /// [`WorkerCtx::agent_ids`] as Docker's `user`.
    pub fn agent_user(&self) -> String {
        let (uid, gid) = self.agent_ids();
        format!("{uid}:{gid}")
    }
}

pub use agentq_shared::host::hostname;
