//! The one Redis connection every part of agentq goes through (records, Lua
//! scripts, apalis deliveries): to one server named by `redis://` or
//! `rediss://`, or to the current primary of a Redis Sentinel group named by
//! `redis+sentinel://`, followed across failovers.
//!
//! A Sentinel URL lists the sentinels and names the group:
//!
//! ```text
//! redis+sentinel://[user:password@]host1:26379[,host2:26379,...]/mymaster[/db]
//! ```
//!
//! The user and password are those of the Redis nodes; the sentinels are asked
//! without credentials. When a command fails the way a lost or demoted primary
//! fails (connection refused or dropped, a timeout, `READONLY`), the sentinels
//! are asked for the primary again (at most every [`RECHECK_EVERY`]); when it
//! moved, every later command goes to the new one, and a command that certainly
//! did not run on the old one (refused connection, `READONLY`) is sent again
//! once. Anything else is returned to the caller as it is: a write whose answer
//! was lost may have run, and only the caller knows whether it may be repeated.
//!
//! Each connection asks its server, once, whether it may be trusted with jobs
//! ([`RedisConn::server_check`]: `maxmemory-policy`, persistence; see
//! [`crate::server`]), and again after any error that may mean a new
//! connection (a reconnect, a failover) and at least every
//! [`RECHECK_SERVER_EVERY`]. With [`RedisConn::refuse_evicting`] (the worker,
//! `agentq enqueue`), every command to a server whose policy evicts keys is
//! refused with an error naming the setting and the fix, until it is fixed.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, RwLock,
    },
    time::{Duration, Instant},
};

use crate::{flight::Flight, server::ServerCheck};
use redis::{
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    sentinel::{Sentinel, SentinelNodeConnectionInfo},
    Client, Cmd, ErrorKind, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, Value,
};

/// Least time between two questions to the sentinels.
pub const RECHECK_EVERY: Duration = Duration::from_millis(250);

/// Longest a connection trusts its server check (a `CONFIG SET` needs no
/// reconnect): a policy changed to an evicting one is refused within this.
pub const RECHECK_SERVER_EVERY: Duration = Duration::from_secs(60);

/// While a server is refused, how often it is asked whether it was fixed.
pub const RECHECK_REFUSED_EVERY: Duration = Duration::from_secs(5);

/// Longest a server check may take: a Redis that does not answer it is not
/// made slower to fail by it (the command itself goes on and fails).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// After a check that failed (Redis unreachable), commands go on unchecked
/// this long before it is tried again, so an outage does not double the
/// work of every command.
pub const PROBE_BACKOFF: Duration = Duration::from_secs(1);

/// Least time a question to the sentinels (and the connection to the
/// primary they name) is given before it is dropped and asked again.
pub const MIN_ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// The scheme of a Sentinel URL.
pub const SENTINEL_SCHEME: &str = "redis+sentinel://";

/// Where the data lives, parsed from a `redis+sentinel://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    /// The sentinels, as `redis://host:port` URLs.
    pub sentinels: Vec<String>,
    /// The name of the monitored group (`SENTINEL MONITOR <name> ...`).
    pub service: String,
    /// `redis://[user:password@]placeholder/db`: the nodes' credentials and
    /// database, with no address (the sentinels give it).
    node: String,
}

impl SentinelUrl {
    /// Parses `redis+sentinel://[user:pw@]h:p[,h:p...]/service[/db]`; `None`
    /// when `url` is not a Sentinel URL.
    ///
    /// # Errors
    /// A Sentinel URL without sentinels or service name, with a bad port or
    /// database number: a message saying what is wrong.
    pub fn parse(url: &str) -> Option<Result<Self, String>> {
        let rest = url.strip_prefix(SENTINEL_SCHEME)?;
        Some(Self::parse_rest(rest))
    }

    fn parse_rest(rest: &str) -> Result<Self, String> {
        let form =
            "expected redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]";
        let (auth, rest) = match rest.rfind('@') {
            Some(at) => (&rest[..=at], &rest[at + 1..]),
            None => ("", rest),
        };
        let (hosts, path) = rest
            .split_once('/')
            .ok_or_else(|| format!("no service name: {form}"))?;
        let mut sentinels = Vec::new();
        for h in hosts.split(',').filter(|h| !h.is_empty()) {
            let (host, port) = h
                .rsplit_once(':')
                .ok_or_else(|| format!("sentinel {h:?} has no port: {form}"))?;
            let port: u16 = port
                .parse()
                .map_err(|_| format!("sentinel {h:?}: bad port: {form}"))?;
            if host.is_empty() {
                return Err(format!("sentinel {h:?} has no host: {form}"));
            }
            sentinels.push(format!("redis://{host}:{port}"));
        }
        if sentinels.is_empty() {
            return Err(format!("no sentinels: {form}"));
        }
        let (service, db) = match path.split_once('/') {
            Some((s, db)) => (s, db),
            None => (path, ""),
        };
        if service.is_empty() {
            return Err(format!("no service name: {form}"));
        }
        if !db.is_empty() && db.parse::<u32>().is_err() {
            return Err(format!("database {db:?} is not a number: {form}"));
        }
        Ok(Self {
            sentinels,
            service: service.to_string(),
            node: format!("redis://{auth}localhost/{db}"),
        })
    }

    /// The nodes' connection settings, and their database number.
    fn node_info(&self) -> Result<(SentinelNodeConnectionInfo, i64), RedisError> {
        let settings = self
            .node
            .as_str()
            .into_connection_info()?
            .redis_settings()
            .clone();
        let db = settings.db();
        Ok((
            SentinelNodeConnectionInfo::default().set_redis_connection_info(settings),
            db,
        ))
    }
}

/// A Redis connection: cheap to clone, all clones share one multiplexed
/// connection, and with Sentinel they all move to a new primary together.
#[derive(Clone)]
pub struct RedisConn {
    shared: Arc<Shared>,
}

struct Shared {
    current: RwLock<Current>,
    sentinel: Option<Source>,
    cfg: ConnectionManagerConfig,
    db: i64,
    check: ServerGuard,
}

/// The server check of a connection, cached, and whether it refuses.
#[derive(Default)]
struct ServerGuard {
    /// Refuse commands to an evicting server.
    refuse: AtomicBool,
    /// Bumped on every error that may mean a new connection or server.
    generation: AtomicU64,
    cached: Mutex<Option<Cached>>,
    /// One probe at a time, in a task of its own (see [`crate::flight`]).
    probing: Flight<Result<Arc<ServerCheck>, RedisError>>,
    /// The last probe refused the server (for logging changes once).
    refused: AtomicBool,
    /// When the last probe failed (no answer).
    failed_at: Mutex<Option<Instant>>,
}

struct Cached {
    generation: u64,
    at: Instant,
    check: Arc<ServerCheck>,
}

impl ServerGuard {
    fn fresh(&self) -> Option<Arc<ServerCheck>> {
        let cached = self.cached.lock().unwrap();
        let c = cached.as_ref()?;
        let ttl = if c.check.evicts() {
            RECHECK_REFUSED_EVERY
        } else {
            RECHECK_SERVER_EVERY
        };
        (c.generation == self.generation.load(Ordering::SeqCst) && c.at.elapsed() < ttl)
            .then(|| c.check.clone())
    }
}

#[derive(Clone)]
struct Current {
    client: Client,
    manager: ConnectionManager,
    /// The primary's address (`host:port`), with Sentinel.
    addr: String,
}

struct Source {
    url: SentinelUrl,
    node: SentinelNodeConnectionInfo,
    /// Locked only by the following flight's own task: never by a caller,
    /// whose future may stop being polled (see [`crate::flight`]).
    sentinel: tokio::sync::Mutex<Sentinel>,
    last_check: Mutex<Option<Instant>>,
    /// One question to the sentinels at a time, in a task of its own.
    following: Flight<bool>,
    /// Longest a question to the sentinels and the connection to the
    /// primary they name may take.
    ask_timeout: Duration,
}

impl RedisConn {
    /// Connects to the server `client` names.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn direct(client: Client, cfg: ConnectionManagerConfig) -> Result<Self, RedisError> {
        let manager = client
            .get_connection_manager_with_config(cfg.clone())
            .await?;
        let db = client.get_connection_info().redis_settings().db();
        Ok(Self {
            shared: Arc::new(Shared {
                current: RwLock::new(Current {
                    client,
                    manager,
                    addr: String::new(),
                }),
                sentinel: None,
                cfg,
                db,
                check: ServerGuard::default(),
            }),
        })
    }

    /// Asks the sentinels of `url` for the primary and connects to it; during
    /// a failover, asks again for up to `patience`.
    ///
    /// # Errors
    /// No sentinel answers, none knows the service, or the primary is unreachable.
    pub async fn sentinel(
        url: SentinelUrl,
        cfg: ConnectionManagerConfig,
        patience: Duration,
    ) -> Result<Self, RedisError> {
        let since = Instant::now();
        let (node, db) = url.node_info()?;
        let mut sentinel = Sentinel::build(url.sentinels.clone())?;
        // In the middle of a failover no sentinel may name a primary that
        // answers as one yet: ask again for a while.
        let client = loop {
            match sentinel.async_master_for(&url.service, Some(&node)).await {
                Ok(c) => break c,
                Err(e)
                    if e.kind() == ErrorKind::MasterNameNotFoundBySentinel
                        && since.elapsed() < patience =>
                {
                    tracing::debug!(error = %e, "no Redis primary known to the sentinels yet");
                    tokio::time::sleep(RECHECK_EVERY).await;
                }
                Err(e) => return Err(e),
            }
        };
        let addr = client.get_connection_info().addr().to_string();
        let manager = client
            .get_connection_manager_with_config(cfg.clone())
            .await?;
        tracing::info!(primary = %addr, service = %url.service, "Redis primary found by Sentinel");
        Ok(Self {
            shared: Arc::new(Shared {
                current: RwLock::new(Current {
                    client,
                    manager,
                    addr,
                }),
                sentinel: Some(Source {
                    url,
                    node,
                    sentinel: tokio::sync::Mutex::new(sentinel),
                    last_check: Mutex::new(Some(Instant::now())),
                    following: Flight::default(),
                    ask_timeout: patience.max(MIN_ASK_TIMEOUT),
                }),
                cfg,
                db,
                check: ServerGuard::default(),
            }),
        })
    }

    fn current(&self) -> Current {
        self.shared.current.read().unwrap().clone()
    }

    /// The current server's address (`host:port`): with Sentinel, the
    /// primary it resolved to; else the URL's.
    pub fn server_addr(&self) -> String {
        let cur = self.current();
        if cur.addr.is_empty() {
            cur.client.get_connection_info().addr().to_string()
        } else {
            cur.addr
        }
    }

    /// The client of the current server (for pub/sub and connections of
    /// their own).
    pub fn client(&self) -> Client {
        self.current().client
    }

    /// With Sentinel: asks the sentinels where the primary is and, when it
    /// moved, switches to it. Returns whether it switched. Without Sentinel,
    /// or asked less than [`RECHECK_EVERY`] ago: does nothing. Callers that
    /// ask while a question is out share its answer; the question runs in a
    /// task of its own and is bounded in time, so no caller (nor a caller's
    /// future no one polls any more) can hold up the others.
    pub async fn follow_primary(&self) -> bool {
        let Some(src) = &self.shared.sentinel else {
            return false;
        };
        let this = self.clone();
        src.following
            .join(move || async move { this.ask_sentinels().await }, || false)
            .await
    }

    /// The body of [`RedisConn::follow_primary`], in the flight's task.
    async fn ask_sentinels(&self) -> bool {
        let Some(src) = &self.shared.sentinel else {
            return false;
        };
        {
            let mut last = src.last_check.lock().unwrap();
            if last.is_some_and(|t| t.elapsed() < RECHECK_EVERY) {
                return false;
            }
            *last = Some(Instant::now());
        }
        let mut sentinel = src.sentinel.lock().await;
        let asked = tokio::time::timeout(src.ask_timeout, async {
            let client = sentinel
                .async_master_for(&src.url.service, Some(&src.node))
                .await
                .map_err(|e| format!("no Redis primary known to the sentinels yet: {e}"))?;
            let addr = client.get_connection_info().addr().to_string();
            if addr == self.shared.current.read().unwrap().addr {
                return Ok(None);
            }
            let manager = client
                .get_connection_manager_with_config(self.shared.cfg.clone())
                .await
                .map_err(|e| format!("cannot connect to the new Redis primary {addr} yet: {e}"))?;
            Ok::<_, String>(Some(Current {
                client,
                manager,
                addr,
            }))
        })
        .await;
        let next = match asked {
            Ok(Ok(Some(next))) => next,
            Ok(Ok(None)) => return false,
            Ok(Err(why)) => {
                tracing::warn!(service = %src.url.service, "{why}");
                return false;
            }
            Err(_) => {
                // A sentinel (or the node it named) that accepts and never
                // answers: forget the cached connections, ask afresh next time.
                tracing::warn!(service = %src.url.service, timeout = ?src.ask_timeout, "the sentinels did not answer in time; asking again later");
                if let Ok(fresh) = Sentinel::build(src.url.sentinels.clone()) {
                    *sentinel = fresh;
                }
                return false;
            }
        };
        tracing::warn!(primary = %next.addr, service = %src.url.service, "Redis primary moved (Sentinel failover): following it");
        *self.shared.current.write().unwrap() = next;
        self.shared.check.generation.fetch_add(1, Ordering::SeqCst);
        true
    }

    /// What the current server says about itself (see [`crate::server`]):
    /// asked once per connection, again after an error that may mean a new
    /// connection, and at least every [`RECHECK_SERVER_EVERY`].
    ///
    /// # Errors
    /// The connection failed.
    pub async fn server_check(&self) -> Result<Arc<ServerCheck>, RedisError> {
        if let Some(c) = self.shared.check.fresh() {
            return Ok(c);
        }
        let this = self.clone();
        self.shared
            .check
            .probing
            .join(
                move || async move { this.probe().await },
                || {
                    Err(RedisError::from(std::io::Error::other(
                        "the server check was interrupted",
                    )))
                },
            )
            .await
    }

    /// The body of [`RedisConn::server_check`], in the probing flight's task.
    async fn probe(&self) -> Result<Arc<ServerCheck>, RedisError> {
        let guard = &self.shared.check;
        if let Some(c) = guard.fresh() {
            return Ok(c);
        }
        let generation = guard.generation.load(Ordering::SeqCst);
        let mut manager = self.current().manager;
        let probed = tokio::time::timeout(PROBE_TIMEOUT, crate::server::probe(&mut manager))
            .await
            .unwrap_or_else(|_| {
                Err(RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no answer to the server check",
                )))
            });
        let check = match probed {
            Ok(c) => Arc::new(c),
            Err(e) => {
                *guard.failed_at.lock().unwrap() = Some(Instant::now());
                return Err(e);
            }
        };
        let refused = check.refusal();
        let was = guard.refused.swap(refused.is_some(), Ordering::SeqCst);
        if guard.refuse.load(Ordering::SeqCst) {
            match &refused {
                Some(why) if !was => tracing::error!("refusing Redis: {why}"),
                None if was => {
                    tracing::warn!("Redis maxmemory-policy is noeviction again: going on")
                }
                _ => {}
            }
        }
        *guard.cached.lock().unwrap() = Some(Cached {
            generation,
            at: Instant::now(),
            check: check.clone(),
        });
        Ok(check)
    }

    /// From now on, every command to a server whose `maxmemory-policy`
    /// evicts keys fails with an error naming the setting and the fix,
    /// without being sent (checked as [`RedisConn::server_check`] says).
    pub fn refuse_evicting(&self) {
        self.shared.check.refuse.store(true, Ordering::SeqCst);
    }

    /// The refusal of the current server, when [`RedisConn::refuse_evicting`]
    /// is on and it evicts. A failed check refuses nothing: the command
    /// itself will say what is wrong.
    async fn refusal(&self) -> Option<RedisError> {
        let guard = &self.shared.check;
        if !guard.refuse.load(Ordering::SeqCst) {
            return None;
        }
        if guard.fresh().is_none()
            && guard
                .failed_at
                .lock()
                .unwrap()
                .is_some_and(|t| t.elapsed() < PROBE_BACKOFF)
        {
            return None;
        }
        let why = self.server_check().await.ok()?.refusal_brief()?;
        Some(RedisError::from((ErrorKind::Client, "refused", why)))
    }

    /// After an error that may mean a new connection: the server is asked
    /// again before it is trusted.
    fn note_error(&self, e: &RedisError) {
        if lost_primary(e) {
            self.shared.check.generation.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// After `e`: whether it looks like a lost or demoted primary, then
    /// follows the primary; `true` when it moved and the command certainly
    /// did not run (so it may be sent again).
    async fn after_error(&self, e: &RedisError) -> bool {
        if self.shared.sentinel.is_none() || !lost_primary(e) {
            return false;
        }
        self.follow_primary().await && not_run(e)
    }
}

/// Errors a lost or demoted primary gives.
fn lost_primary(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(
            e.kind(),
            ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
                | ErrorKind::Server(redis::ServerErrorKind::MasterDown)
        )
}

/// Errors after which the command certainly did not run.
fn not_run(e: &RedisError) -> bool {
    e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
                | ErrorKind::Server(redis::ServerErrorKind::MasterDown)
        )
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            if let Some(refused) = self.refusal().await {
                return Err(refused);
            }
            let mut manager = self.current().manager;
            match manager.req_packed_command(cmd).await {
                Err(e) if self.after_error(&e).await => {
                    self.current().manager.req_packed_command(cmd).await
                }
                Err(e) => {
                    self.note_error(&e);
                    Err(e)
                }
                r => r,
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            if let Some(refused) = self.refusal().await {
                return Err(refused);
            }
            let mut manager = self.current().manager;
            match manager.req_packed_commands(pipeline, offset, count).await {
                Err(e) if self.after_error(&e).await => {
                    self.current()
                        .manager
                        .req_packed_commands(pipeline, offset, count)
                        .await
                }
                Err(e) => {
                    self.note_error(&e);
                    Err(e)
                }
                r => r,
            }
        })
    }

    fn get_db(&self) -> i64 {
        self.shared.db
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_url_is_not_sentinel() {
        assert!(SentinelUrl::parse("redis://127.0.0.1:6379").is_none());
        assert!(SentinelUrl::parse("rediss://h:6380/0").is_none());
    }

    #[test]
    fn parses_sentinels_service_credentials_and_db() {
        let u = SentinelUrl::parse(
            "redis+sentinel://app:s3cret@10.0.0.1:26379,10.0.0.2:26380/mymaster/2",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            u.sentinels,
            ["redis://10.0.0.1:26379", "redis://10.0.0.2:26380"]
        );
        assert_eq!(u.service, "mymaster");
        let info = u.node.as_str().into_connection_info().unwrap();
        let settings = info.redis_settings();
        assert_eq!(
            (settings.username(), settings.password(), settings.db()),
            (Some("app"), Some("s3cret"), 2)
        );
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        for bad in [
            "redis+sentinel://h:26379",
            "redis+sentinel://h:26379/",
            "redis+sentinel:///mymaster",
            "redis+sentinel://h/mymaster",
            "redis+sentinel://h:port/mymaster",
            "redis+sentinel://h:26379/mymaster/x",
        ] {
            let err = SentinelUrl::parse(bad).unwrap().unwrap_err();
            assert!(
                err.contains("redis+sentinel://[user:password@]host:port"),
                "{bad}: {err}"
            );
        }
    }
}
