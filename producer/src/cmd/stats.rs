//! `agentq stats`: pools (running/limit, waiting, paused) and jobs per state.

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
    if args.json {
        let states: serde_json::Map<String, serde_json::Value> = states
            .iter()
            .map(|(s, n)| (s.to_string(), json!(n)))
            .collect();
        output::print_json(&json!({"pools": pools, "states": states, "queue_depth": depth}));
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
            p.paused_until.as_deref().unwrap_or("-")
        );
    }
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
    Ok(0)
}
