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
    }
    Ok(0)
}
