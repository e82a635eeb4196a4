//! `agentq logs ID [--follow]`: the agent's output, from any host.

use std::time::Duration;

use agentq_shared::config::Config;

use crate::Failure;

/// Print a job's agent output (the tail kept in Redis; the full log is in the
/// workspace's `.meta/agent-{agent}.log` on the worker's host).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job id.
    pub id: String,
    /// Keep printing new output until the job is final.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Print JSON: one object per chunk of output (`{"job", "data"}`).
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub async fn run(cfg: &Config, args: Args) -> Result<u8, Failure> {
    let store = crate::connect(cfg).await?;
    crate::job_or_refuse(&store, &args.id).await?;
    let mut last = "0".to_string();
    loop {
        let block = args.follow.then_some(Duration::from_millis(500));
        let (next, bytes) = store.read_log(&args.id, &last, block).await?;
        if !bytes.is_empty() {
            emit(&args, &bytes);
        }
        let advanced = next != last;
        last = next;
        if !args.follow {
            return Ok(0);
        }
        if !advanced {
            let done = store
                .get(&args.id)
                .await?
                .is_none_or(|r| r.state.is_final());
            if done {
                // One last read for output that raced the final state.
                let (_, bytes) = store.read_log(&args.id, &last, None).await?;
                if !bytes.is_empty() {
                    emit(&args, &bytes);
                }
                return Ok(0);
            }
        }
    }
}

fn emit(args: &Args, bytes: &[u8]) {
    if args.json {
        let line = serde_json::json!({"job": args.id, "data": String::from_utf8_lossy(bytes)});
        outln!("{line}");
    } else {
        crate::output::write_stdout_bytes(bytes);
    }
}
