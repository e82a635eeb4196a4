//! Run leases: which worker runs a job right now.
//!
//! apalis-redis re-delivers a job whose worker stopped heart-beating. If that worker
//! was only slow, not dead, two workers would run the same agent. The run lease is
//! the second lock: a key with a TTL, held by one worker id and renewed while the job
//! runs; a worker that gets a delivery while another holds the lease delivers it
//! again after the lease's remaining time instead of running it.

use std::time::Duration;

use redis::AsyncCommands;

use crate::store::{JobStore, StoreError};

const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// Result of trying to take a run lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    /// This worker holds the lease now.
    Acquired,
    /// Another worker holds it for about this long still.
    HeldBy(String, Duration),
}

impl JobStore {
    /// Tries to take the run lease of job `id` for `worker` for `ttl`.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn acquire_run_lease(
        &self,
        id: &str,
        worker: &str,
        ttl: Duration,
    ) -> Result<Acquire, StoreError> {
        let key = self.keys().run_lease(id);
        let mut conn = self.conn();
        let ok: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(worker)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut conn)
            .await?;
        if ok.is_some() {
            return Ok(Acquire::Acquired);
        }
        let (holder, pttl): (Option<String>, i64) = redis::pipe()
            .get(&key)
            .pttl(&key)
            .query_async(&mut conn)
            .await?;
        match holder {
            Some(h) if h == worker => {
                self.renew_run_lease(id, worker, ttl).await?;
                Ok(Acquire::Acquired)
            }
            Some(h) => Ok(Acquire::HeldBy(
                h,
                Duration::from_millis(pttl.max(100) as u64),
            )),
            // Expired between the two calls: try once more next delivery.
            None => Ok(Acquire::HeldBy(String::new(), Duration::from_millis(100))),
        }
    }

    /// Extends the lease if `worker` still holds it; returns whether it did.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn renew_run_lease(
        &self,
        id: &str,
        worker: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let n: i64 = redis::Script::new(RENEW)
            .key(self.keys().run_lease(id))
            .arg(worker)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut conn)
            .await?;
        Ok(n == 1)
    }

    /// Drops the lease if `worker` holds it.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn release_run_lease(&self, id: &str, worker: &str) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let _: i64 = redis::Script::new(RELEASE)
            .key(self.keys().run_lease(id))
            .arg(worker)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Who holds job `id`'s run lease, if anyone.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn run_lease_holder(&self, id: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn();
        Ok(conn.get(self.keys().run_lease(id)).await?)
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
