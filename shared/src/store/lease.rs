//! Run leases and fencing tokens: which run of a job may write its record.
//!
//! A worker that takes a delivery takes the job's *run lease* (a key with a TTL,
//! renewed while it runs) and, in the same Lua call, a *fencing token*
//! `{worker}/{n}` with `n` counted up at every take-over, which it writes to the
//! record's `owner`. Every later write of that run (state moves, fields, the log
//! tail, the next delivery) passes the token and is refused once `owner` is
//! another: a worker that was cut off, or only slow, can never overwrite what the
//! worker that took over recorded. Final moves and hand-backs clear `owner`.

use std::{sync::LazyLock, time::Duration};

use redis::AsyncCommands;

use crate::store::{lua, Delivery, JobStore, StoreError};

/// The `acquire` script (`lua/acquire.lua`): takes a run lease and a token.
static ACQUIRE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| lua::script("acquire"));
/// The `run_lease_renew` script (`lua/run_lease_renew.lua`).
static RENEW_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| lua::script("run_lease_renew"));
/// The `run_lease_release` script (`lua/run_lease_release.lua`).
static RELEASE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| lua::script("run_lease_release"));
/// The `set_fenced` script (`lua/set_fenced.lua`).
static SET_FENCED_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| lua::script("set_fenced"));
/// The `log_fenced` script (`lua/log_fenced.lua`).
static LOG_FENCED_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| lua::script("log_fenced"));

/// What taking a delivery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    /// This run holds the job now, with this fencing token. `previous` is the
    /// owner recorded before (non-empty: a take-over from a run that never
    /// finished).
    Acquired {
        /// The fencing token for every write of this run.
        token: String,
        /// The owner before this take-over, if any.
        previous: String,
    },
    /// Another run holds the job (its token): this delivery is a duplicate, and
    /// that run moves the job on.
    Held(String),
    /// The record moved past this delivery (newer seq, or final).
    Stale,
    /// There is no such job.
    Gone,
    /// The record's fencing counter does not parse: the job was failed
    /// (`record unreadable: fence: ...`, kept) and its slot given back.
    Unreadable,
}

/// The worker id in a fencing token (`{worker}/{n}`).
pub fn token_worker(token: &str) -> &str {
    token.rsplit_once('/').map_or(token, |(w, _)| w)
}

impl JobStore {
    /// Takes job `delivery.job_id` for `worker` for `ttl`, if the delivery is
    /// current and no run holds the job.
    ///
    /// # Errors
    /// Redis errors (then the outcome is unknown: retry).
    pub async fn acquire(
        &self,
        delivery: &Delivery,
        worker: &str,
        ttl: Duration,
    ) -> Result<Acquire, StoreError> {
        let reply: Vec<String> = ACQUIRE_SCRIPT
            .key(self.keys().job(&delivery.job_id))
            .key(self.keys().run_lease(&delivery.job_id))
            .arg(worker)
            .arg(ttl.as_millis() as u64)
            .arg(delivery.seq)
            .invoke_async(&mut self.conn())
            .await?;
        let field = |i: usize| reply.get(i).cloned().unwrap_or_default();
        Ok(match field(0).as_str() {
            "ok" => Acquire::Acquired {
                token: field(1),
                previous: field(2),
            },
            "held" => Acquire::Held(field(1)),
            "stale" => Acquire::Stale,
            "unreadable" => Acquire::Unreadable,
            _ => Acquire::Gone,
        })
    }

    /// Extends the run lease if `token` still holds it; returns whether it did.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn renew_run_lease(
        &self,
        id: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let n: i64 = RENEW_SCRIPT
            .key(self.keys().run_lease(id))
            .arg(token)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(n == 1)
    }

    /// Drops the run lease if `token` holds it.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn release_run_lease(&self, id: &str, token: &str) -> Result<(), StoreError> {
        let _: i64 = RELEASE_SCRIPT
            .key(self.keys().run_lease(id))
            .arg(token)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// The fencing token holding job `id`'s run lease, if any.
    ///
    /// # Errors
    /// Redis errors: the holder is then unknown, not "nobody".
    pub async fn run_lease_holder(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.conn().get(self.keys().run_lease(id)).await?)
    }

    /// Writes a [`Note`](crate::transition::Note) on job `id` if run `token`
    /// still owns it; returns whether it did.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn note_fenced(
        &self,
        id: &str,
        token: &str,
        note: &crate::transition::Note,
    ) -> Result<bool, StoreError> {
        let mut inv = SET_FENCED_SCRIPT.key(self.keys().job(id));
        inv.arg(token);
        for (k, v) in &note.fields {
            inv.arg(*k).arg(v);
        }
        let n: i64 = inv.invoke_async(&mut self.conn()).await?;
        Ok(n == 1)
    }

    /// Appends a chunk of agent output to job `id`'s log tail if run `token`
    /// still owns it; returns whether it did. The tail holds at most
    /// [`LOG_TAIL_BYTES`](crate::store::ops::LOG_TAIL_BYTES) of output.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn append_log_fenced(
        &self,
        id: &str,
        token: &str,
        chunk: &[u8],
    ) -> Result<bool, StoreError> {
        use crate::store::ops::{LOG_CHUNK_BYTES, LOG_TAIL_MAX};
        let mut inv = LOG_FENCED_SCRIPT.key(self.keys().job(id));
        inv.key(self.keys().log_tail(id))
            .arg(token)
            .arg(LOG_TAIL_MAX);
        // Entries of at most LOG_CHUNK_BYTES, of which the tail keeps
        // LOG_TAIL_MAX (exactly): the tail's bound in bytes holds whatever
        // the chunks are. Pieces the tail would drop at once are not sent.
        let pieces: Vec<&[u8]> = chunk.chunks(LOG_CHUNK_BYTES).collect();
        for piece in &pieces[pieces.len().saturating_sub(LOG_TAIL_MAX)..] {
            inv.arg(*piece);
        }
        let n: i64 = inv.invoke_async(&mut self.conn()).await?;
        Ok(n == 1)
    }

    /// Whether someone asked to cancel job `id`.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn cancel_requested(&self, id: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        Ok(conn.exists(self.keys().cancel(id)).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_names_its_worker() {
        assert_eq!(token_worker("host-1-01J/7"), "host-1-01J");
        assert_eq!(token_worker("plain"), "plain");
    }
}
