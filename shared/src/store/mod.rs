//! The job store: records, state transitions and events in Redis, and deliveries on
//! the apalis-redis queue.
//!
//! A *delivery* is what apalis carries: a job id and the record's `seq` at push time.
//! The record is the truth; a delivery whose `seq` is older than the record's is stale
//! and the worker skips it. Re-running a job (retry, resume, waiting for a slot, an
//! infrastructure retry) is a new delivery of the same record, never a copy.

pub mod bulk;
pub mod create;
pub mod events;
pub mod fleet;
pub mod flow;
pub mod lease;
pub mod limits;
pub mod listing;
pub mod logs;
pub mod lua;
pub mod moves;
pub mod ops;
pub mod outbox;
pub mod park;
pub mod records;
pub mod scheduled;
pub mod schedules;
pub mod script_args;
pub mod sweep;
pub mod verify;
pub mod workers;
pub mod writeback;
pub mod wslease;

pub use create::{Created, ENQUEUE_CHUNK};
pub use moves::{Move, Moved};
// The queue layout lives in the leaf `crate::delivery`; re-exported for callers.
pub use crate::delivery::{apalis_config, Delivery};

use std::time::Duration;

use apalis_redis::RedisStorage;

use crate::{
    conn::{RedisConn, SentinelUrl},
    keys::Keys,
};

/// How long [`JobStore::create`] waits for replicas to acknowledge new jobs.
pub const WAIT_REPLICAS_MS: u64 = 5_000;

/// Most events kept in the events stream (approximate trim).
pub const EVENTS_MAX_LEN: usize = 10_000;

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

pub use crate::transition::ParkIn;

/// Handle on the job store. Cheap to clone.
#[derive(Clone)]
pub struct JobStore {
    conn: RedisConn,
    keys: Keys,
    queue: RedisStorage<Delivery, RedisConn>,
    event_log: Option<std::path::PathBuf>,
    min_replicas: u32,
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
