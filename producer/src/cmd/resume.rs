//! `agentq resume ID --answer TEXT`: answer a blocked job and run it again.

use agentq_shared::{agent::AgentSpec, config::Config};

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
    let store = crate::connect(cfg).await?;
    let rec = crate::job_or_refuse(&store, &args.id).await?;
    if !rec.state.is_final() {
        return Err(Failure::refused(format!(
            "job {} is {}; only a finished job (blocked, failed, completed, …) can be resumed",
            rec.id, rec.state
        )));
    }
    if args.answer.trim().is_empty() {
        return Err(Failure::refused("answer: must not be empty"));
    }
    let mut input = rec.input.clone();
    if let Some(agent) = args.agent {
        AgentSpec::parse(&agent).map_err(|e| Failure::refused(format!("agent: {e}")))?;
        input.agent = agent;
    }
    let input_json = serde_json::to_string(&input).map_err(|e| Failure::setup(e.to_string()))?;
    let (pool, model) = agentq_shared::record::placement(&input);
    // An answered job keeps its first place in line: a person is waiting for it.
    let rerun = store
        .rerun(
            &rec.id,
            rec.seq,
            &[
                ("answer", args.answer.clone()),
                ("input", input_json),
                ("pool", pool),
                ("model", model),
            ],
            false,
        )
        .await?;
    if !rerun {
        return Err(Failure::refused(format!(
            "job {} changed while resuming it (retried or resumed by someone else?); look at `agentq inspect {}`",
            rec.id, rec.id
        )));
    }
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
