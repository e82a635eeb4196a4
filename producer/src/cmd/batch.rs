//! `agentq batch status NAME [--json] [--wait]`: a batch's jobs by state.

use std::time::Duration;

use agentq_shared::{config::Config, flow, status::JobState, store::flow::BatchStatus};
use serde_json::json;

use crate::{output, Failure};

/// Batches of jobs (`agentq enqueue - --batch NAME`).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: BatchCommand,
}

/// What to do with a batch.
#[derive(Debug, clap::Subcommand)]
pub enum BatchCommand {
    /// Counts per state and done/total. Exit 0; with --wait, once every job
    /// is final: 0 if all completed (or merged), else 3 if any failed, else 4
    /// if any blocked, else 5 (cancelled), else 6 (timed out).
    Status(StatusArgs),
}

/// `agentq batch status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The batch's name.
    pub name: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Wait until every job of the batch is final.
    #[arg(long)]
    pub wait: bool,
}

/// Runs the command.
pub async fn run(cfg: &Config, args: Args) -> Result<u8, Failure> {
    let BatchCommand::Status(args) = args.command;
    flow::check_batch(&args.name).map_err(|e| Failure::refused(format!("refused: {e}")))?;
    let store = crate::connect(cfg).await?;
    let mut last_done = None;
    let status = loop {
        let Some(status) = store.batch_status(&args.name).await? else {
            return Err(Failure::refused(format!("no batch {}", args.name)));
        };
        if !args.wait || status.done == status.total {
            break status;
        }
        if !args.json && last_done != Some(status.done) {
            errln!(
                "agentq: batch {} {}/{} done",
                args.name,
                status.done,
                status.total
            );
        }
        last_done = Some(status.done);
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    print(&args.name, &status, args.json);
    if !args.wait {
        return Ok(0);
    }
    Ok(status
        .by_state
        .iter()
        .map(|(s, _)| crate::cmd::wait::exit_code(*s))
        .find(|c| *c != 0)
        .unwrap_or(0))
}

fn print(name: &str, s: &BatchStatus, json: bool) {
    if json {
        let states: serde_json::Map<String, serde_json::Value> = s
            .by_state
            .iter()
            .map(|(st, ids)| (st.as_str().to_string(), json!(ids.len())))
            .collect();
        output::print_json(&json!({
            "batch": name,
            "total": s.total,
            "done": s.done,
            "all_completed": s.all_completed(),
            "sealed": s.sealed,
            "fired": s.fired,
            "states": states,
            "jobs": s.by_state.iter().map(|(st, ids)| (st.as_str().to_string(), json!(ids))).collect::<serde_json::Map<_, _>>(),
        }));
        return;
    }
    outln!("batch {name}: {}/{} done", s.done, s.total);
    for (st, ids) in &s.by_state {
        outln!("  {:<10} {}", st.as_str(), ids.len());
    }
    if s.by_state.iter().any(|(st, _)| *st == JobState::Waiting) && !s.sealed {
        outln!("  (an enqueue of it has not finished)");
    }
}
