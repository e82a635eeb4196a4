//! `agentq verify ID`: run the verify stage of a completed job again (its
//! pull request's checks, then the merge), after a person fixed what made it
//! `needs_review`. A worker does it (it has the forge token and, on the job's
//! host, the worker-owned repository for the one rebase); `--wait` waits for
//! the result.

use std::time::Duration;

use agentq_shared::{config::Config, status::JobState};

use crate::{output, Failure};

/// Check and merge a completed job's pull request again.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job.
    pub id: String,
    /// Wait until a worker did it (merged: exit 0; still needs review, or no
    /// worker within twice `verify_timeout_secs` and two minutes: 1).
    #[arg(long)]
    pub wait: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub async fn run(cfg: &Config, args: Args) -> Result<u8, Failure> {
    let store = crate::connect_for_jobs(cfg).await?;
    let Some(rec) = store.get(&args.id).await? else {
        return Err(Failure::refused(format!("no such job {}", args.id)));
    };
    match rec.state {
        JobState::Merged => {
            outln!("{} is merged already", rec.id);
            return Ok(0);
        }
        JobState::Completed if !rec.pr_url.is_empty() => {}
        JobState::Completed => {
            return Err(Failure::refused(format!(
                "{} has no pull request to verify",
                rec.id
            )))
        }
        st => {
            return Err(Failure::refused(format!(
                "{} is {st}: only a completed job's pull request is verified",
                rec.id
            )))
        }
    }
    store.request_verify(&rec.id).await?;
    if !args.wait {
        outln!("verify of {} requested", rec.id);
        return Ok(0);
    }
    // A worker waits for the checks at most `verify_timeout_secs` (twice
    // with the rebase); beyond that, and a margin, none took the request.
    let within = Duration::from_secs(cfg.verify.verify_timeout_secs.saturating_mul(2) + 120);
    let until = std::time::Instant::now() + within;
    loop {
        if std::time::Instant::now() > until {
            return Err(Failure::refused(format!(
                "no worker verified {} within {}s (is a worker with the forge running?)",
                rec.id,
                within.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Some(now) = store.get(&rec.id).await? else {
            return Err(Failure::refused(format!("job {} disappeared", rec.id)));
        };
        if now.seq != rec.seq || now.state != rec.state || now.updated_at != rec.updated_at {
            if args.json {
                output::print_json(&now);
            } else {
                output::print_record(&now);
            }
            return Ok(if now.state == JobState::Merged { 0 } else { 1 });
        }
    }
}
