//! `agentq purge --state S --older-than AGE`.

use agentq_shared::{config::Config, status::JobState};
use serde_json::json;

use crate::{output, when, Failure};

/// Delete the records of finished jobs in a state that got there longer ago than
/// --older-than, with their history, log tail and idempotency key (the key can
/// then be used again). Workspaces on disk are left alone. A job that left the
/// state meanwhile (retried or resumed at the same time) is skipped and said so.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which finished state (completed, failed, blocked, cancelled, timed_out, merged).
    #[arg(long)]
    pub state: JobState,
    /// Age, like 7d, 12h, 30m.
    #[arg(long, value_parser = when::parse_age)]
    pub older_than: i64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Keep the agent branches of jobs whose pull request was closed without
    /// a merge (by default a worker deletes them on the forge).
    #[arg(long)]
    pub keep_branches: bool,
}

/// Runs the command.
pub async fn run(cfg: &Config, args: Args) -> Result<u8, Failure> {
    if !args.state.is_final() {
        return Err(Failure::refused(format!(
            "state: {} jobs are not finished; only finished jobs can be purged",
            args.state
        )));
    }
    let store = crate::connect(cfg).await?;
    let before = agentq_shared::clock::now_ms() - args.older_than * 1000;
    let branches = if args.keep_branches || cfg.forge.url.is_empty() {
        0
    } else {
        crate::cmd::purge_branches::queue(&store, args.state, before).await
    };
    let done = store.purge(args.state, before).await?;
    if args.json {
        output::print_json(
            &json!({"purged": done.purged, "state": args.state, "skipped": done.skipped, "branches_checked": branches}),
        );
    } else {
        for id in &done.skipped {
            errln!(
                "agentq: skipped {id}: no longer {} (changed meanwhile)",
                args.state
            );
        }
        if branches > 0 {
            outln!("{branches} agent branch(es) left to the workers: deleted on the forge if the pull request was closed without a merge");
        }
        outln!("purged {} {} job(s)", done.purged, args.state);
        if !done.skipped.is_empty() {
            outln!(
                "skipped {} job(s) no longer {} when purged",
                done.skipped.len(),
                args.state
            );
        }
    }
    Ok(0)
}
