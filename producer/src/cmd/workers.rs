//! `agentq workers`.

use agentq_shared::config::Config;

use crate::{output, when, Failure};

/// Live workers: host, id, concurrency, running jobs, last heartbeat, and the
/// pools a worker does not run (their image is missing on its host).
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
        "{:<16} {:<48} {:>4} {:>7} {:>9} {:>9}  jobs",
        "host",
        "id",
        "conc",
        "running",
        "heartbeat",
        "disk"
    );
    for w in &workers {
        outln!(
            "{:<16} {:<48} {:>4} {:>7} {:>9} {:>9}  {}",
            w.host,
            w.id,
            w.concurrency,
            w.running.len(),
            format!("{} ago", when::short_age(&w.heartbeat_at)),
            human_bytes(w.workspace_bytes),
            w.running.join(",")
        );
        let all = cfg.agent_table().names();
        let missing: Vec<&str> = all
            .iter()
            .map(String::as_str)
            .filter(|p| !w.pools.iter().any(|s| s == p))
            .collect();
        if !w.pools.is_empty() && !missing.is_empty() {
            outln!(
                "{:<16} runs pools: {} (not {}: image missing, or not in its agent table)",
                "",
                w.pools.join(","),
                missing.join(",")
            );
        }
        if !w.degraded.is_empty() {
            outln!("{:<16} degraded (takes no jobs): {}", "", w.degraded);
        }
    }
    if workers.is_empty() {
        errln!("agentq: no live workers");
    }
    Ok(0)
}

/// `1.5G`, `320M`, `12K`, `0`.
fn human_bytes(b: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)];
    for (u, n) in UNITS {
        if b >= n {
            return format!("{:.1}{u}", b as f64 / n as f64);
        }
    }
    b.to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_read_as_people_write_them() {
        assert_eq!(super::human_bytes(0), "0");
        assert_eq!(super::human_bytes(1536), "1.5K");
        assert_eq!(super::human_bytes(3 << 30), "3.0G");
    }
}
