//! `agentq resume ID --answer TEXT`: answer a blocked job and run it again.

use agentq_shared::{config::Config, store::ops::ResumeError};

use crate::{cmd::wait, output, Failure};

/// Answer a blocked (or finished) job and run it again in the same workspace.
///
/// The answer is written to `ANSWER.md` in the job's repository and the agent gets
/// the resume prompt ("Resume from where you left off…"). The job keeps its id;
/// its `runs` count goes up by one when the agent runs.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job id.
    pub id: String,
    /// The answer to the job's question.
    #[arg(long, allow_hyphen_values = true)]
    pub answer: String,
    /// Run a different agent this time (e.g. claude:opus).
    #[arg(long)]
    pub agent: Option<String>,
    /// Wait for the job to finish and print its record (exit codes as for `enqueue --wait`).
    #[arg(long)]
    pub wait: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub async fn run(cfg: &Config, args: Args) -> Result<u8, Failure> {
    // Checked before Redis is asked anything (the store checks it again).
    agentq_shared::input::check_answer(&args.answer)
        .map_err(|e| Failure::refused(e.to_string()))?;
    let store = crate::connect_for_jobs(cfg).await?;
    let rec = store
        .resume_job(
            &args.id,
            &args.answer,
            args.agent.as_deref(),
            cfg.agent_table(),
        )
        .await
        .map_err(|e| match e {
            ResumeError::Refused(why) => Failure::refused(why),
            ResumeError::Invalid(e) => Failure::refused(e.to_string()),
            ResumeError::Store(e) => Failure::from(e),
        })?;
    if args.wait {
        return wait::wait_and_print(&store, &rec.id, args.json).await;
    }
    if args.json {
        output::print_json(&serde_json::json!({"id": rec.id, "status": "queued"}));
    } else {
        outln!("{}", rec.id);
    }
    Ok(0)
}
