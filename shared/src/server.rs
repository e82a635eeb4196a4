//! What a Redis server says about itself that decides whether agentq may
//! trust it with jobs: its `maxmemory-policy` (anything but `noeviction` lets
//! Redis delete queued jobs under memory pressure, silently), its persistence
//! (AOF, RDB `save` rules), version and replicas. Asked once per connection
//! (see [`crate::conn::RedisConn::server_check`]); `agentq doctor` prints it.
//!
//! `CONFIG GET` first; a managed Redis that disables or renames `CONFIG` is
//! asked `INFO` instead (its `maxmemory_policy` and `aof_enabled` fields); what
//! neither answers is [`Known::Unknown`], a warning, never a refusal.

use redis::aio::ConnectionLike;
use serde::Serialize;

/// The one `maxmemory-policy` that never deletes keys.
pub const NOEVICTION: &str = "noeviction";

/// The oldest Redis agentq runs on: its scripts use `ZADD ... LT`/`GT`
/// (the timers, the delayed jobs, the write-back's high-water marks), new in
/// 6.2; an older server answers them with a syntax error, mid-job.
pub const OLDEST_REDIS: (u32, u32) = (6, 2);

/// A setting read from the server, or why it could not be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "known", content = "value", rename_all = "snake_case")]
pub enum Known<T> {
    /// What the server said.
    Yes(T),
    /// Neither `CONFIG GET` nor `INFO` said (the reason).
    Unknown(String),
}

/// Whether the server keeps what it acknowledged across a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Persistence {
    /// Append-only file on.
    pub aof: bool,
    /// RDB `save` rules (`3600 1 300 100`), empty when off; `None` when
    /// unknown (`CONFIG` refused: `INFO` does not show them).
    pub rdb_save: Option<String>,
}

impl Persistence {
    /// Neither AOF nor RDB snapshots: a restart loses everything.
    pub fn is_off(&self) -> bool {
        !self.aof && self.rdb_save.as_deref() == Some("")
    }
}

/// What [`probe`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerCheck {
    /// `redis_version`.
    pub version: Known<String>,
    /// `maxmemory-policy`.
    pub maxmemory_policy: Known<String>,
    /// AOF and RDB.
    pub persistence: Known<Persistence>,
    /// `role` (master, slave).
    pub role: Known<String>,
    /// Replicas connected to it (`connected_slaves`).
    pub replicas: Known<u32>,
}

impl ServerCheck {
    /// Whether the policy is known to evict keys.
    pub fn evicts(&self) -> bool {
        matches!(&self.maxmemory_policy, Known::Yes(p) if p != NOEVICTION)
    }

    /// Why agentq refuses this server (one line naming the setting and the
    /// fix), `None` when it does not.
    pub fn refusal(&self) -> Option<String> {
        let Known::Yes(policy) = &self.maxmemory_policy else {
            return None;
        };
        self.evicts().then(|| evicting_message(policy))
    }

    /// Why this server is too old for agentq ([`OLDEST_REDIS`]), `None`
    /// when it is not, or its version is unknown or not `MAJOR.MINOR...`
    /// (a fork that numbers its own: the scripts will say).
    pub fn too_old(&self) -> Option<String> {
        let Known::Yes(v) = &self.version else {
            return None;
        };
        let mut parts = v.split('.').map(str::parse::<u32>);
        let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) else {
            return None;
        };
        let (want_major, want_minor) = OLDEST_REDIS;
        ((major, minor) < OLDEST_REDIS).then(|| {
            format!(
                "Redis {v} is too old: agentq needs Redis {want_major}.{want_minor} or newer (its scripts use ZADD LT/GT); upgrade the server"
            )
        })
    }

    /// [`ServerCheck::refusal`] in brief, for the error of each command
    /// refused (the full line is logged once).
    pub fn refusal_brief(&self) -> Option<String> {
        let Known::Yes(policy) = &self.maxmemory_policy else {
            return None;
        };
        self.evicts().then(|| {
            format!(
                "Redis maxmemory-policy is `{policy}`, not `{NOEVICTION}` (see `agentq doctor`)"
            )
        })
    }

    /// Warnings (one line each) that are no refusal: persistence off, a
    /// policy that could not be read.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Known::Unknown(why) = &self.maxmemory_policy {
            out.push(format!(
                "cannot read Redis's maxmemory-policy ({why}); make sure it is `noeviction`, or Redis may delete queued jobs when memory is short"
            ));
        }
        if matches!(&self.persistence, Known::Yes(p) if p.is_off()) {
            out.push(
                "Redis persistence is off (no AOF, no RDB save rules): a Redis restart loses every job; for production set `appendonly yes` in redis.conf".into(),
            );
        }
        out
    }
}

/// The refusal of an evicting Redis: the setting, the risk and the fix.
pub fn evicting_message(policy: &str) -> String {
    format!(
        "Redis maxmemory-policy is `{policy}`: Redis may delete queued and running jobs when memory is short; agentq needs `noeviction` (run `redis-cli CONFIG SET maxmemory-policy noeviction`, and put `maxmemory-policy noeviction` in redis.conf)"
    )
}

/// `CONFIG GET name`: `Ok(None)` when the server has no such setting,
/// `Err` when `CONFIG` itself is refused (disabled, renamed, no permission).
async fn config_get<C: ConnectionLike + Send>(
    conn: &mut C,
    name: &str,
) -> Result<Option<String>, redis::RedisError> {
    let pairs: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query_async(conn)
        .await?;
    Ok(pairs.get(1).cloned())
}

/// A field of `INFO` text.
fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// Whether `e` says the connection failed (so nothing about the server is
/// known and the question should be asked again later).
fn connection_failed(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

/// Asks the server behind `conn` (a few round trips).
///
/// # Errors
/// The connection failed (a refused `CONFIG` is not an error: `INFO` is
/// asked instead).
pub async fn probe<C: ConnectionLike + Send>(
    conn: &mut C,
) -> Result<ServerCheck, redis::RedisError> {
    let info: Result<String, _> = redis::cmd("INFO").query_async(conn).await;
    let info = match info {
        Ok(i) => Ok(i),
        Err(e) if connection_failed(&e) => return Err(e),
        Err(e) => Err(e.to_string()),
    };
    let from_info = |name: &str| -> Known<String> {
        match &info {
            Ok(text) => info_field(text, name).map_or_else(
                || Known::Unknown(format!("INFO has no {name}")),
                |v| Known::Yes(v.to_string()),
            ),
            Err(e) => Known::Unknown(format!("INFO refused: {e}")),
        }
    };
    let policy = match config_get(conn, "maxmemory-policy").await {
        Ok(Some(p)) => Known::Yes(p),
        Err(e) if connection_failed(&e) => return Err(e),
        Ok(None) | Err(_) => match from_info("maxmemory_policy") {
            Known::Unknown(why) => Known::Unknown(format!("CONFIG GET refused and {why}")),
            known => known,
        },
    };
    let aof = config_get(conn, "appendonly").await;
    let save = config_get(conn, "save").await;
    let persistence = match (aof, save) {
        (Err(e), _) | (_, Err(e)) if connection_failed(&e) => return Err(e),
        (Ok(Some(aof)), Ok(save)) => Known::Yes(Persistence {
            aof: aof == "yes",
            rdb_save: save,
        }),
        _ => match from_info("aof_enabled") {
            Known::Yes(v) => Known::Yes(Persistence {
                aof: v == "1",
                rdb_save: None,
            }),
            Known::Unknown(why) => Known::Unknown(why),
        },
    };
    let replicas = match from_info("connected_slaves") {
        Known::Yes(n) => n.parse().map_or_else(
            |_| Known::Unknown(format!("connected_slaves: {n}")),
            Known::Yes,
        ),
        Known::Unknown(why) => Known::Unknown(why),
    };
    Ok(ServerCheck {
        version: from_info("redis_version"),
        maxmemory_policy: policy,
        persistence,
        role: from_info("role"),
        replicas,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(policy: Known<String>, persistence: Known<Persistence>) -> ServerCheck {
        ServerCheck {
            version: Known::Yes("7.0.15".into()),
            maxmemory_policy: policy,
            persistence,
            role: Known::Yes("master".into()),
            replicas: Known::Yes(0),
        }
    }

    #[test]
    fn only_noeviction_is_accepted_and_unknown_is_a_warning() {
        let durable = Known::Yes(Persistence {
            aof: true,
            rdb_save: Some(String::new()),
        });
        let ok = check(Known::Yes(NOEVICTION.into()), durable.clone());
        assert_eq!((ok.refusal(), ok.warnings().len()), (None, 0));
        for p in ["allkeys-lru", "volatile-ttl", "allkeys-random"] {
            let bad = check(Known::Yes(p.into()), durable.clone());
            let why = bad.refusal().unwrap();
            assert!(why.contains("maxmemory-policy") && why.contains(p), "{why}");
            assert!(
                why.contains("CONFIG SET maxmemory-policy noeviction"),
                "{why}"
            );
        }
        let unknown = check(Known::Unknown("CONFIG refused".into()), durable);
        assert_eq!(unknown.refusal(), None);
        assert_eq!(unknown.warnings().len(), 1);
    }

    #[test]
    fn a_redis_older_than_6_2_is_too_old() {
        let durable = Known::Yes(Persistence {
            aof: true,
            rdb_save: None,
        });
        let mut c = check(Known::Yes(NOEVICTION.into()), durable);
        for (v, old) in [
            ("7.0.15", false),
            ("6.2.0", false),
            ("6.2", false),
            ("10.0.1", false),
            ("6.0.16", true),
            ("5.0.7", true),
            ("weird", false),
        ] {
            c.version = Known::Yes(v.into());
            assert_eq!(c.too_old().is_some(), old, "{v}");
        }
        c.version = Known::Yes("6.0.16".into());
        let why = c.too_old().unwrap();
        assert!(
            why.contains("6.0.16") && why.contains("6.2 or newer"),
            "{why}"
        );
        c.version = Known::Unknown("INFO refused".into());
        assert_eq!(c.too_old(), None);
    }

    #[test]
    fn persistence_off_is_one_warning() {
        let off = check(
            Known::Yes(NOEVICTION.into()),
            Known::Yes(Persistence {
                aof: false,
                rdb_save: Some(String::new()),
            }),
        );
        assert_eq!(off.refusal(), None);
        assert_eq!(off.warnings().len(), 1);
        let rdb = Persistence {
            aof: false,
            rdb_save: Some("3600 1".into()),
        };
        assert!(!rdb.is_off());
    }

    #[test]
    fn info_fields_are_read_by_name() {
        let info =
            "# Server\r\nredis_version:7.0.15\r\n# Memory\r\nmaxmemory_policy:allkeys-lru\r\n";
        assert_eq!(info_field(info, "redis_version"), Some("7.0.15"));
        assert_eq!(info_field(info, "maxmemory_policy"), Some("allkeys-lru"));
        assert_eq!(info_field(info, "maxmemory"), None);
    }
}
