//! `agentq status ID`.

use agentq_shared::config::Config;

use crate::{output, Failure};

/// One job (`agentq status`, `agentq inspect`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job id printed by `agentq enqueue`.
    pub id: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub async fn run(cfg: &Config, args: Args) -> Result<u8, Failure> {
    let store = crate::connect(cfg).await?;
    let Some(rec) = crate::corrupt::readable_or_print(&store, &args.id, args.json).await? else {
        return Ok(crate::corrupt::EXIT_CORRUPT);
    };
    if args.json {
        output::print_json(&rec);
    } else {
        output::print_record(&rec);
        print_flow(&store, &rec).await?;
    }
    Ok(0)
}

/// The job's parents (`--after`), batch and the jobs still waiting for it.
async fn print_flow(
    store: &agentq_shared::store::JobStore,
    rec: &agentq_shared::record::JobRecord,
) -> Result<(), Failure> {
    let parents = agentq_shared::flow::parents(rec);
    if !parents.is_empty() {
        let any = if rec.after_any { " (any end)" } else { "" };
        outln!("after:       {}{any}", parents.join(", "));
    }
    if !rec.batch.is_empty() {
        outln!("batch:       {}", rec.batch);
    }
    let kids = store.dependants_of(&rec.id).await?;
    if !kids.is_empty() {
        outln!("dependants:  {}", kids.join(", "));
    }
    Ok(())
}
