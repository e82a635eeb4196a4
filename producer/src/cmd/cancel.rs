//! `agentq cancel ID...` and `agentq cancel --state STATE`.

use agentq_shared::{
    bulk::BulkResult,
    config::Config,
    ops::{cancel_state_refusal, ListFilter},
    status::JobState,
};
use serde_json::json;

use crate::{output, Failure};

/// Cancel jobs: a queued or waiting job never runs; a running job's agent is
/// stopped (SIGTERM, a grace period, then SIGKILL) by whichever host runs it.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  agentq cancel 01J...\n  agentq cancel --state queued --agent claude"
)]
pub struct Args {
    /// Job ids.
    #[arg(required_unless_present = "state")]
    pub ids: Vec<String>,
    /// Cancel every job in this state (queued, waiting, preparing, running, qa,
    /// reporting).
    #[arg(long, conflicts_with = "ids")]
    pub state: Option<JobState>,
    /// With --state: only this agent pool or agent.
    #[arg(long, requires = "state")]
    pub agent: Option<String>,
    /// Print JSON, one object per job.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub async fn run(cfg: &Config, args: Args) -> Result<u8, Failure> {
    let store = crate::connect(cfg).await?;
    let ids: Vec<String> = match args.state {
        Some(state) if cancel_state_refusal(state).is_some() => {
            return Err(Failure::refused(
                cancel_state_refusal(state).unwrap_or_default(),
            ))
        }
        Some(state) => {
            store
                .ids_matching(&ListFilter {
                    state: Some(state),
                    agent: args.agent,
                    ..Default::default()
                })
                .await?
        }
        None => args.ids,
    };
    let results = store
        .cancel_many(&ids, &mut output::progress("cancelled"))
        .await?;
    let mut code = 0;
    let (mut cancelled, mut stopping) = (0usize, 0usize);
    let many = args.state.is_some();
    for (id, r) in ids.iter().zip(results) {
        let (state, note) = match r {
            BulkResult::NoSuchJob => {
                code = 1;
                if args.json {
                    output::print_json(&json!({"id": id, "error": "no such job"}));
                } else {
                    errln!("agentq: no job with id {id}");
                }
                continue;
            }
            BulkResult::Done(st) => {
                cancelled += 1;
                (st, "cancelled")
            }
            BulkResult::Left(st) if st.is_final() => {
                code = 1;
                (st, "already finished")
            }
            BulkResult::Left(st) => {
                stopping += 1;
                (st, "cancel requested; the worker stops it within seconds")
            }
        };
        if args.json {
            output::print_json(&json!({"id": id, "state": state, "note": note}));
        } else if !many {
            outln!("{id} {state}: {note}");
        }
    }
    if many && !args.json {
        outln!("{cancelled} cancelled, {stopping} being stopped by their workers");
    }
    Ok(code)
}
