//! The job store: records, state transitions and events in Redis, and deliveries on
//! the apalis-redis queue.
//!
//! A *delivery* is what apalis carries: a job id and the record's `seq` at push time.
//! The record is the truth; a delivery whose `seq` is older than the record's is stale
//! and the worker skips it. Re-running a job (retry, resume, waiting for a slot, an
//! infrastructure retry) is a new delivery of the same record, never a copy.

pub mod bulk;
pub mod create;
pub mod fleet;
pub mod lease;
pub mod limits;
pub mod lua;
pub mod ops;
pub mod park;
pub mod script_args;
pub mod sweep;
pub mod verify;
pub mod writeback;
pub mod wslease;

pub use create::{Created, ENQUEUE_CHUNK};
// The queue layout lives in the leaf `crate::delivery`; re-exported for callers.
pub use crate::delivery::{apalis_config, Delivery};

use std::{collections::HashMap, time::Duration};

use apalis_redis::RedisStorage;
use redis::AsyncCommands;

use crate::{
    conn::{RedisConn, SentinelUrl},
    keys::Keys,
    record::{JobRecord, RecordView, Unreadable, RERUN_CLEARED},
    status::JobState,
    transition::{Next, Transition},
};

/// How long [`JobStore::create`] waits for replicas to acknowledge new jobs.
pub const WAIT_REPLICAS_MS: u64 = 5_000;

/// Most events kept in the events stream (approximate trim).
pub const EVENTS_MAX_LEN: usize = 10_000;

/// The `move` script (`lua/move.lua`, its arguments in
/// [`script_args::MoveArgs`]): moves a job to a new state, atomically: the
/// hash, the per-state sorted sets, an event, a history entry, and (when
/// asked) the next delivery and the end of the current run's lease. Refused
/// when the record's `seq` is not the expected one, or when a fencing token is
/// given and the record's `owner` is another: a run that lost its job to a
/// takeover can no longer write.
///
/// A run's end (release, or a final state) gives the job's slot back unless
/// told to keep it; a final state takes the job out of any line it is parked
/// in; `park` parks it (see [`crate::store::park`]) instead of pushing a delivery.
static MOVE_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| lua::script("move"));

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
    /// New jobs are on the primary but fewer replicas than asked hold them
    /// (`redis_min_replicas`): they would be lost if the primary failed now.
    #[error("written to the Redis primary but held by {acked} of {wanted} replicas within {WAIT_REPLICAS_MS} ms (redis_min_replicas); they are queued unless the primary fails before its replicas catch up")]
    NotReplicated {
        /// Replicas asked for.
        wanted: u32,
        /// Replicas that acknowledged.
        acked: u32,
    },
    /// The Redis URL cannot be used.
    #[error("redis_url: {0}")]
    BadUrl(String),
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
pub use crate::clock::{now_ms, now_rfc3339};

/// A change of a job's record, applied atomically by [`JobStore::apply`].
#[derive(Debug, Clone)]
pub struct Move<'a> {
    /// The new state.
    pub state: JobState,
    /// Only if the record's `seq` is still this.
    pub expect_seq: Option<u64>,
    /// Only if the record's `owner` is this fencing token (a run's writes).
    pub token: Option<&'a str>,
    /// Fields to set.
    pub fields: Vec<(&'a str, String)>,
    /// Push the next delivery (new `seq`) due after this delay; `front` puts it
    /// first in line.
    pub push: Option<(Duration, bool)>,
    /// End the run: clear `owner` and drop the run lease. Implied by a final state.
    pub release: bool,
    /// Count a new attempt (`attempt` and `tries` + 1).
    pub bump_attempt: bool,
    /// No event or history entry when the state and reason stay the same.
    pub quiet: bool,
    /// Park the job (no delivery): in its pool's lane, or in a workspace's line.
    pub park: Option<ParkIn>,
    /// Keep the job's granted slot although the run ends (left to another host).
    pub keep_slot: bool,
    /// Give the job a new place at the back of its line.
    pub reorder: bool,
}

pub use crate::transition::ParkIn;

impl From<Transition> for Move<'_> {
    /// The store's form of a run's typed transition (to be fenced by its token).
    fn from(t: Transition) -> Self {
        let mut m = Move::to(t.state).fields(&t.fields);
        m = match t.next {
            Next::Continue => m,
            Next::Park(at) => m.park(at),
            Next::Deliver { delay, front } => m.deliver(delay, front),
            Next::End => {
                m.release = true;
                m
            }
        };
        m.bump_attempt = t.bump_attempt;
        m.quiet = t.quiet;
        m.keep_slot = t.keep_slot;
        m
    }
}

impl<'a> Move<'a> {
    /// A move to `state` with nothing else.
    pub fn to(state: JobState) -> Self {
        Self {
            state,
            expect_seq: None,
            token: None,
            fields: Vec::new(),
            push: None,
            release: false,
            bump_attempt: false,
            quiet: false,
            park: None,
            keep_slot: false,
            reorder: false,
        }
    }

    /// Parks the job instead of pushing a delivery; ends the run.
    pub fn park(mut self, at: ParkIn) -> Self {
        self.park = Some(at);
        self.release = true;
        self
    }

    /// Only as the run holding `token`.
    pub fn fenced(mut self, token: &'a str) -> Self {
        self.token = Some(token);
        self
    }

    /// Only while the record's seq is `seq`.
    pub fn seq(mut self, seq: u64) -> Self {
        self.expect_seq = Some(seq);
        self
    }

    /// With these fields.
    pub fn fields(mut self, fields: &[(&'a str, String)]) -> Self {
        self.fields.extend(fields.iter().cloned());
        self
    }

    /// And a new delivery after `delay` (first in line when `front`); ends the run.
    pub fn deliver(mut self, delay: Duration, front: bool) -> Self {
        self.push = Some((delay, front));
        self.release = true;
        self
    }
}

/// What [`JobStore::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// Applied; the record's seq, attempt and tries after it.
    Done {
        /// `seq` after the move.
        seq: u64,
        /// `attempt` after the move.
        attempt: u32,
        /// `tries` after the move.
        tries: u32,
    },
    /// Refused: the seq moved on or another run owns the job.
    Refused,
    /// There is no such job.
    NoRecord,
}

impl Moved {
    /// Whether the move was applied.
    pub fn done(&self) -> bool {
        matches!(self, Moved::Done { .. })
    }
}

/// Handle on the job store. Cheap to clone.
#[derive(Clone)]
pub struct JobStore {
    conn: RedisConn,
    keys: Keys,
    queue: RedisStorage<Delivery, RedisConn>,
    event_log: Option<std::path::PathBuf>,
    min_replicas: u32,
}

/// One line of `events.jsonl`: the job, its new state and when.
fn append_event_line(path: &std::path::Path, id: &str, state: JobState) {
    use std::io::Write;
    let line = serde_json::json!({"job": id, "state": state, "at": now_rfc3339()}).to_string();
    let file = crate::fsutil::append_nofollow(path);
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
        Self::connect_with_ca(url, None, namespace, timeout).await
    }

    /// [`JobStore::connect`], trusting the CA in PEM file `ca_file` for a
    /// `rediss://` URL (the system's roots when `None`).
    ///
    /// # Errors
    /// As [`JobStore::connect`]; a CA file that cannot be read.
    pub async fn connect_with_ca(
        url: &str,
        ca_file: Option<&std::path::Path>,
        namespace: &str,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let unreachable = |reason: String| StoreError::Unreachable {
            url: redact_url(url),
            reason,
        };
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(Duration::from_secs(30)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let connecting = match SentinelUrl::parse(url) {
            Some(Err(why)) => return Err(StoreError::BadUrl(why)),
            Some(Ok(_)) if ca_file.is_some() => {
                return Err(StoreError::BadUrl(
                    "redis_ca_file is for rediss:// URLs; TLS to a Sentinel group is not supported"
                        .into(),
                ))
            }
            Some(Ok(sentinel)) => {
                futures::future::Either::Left(RedisConn::sentinel(sentinel, cfg, timeout * 2 / 3))
            }
            None => {
                let client = match ca_file {
                    None => redis::Client::open(url),
                    Some(path) => {
                        let pem = std::fs::read(path).map_err(|e| {
                            unreachable(format!(
                                "cannot read redis_ca_file {}: {e}",
                                path.display()
                            ))
                        })?;
                        redis::Client::build_with_tls(
                            url,
                            redis::TlsCertificates {
                                client_tls: None,
                                root_cert: Some(pem),
                            },
                        )
                    }
                }
                .map_err(|e| unreachable(e.to_string()))?;
                futures::future::Either::Right(RedisConn::direct(client, cfg))
            }
        };
        let mut conn = tokio::time::timeout(timeout, connecting)
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
            event_log: None,
            min_replicas: 0,
        })
    }

    /// Also appends every state change this store makes to `path` as JSON lines
    /// (the worker's `{workspace_root}/events.jsonl`, as upstream keeps).
    pub fn with_event_log(mut self, path: std::path::PathBuf) -> Self {
        self.event_log = Some(path);
        self
    }

    /// Makes [`JobStore::create`] wait until `n` replicas hold the new jobs
    /// (see [`crate::config::Config::min_replicas`]).
    pub fn with_min_replicas(mut self, n: u32) -> Self {
        self.min_replicas = n;
        self
    }

    /// The key layout.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A new pub/sub connection subscribed to `channels`.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn subscribe(&self, channels: &[String]) -> Result<redis::aio::PubSub, StoreError> {
        let mut ps = match self.conn.client().get_async_pubsub().await {
            Ok(ps) => ps,
            Err(_) if self.conn.follow_primary().await => {
                self.conn.client().get_async_pubsub().await?
            }
            Err(e) => return Err(e.into()),
        };
        for c in channels {
            ps.subscribe(c).await?;
        }
        Ok(ps)
    }

    /// A new connection of its own (not the shared, multiplexed one), to the
    /// same server with the same TLS settings.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn own_connection(&self) -> Result<redis::aio::MultiplexedConnection, StoreError> {
        match self.conn.client().get_multiplexed_async_connection().await {
            Ok(c) => Ok(c),
            Err(_) if self.conn.follow_primary().await => Ok(self
                .conn
                .client()
                .get_multiplexed_async_connection()
                .await?),
            Err(e) => Err(e.into()),
        }
    }

    /// A connection for commands this module does not wrap.
    pub fn conn(&self) -> RedisConn {
        self.conn.clone()
    }

    /// The apalis storage the worker pulls deliveries from.
    pub fn queue(&self) -> RedisStorage<Delivery, RedisConn> {
        self.queue.clone()
    }

    /// Reads a record, `None` if there is no such job.
    ///
    /// # Errors
    /// Redis errors or a corrupt record.
    pub async fn get(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let ids = [id.to_string()];
        let read = self.read_records(&ids).await?.pop().flatten();
        read.transpose()
            .map_err(|e| StoreError::Corrupt(id.to_string(), e))
    }

    /// Job `id` as it reads: its record, or, for a record that does not parse,
    /// which field and why (see [`RecordView`]); `None` if there is no such job.
    ///
    /// # Errors
    /// Redis errors only: an unreadable record is the job's problem.
    pub async fn view(&self, id: &str) -> Result<Option<RecordView>, StoreError> {
        let ids = [id.to_string()];
        let read = self.read_records(&ids).await?.pop().flatten();
        Ok(read.map(|r| match r {
            Ok(rec) => RecordView::Ok(rec),
            Err(e) => RecordView::Unreadable {
                id: id.to_string(),
                problem: Unreadable::from_error(&e),
            },
        }))
    }

    /// The records of `ids`, in one round trip: `None` for no such job, the
    /// reason for a corrupt one. A job is its own hash, or, while nothing has
    /// touched it since enqueue, its packed record in [`Keys::fresh`]; fields
    /// of its own hash win over packed ones.
    ///
    /// # Errors
    /// Redis errors.
    #[allow(clippy::type_complexity)]
    pub async fn read_records(
        &self,
        ids: &[String],
    ) -> Result<Vec<Option<Result<JobRecord, String>>>, StoreError> {
        // The packed record first, then the job's own hash: a job opened in
        // between is seen in one place or both, never in neither.
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hget(self.keys.fresh(), id).hgetall(self.keys.job(id));
        }
        let read: Vec<(HashMap<String, String>, Option<String>)> = {
            let flat: Vec<redis::Value> = pipe.query_async(&mut self.conn.clone()).await?;
            flat.chunks(2)
                .map(|pair| {
                    Ok((
                        redis::from_redis_value(pair[1].clone())?,
                        redis::from_redis_value(pair[0].clone())?,
                    ))
                })
                .collect::<Result<_, redis::RedisError>>()?
        };
        Ok(read
            .into_iter()
            .map(|(mut fields, packed)| {
                if let Some(packed) = packed {
                    if let Err(e) = JobRecord::unpack_into(&mut fields, &packed) {
                        return Some(Err(e));
                    }
                }
                (!fields.is_empty()).then(|| JobRecord::from_fields(fields))
            })
            .collect())
    }

    /// Only job `id`'s state (not the record), `None` if there is no such job.
    ///
    /// # Errors
    /// Redis errors or a state that is not one.
    pub async fn state_of(&self, id: &str) -> Result<Option<JobState>, StoreError> {
        let mut conn = self.conn.clone();
        // Packed first (see `read_records`).
        let (packed, state): (Option<String>, Option<String>) = redis::pipe()
            .hget(self.keys.fresh(), id)
            .hget(self.keys.job(id), "state")
            .query_async(&mut conn)
            .await?;
        if let (None, Some(packed)) = (&state, packed) {
            return JobRecord::from_packed(&packed)
                .map(|r| Some(r.state))
                .map_err(|e| StoreError::Corrupt(id.to_string(), e));
        }
        state
            .map(|s| {
                s.parse::<JobState>()
                    .map_err(|_| StoreError::Corrupt(id.to_string(), format!("state `{s}`")))
            })
            .transpose()
    }

    /// Applies a [`Move`] to job `id` in one Lua call.
    ///
    /// # Errors
    /// Redis errors (then nothing was changed, or everything was: a retry of a
    /// fenced or seq-checked move is refused if the first one went through).
    pub async fn apply(&self, id: &str, m: &Move<'_>) -> Result<Moved, StoreError> {
        let now = now_ms();
        let push = m.push.map(|(delay, front)| script_args::Push {
            task: crate::delivery::new_task_id(),
            run_at_ms: now + delay.as_millis() as i64,
            front,
        });
        let args = script_args::MoveArgs {
            keys: &self.keys,
            id,
            now_ms: now,
            now: now_rfc3339(),
            push,
            m,
        };
        let inv = args.invocation(&MOVE_SCRIPT);
        let mut conn = self.conn.clone();
        let (status, seq, attempt, tries): (i64, u64, u32, u32) =
            inv.invoke_async(&mut conn).await?;
        Ok(match status {
            1 => {
                if let Some(path) = &self.event_log {
                    append_event_line(path, id, m.state);
                }
                Moved::Done {
                    seq,
                    attempt,
                    tries,
                }
            }
            0 => Moved::Refused,
            -1 => Moved::NoRecord,
            bad => {
                // Nothing was written: the record does not parse.
                let field = match bad {
                    -2 => "seq",
                    -3 => "attempt",
                    _ => "tries",
                };
                return Err(StoreError::Corrupt(
                    id.to_string(),
                    format!("{field}: is not a number"),
                ));
            }
        })
    }

    /// Moves a job to `state`, setting `fields` too, as an operator (no fencing
    /// token). With `expect_seq`, only if the record's seq still matches.
    /// Returns whether the move happened.
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
        let mut m = Move::to(state).fields(fields);
        m.expect_seq = expect_seq;
        Ok(self.apply(id, &m).await?.done())
    }

    /// Writes a [`Note`](crate::transition::Note) (fields, no state change).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn note(&self, id: &str, note: &crate::transition::Note) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: () = conn.hset_multiple(self.keys.job(id), &note.fields).await?;
        Ok(())
    }

    /// Runs a finished job again as a new delivery of the same record (for retry
    /// and resume): clears the outcome, resets `tries`, lifts any cancel request,
    /// applies `fields`, and parks it in its pool's lane (`to_back`: behind every
    /// job waiting now; else at its first place in line). The attempt counter keeps counting.
    /// Only while the record's seq is `seq` (the one the caller checked); returns
    /// whether it happened.
    ///
    /// # Errors
    /// Redis or queue errors.
    pub async fn rerun(
        &self,
        id: &str,
        seq: u64,
        fields: &[(&str, String)],
        to_back: bool,
    ) -> Result<bool, StoreError> {
        // A new seq with the change: a second operator who read the same
        // finished record (resume or retry at the same time) is refused.
        let mut all: Vec<(&str, String)> =
            vec![("tries", "0".into()), ("seq", (seq + 1).to_string())];
        all.extend(RERUN_CLEARED.iter().map(|f| (*f, String::new())));
        all.extend(fields.iter().cloned());
        let mut conn = self.conn.clone();
        let _: () = conn.del(self.keys.cancel(id)).await?;
        let mut m = Move::to(JobState::Queued)
            .seq(seq)
            .fields(&all)
            .park(ParkIn::Lane);
        m.reorder = to_back;
        Ok(self.apply(id, &m).await?.done())
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
        let index = self.keys.state(state.as_str());
        if state != JobState::Queued {
            return Ok(conn.zrange(index, 0, -1).await?);
        }
        // With the jobs nothing has touched since enqueue, read at the same
        // instant (a job opened meanwhile moves from one to the other).
        let (mut ids, fresh): (Vec<String>, Vec<String>) = redis::pipe()
            .atomic()
            .zrange(index, 0, -1)
            .hkeys(self.keys.fresh())
            .query_async(&mut conn)
            .await?;
        ids.extend(fresh);
        ids.sort();
        Ok(ids)
    }

    /// Number of jobs in each state.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn state_counts(&self) -> Result<Vec<(JobState, u64)>, StoreError> {
        // At one instant: a job opened meanwhile moves from the hash of new
        // jobs to the `queued` index.
        let mut pipe = redis::pipe();
        pipe.atomic();
        for st in crate::status::ALL_STATES {
            pipe.zcard(self.keys.state(st.as_str()));
        }
        pipe.hlen(self.keys.fresh());
        let mut conn = self.conn.clone();
        let mut counts: Vec<u64> = pipe.query_async(&mut conn).await?;
        // Jobs nothing has touched since enqueue are queued, and in no index
        // of a state yet.
        let fresh = counts.pop().unwrap_or(0);
        Ok(crate::status::ALL_STATES
            .iter()
            .copied()
            .zip(counts)
            .map(|(st, n)| (st, if st == JobState::Queued { n + fresh } else { n }))
            .collect())
    }

    /// Jobs waiting to start: parked in a pool's lane (see [`crate::store::park`]) or
    /// as a delivery in the apalis queue (active list plus scheduled set).
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
        let mut parked = 0;
        for pool in self.parked_pools().await? {
            parked += self.parked(&pool).await?.total();
        }
        Ok(active + scheduled + parked)
    }
}

#[cfg(test)]
mod tests {
    use super::lua::{states_lua, wait_reasons_lua};
    use super::*;

    #[test]
    fn wait_reason_names_reach_the_scripts_from_rust() {
        let lua = wait_reasons_lua();
        assert!(lua.contains("Orphaned = 'orphaned'") && lua.contains("HostError = 'host_error'"));
    }

    #[test]
    fn scripts_get_state_names_from_job_state() {
        let lua = states_lua();
        assert!(lua.contains("TimedOut = 'timed_out'"), "{lua}");
        assert!(lua.contains("Queued = 'queued'"), "{lua}");
    }

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
