//! Fleet control: `agentq pause --all | POOL...`, `agentq unpause --all |
//! POOL...` and `agentq stop --now --all | POOL...` (see
//! `agentq_shared::store::fleet`).

use agentq_shared::{config::Config, store::fleet::Pools};
use serde_json::json;

use crate::{output, Failure};

/// The pools a fleet command names: `--all`, or one or more pools.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct Which {
    /// Every pool, now and later (the whole fleet).
    #[arg(long)]
    all: bool,
    /// Pools: the agent name before `:` (claude, codex, gemini, coderabbit, local, [agents.NAME]).
    #[arg(value_name = "POOL")]
    pools: Vec<String>,
}

/// `agentq pause`: no new starts on any host until `agentq unpause`.
#[derive(Debug, clap::Args)]
pub struct PauseArgs {
    #[command(flatten)]
    which: Which,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `agentq unpause`: lift an operator's pause.
#[derive(Debug, clap::Args)]
pub struct UnpauseArgs {
    #[command(flatten)]
    which: Which,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `agentq stop --now`: stop running agents and pause their pools.
#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Stop the running agents now (SIGTERM, `stop_grace_secs`, SIGKILL); required.
    #[arg(long, required = true)]
    now: bool,
    #[command(flatten)]
    which: Which,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// The pools of `which`, refused (exit 1, naming the known pools) if any is
/// not a pool of the configuration.
fn pools_of(cfg: &Config, which: &Which) -> Result<Pools, Failure> {
    if which.all {
        return Ok(Pools::All);
    }
    let known = crate::pools::reported(cfg);
    for p in &which.pools {
        if !known.contains(p) {
            return Err(Failure::refused(format!(
                "unknown pool `{}` (known: {}; give the pool without a model)",
                p,
                known.join(", ")
            )));
        }
    }
    let mut pools = which.pools.clone();
    pools.sort();
    pools.dedup();
    Ok(Pools::Named(pools))
}

/// What the pools are called in a message.
fn named(pools: &Pools) -> String {
    match pools {
        Pools::All => "every pool (the whole fleet)".into(),
        Pools::Named(p) => p.join(", "),
    }
}

fn json_pools(pools: &Pools) -> serde_json::Value {
    match pools {
        Pools::All => json!({"all": true, "pools": []}),
        Pools::Named(p) => json!({"all": false, "pools": p}),
    }
}

/// Runs `agentq pause`.
pub async fn pause(cfg: &Config, args: PauseArgs) -> Result<u8, Failure> {
    let pools = pools_of(cfg, &args.which)?;
    let store = crate::connect(cfg).await?;
    let changed = store.pause(&pools).await?;
    if args.json {
        let mut v = json_pools(&pools);
        v["paused"] = json!(true);
        v["changed"] = json!(changed);
        output::print_json(&v);
    } else {
        outln!(
            "paused: {} (no new starts on any host; running jobs go on; `agentq unpause` lifts it)",
            named(&pools)
        );
    }
    Ok(0)
}

/// Runs `agentq unpause`.
pub async fn unpause(cfg: &Config, args: UnpauseArgs) -> Result<u8, Failure> {
    let pools = pools_of(cfg, &args.which)?;
    let store = crate::connect(cfg).await?;
    let lifted = store.unpause(&pools, &crate::pools::reported(cfg)).await?;
    let fleet = store.fleet_pause().await?;
    // A timed pause (`agentq pool pause --for`, the backoff) is not lifted here.
    let named_pools = match &pools {
        Pools::All => crate::pools::reported(cfg),
        Pools::Named(p) => p.clone(),
    };
    let timed: serde_json::Map<String, serde_json::Value> = store
        .pool_stats(&cfg.admission, &named_pools)
        .await?
        .into_iter()
        .filter_map(|p| p.paused_until.map(|u| (p.pool, json!(u))))
        .collect();
    if args.json {
        let mut v = json_pools(&pools);
        v["lifted"] = json!(lifted);
        v["fleet_paused"] = json!(fleet.all);
        v["timed_paused_until"] = json!(timed);
        output::print_json(&v);
    } else {
        outln!("unpaused: {}", named(&pools));
        if fleet.all {
            outln!("the whole fleet is still paused: `agentq unpause --all` lifts that");
        }
        for (pool, until) in &timed {
            outln!(
                "pool {pool} stays paused until {} (a timed pause: `agentq pool resume {pool}` lifts it)",
                until.as_str().unwrap_or_default()
            );
        }
    }
    Ok(0)
}

/// Runs `agentq stop --now`.
pub async fn stop(cfg: &Config, args: StopArgs) -> Result<u8, Failure> {
    debug_assert!(args.now);
    let pools = pools_of(cfg, &args.which)?;
    let store = crate::connect(cfg).await?;
    store.stop_now(&pools).await?;
    let within = cfg.docker.stop_grace_secs + 5;
    if args.json {
        let mut v = json_pools(&pools);
        v["paused"] = json!(true);
        v["stopping_within_secs"] = json!(within);
        output::print_json(&v);
    } else {
        outln!(
            "stopping the running agents of {} on every host (within {within} s); their jobs go back to queued, first in line, spending no attempt; paused until `agentq unpause`",
            named(&pools)
        );
    }
    Ok(0)
}
