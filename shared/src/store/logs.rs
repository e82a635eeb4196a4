//! A job's log tail in Redis: how much it keeps, reading it, and its expiry
//! (the whole log stays in the workspace).

use std::time::Duration;

use redis::AsyncCommands;
use serde::Serialize;

use crate::store::{lua, JobStore, StoreError};

/// Log chunks kept per job in Redis (the full log stays in the workspace).
pub const LOG_TAIL_MAX: usize = 2_000;
/// Most bytes of output in one log chunk: a longer write is split, so the
/// tail holds at most [`LOG_TAIL_BYTES`] whatever the writes are.
/// Three fit in one of Redis's stream nodes (`stream-node-max-bytes`, 4096 by
/// default, each node allocated whole), so the key takes at most about 670
/// nodes of 4 KiB: under 3 MiB in Redis for 2.6 MB of output.
pub const LOG_CHUNK_BYTES: usize = 1_300;
/// Most bytes of output a job's log tail in Redis holds (2.6 MB; the key stays
/// under 4 MiB with Redis's own overhead).
pub const LOG_TAIL_BYTES: usize = LOG_TAIL_MAX * LOG_CHUNK_BYTES;
/// How long a finished job's log tail stays in Redis.
pub const LOG_TAIL_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The `log_tail_info` script (`lua/log_tail_info.lua`).
static LOG_TAIL_INFO_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| lua::script("log_tail_info"));

/// How much of a job's output its log tail in Redis still holds (it keeps the
/// last [`LOG_TAIL_MAX`] chunks; the whole log stays in the workspace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LogTailInfo {
    /// Chunks kept.
    pub kept: u64,
    /// Chunks dropped from its start to keep it short (0: it holds the whole
    /// output), `None` when Redis does not say (before 7.0).
    pub dropped: Option<u64>,
}

impl JobStore {
    /// Marks the log tail to expire (after the job's run).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn expire_log(&self, id: &str) -> Result<(), StoreError> {
        let _: bool = self
            .conn()
            .expire(self.keys().log_tail(id), LOG_TAIL_TTL.as_secs() as i64)
            .await?;
        Ok(())
    }

    /// Log chunks after stream id `after` (`0` for all), waiting up to `block` for
    /// new ones: (last id, bytes).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn read_log(
        &self,
        id: &str,
        after: &str,
        block: Option<Duration>,
    ) -> Result<(String, Vec<u8>), StoreError> {
        let mut cmd = redis::cmd("XREAD");
        if let Some(b) = block {
            cmd.arg("BLOCK").arg(b.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(self.keys().log_tail(id)).arg(after);
        let reply: Option<redis::streams::StreamReadReply> =
            cmd.query_async(&mut self.conn()).await?;
        let mut last = after.to_string();
        let mut bytes = Vec::new();
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            for entry in key.ids {
                if let Some(redis::Value::BulkString(b)) = entry.map.get("d") {
                    bytes.extend_from_slice(b);
                }
                last = entry.id;
            }
        }
        Ok((last, bytes))
    }

    /// How much of job `id`'s output its log tail holds: whether the start of
    /// the output was trimmed away (one script call, reading no output).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn log_tail_info(&self, id: &str) -> Result<LogTailInfo, StoreError> {
        let (kept, added): (i64, i64) = LOG_TAIL_INFO_SCRIPT
            .key(self.keys().log_tail(id))
            .invoke_async(&mut self.conn())
            .await?;
        let kept = kept.max(0) as u64;
        Ok(LogTailInfo {
            kept,
            dropped: (added >= 0).then(|| (added as u64).saturating_sub(kept)),
        })
    }
}
