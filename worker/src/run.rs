//! One admitted run of a job: what every stage needs (the worker, the hold on
//! the job, its record, the attempt), the directories its containers mount, and
//! the workspace's `status.json` as the seed wrote it.

use std::{path::PathBuf, sync::Arc};

use agentq_shared::{
    agent::AgentSpec,
    clock::now_rfc3339,
    container::{ContainerJob, Watchdog},
    record::JobRecord,
    stamp::Stamp,
    status::{JobState, StatusFile, WorkspaceStatus},
    workspace::Workspace,
};

use crate::{context::WorkerCtx, deadman::Beat, hold::Hold};

/// One admitted run of a job: what every stage needs.
pub(crate) struct Run<'a> {
    pub(crate) ctx: &'a Arc<WorkerCtx>,
    pub(crate) hold: &'a Hold,
    pub(crate) rec: &'a JobRecord,
    pub(crate) attempt: u32,
    pub(crate) started: Stamp,
    pub(crate) beat: Option<&'a Beat>,
    /// Starts the guard's watch of the agent's working tree.
    pub(crate) tree_arm: &'a crate::guard::TreeArm,
    /// This run's small helper tasks (notes on the record): they end with it.
    pub(crate) helpers: &'a RunTasks,
    /// This run's containers being removed beside the work that follows them.
    pub(crate) removals: &'a Removals,
}

impl Run<'_> {
    /// Identifies this run's containers, with the watchdog wired in.
    pub(crate) fn container_job<'b>(
        &'b self,
        agent: &'b AgentSpec,
        prompt: &'b str,
        dirs: &'b RunDirs,
    ) -> ContainerJob<'b> {
        ContainerJob {
            job_id: &self.rec.id,
            attempt: self.attempt,
            worker_id: &self.ctx.worker_id,
            namespace: self.ctx.store.keys().namespace(),
            agent,
            prompt,
            repo_dir: &dirs.repo,
            input_dir: &dirs.input,
            out_dir: dirs.out.as_deref(),
            user: self.ctx.agent_user(),
            watchdog: self.beat.map(|b| Watchdog {
                bin_dir: &self.ctx.watchdog_dir,
                beat_dir: b.dir(),
                stale_after: self.ctx.cfg.fence_after(),
            }),
        }
    }

    /// The name of this run's agent container.
    pub(crate) fn agent_container_name(&self) -> String {
        format!("agentq-{}-{}", self.rec.id.to_lowercase(), self.attempt)
    }

    /// `status.json` of this run, in `state`, with the job's fields filled in.
    pub(crate) fn status(&self, state: JobState, runs: u32, branch: String) -> WorkspaceStatus {
        let i = &self.rec.input;
        WorkspaceStatus {
            status: state,
            agent: i.agent.clone(),
            repo: i.repo.clone(),
            org: i.org.clone(),
            task: i.task.clone(),
            branch,
            pid: 0,
            started_at: self.started.to_string(),
            runs,
            question: String::new(),
            issue: i.issue,
            job_id: self.rec.id.clone(),
            attempt: self.attempt,
            exit_code: None,
            updated_at: now_rfc3339(),
            ..Default::default()
        }
    }

    /// Writes `st` to the workspace's `status.json` (a failure is logged: the
    /// record in Redis is the truth).
    pub(crate) fn write_status(&self, ws: &Workspace, st: &WorkspaceStatus) {
        if let Err(e) = st.write_atomic(&ws.status_file()) {
            tracing::warn!(job = %self.rec.id, error = %e, "cannot write status.json");
        }
    }
}

/// The helper tasks of one run, aborted when it is dropped: a run that ends
/// any way at all (an outcome, an early return, a panic unwinding through it)
/// leaves none of them behind.
#[derive(Debug, Default)]
pub(crate) struct RunTasks(std::sync::Mutex<tokio::task::JoinSet<()>>);

impl RunTasks {
    /// Runs `task` for as long as this run lasts at most.
    pub(crate) fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut set = self.0.lock().unwrap();
        // Take the ones already done, so a long run does not pile them up.
        while set.try_join_next().is_some() {}
        set.spawn(task);
    }
}

/// The removals of a run's stopped containers, started at once and run
/// beside what follows (the agent's container: beside the import of its
/// commits and the push), so Docker's removal is not on the way from the
/// agent's exit to the job's final state.
///
/// They are still done before the run's outcome is written: the final move
/// ([`crate::stages`]' `record`) and every other ending of the stages
/// ([`crate::job`], before it writes what their result means) wait for
/// them, so a job said finished has no container left. A removal is never
/// cut short: each runs on a task of the worker's jobs (`main` waits for
/// them at shutdown), and one whose run unwound goes on by itself; a worker
/// that dies meanwhile leaves the container to the janitor, which removes
/// every container whose run no longer holds its job.
/// Clones share the list: a container removed from outside the run's
/// borrow (an unused QA container started ahead, [`crate::qa_held`], removed
/// when dropped) is waited for all the same.
#[derive(Debug, Default, Clone)]
pub(crate) struct Removals(Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>);

impl Removals {
    /// Starts removing container `id` (force, with its anonymous volumes);
    /// `keep` (what the container uses, e.g. its build caches) is dropped
    /// once it is gone.
    pub(crate) fn remove<T: Send + 'static>(&self, ctx: &WorkerCtx, id: String, keep: T) {
        let docker = ctx.docker.clone();
        self.after(ctx, async move {
            remove_now(&docker, &id).await;
            drop(keep);
        });
    }

    /// Runs `removal` (which removes a container, e.g. once it has started)
    /// as one of these removals.
    pub(crate) fn after(
        &self,
        ctx: &WorkerCtx,
        removal: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let task = ctx.jobs.spawn(removal);
        self.0.lock().unwrap().push(task);
    }

    /// Waits until every removal started so far is done.
    pub(crate) async fn wait(&self) {
        let tasks = std::mem::take(&mut *self.0.lock().unwrap());
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// Removes container `id` now (the tests' slow-removal hook first).
pub(crate) async fn remove_now(docker: &bollard::Docker, id: &str) {
    let began = std::time::Instant::now();
    crate::fault::slow_removal().await;
    crate::docker::remove(docker, id).await;
    tracing::trace!(container = %id, ms = began.elapsed().as_millis() as u64, "container removed");
}

/// A workspace's directories that containers mount.
pub(crate) struct RunDirs {
    pub(crate) repo: PathBuf,
    pub(crate) input: PathBuf,
    /// The run's output directory (only the agent's container mounts it).
    pub(crate) out: Option<PathBuf>,
}

impl RunDirs {
    pub(crate) fn of(ws: &Workspace) -> Self {
        Self {
            repo: ws.repo_dir(),
            input: ws.input_dir(),
            out: Some(ws.agent_out_dir()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the task holding the sender of `rx` ended (dropped it) within
    /// 10 s.
    async fn ended(rx: tokio::sync::oneshot::Receiver<()>) -> bool {
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(10), rx).await,
            Ok(Err(_))
        )
    }

    /// A helper still running when its run is dropped is aborted with it.
    #[tokio::test]
    async fn a_runs_helpers_end_when_the_run_is_dropped() {
        let tasks = RunTasks::default();
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn(async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        tokio::task::yield_now().await;
        assert!(matches!(
            rx.try_recv(),
            Err(tokio::sync::oneshot::error::TryRecvError::Empty)
        ));
        drop(tasks);
        // Aborting drops the task's future: its sender goes with it.
        assert!(ended(rx).await, "the helper outlived its run");
    }

    /// A run that unwinds (a panic in its stages) drops its helpers too.
    #[tokio::test]
    async fn a_runs_helpers_end_when_the_run_panics() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let run = async move {
            let tasks = RunTasks::default();
            tasks.spawn(async move {
                let _tx = tx;
                std::future::pending::<()>().await;
            });
            tokio::task::yield_now().await;
            panic!("a stage panicked");
        };
        let unwound = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(run)).await;
        assert!(unwound.is_err());
        assert!(ended(rx).await, "the helper outlived its run");
    }
}
