//! The verify stage's part of the store: its events in `{ns}:events` (the
//! notifier reads `event=needs_review`) and `agentq verify`'s requests to run
//! it again (`{ns}:verify`, taken by a worker).

use redis::AsyncCommands;

use std::sync::LazyLock;

use crate::store::{lua, now_rfc3339, JobStore, StoreError, EVENTS_MAX_LEN};

static JOB_EVENT_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| lua::script("job_event"));

impl JobStore {
    /// Adds `event=needs_review job=ID reason=…` to the events stream and
    /// hands it, with the job's fields, to the notification outbox in the
    /// same call (`lua/job_event.lua`).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn add_needs_review_event(&self, id: &str, reason: &str) -> Result<(), StoreError> {
        let _: String = JOB_EVENT_SCRIPT
            .key(self.keys().events())
            .key(self.keys().job(id))
            .arg(EVENTS_MAX_LEN)
            .arg("needs_review")
            .arg(id)
            .arg(now_rfc3339())
            .arg("reason")
            .arg(reason)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Ids of the jobs in `state` that got there before `before_ms` (what
    /// [`JobStore::purge`] would take).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn ids_in_state_before(
        &self,
        state: crate::status::JobState,
        before_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        Ok(self
            .conn()
            .zrangebyscore(self.keys().state(state.as_str()), "-inf", before_ms)
            .await?)
    }

    /// Leaves a purged job's branch (`entry`: JSON with org, repo, branch,
    /// pr_url) to the workers, who delete it if its pull request was closed
    /// without a merge.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn queue_branch_cleanup(&self, entry: &str) -> Result<(), StoreError> {
        let _: () = redis::pipe()
            .rpush(self.keys().branch_cleanups(), entry)
            .ignore()
            .publish(self.keys().verify_wake(), "branch")
            .ignore()
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Takes up to `most` branch cleanups.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn take_branch_cleanups(&self, most: usize) -> Result<Vec<String>, StoreError> {
        let taken: Option<Vec<String>> = self
            .conn()
            .lpop(
                self.keys().branch_cleanups(),
                std::num::NonZeroUsize::new(most.max(1)),
            )
            .await?;
        Ok(taken.unwrap_or_default())
    }

    /// Asks a worker to run job `id`'s verify stage again (`agentq verify`).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn request_verify(&self, id: &str) -> Result<(), StoreError> {
        let now = self.redis_now_ms().await?;
        // Workers wait on the channel for it (no polling).
        let _: () = redis::pipe()
            .zadd(self.keys().verify_requests(), id, now)
            .ignore()
            .publish(self.keys().verify_wake(), id)
            .ignore()
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Takes up to `most` verify requests (oldest first).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn take_verify_requests(&self, most: usize) -> Result<Vec<String>, StoreError> {
        let taken: Vec<(String, f64)> = self
            .conn()
            .zpopmin(self.keys().verify_requests(), most as isize)
            .await?;
        Ok(taken.into_iter().map(|(id, _)| id).collect())
    }
}
