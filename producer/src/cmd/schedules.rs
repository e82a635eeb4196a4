//! `agentq schedules`.

use agentq_shared::config::Config;

use crate::{output, Failure};

/// The periodic jobs of `[[schedule]]`: name, cron expression, time zone, next
/// tick, and the last tick a job was enqueued for.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub async fn run(cfg: &Config, args: Args) -> Result<u8, Failure> {
    let store = crate::connect(cfg).await?;
    let views = store.schedule_views(&cfg.schedule).await?;
    if args.json {
        for v in &views {
            output::print_json(v);
        }
        return Ok(0);
    }
    outln!(
        "{:<24} {:<16} {:<16} {:<21} last tick",
        "name",
        "cron",
        "tz",
        "next tick"
    );
    for v in &views {
        outln!(
            "{:<24} {:<16} {:<16} {:<21} {}",
            v.name,
            v.cron,
            v.tz,
            v.next_tick.as_deref().unwrap_or("-"),
            v.last_tick.as_deref().unwrap_or("-")
        );
    }
    Ok(0)
}
