//! `agentq stats`: pools (running/limit, waiting, paused, pacing) and jobs per state.

use agentq_shared::config::Config;
use serde_json::json;

use crate::{output, Failure};

/// Show each agent pool's running/limit, waiting jobs and pause, and job counts by state.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub async fn run(cfg: &Config, args: Args) -> Result<u8, Failure> {
    let store = crate::connect(cfg).await?;
    let pools = store
        .pool_stats(&cfg.admission, &crate::pools::reported(cfg))
        .await?;
    let states = store.state_counts().await?;
    let depth = store.queue_depth().await?;
    let fleet = store.fleet_pause().await?;
    if args.json {
        let states: serde_json::Map<String, serde_json::Value> = states
            .iter()
            .map(|(s, n)| (s.to_string(), json!(n)))
            .collect();
        output::print_json(
            &json!({"pools": pools, "states": states, "queue_depth": depth, "fleet": fleet}),
        );
        return Ok(0);
    }
    outln!(
        "{:<12} {:>9} {:>8}  paused until",
        "pool",
        "running",
        "waiting"
    );
    for p in &pools {
        let limit = if p.limit == 0 {
            "-".to_string()
        } else {
            p.limit.to_string()
        };
        outln!(
            "{:<12} {:>9} {:>8}  {}",
            p.pool,
            format!("{}/{}", p.running, limit),
            p.waiting,
            paused_text(p)
        );
    }
    pacing_lines(&pools);
    // Pools waiting for their provider's usage limit to reset.
    let now = chrono::Utc::now();
    for p in &pools {
        if let (Some(cause), Some(until)) = (p.pause_cause, &p.paused_until) {
            if let Ok(until) = chrono::DateTime::parse_from_rfc3339(until) {
                outln!(
                    "{}: {}, {}",
                    p.pool,
                    cause.as_str(),
                    agentq_shared::quota::describe_resume(until.to_utc(), now)
                );
            }
        }
    }
    outln!();
    let line: Vec<String> = states.iter().map(|(s, n)| format!("{s} {n}")).collect();
    outln!("jobs: {}", line.join(", "));
    outln!("deliveries queued: {depth}");
    if fleet.all {
        outln!("fleet: paused by an operator (every pool) until `agentq unpause --all`");
    }
    Ok(0)
}

/// One line per paced pool: starts today against the daily limit, and the
/// next allowed start.
fn pacing_lines(pools: &[agentq_shared::store::limits::PoolStats]) {
    let paced: Vec<_> = pools
        .iter()
        .filter_map(|p| p.pacing.as_ref().map(|s| (&p.pool, s)))
        .collect();
    if paced.is_empty() {
        return;
    }
    outln!();
    outln!("pacing (day ends at reset_utc):");
    for (pool, s) in paced {
        let today = match s.starts_left {
            Some(left) => format!(
                "{}/{} started today ({left} left)",
                s.starts_today, s.daily_limit
            ),
            None => format!("{} started today (no daily limit)", s.starts_today),
        };
        let next = if s.may_start_now {
            "now".to_string()
        } else {
            s.next_start.clone()
        };
        let gap = if s.gap_secs > 0.0 {
            format!("gap {}s", s.gap_secs)
        } else {
            "no gap".to_string()
        };
        outln!(
            "  {:<12} {today}, {gap}, next start {next}, day ends {}",
            pool,
            s.day_ends
        );
    }
}

/// The pause column: the operator's pause (no end) and the timed one (until when).
fn paused_text(p: &agentq_shared::store::limits::PoolStats) -> String {
    match (p.operator_paused, p.paused_until.as_deref()) {
        (true, Some(until)) => format!("by operator (no end); {until}"),
        (true, None) => "by operator (no end)".into(),
        (false, Some(until)) => until.into(),
        (false, None) => "-".into(),
    }
}
