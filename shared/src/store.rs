//! The job store: records, state transitions and events in Redis, and deliveries on
//! the apalis-redis queue.
//!
//! A *delivery* is what apalis carries: a job id and the record's `seq` at push time.
//! The record is the truth; a delivery whose `seq` is older than the record's is stale
//! and the worker skips it. Re-running a job (retry, resume, waiting for a slot, an
//! infrastructure retry) is a new delivery of the same record, never a copy.

use std::{collections::HashMap, time::Duration};

use apalis::prelude::{TaskBuilder, TaskSink};
use apalis_redis::{ConnectionManager, RedisStorage};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::{keys::Keys, record::JobRecord, status::JobState};

/// Most events kept in the events stream (approximate trim).
pub const EVENTS_MAX_LEN: usize = 10_000;

/// What apalis carries for one run of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The job's id.
    pub job_id: String,
    /// The record's `seq` when this delivery was pushed.
    pub seq: u64,
}

/// Errors talking to Redis.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis could not be reached in time.
    #[error("cannot reach Redis at {url}: {reason} (is redis-server running? set --redis-url or AGENTQ_REDIS_URL)")]
    Unreachable {
        /// The URL, without its password.
        url: String,
        /// What failed.
        reason: String,
    },
    /// A Redis command failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// apalis could not push a delivery.
    #[error("queue push failed: {0}")]
    Queue(String),
    /// A stored record could not be read.
    #[error("job {0}: corrupt record: {1}")]
    Corrupt(String, String),
}

/// Redis URL with any password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// Current time as RFC 3339 with milliseconds, UTC.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Moves a job to a new state: updates the hash, the per-state sorted sets and
/// appends an event, atomically. With a non-empty expected seq, does nothing
/// (returns 0) when the record's seq differs.
const TRANSITION: &str = r#"
local job = KEYS[1]
local events = KEYS[2]
local history = KEYS[3]
local state_prefix = ARGV[1]
local new_state = ARGV[2]
local now_ms = ARGV[3]
local now = ARGV[4]
local expect_seq = ARGV[5]
local maxlen = ARGV[6]
if redis.call('EXISTS', job) == 0 then return -1 end
if expect_seq ~= '' and redis.call('HGET', job, 'seq') ~= expect_seq then return 0 end
local id = redis.call('HGET', job, 'id')
local old = redis.call('HGET', job, 'state')
if old then redis.call('ZREM', state_prefix .. old, id) end
redis.call('ZADD', state_prefix .. new_state, now_ms, id)
redis.call('HSET', job, 'state', new_state, 'updated_at', now)
for i = 7, #ARGV, 2 do redis.call('HSET', job, ARGV[i], ARGV[i + 1]) end
local f = redis.call('HMGET', job, 'attempt', 'host', 'worker', 'reason', 'error', 'question', 'exit_code')
local attempt = f[1] or '0'
local host = f[2] or ''
redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'job', id, 'state', new_state,
  'from', old or '', 'attempt', attempt, 'host', host, 'at', now)
local entry = {state = new_state, from = old or '', at = now, attempt = tonumber(attempt) or 0,
  host = host, worker = f[3] or '', reason = f[4] or ''}
if new_state == 'waiting' or new_state == 'failed' or new_state == 'queued' then entry.error = f[5] or '' end
if new_state == 'failed' or new_state == 'blocked' or new_state == 'timed_out' then
  entry.question = f[6] or ''
  entry.exit_code = f[7] or ''
end
redis.call('RPUSH', history, cjson.encode(entry))
redis.call('LTRIM', history, -200, -1)
return 1
"#;

/// Handle on the job store. Cheap to clone.
#[derive(Clone)]
pub struct JobStore {
    conn: ConnectionManager,
    keys: Keys,
    queue: RedisStorage<Delivery>,
    transition: redis::Script,
    event_log: Option<std::path::PathBuf>,
}

/// One line of `events.jsonl`: the job, its new state and when.
fn append_event_line(path: &std::path::Path, id: &str, state: JobState) {
    use std::io::Write;
    let line = serde_json::json!({"job": id, "state": state, "at": now_rfc3339()}).to_string();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path);
    if let Err(e) = file.and_then(|mut f| writeln!(f, "{line}")) {
        tracing::warn!(path = %path.display(), error = %e, "cannot append to events.jsonl");
    }
}

impl std::fmt::Debug for JobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobStore")
            .field("keys", &self.keys)
            .finish()
    }
}

impl JobStore {
    /// Connects to Redis, failing within `timeout` if it cannot be reached.
    ///
    /// # Errors
    /// [`StoreError::Unreachable`] naming the (redacted) URL.
    pub async fn connect(
        url: &str,
        namespace: &str,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let unreachable = |reason: String| StoreError::Unreachable {
            url: redact_url(url),
            reason,
        };
        let client = redis::Client::open(url).map_err(|e| unreachable(e.to_string()))?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(Duration::from_secs(30)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let mut conn =
            tokio::time::timeout(timeout, client.get_connection_manager_with_config(cfg))
                .await
                .map_err(|_| unreachable(format!("no answer within {timeout:?}")))?
                .map_err(|e| unreachable(e.to_string()))?;
        let _: String = tokio::time::timeout(timeout, redis::cmd("PING").query_async(&mut conn))
            .await
            .map_err(|_| unreachable(format!("no answer within {timeout:?}")))?
            .map_err(|e| unreachable(e.to_string()))?;
        let keys = Keys::new(namespace);
        let queue = RedisStorage::new(conn.clone()).with_config(apalis_config(&keys));
        Ok(Self {
            conn,
            keys,
            queue,
            transition: redis::Script::new(TRANSITION),
            event_log: None,
        })
    }

    /// Also appends every state change this store makes to `path` as JSON lines
    /// (the worker's `{workspace_root}/events.jsonl`, as upstream keeps).
    pub fn with_event_log(mut self, path: std::path::PathBuf) -> Self {
        self.event_log = Some(path);
        self
    }

    /// The key layout.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A connection for commands this module does not wrap.
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The apalis storage the worker pulls deliveries from.
    pub fn queue(&self) -> RedisStorage<Delivery> {
        self.queue.clone()
    }

    /// Writes new records and pushes their first deliveries: one pipeline for the
    /// records, one apalis batch push for the deliveries.
    ///
    /// # Errors
    /// Redis or queue errors; records written before a failed push stay `queued`
    /// with the error recorded.
    pub async fn create(&self, records: &[JobRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        let now = now_ms();
        for rec in records {
            pipe.hset_multiple(self.keys.job(&rec.id), &rec.to_fields())
                .ignore();
            pipe.zadd(self.keys.jobs(), &rec.id, now).ignore();
            pipe.zadd(self.keys.state(rec.state.as_str()), &rec.id, now)
                .ignore();
            pipe.cmd("XADD")
                .arg(self.keys.events())
                .arg("MAXLEN")
                .arg("~")
                .arg(EVENTS_MAX_LEN)
                .arg("*")
                .arg("job")
                .arg(&rec.id)
                .arg("state")
                .arg(rec.state.as_str())
                .arg("from")
                .arg("")
                .arg("attempt")
                .arg(0)
                .arg("host")
                .arg("")
                .arg("at")
                .arg(&rec.created_at)
                .ignore();
        }
        let mut conn = self.conn.clone();
        let _: () = pipe.query_async(&mut conn).await?;
        let deliveries = records
            .iter()
            .map(|r| Delivery {
                job_id: r.id.clone(),
                seq: r.seq,
            })
            .collect::<Vec<_>>();
        let mut queue = self.queue.clone();
        if let Err(e) = queue.push_bulk(deliveries).await {
            let msg = format!("queue push failed: {e}");
            for rec in records {
                let _ = self
                    .transition(&rec.id, JobState::Failed, None, &[("error", msg.clone())])
                    .await;
            }
            return Err(StoreError::Queue(msg));
        }
        Ok(())
    }

    /// Reads a record, `None` if there is no such job.
    ///
    /// # Errors
    /// Redis errors or a corrupt record.
    pub async fn get(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let mut conn = self.conn.clone();
        let map: HashMap<String, String> = conn.hgetall(self.keys.job(id)).await?;
        if map.is_empty() {
            return Ok(None);
        }
        JobRecord::from_fields(map)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(id.to_string(), e))
    }

    /// Moves a job to `state`, setting `fields` too. With `expect_seq`, only if the
    /// record's seq still matches. Returns whether the move happened.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn transition(
        &self,
        id: &str,
        state: JobState,
        expect_seq: Option<u64>,
        fields: &[(&str, String)],
    ) -> Result<bool, StoreError> {
        let mut inv = self.transition.key(self.keys.job(id));
        inv.key(self.keys.events())
            .key(self.keys.history(id))
            .arg(self.keys.state_prefix())
            .arg(state.as_str())
            .arg(now_ms())
            .arg(now_rfc3339())
            .arg(expect_seq.map(|s| s.to_string()).unwrap_or_default())
            .arg(EVENTS_MAX_LEN);
        for (k, v) in fields {
            inv.arg(*k).arg(v);
        }
        let mut conn = self.conn.clone();
        let n: i64 = inv.invoke_async(&mut conn).await?;
        if n == 1 {
            if let Some(path) = &self.event_log {
                append_event_line(path, id, state);
            }
        }
        Ok(n == 1)
    }

    /// Sets fields without a state change.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn set_fields(&self, id: &str, fields: &[(&str, String)]) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: () = conn.hset_multiple(self.keys.job(id), fields).await?;
        Ok(())
    }

    /// Adds one to the attempt and tries counters; returns (attempt, tries).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn bump_attempt(&self, id: &str) -> Result<(u32, u32), StoreError> {
        let mut conn = self.conn.clone();
        let key = self.keys.job(id);
        let (a, t): (u32, u32) = redis::pipe()
            .hincr(&key, "attempt", 1)
            .hincr(&key, "tries", 1)
            .query_async(&mut conn)
            .await?;
        Ok((a, t))
    }

    /// Puts a job back on the queue after `delay` as a new delivery of the same
    /// record: bumps `seq` (so older deliveries become stale), sets `state`, pushes.
    ///
    /// # Errors
    /// Redis or queue errors.
    pub async fn requeue(
        &self,
        id: &str,
        state: JobState,
        delay: Duration,
        fields: &[(&str, String)],
    ) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let seq: u64 = conn.hincr(self.keys.job(id), "seq", 1).await?;
        self.transition(id, state, None, fields).await?;
        let delivery = Delivery {
            job_id: id.to_string(),
            seq,
        };
        let mut task = TaskBuilder::new(delivery);
        if !delay.is_zero() {
            task = task.run_after(delay);
        }
        let mut queue = self.queue.clone();
        queue
            .push_task(task.build())
            .await
            .map_err(|e| StoreError::Queue(e.to_string()))?;
        Ok(seq)
    }

    /// Pushes `delivery` again after `delay`, unchanged: for a delivery that arrived
    /// while another worker still held the job's run lease.
    ///
    /// # Errors
    /// Queue errors.
    pub async fn redeliver(&self, delivery: Delivery, delay: Duration) -> Result<(), StoreError> {
        let mut queue = self.queue.clone();
        queue
            .push_task(TaskBuilder::new(delivery).run_after(delay).build())
            .await
            .map_err(|e| StoreError::Queue(e.to_string()))
    }

    /// Runs a finished job again as a new delivery of the same record (for retry
    /// and resume): clears the outcome, resets `tries`, lifts any cancel request,
    /// applies `fields`, and queues it. The attempt counter keeps counting.
    ///
    /// # Errors
    /// Redis or queue errors.
    pub async fn rerun(&self, id: &str, fields: &[(&str, String)]) -> Result<(), StoreError> {
        let mut all: Vec<(&str, String)> = vec![
            ("tries", "0".into()),
            ("question", String::new()),
            ("error", String::new()),
            ("exit_code", String::new()),
            ("finished_at", String::new()),
            ("reason", String::new()),
        ];
        all.extend(fields.iter().cloned());
        let mut conn = self.conn.clone();
        let _: () = conn.del(self.keys.cancel(id)).await?;
        self.requeue(id, JobState::Queued, Duration::ZERO, &all)
            .await?;
        Ok(())
    }

    /// Polls job `id` until it reaches a final state, calling `progress` on each
    /// state change. Returns `None` if the job does not exist.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn wait_final(
        &self,
        id: &str,
        poll: Duration,
        mut progress: impl FnMut(&JobRecord),
    ) -> Result<Option<JobRecord>, StoreError> {
        let mut last = None;
        loop {
            let Some(rec) = self.get(id).await? else {
                return Ok(None);
            };
            if last != Some(rec.state) {
                progress(&rec);
                last = Some(rec.state);
            }
            if rec.state.is_final() {
                return Ok(Some(rec));
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Deletes apalis's task data of deliveries that finished more than `age` ago
    /// (apalis-redis keeps them forever otherwise). Returns how many.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn vacuum(&self, age: Duration) -> Result<usize, StoreError> {
        use apalis_core::backend::Vacuum;
        let mut queue = self.queue.clone();
        queue
            .vacuum_before(age)
            .await
            .map_err(|e| StoreError::Queue(e.to_string()))
    }

    /// Ids of jobs in `state`, oldest first.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn ids_in_state(&self, state: JobState) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn.zrange(self.keys.state(state.as_str()), 0, -1).await?)
    }

    /// Number of jobs in each state.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn state_counts(&self) -> Result<Vec<(JobState, u64)>, StoreError> {
        let mut pipe = redis::pipe();
        for st in crate::status::ALL_STATES {
            pipe.zcard(self.keys.state(st.as_str()));
        }
        let mut conn = self.conn.clone();
        let counts: Vec<u64> = pipe.query_async(&mut conn).await?;
        Ok(crate::status::ALL_STATES
            .iter()
            .copied()
            .zip(counts)
            .collect())
    }

    /// Deliveries waiting in the apalis queue (active list plus scheduled set).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn queue_depth(&self) -> Result<u64, StoreError> {
        let cfg = apalis_config(&self.keys);
        let mut conn = self.conn.clone();
        let (active, scheduled): (u64, u64) = redis::pipe()
            .llen(cfg.active_jobs_list())
            .zcard(cfg.scheduled_jobs_set())
            .query_async(&mut conn)
            .await?;
        Ok(active + scheduled)
    }
}

/// The apalis-redis configuration for a namespace.
pub fn apalis_config(keys: &Keys) -> apalis_redis::Config {
    apalis_redis::Config::default().queue(keys.apalis_queue())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("redis://:secret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }
}
