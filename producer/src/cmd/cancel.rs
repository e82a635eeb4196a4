//! `agentq cancel ID...`.

use agentq_shared::config::Config;
use serde_json::json;

use crate::{output, Failure};

/// Cancel jobs: a queued or waiting job never runs; a running job's agent is
/// stopped (SIGTERM, a grace period, then SIGKILL) by whichever host runs it.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Job ids.
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// Print JSON, one object per job.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub async fn run(cfg: &Config, args: Args) -> Result<u8, Failure> {
    let store = crate::connect(cfg).await?;
    let mut code = 0;
    for id in &args.ids {
        match store.request_cancel(id).await? {
            None => {
                code = 1;
                if args.json {
                    output::print_json(&json!({"id": id, "error": "no such job"}));
                } else {
                    errln!("agentq: no job with id {id}");
                }
            }
            Some(state) => {
                let note = match state.as_str() {
                    "cancelled" => "cancelled",
                    s if state.is_final() => {
                        code = 1;
                        if args.json {
                            s
                        } else {
                            "already finished"
                        }
                    }
                    _ => "cancel requested; the worker stops it within seconds",
                };
                if args.json {
                    output::print_json(&json!({"id": id, "state": state, "note": note}));
                } else {
                    outln!("{id} {state}: {note}");
                }
            }
        }
    }
    Ok(code)
}
