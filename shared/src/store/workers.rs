//! The live-worker registry (heartbeats, stale entries dropped) and Redis's
//! clock, the one clock every host compares.

use std::collections::HashMap;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::store::{JobStore, StoreError};

/// A live worker, as it reports itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Worker id.
    pub id: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Jobs it runs at once.
    pub concurrency: u32,
    /// Ids of the jobs it runs now.
    pub running: Vec<String>,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// Its last heartbeat (RFC 3339).
    pub heartbeat_at: String,
    /// Its last heartbeat, ms since the epoch.
    pub heartbeat_ms: i64,
    /// After this many ms without a heartbeat it counts as gone.
    pub stale_after_ms: i64,
    /// Why the worker takes no jobs now (its host circuit breaker is open), or
    /// empty.
    #[serde(default)]
    pub degraded: String,
    /// Bytes this host's workspaces and git mirrors use (at its last look).
    #[serde(default)]
    pub workspace_bytes: u64,
    /// The agent pools it runs (those whose image it has).
    #[serde(default)]
    pub pools: Vec<String>,
}

impl JobStore {
    /// Redis's clock (`TIME`), in ms since the epoch: the one clock of every
    /// score that hosts compare (slots, registry entries, timers).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn redis_now_ms(&self) -> Result<i64, StoreError> {
        let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut self.conn()).await?;
        Ok(secs * 1000 + micros / 1000)
    }

    /// Records a worker's heartbeat in the registry, at Redis's time (its
    /// `heartbeat_ms` is replaced by it), so a host's skewed clock neither
    /// drops other live workers nor keeps a dead one. Returns the fleet's
    /// window ([`JobStore::set_window`]) if the sweep wrote one.
    ///
    /// With `tidy` (the first beat, a change of the pools it serves, and now
    /// and then: see `worker/src/registry.rs`), also takes this worker off
    /// every pool of `known` (every pool of its table) it does not serve (any
    /// more) and drops expired entries; a beat without it writes only this
    /// worker's own entries (an idle worker's beat is its main cost to Redis;
    /// expired entries count for nothing where they are read).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn worker_heartbeat(
        &self,
        info: &WorkerInfo,
        known: &[String],
        tidy: bool,
    ) -> Result<Option<u32>, StoreError> {
        let mut info = info.clone();
        info.heartbeat_ms = self.redis_now_ms().await?;
        let info = &info;
        let json = serde_json::to_string(info).unwrap_or_default();
        let until = info.heartbeat_ms + info.stale_after_ms;
        let mut pipe = redis::pipe();
        pipe.hset(self.keys().workers(), &info.id, json)
            .ignore()
            .zadd(self.keys().servers(), &info.id, until)
            .ignore();
        if tidy {
            pipe.zrembyscore(self.keys().servers(), "-inf", info.heartbeat_ms)
                .ignore();
        }
        for pool in &info.pools {
            pipe.zadd(self.keys().serves(pool), &info.id, until)
                .ignore();
        }
        if tidy {
            let every: std::collections::BTreeSet<&String> =
                known.iter().chain(&info.pools).collect();
            for pool in every {
                let key = self.keys().serves(pool);
                if !info.pools.contains(pool) {
                    pipe.zrem(&key, &info.id).ignore();
                }
                pipe.zrembyscore(&key, "-inf", info.heartbeat_ms).ignore();
            }
        }
        pipe.get(self.keys().window());
        let (window,): (Option<u32>,) = pipe.query_async(&mut self.conn()).await?;
        Ok(window)
    }

    /// Writes the fleet's window (the live workers' total concurrency: the
    /// room of a pool without a limit) for `ttl`; done by the sweep's holder
    /// each heartbeat, read by every worker with its heartbeat, so no worker
    /// reads the whole registry to learn it.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn set_window(
        &self,
        window: u32,
        ttl: std::time::Duration,
    ) -> Result<(), StoreError> {
        let _: () = redis::cmd("SET")
            .arg(self.keys().window())
            .arg(window)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Removes a worker from the registry (on clean shutdown).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn worker_gone(&self, id: &str, known: &[String]) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.hdel(self.keys().workers(), id)
            .ignore()
            .zrem(self.keys().servers(), id)
            .ignore();
        for pool in known {
            pipe.zrem(self.keys().serves(pool), id).ignore();
        }
        let _: () = pipe.query_async(&mut self.conn()).await?;
        Ok(())
    }

    /// Live workers; entries whose heartbeat is older than their own stale limit
    /// are dropped from the registry.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn live_workers(&self) -> Result<Vec<WorkerInfo>, StoreError> {
        let mut conn = self.conn();
        let all: HashMap<String, String> = conn.hgetall(self.keys().workers()).await?;
        let now = self.redis_now_ms().await?;
        let mut live = Vec::new();
        for (id, json) in all {
            match serde_json::from_str::<WorkerInfo>(&json) {
                Ok(w) if now - w.heartbeat_ms <= w.stale_after_ms => live.push(w),
                _ => {
                    let _: () = conn.hdel(self.keys().workers(), &id).await?;
                }
            }
        }
        live.sort_by(|a, b| a.host.cmp(&b.host).then(a.id.cmp(&b.id)));
        Ok(live)
    }
}
