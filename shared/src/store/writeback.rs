//! Forge write-backs to do again: a job whose write-back ran out of its budget
//! (`forge.timeout_secs`) finishes anyway, and what was left of it (the
//! worker's JSON: comment, pull request, status) waits here until a worker's
//! background task does it, holding no slot. Redoing is idempotent on the forge
//! side (marker comments, pull request lookup before create).

use redis::AsyncCommands;

use crate::store::{JobStore, StoreError};

impl JobStore {
    /// Queues (or replaces) job `id`'s write-back `json`, due at `due_ms`.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn queue_writeback(
        &self,
        id: &str,
        json: &str,
        due_ms: i64,
    ) -> Result<(), StoreError> {
        let k = self.keys();
        redis::pipe()
            .atomic()
            .hset(k.writebacks(), id, json)
            .ignore()
            .zadd(k.writebacks_due(), id, due_ms)
            .ignore()
            .query_async::<()>(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Up to `most` write-backs due by `now_ms`, each pushed back to `next_ms`
    /// (so that another worker does not take it at once): (id, json).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn take_due_writebacks(
        &self,
        now_ms: i64,
        next_ms: i64,
        most: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let k = self.keys();
        let mut conn = self.conn();
        let ids: Vec<String> = conn
            .zrangebyscore_limit(k.writebacks_due(), "-inf", now_ms, 0, most as isize)
            .await?;
        let mut out = Vec::new();
        for id in ids {
            // Only the worker whose ZADD changed the score takes it.
            let changed: i64 = redis::cmd("ZADD")
                .arg(k.writebacks_due())
                .arg("XX")
                .arg("GT")
                .arg("CH")
                .arg(next_ms)
                .arg(&id)
                .query_async(&mut conn)
                .await?;
            if changed == 0 {
                continue;
            }
            let json: Option<String> = conn.hget(k.writebacks(), &id).await?;
            match json {
                Some(j) => out.push((id, j)),
                None => {
                    let _: () = conn.zrem(k.writebacks_due(), &id).await?;
                }
            }
        }
        Ok(out)
    }

    /// Job `id`'s write-back is done (or given up): forgets it.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn writeback_done(&self, id: &str) -> Result<(), StoreError> {
        let k = self.keys();
        redis::pipe()
            .atomic()
            .hdel(k.writebacks(), id)
            .ignore()
            .zrem(k.writebacks_due(), id)
            .ignore()
            .query_async::<()>(&mut self.conn())
            .await?;
        Ok(())
    }

    /// How many write-backs wait.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn writebacks_waiting(&self) -> Result<u64, StoreError> {
        Ok(self.conn().zcard(self.keys().writebacks_due()).await?)
    }
}
