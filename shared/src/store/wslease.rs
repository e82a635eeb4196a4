//! Workspace leases: at most one job runs in a workspace at a time, on any host.
//!
//! A workspace (`{org}/{repo}/{pr-N|task-N|branch-NAME|tag-NAME}`) is shared by every job
//! for the same target: a second dispatch for an issue, a review next to a fix, a
//! retry, a resume. Its lease is a key holding the running job's id, with a TTL
//! renewed while the job runs, so a dead holder frees it after `heartbeat ×
//! missed`. A job that finds it taken is parked in the workspace's line (a
//! sorted set by enqueue order, see [`crate::store::park`]) and gives its pool slot
//! back; when the workspace is given back, the first job in line goes to its
//! pool's lane, keeping its place there. Waiting for a workspace spends no
//! attempt and holds no pool slot.

use std::{sync::LazyLock, time::Duration};

use crate::{
    input::DispatchInput,
    store::{lua, JobStore, StoreError},
    workspace::workspace_name,
};

/// The `ws_try_take` script (`lua/ws_try_take.lua`).
static TRY_TAKE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| lua::script("ws_try_take"));
/// The `claim` script (`lua/claim.lua`).
static CLAIM_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| lua::script("claim"));
/// The `ws_take` script (`lua/ws_take.lua`).
static TAKE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| lua::script("ws_take"));
/// The `ws_give_back` script (`lua/ws_give_back.lua`).
static GIVE_BACK_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| lua::script("ws_give_back"));
/// The `ws_renew` script (`lua/ws_renew.lua`).
static RENEW_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| lua::script("ws_renew"));

/// The workspace a job runs in, as a key: `{org}/{repo}/{pr-N|task-N|branch-NAME|tag-NAME}`.
pub fn workspace_key(input: &DispatchInput) -> String {
    format!("{}/{}/{}", input.org, input.repo, workspace_name(input))
}

/// The answer to "may this job use its workspace now?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkspaceTake {
    /// Taken (or held already): give it back with [`JobStore::give_back_workspace`].
    Taken,
    /// Busy: held by this job.
    Busy(String),
}

impl JobStore {
    /// Takes workspace `ws` for job `id` for `ttl`, unless another job holds it.
    /// A job that finds it busy parks in the workspace's line (see
    /// [`crate::store::ParkIn::Workspace`]) until it is given back.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn take_workspace(
        &self,
        ws: &str,
        id: &str,
        ttl: Duration,
    ) -> Result<WorkspaceTake, StoreError> {
        let holder: String = TAKE_SCRIPT
            .key(self.keys().workspace_lease(ws))
            .arg(ttl.as_millis() as u64)
            .arg(id)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(if holder.is_empty() {
            WorkspaceTake::Taken
        } else {
            WorkspaceTake::Busy(holder)
        })
    }

    /// Gives workspace `ws` back if job `id` holds it; the first job in its line
    /// then goes to its pool's lane.
    ///
    /// # Errors
    /// Redis errors (the lease then expires by itself, and the sweep moves the
    /// line on).
    pub async fn give_back_workspace(&self, ws: &str, id: &str) -> Result<(), StoreError> {
        let k = self.keys();
        let _: i64 = GIVE_BACK_SCRIPT
            .key(k.workspace_lease(ws))
            .key(k.workspace_waiters(ws))
            .arg(id)
            .arg(k.namespace())
            .arg(k.job_prefix())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Notes, in one round trip, that `host` has workspace `ws` now (for
    /// affinity) and that job `id` is the last job run there (housekeeping
    /// keeps a workspace whose last job is blocked, and drops one whose last
    /// job was purged).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn note_workspace(&self, ws: &str, host: &str, id: &str) -> Result<(), StoreError> {
        let _: () = redis::pipe()
            .hset(self.keys().workspace_hosts(), ws, host)
            .ignore()
            .hset(self.keys().workspace_jobs(), ws, id)
            .ignore()
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Takes workspace `ws` for housekeeping (`id`, e.g. `janitor:{host}`) only
    /// if no job runs in it or waits for it; returns whether it did.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn try_take_workspace(
        &self,
        ws: &str,
        id: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let k = self.keys();
        let n: i64 = TRY_TAKE_SCRIPT
            .key(k.workspace_lease(ws))
            .key(k.workspace_waiters(ws))
            .arg(id)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(n == 1)
    }

    /// The last job run in workspace `ws`, if known.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn workspace_job(&self, ws: &str) -> Result<Option<String>, StoreError> {
        Ok(redis::AsyncCommands::hget(&mut self.conn(), self.keys().workspace_jobs(), ws).await?)
    }

    /// Leaves job `id` to `host` (it has the job's workspace) until `until_ms`;
    /// `host` claims it with [`JobStore::claim_left_jobs`] when it has room
    /// (told on its channel, [`crate::keys::Keys::affinity_wake`]).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn leave_to_host(
        &self,
        host: &str,
        id: &str,
        until_ms: i64,
    ) -> Result<(), StoreError> {
        // The host is told at once (its claimer waits on this channel).
        let _: () = redis::pipe()
            .zadd(self.keys().affinity(host), id, until_ms)
            .ignore()
            .publish(self.keys().affinity_wake(host), id)
            .ignore()
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Up to `most` jobs other hosts left to `host`, as deliveries this host now
    /// owns (taken out of the queue).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn claim_left_jobs(
        &self,
        host: &str,
        most: usize,
    ) -> Result<Vec<crate::store::Delivery>, StoreError> {
        let mut inv = CLAIM_SCRIPT.prepare_invoke();
        for k in crate::delivery::queue_keys(self.keys()) {
            inv.key(k);
        }
        inv.key(self.keys().affinity(host))
            .arg("")
            .arg(most)
            .arg(self.keys().job_prefix());
        let data: Vec<Vec<u8>> = inv.invoke_async(&mut self.conn()).await?;
        Ok(data
            .iter()
            .filter_map(|d| serde_json::from_slice(d).ok())
            .collect())
    }

    /// The host that last ran a job in workspace `ws`, if any.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn workspace_host(&self, ws: &str) -> Result<Option<String>, StoreError> {
        Ok(redis::AsyncCommands::hget(&mut self.conn(), self.keys().workspace_hosts(), ws).await?)
    }

    /// Extends job `id`'s lease on workspace `ws`; returns whether it still holds it.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn renew_workspace(
        &self,
        ws: &str,
        id: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let n: i64 = RENEW_SCRIPT
            .key(self.keys().workspace_lease(ws))
            .arg(id)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_the_workspace_path() {
        let input = DispatchInput {
            org: "core".into(),
            repo: "demo".into(),
            issue: 7,
            ..Default::default()
        };
        assert_eq!(workspace_key(&input), "core/demo/task-7");
    }
}
