//! `agentq retry`: run finished jobs again (a new attempt of the same job).

use agentq_shared::{config::Config, store::bulk::BulkResult, store::ops::retry_state_refusal};
use serde_json::json;

use crate::{cmd::select::Selection, output, Failure};

/// Re-enqueue jobs: by id, or every job in a state (failed by default with
/// --state), optionally of one agent and since a time. Each keeps its id and
/// workspace; its attempt count goes up.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  agentq retry 01J...\n  agentq retry --state failed --agent claude --since 2h"
)]
pub struct Args {
    #[command(flatten)]
    pub jobs: Selection,
}

/// Runs the command.
pub async fn run(cfg: &Config, args: Args) -> Result<u8, Failure> {
    let store = crate::connect_for_jobs(cfg).await?;
    let ids = args.jobs.ids(&store, retry_state_refusal).await?;
    let results = store
        .retry_selected(&ids, args.jobs.state, &mut output::progress("retried"))
        .await?;
    let mut retried = Vec::new();
    let mut refused = Vec::new();
    // Jobs selected by state that left it before the script reached them
    // (purged, retried or resumed by someone else meanwhile): skipped.
    let mut skipped = Vec::new();
    for (id, r) in ids.into_iter().zip(results) {
        match (r, args.jobs.state) {
            (BulkResult::Done(_), _) => retried.push(id),
            (BulkResult::NoSuchJob, Some(_)) => skipped.push((id, "gone".to_string())),
            (BulkResult::Left(st), Some(sel)) => {
                skipped.push((id, format!("is {st} now, not {sel}")))
            }
            (BulkResult::NoSuchJob, None) => refused.push((id, "no such job".to_string())),
            (BulkResult::Left(st), None) => refused.push((id, format!("is {st}, not finished"))),
        }
    }
    if args.jobs.json {
        output::print_json(&json!({"retried": retried,
                "refused": refused.iter().map(|(i, w)| json!({"id": i, "error": w})).collect::<Vec<_>>(),
                "skipped": skipped.iter().map(|(i, w)| json!({"id": i, "why": w})).collect::<Vec<_>>()}));
    } else {
        for id in &retried {
            outln!("retried {id}");
        }
        for (id, why) in &refused {
            errln!("agentq: not retried: {id} {why}");
        }
        for (id, why) in &skipped {
            errln!("agentq: skipped {id}: {why} (changed meanwhile)");
        }
        outln!("{} re-enqueued", retried.len());
    }
    Ok(if refused.is_empty() { 0 } else { 1 })
}
