//! `agentq doctor`: every check of the Redis agentq is configured for and of
//! the configuration, each `ok`, `warn` or `fail`; exit 1 on any fail.

use std::path::Path;

use agentq_shared::{
    config::Config,
    server::{Known, ServerCheck, NOEVICTION},
    store::redact_url,
};
use serde::Serialize;
use serde_json::json;

use crate::{output, Failure};

/// Check Redis and the configuration: the config file read, Redis reachable
/// (and the server it resolved to), its role (primary),
/// its version, maxmemory-policy (must be noeviction), persistence (AOF/RDB),
/// the namespace, replicas (when redis_min_replicas asks for some). Exit 1 when
/// any check fails.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but worth a look.
    Warn,
    /// agentq refuses this (or cannot work).
    Fail,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// How it came out.
    pub status: Status,
    /// What was found, and the fix for a warn or fail.
    pub detail: String,
}

fn check(name: &'static str, status: Status, detail: impl Into<String>) -> Check {
    Check {
        name,
        status,
        detail: detail.into(),
    }
}

/// The checks of what the server says about itself.
fn server_checks(cfg: &Config, s: &ServerCheck) -> Vec<Check> {
    let mut out = Vec::new();
    out.push(match &s.role {
        Known::Yes(r) if r == "master" => check("role", Status::Ok, "primary"),
        Known::Yes(r) => check(
            "role",
            Status::Fail,
            format!("{r}: a replica refuses writes; point redis_url at the primary, or at the sentinels (redis+sentinel://)"),
        ),
        Known::Unknown(why) => check("role", Status::Warn, why.clone()),
    });
    out.push(match (&s.version, s.too_old()) {
        (_, Some(why)) => check("version", Status::Fail, why),
        (Known::Yes(v), None) => check("version", Status::Ok, format!("Redis {v}")),
        (Known::Unknown(why), None) => check("version", Status::Warn, why.clone()),
    });
    out.push(match (&s.maxmemory_policy, s.refusal()) {
        (_, Some(why)) => check("maxmemory-policy", Status::Fail, why),
        (Known::Yes(p), None) => check("maxmemory-policy", Status::Ok, p.clone()),
        (Known::Unknown(why), None) => check(
            "maxmemory-policy",
            Status::Warn,
            format!("{why}; make sure it is `{NOEVICTION}`"),
        ),
    });
    out.push(match &s.persistence {
        Known::Yes(p) if p.is_off() => check(
            "persistence",
            Status::Warn,
            "off (no AOF, no RDB save rules): a Redis restart loses every job; set `appendonly yes` in redis.conf",
        ),
        Known::Yes(p) => {
            let rdb = match p.rdb_save.as_deref() {
                None => "RDB unknown".to_string(),
                Some("") => "no RDB".to_string(),
                Some(rules) => format!("RDB save {rules}"),
            };
            let aof = if p.aof { "AOF on" } else { "AOF off" };
            check("persistence", Status::Ok, format!("{aof}, {rdb}"))
        }
        Known::Unknown(why) => check("persistence", Status::Warn, why.clone()),
    });
    let wanted = cfg.min_replicas();
    if wanted > 0 {
        out.push(match &s.replicas {
            Known::Yes(n) if *n >= wanted => check(
                "replicas",
                Status::Ok,
                format!("{n} connected (redis_min_replicas {wanted})"),
            ),
            Known::Yes(n) => check(
                "replicas",
                Status::Fail,
                format!("{n} connected, redis_min_replicas asks for {wanted}: enqueue cannot say queued"),
            ),
            Known::Unknown(why) => check("replicas", Status::Warn, why.clone()),
        });
    }
    out
}

/// Runs the command.
pub async fn run(cfg: &Config, file: Option<&Path>, args: Args) -> Result<u8, Failure> {
    let mut checks = vec![match file {
        Some(p) => check("config", Status::Ok, format!("{}", p.display())),
        None => check(
            "config",
            Status::Ok,
            "no file (defaults and AGENTQ_* environment)",
        ),
    }];
    let url = redact_url(&cfg.redis_url);
    match crate::connect(cfg).await {
        Err(f) => checks.push(check("reachable", Status::Fail, f.message)),
        Ok(store) => {
            let addr = store.conn().server_addr();
            checks.push(check("reachable", Status::Ok, format!("{url} ({addr})")));
            match store.conn().server_check().await {
                Ok(s) => checks.extend(server_checks(cfg, &s)),
                Err(e) => checks.push(check("server", Status::Fail, e.to_string())),
            }
            match store.state_counts().await {
                Ok(counts) => {
                    let jobs: u64 = counts.iter().map(|(_, n)| n).sum();
                    let workers = store.live_workers().await.map(|w| w.len()).unwrap_or(0);
                    checks.push(check(
                        "namespace",
                        Status::Ok,
                        format!(
                            "`{}`: {jobs} job(s), {workers} live worker(s)",
                            cfg.namespace
                        ),
                    ));
                }
                Err(e) => checks.push(check("namespace", Status::Fail, e.to_string())),
            }
        }
    }
    let failed = checks.iter().any(|c| c.status == Status::Fail);
    if args.json {
        output::print_json(&json!({"ok": !failed, "checks": checks}));
    } else {
        for c in &checks {
            outln!("{:<5} {:<17} {}", c.status.as_str(), c.name, c.detail);
        }
    }
    Ok(u8::from(failed))
}
