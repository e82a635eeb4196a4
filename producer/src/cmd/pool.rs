//! `agentq pool resume POOL`: lift a pool's backoff pause by hand;
//! `agentq pool pause POOL --for 10m`: pause it by hand.

use agentq_shared::{config::Config, store::limits::check_pool_name};
use serde_json::json;

use crate::{output, when, Failure};

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
    /// Pause a pool on every host (its jobs wait; running ones go on) until
    /// `pool resume` or the time is up.
    Pause {
        /// The pool (claude, codex, gemini, coderabbit, local).
        pool: String,
        /// For how long: seconds, or an age like 10m, 2h.
        #[arg(long = "for", default_value = "1h", value_parser = when::parse_duration)]
        duration: std::time::Duration,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the command.
pub async fn run(cfg: &Config, args: Args) -> Result<u8, Failure> {
    match args.command {
        PoolCommand::Resume { pool, json } => {
            check_pool_name(cfg.agent_table(), &pool).map_err(Failure::refused)?;
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
        PoolCommand::Pause {
            pool,
            duration,
            json,
        } => {
            check_pool_name(cfg.agent_table(), &pool).map_err(Failure::refused)?;
            let store = crate::connect(cfg).await?;
            let until = store.pause_pool(&pool, duration).await?;
            if json {
                output::print_json(&json!({"pool": pool, "paused_until": until}));
            } else {
                outln!("pool {pool} paused until {until}");
            }
            Ok(0)
        }
    }
}
