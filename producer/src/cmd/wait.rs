//! `--wait`: block until a job is final, print it, exit by its state.

use std::time::Duration;

use agentq_shared::{status::JobState, store::JobStore};

use crate::{output, Failure};

/// The exit code `--wait` gives for a final state: 0 completed or merged,
/// 3 failed, 4 blocked, 5 cancelled, 6 timed out.
pub fn exit_code(state: JobState) -> u8 {
    match state {
        JobState::Completed | JobState::Merged => 0,
        JobState::Blocked => 4,
        JobState::Cancelled => 5,
        JobState::TimedOut => 6,
        _ => 3,
    }
}

/// Waits for job `id`, showing state changes on stderr, then prints the record
/// (or, for a dry run, the prompt) and returns the exit code for its state.
///
/// # Errors
/// Redis errors, or the job vanishing.
pub async fn wait_and_print(store: &JobStore, id: &str, json: bool) -> Result<u8, Failure> {
    let rec = store
        // Woken by each move of the job (pub/sub); the re-read every 2 s is
        // a safety net.
        .wait_final(id, Duration::from_secs(2), |r| {
            if !json {
                errln!("agentq: {id} {}", r.state);
            }
        })
        .await?
        .ok_or_else(|| Failure::refused(format!("job {id} disappeared while waiting")))?;
    if json {
        output::print_json(&rec);
    } else if rec.input.dry_run && !rec.prompt.is_empty() {
        out!("{}", rec.prompt);
    } else {
        output::print_record(&rec);
    }
    Ok(exit_code(rec.state))
}

#[cfg(test)]
mod verify_tests {
    use super::*;

    #[test]
    fn a_merged_job_exits_zero_as_a_completed_one() {
        assert_eq!(exit_code(JobState::Merged), 0);
        assert_eq!(exit_code(JobState::Completed), 0);
        assert_eq!(exit_code(JobState::Failed), 3);
    }
}
