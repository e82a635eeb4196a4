//! `agentq cancel ID...` and `agentq cancel --state STATE`.

use agentq_shared::{config::Config, store::bulk::BulkResult, store::ops::cancel_state_refusal};
use serde_json::json;

use crate::{cmd::select::Selection, output, Failure};

/// Cancel jobs: a queued or waiting job never runs; a running job's agent is
/// stopped (SIGTERM, a grace period, then SIGKILL) by whichever host runs it.
/// With --state: every job in an unfinished state (queued, waiting, preparing,
/// running, qa, reporting).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  agentq cancel 01J...\n  agentq cancel --state queued --agent claude"
)]
pub struct Args {
    #[command(flatten)]
    pub jobs: Selection,
}

/// Runs the command.
pub async fn run(cfg: &Config, args: Args) -> Result<u8, Failure> {
    let store = crate::connect(cfg).await?;
    let many = args.jobs.by_state();
    let ids = args.jobs.ids(&store, cancel_state_refusal).await?;
    let results = store
        .cancel_many(&ids, &mut output::progress("cancelled"))
        .await?;
    let mut code = 0;
    let (mut cancelled, mut stopping) = (0usize, 0usize);
    for (id, r) in ids.iter().zip(results) {
        let (state, note) = match r {
            BulkResult::NoSuchJob => {
                code = 1;
                if args.jobs.json {
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
        if args.jobs.json {
            output::print_json(&json!({"id": id, "state": state, "note": note}));
        } else if !many {
            outln!("{id} {state}: {note}");
        }
    }
    if many && !args.jobs.json {
        outln!("{cancelled} cancelled, {stopping} being stopped by their workers");
    }
    Ok(code)
}
