//! `agentq pool resume POOL`: lift a pool's backoff pause by hand.

use agentq_shared::{agent::AgentSpec, config::Config};
use serde_json::json;

use crate::{output, Failure};

/// Manage agent pools.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: PoolCommand,
}

/// Pool subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum PoolCommand {
    /// Lift a pool's pause (set after fast failures) on every host now.
    Resume {
        /// The pool: the agent name before `:` (claude, codex, gemini, coderabbit, local).
        pool: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the command.
pub async fn run(cfg: &Config, args: Args) -> Result<u8, Failure> {
    match args.command {
        PoolCommand::Resume { pool, json } => {
            AgentSpec::parse(&pool).map_err(|e| Failure::refused(format!("pool: {e}")))?;
            if pool.contains(':') {
                return Err(Failure::refused(
                    "pool: give the pool without a model (e.g. claude)",
                ));
            }
            let store = crate::connect(cfg).await?;
            let was_paused = store.resume_pool(&pool).await?;
            if json {
                output::print_json(&json!({"pool": pool, "was_paused": was_paused}));
            } else if was_paused {
                outln!("pool {pool} resumed");
            } else {
                outln!("pool {pool} was not paused");
            }
            Ok(0)
        }
    }
}
