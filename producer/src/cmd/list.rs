//! `agentq list`.

use agentq_shared::{config::Config, record::RecordView, status::JobState, store::ops::ListFilter};

use crate::{output, when, Failure};

/// List jobs, newest first.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only jobs in this state (queued, waiting, preparing, running, completed, failed, blocked, cancelled, timed_out, merged, scheduled).
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
    /// Only jobs of this priority (high, normal, low).
    #[arg(long)]
    pub priority: Option<agentq_shared::priority::Priority>,
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
            priority: args.priority,
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
        "{:<26} {:<10} {:<14} {:<24} {:>5} {:>3} {:<6} reason",
        "id",
        "state",
        "agent",
        "repo",
        "age",
        "att",
        "pri"
    );
    for j in &jobs {
        let j = match j {
            RecordView::Ok(rec) => rec,
            RecordView::Unreadable { id, problem } => {
                outln!(
                    "{:<26} {:<10} {:<14} {:<24} {:>5} {:>3} {:<6} {}",
                    id,
                    crate::corrupt::CORRUPT,
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    problem.to_string().escape_debug()
                );
                continue;
            }
        };
        let due = j.input.at.map(|t| format!("due {t}")).unwrap_or_default();
        let message = if j.state == JobState::Scheduled {
            due.as_str()
        } else {
            j.message()
        };
        let reason: String = message
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(60)
            .collect();
        outln!(
            "{:<26} {:<10} {:<14} {:<24} {:>5} {:>3} {:<6} {}",
            j.id,
            j.state.as_str(),
            j.input.agent,
            format!("{}/{}", j.input.org, j.input.repo),
            when::age(j.created_at),
            j.attempt,
            j.input.priority.as_str(),
            reason
        );
    }
    Ok(0)
}
