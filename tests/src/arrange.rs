//! The usual set-up of a test, written as one chain: repositories, workers and
//! jobs, each step done at once, in the order written.
//!
//! ```ignore
//! let world = env
//!     .arrange()
//!     .repo("core", "demo")
//!     .worker("w1", 1)
//!     .enqueue_for_issue(1, "runs @agentq-test exit 0")
//!     .done();
//! let rec = env.wait_final(world.id(), LONG).await;
//! ```

use crate::{TestEnv, WorkerProc};

/// A set-up under way (see [`TestEnv::arrange`]).
pub struct Arrange<'a> {
    env: &'a TestEnv,
    done: Arranged,
}

/// What a set-up made: the jobs it enqueued and the workers it started (killed
/// when this is dropped, so keep it bound for the test's length).
pub struct Arranged {
    /// Ids of the jobs enqueued, in order.
    pub ids: Vec<String>,
    /// The workers started, in order.
    pub workers: Vec<WorkerProc>,
}

impl TestEnv {
    /// Starts a set-up of repositories, workers and jobs on this world.
    pub fn arrange(&self) -> Arrange<'_> {
        Arrange {
            env: self,
            done: Arranged {
                ids: Vec::new(),
                workers: Vec::new(),
            },
        }
    }
}

impl Arrange<'_> {
    /// Creates the remote `{org}/{repo}.git` with one commit (a README).
    pub fn repo(self, org: &str, repo: &str) -> Self {
        self.repo_with(org, repo, &[])
    }

    /// Creates the remote `{org}/{repo}.git` with one commit holding `files`.
    pub fn repo_with(self, org: &str, repo: &str, files: &[(&str, &str)]) -> Self {
        self.env.remotes.create(org, repo, files);
        self
    }

    /// Starts worker `name` with `--concurrency n`.
    pub fn worker(mut self, name: &str, concurrency: u32) -> Self {
        let w = self.env.worker(name, concurrency);
        self.done.workers.push(w);
        self
    }

    /// Enqueues a job on `core/demo` for `issue` with `task` (see
    /// [`TestEnv::enqueue_for_issue`]).
    pub fn enqueue_for_issue(mut self, issue: u32, task: &str) -> Self {
        let id = self.env.enqueue_for_issue(issue, task);
        self.done.ids.push(id);
        self
    }

    /// The set-up's jobs and workers.
    pub fn done(self) -> Arranged {
        self.done
    }
}

impl Arranged {
    /// The one job enqueued; fails the test if there were more or none.
    pub fn id(&self) -> &str {
        assert_eq!(self.ids.len(), 1, "not one job: {:?}", self.ids);
        &self.ids[0]
    }

    /// The `N` jobs enqueued, in order; fails the test if there were not `N`.
    pub fn jobs<const N: usize>(&self) -> [String; N] {
        self.ids
            .clone()
            .try_into()
            .unwrap_or_else(|ids| panic!("not {N} jobs: {ids:?}"))
    }
}
