//! `agentq workers`.

use agentq_shared::config::Config;

use crate::{cmd::when, output, Failure};

/// Live workers: host, id, concurrency, running jobs, last heartbeat.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub async fn run(cfg: &Config, args: Args) -> Result<u8, Failure> {
    let store = crate::connect(cfg).await?;
    let workers = store.live_workers().await?;
    if args.json {
        for w in &workers {
            output::print_json(w);
        }
        return Ok(0);
    }
    outln!(
        "{:<16} {:<48} {:>4} {:>7} {:>9}  jobs",
        "host",
        "id",
        "conc",
        "running",
        "heartbeat"
    );
    for w in &workers {
        outln!(
            "{:<16} {:<48} {:>4} {:>7} {:>9}  {}",
            w.host,
            w.id,
            w.concurrency,
            w.running.len(),
            format!("{} ago", when::short_age(&w.heartbeat_at)),
            w.running.join(",")
        );
        if !w.degraded.is_empty() {
            outln!("{:<16} degraded (takes no jobs): {}", "", w.degraded);
        }
    }
    if workers.is_empty() {
        errln!("agentq: no live workers");
    }
    Ok(0)
}
