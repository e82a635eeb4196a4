//! A run's hold on its job: every write the run makes passes its fencing token,
//! and a write Redis could not take is tried again until Redis answers.
//!
//! A worker never leaves a delivery without a recorded outcome: a state move that
//! fails on a Redis error is kept here (in the handler, so bounded by the
//! worker's concurrency) and retried with backoff until Redis is back. The answer
//! is then either "done" or "refused", and refused means another run owns the
//! job now (it was taken over): this run stops and writes nothing more.

use std::time::Duration;

use agentq_shared::{
    store::{JobStore, Move, Moved, StoreError},
    transition::{Note, Transition},
};

/// Another run owns the job now: this run must stop writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("another run owns the job now (fenced)")]
pub struct Fenced;

/// The fencing token of one run of one job.
#[derive(Debug, Clone)]
pub struct Hold {
    store: JobStore,
    /// The job.
    pub id: String,
    /// The run's fencing token.
    pub token: String,
}

/// Backoff between retries of a write while Redis fails: 100 ms doubling to 5 s.
pub fn write_backoff(tries: u32) -> Duration {
    agentq_shared::backoff::doubling(Duration::from_millis(100), tries, Duration::from_secs(5))
}

/// Runs `op` until it returns something other than a Redis error, sleeping with
/// [`write_backoff`] in between; logs the first failure and every tenth.
pub async fn until_redis_answers<T, F, Fut>(what: &str, id: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut tries = 0u32;
    loop {
        match op().await {
            Ok(v) => {
                if tries > 0 {
                    tracing::info!(job = id, what, tries, "Redis answers again; recorded");
                }
                return v;
            }
            Err(e) => {
                if tries.is_multiple_of(10) {
                    tracing::warn!(job = id, what, error = %e, "cannot reach Redis; keeping it and trying again");
                }
                tokio::time::sleep(write_backoff(tries)).await;
                tries += 1;
            }
        }
    }
}

impl Hold {
    /// The hold of run `token` on job `id`.
    pub fn new(store: JobStore, id: String, token: String) -> Self {
        Self { store, id, token }
    }

    /// Applies `m` as this run (fenced), retrying Redis errors until Redis answers.
    ///
    /// # Errors
    /// [`Fenced`] when another run owns the job (or it was purged).
    async fn apply(&self, m: Move<'_>) -> Result<Moved, Fenced> {
        let m = m.fenced(&self.token);
        let state = m.state;
        // A record that does not parse is not a Redis error: not retried.
        let moved = until_redis_answers("state move", &self.id, || async {
            match self.store.apply(&self.id, &m).await {
                Err(StoreError::Corrupt(_, why)) => Ok(Err(why)),
                other => other.map(Ok),
            }
        })
        .await;
        let moved = match moved {
            Ok(moved) => moved,
            Err(why) => return self.fail_unreadable(&why).await,
        };
        match moved {
            Moved::Done { .. } => Ok(moved),
            _ => {
                tracing::warn!(job = %self.id, token = %self.token, state = %state, "write refused: another run owns the job; stopping this run");
                Err(Fenced)
            }
        }
    }

    /// Fails the job whose record a move found unreadable (`why`: `FIELD:
    /// why`), with a move that counts nothing up; the run stops either way.
    async fn fail_unreadable(&self, why: &str) -> Result<Moved, Fenced> {
        let problem = agentq_shared::record::Unreadable::from_error(why);
        tracing::warn!(job = %self.id, field = %problem.field, error = %problem, "job record unreadable; job failed");
        let m = Move::from(Transition::refused(&problem.to_string())).fenced(&self.token);
        let _ = until_redis_answers("state move", &self.id, || async {
            match self.store.apply(&self.id, &m).await {
                Err(StoreError::Corrupt(..)) => Ok(Moved::Refused),
                other => other,
            }
        })
        .await;
        Err(Fenced)
    }

    /// Makes `t`, the run's next step (see [`Transition`]), as this run.
    ///
    /// # Errors
    /// [`Fenced`].
    pub async fn go(&self, t: Transition) -> Result<Moved, Fenced> {
        self.apply(t.into()).await
    }

    /// Writes a [`Note`], retrying Redis errors.
    ///
    /// # Errors
    /// [`Fenced`].
    pub async fn note(&self, note: &Note) -> Result<(), Fenced> {
        let ok = until_redis_answers("fields", &self.id, || {
            self.store.note_fenced(&self.id, &self.token, note)
        })
        .await;
        if ok {
            Ok(())
        } else {
            Err(Fenced)
        }
    }

    /// Extends the run lease by `ttl` (one try): `Ok(false)` when it is no longer
    /// this run's.
    ///
    /// # Errors
    /// Redis errors: whether the lease is still held is then unknown.
    pub async fn renew(&self, ttl: Duration) -> Result<bool, StoreError> {
        self.store.renew_run_lease(&self.id, &self.token, ttl).await
    }

    /// Drops the run lease if this run still holds it (best effort: it expires).
    pub async fn release(&self) {
        if let Err(e) = self.store.release_run_lease(&self.id, &self.token).await {
            tracing::debug!(job = %self.id, error = %e, "cannot release the run lease; it expires by itself");
        }
    }

    /// Appends a chunk of agent output to the job's log tail: `Ok(false)` when
    /// the job is no longer this run's.
    ///
    /// # Errors
    /// Redis errors (the chunk is then only in the workspace log).
    pub async fn append_log(&self, chunk: &[u8]) -> Result<bool, StoreError> {
        self.store
            .append_log_fenced(&self.id, &self.token, chunk)
            .await
    }

    /// The store.
    pub fn store(&self) -> &JobStore {
        &self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(write_backoff(0), Duration::from_millis(100));
        assert_eq!(write_backoff(1), Duration::from_millis(200));
        assert_eq!(write_backoff(20), Duration::from_secs(5));
    }
}
