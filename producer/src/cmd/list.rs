//! `agentq list`.

use agentq_shared::{config::Config, record::RecordView, status::JobState, store::ops::ListFilter};

use crate::{output, when, Failure};

/// List jobs, newest first.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only jobs in this state (queued, waiting, preparing, running, completed, failed, blocked, cancelled, timed_out, merged).
    #[arg(long)]
    pub state: Option<JobState>,
    /// Only this agent pool (claude) or exact agent (claude:opus).
    #[arg(long)]
    pub agent: Option<String>,
    /// Only this repo (repo or org/repo).
    #[arg(long)]
    pub repo: Option<String>,
    /// Only jobs created since (RFC 3339, or an age like 2h).
    #[arg(long, value_parser = when::parse_since)]
    pub since: Option<i64>,
    /// Only jobs whose id starts with this, whose task contains it, or whose
    /// issue or PR is this number.
    #[arg(long)]
    pub search: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub async fn run(cfg: &Config, args: Args) -> Result<u8, Failure> {
    let store = crate::connect(cfg).await?;
    let jobs = store
        .list_views(&ListFilter {
            state: args.state,
            agent: args.agent,
            repo: args.repo,
            since_ms: args.since,
            limit: args.limit,
            search: args.search,
        })
        .await?;
    if args.json {
        for j in &jobs {
            match j {
                RecordView::Ok(rec) => output::print_json(rec),
                RecordView::Unreadable { id, problem } => crate::corrupt::print(id, problem, true),
            }
        }
        return Ok(0);
    }
    outln!(
        "{:<26} {:<10} {:<14} {:<24} {:>5} {:>3}  reason",
        "id",
        "state",
        "agent",
        "repo",
        "age",
        "att"
    );
    for j in &jobs {
        let j = match j {
            RecordView::Ok(rec) => rec,
            RecordView::Unreadable { id, problem } => {
                outln!(
                    "{:<26} {:<10} {:<14} {:<24} {:>5} {:>3}  {}",
                    id,
                    crate::corrupt::CORRUPT,
                    "-",
                    "-",
                    "-",
                    "-",
                    problem.to_string().escape_debug()
                );
                continue;
            }
        };
        let reason: String = j
            .message()
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(60)
            .collect();
        outln!(
            "{:<26} {:<10} {:<14} {:<24} {:>5} {:>3}  {}",
            j.id,
            j.state.as_str(),
            j.input.agent,
            format!("{}/{}", j.input.org, j.input.repo),
            when::age(j.created_at),
            j.attempt,
            reason
        );
    }
    Ok(0)
}
