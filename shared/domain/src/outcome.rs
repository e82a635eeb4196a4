//! What an agent's run means for its job, as pure rules: no Docker, no Redis,
//! no file system, so each rule has its own unit test. The run stage measures
//! (how the agent ended, the working tree's size) and this module decides.

use crate::{
    status::{detect_final_status, BlockedFile, FinalStatus, JobState},
    transition::Outcome,
    tree_bounds::TreeOver,
};

/// Why an agent's container run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The agent exited with this code.
    Exited(i64),
    /// The agent ran past its timeout and was killed.
    TimedOut,
    /// The job was cancelled and the container stopped.
    Cancelled,
    /// The worker is shutting down; the container was stopped and the job goes back.
    Interrupted,
    /// The run lost its job (lease lost or not renewable): the container was
    /// killed, and this run records nothing more.
    Fenced,
    /// The working tree grew past a limit (bytes, entries, or it could not be
    /// measured) and the agent was stopped.
    WorkspaceOver(TreeOver),
}

/// The verdict on one agent run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// The run is over: its outcome (`Completed` goes on to QA), the agent's
    /// exit code, and whether the agent's commits are taken (never from a
    /// cancelled run, an oversized tree or a refused `BLOCKED.md`).
    Ended {
        /// What the run means for the job.
        outcome: Outcome,
        /// The agent's exit code, if it exited by itself.
        exit_code: Option<i64>,
        /// Whether the agent's commits are imported and saved.
        take_commits: bool,
    },
    /// The worker is shutting down: the job goes back, spending no attempt.
    Interrupted,
    /// The run lost its lease: the job goes back if it is still this run's.
    SelfFenced,
}

/// Decides what a run means. `over`: how the working tree is over its bounds
/// after an agent that exited or timed out (`None` when within them or not
/// measured); `blocked`: reads `BLOCKED.md`, called only when the agent exited;
/// `timeout_secs`: the pool's timeout, for the message.
pub fn decide_outcome(
    ended: &Ended,
    over: Option<&TreeOver>,
    blocked: impl FnOnce() -> BlockedFile,
    timeout_secs: u64,
) -> RunOutcome {
    let end = |state, message: String, exit_code, take_commits| RunOutcome::Ended {
        outcome: Outcome::from_state(state, message),
        exit_code,
        take_commits,
    };
    match (ended, over) {
        (Ended::Interrupted, _) => RunOutcome::Interrupted,
        (Ended::Fenced, _) => RunOutcome::SelfFenced,
        (Ended::Exited(_) | Ended::TimedOut, Some(over)) | (Ended::WorkspaceOver(over), _) => {
            end(JobState::Failed, over.to_string(), None, false)
        }
        (Ended::Exited(code), None) => {
            let file = blocked();
            let FinalStatus { state, message } = detect_final_status(&file, *code);
            end(state, message, Some(*code), file.is_ok())
        }
        (Ended::TimedOut, None) => end(
            JobState::TimedOut,
            format!("Agent ran past its timeout of {timeout_secs}s and was killed"),
            None,
            true,
        ),
        (Ended::Cancelled, _) => end(JobState::Cancelled, "Cancelled".to_string(), None, false),
    }
}

/// What a step after the agent's run found that changes the job's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The agent's commits were refused as data (not descending from the
    /// run's start, a bad object…): why.
    CommitsRefused(String),
    /// The agent branch on the shared remote moved under the run: why.
    BranchMoved(String),
    /// A QA command failed: the error.
    QaFailed(String),
}

/// The outcome once `finding` is known. Refused commits and a moved branch
/// fail the job whatever the agent said (its work cannot be kept); a QA
/// failure fails a completed job, and QA runs after nothing else.
pub fn settle(outcome: Outcome, finding: Finding) -> Outcome {
    match finding {
        Finding::CommitsRefused(error) | Finding::BranchMoved(error) => Outcome::fail(error),
        Finding::QaFailed(error) if outcome == Outcome::Completed => Outcome::fail(error),
        Finding::QaFailed(_) => outcome,
    }
}

/// Whether the host's disk failed a run: the workspace root's free bytes
/// measured after it (`None`: not measured) under `floor` (0: no floor). A run
/// during which the file system filled is the host's failure, never the
/// agent's: it is retried, and never counts toward the pool's backoff (that is
/// for the agent's provider). `Some(why)` then.
pub fn disk_full(free: Option<u64>, floor: u64) -> Option<String> {
    let free = free?;
    (floor > 0 && free < floor).then(|| {
        format!(
            "the workspace file system filled during the run: {} MiB free, under min_free_gb ({} MiB)",
            free >> 20,
            floor >> 20
        )
    })
}

/// What the worker saw of a run's end, for [`host_failure`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnd {
    /// The agent exited non-zero or ran past its timeout.
    pub failed: bool,
    /// The agent's tree went over its bounds (bytes, files, unreadable).
    pub tree_over: bool,
    /// The workspace root's free bytes after the run (`None`: not measured).
    pub free: Option<u64>,
    /// `min_free_gb` in bytes (0: no floor).
    pub floor: u64,
    /// Why the host's circuit breaker opened while the agent ran, if it did.
    pub degraded_meanwhile: Option<String>,
}

/// Whether a run's end is the host's failure rather than the agent's: only a
/// failed run, and only for what the agent cannot have caused. A full disk
/// with the agent's own tree within its bounds, or a host that degraded
/// meanwhile: `Some(why)`, retried, never counted toward the pool's backoff.
/// A run that succeeded stays a success whatever the disk says; a tree over
/// its bounds is how the agent filled the disk: its outcome.
pub fn host_failure(end: &RunEnd) -> Option<String> {
    if !end.failed || end.tree_over {
        return None;
    }
    disk_full(end.free, end.floor).or_else(|| {
        end.degraded_meanwhile
            .as_ref()
            .map(|why| format!("the host was degraded during the run ({why})"))
    })
}

#[cfg(test)]
mod tests {
    const MIB: u64 = 1 << 20;

    fn end(failed: bool, tree_over: bool, free: u64, degraded_meanwhile: bool) -> RunEnd {
        RunEnd {
            failed,
            tree_over,
            free: Some(free),
            floor: 50 * MIB,
            degraded_meanwhile: degraded_meanwhile.then(|| "docker: no answer".to_string()),
        }
    }

    #[test]
    fn a_failed_run_on_a_full_disk_is_the_hosts() {
        let why = host_failure(&end(true, false, 3 * MIB, false)).unwrap();
        assert!(why.contains("filled during the run"), "{why}");
    }

    #[test]
    fn a_failed_run_on_a_host_that_degraded_meanwhile_is_the_hosts() {
        let why = host_failure(&end(true, false, 100 * MIB, true)).unwrap();
        assert!(why.contains("degraded"), "{why}");
    }

    #[test]
    fn a_successful_run_stays_a_success_on_a_full_disk() {
        assert_eq!(host_failure(&end(false, false, 3 * MIB, true)), None);
    }

    #[test]
    fn an_agent_whose_tree_is_over_its_bounds_filled_the_disk_itself() {
        assert_eq!(host_failure(&end(true, true, 3 * MIB, true)), None);
    }

    #[test]
    fn a_failed_run_with_room_on_a_healthy_host_is_the_agents() {
        assert_eq!(host_failure(&end(true, false, 100 * MIB, false)), None);
    }

    #[test]
    fn refused_commits_fail_even_a_blocked_job() {
        let blocked = Outcome::Blocked {
            question: "Which DB?".into(),
        };
        let why = Finding::CommitsRefused("not a descendant".into());
        assert_eq!(settle(blocked, why), Outcome::fail("not a descendant"));
    }

    #[test]
    fn a_moved_branch_fails_a_completed_job() {
        let why = Finding::BranchMoved("agent/x moved".into());
        assert_eq!(
            settle(Outcome::Completed, why),
            Outcome::fail("agent/x moved")
        );
    }

    #[test]
    fn a_qa_failure_fails_a_completed_job_only() {
        let qa = || Finding::QaFailed("QA check failed: `go test` exit 1".into());
        assert_eq!(
            settle(Outcome::Completed, qa()),
            Outcome::fail("QA check failed: `go test` exit 1")
        );
        let timed_out = Outcome::TimedOut {
            error: "timeout".into(),
        };
        assert_eq!(settle(timed_out.clone(), qa()), timed_out);
    }

    use crate::untrusted::{UntrustedFileError, UntrustedText};

    use super::*;

    fn none() -> BlockedFile {
        Ok(None)
    }

    fn text(t: &str) -> BlockedFile {
        Ok(Some(UntrustedText {
            text: t.to_string(),
            truncated: false,
        }))
    }

    fn never() -> BlockedFile {
        panic!("BLOCKED.md must not be read here")
    }

    fn ended(state: JobState, message: &str, code: Option<i64>, take: bool) -> RunOutcome {
        RunOutcome::Ended {
            outcome: Outcome::from_state(state, message.to_string()),
            exit_code: code,
            take_commits: take,
        }
    }

    #[test]
    fn exit_0_without_blocked_md_completes_with_the_commits() {
        assert_eq!(
            decide_outcome(&Ended::Exited(0), None, none, 60),
            ended(JobState::Completed, "", Some(0), true)
        );
    }

    #[test]
    fn a_non_zero_exit_fails_and_keeps_the_commits() {
        assert_eq!(
            decide_outcome(&Ended::Exited(3), None, none, 60),
            ended(JobState::Failed, "Agent exited with code 3", Some(3), true)
        );
    }

    #[test]
    fn blocked_md_blocks_with_its_text_as_the_question() {
        assert_eq!(
            decide_outcome(&Ended::Exited(0), None, || text("  Which DB?\n"), 60),
            ended(JobState::Blocked, "Which DB?", Some(0), true)
        );
    }

    #[test]
    fn an_empty_blocked_md_does_not_block() {
        assert_eq!(
            decide_outcome(&Ended::Exited(0), None, || text(" \n"), 60),
            ended(JobState::Completed, "", Some(0), true)
        );
    }

    #[test]
    fn a_refused_blocked_md_fails_and_takes_nothing() {
        let refused = || Err(UntrustedFileError::Symlink("BLOCKED.md".into()));
        let RunOutcome::Ended {
            outcome,
            take_commits,
            ..
        } = decide_outcome(&Ended::Exited(0), None, refused, 60)
        else {
            panic!("not ended");
        };
        assert_eq!((outcome.state(), take_commits), (JobState::Failed, false));
        assert!(outcome.message().contains("symlink"), "{outcome:?}");
    }

    #[test]
    fn a_timeout_times_out_naming_the_limit_and_keeps_the_commits() {
        assert_eq!(
            decide_outcome(&Ended::TimedOut, None, never, 1800),
            ended(
                JobState::TimedOut,
                "Agent ran past its timeout of 1800s and was killed",
                None,
                true
            )
        );
    }

    fn too_big() -> TreeOver {
        TreeOver::Bytes {
            at_least: 200,
            limit: 100,
        }
    }

    #[test]
    fn a_tree_over_the_limit_fails_before_blocked_md_is_read() {
        for how in [Ended::Exited(0), Ended::TimedOut] {
            assert_eq!(
                decide_outcome(&how, Some(&too_big()), never, 60),
                ended(JobState::Failed, &too_big().to_string(), None, false)
            );
        }
        assert!(too_big().to_string().contains("over the limit"));
    }

    #[test]
    fn an_agent_stopped_for_its_tree_fails_without_commits() {
        let many = TreeOver::Entries {
            at_least: 301,
            limit: 300,
        };
        assert_eq!(
            decide_outcome(&Ended::WorkspaceOver(many.clone()), None, never, 60),
            ended(JobState::Failed, &many.to_string(), None, false)
        );
    }

    #[test]
    fn a_cancelled_run_is_cancelled_without_commits() {
        assert_eq!(
            decide_outcome(&Ended::Cancelled, None, never, 60),
            ended(JobState::Cancelled, "Cancelled", None, false)
        );
    }

    #[test]
    fn shutdown_and_a_lost_lease_hand_the_job_back() {
        assert_eq!(
            decide_outcome(&Ended::Interrupted, None, never, 60),
            RunOutcome::Interrupted
        );
        assert_eq!(
            decide_outcome(&Ended::Fenced, None, never, 60),
            RunOutcome::SelfFenced
        );
    }

    #[test]
    fn a_disk_under_its_floor_after_a_run_is_the_hosts_failure() {
        let mib = 1 << 20;
        assert_eq!(disk_full(Some(100 * mib), 50 * mib), None);
        assert_eq!(disk_full(None, 50 * mib), None);
        assert_eq!(disk_full(Some(0), 0), None, "no floor");
        assert_eq!(
            disk_full(Some(50 * mib), 50 * mib),
            None,
            "at the floor is not under it"
        );
        let why = disk_full(Some(3 * mib), 50 * mib).unwrap();
        assert!(
            why.contains("3 MiB free") && why.contains("50 MiB"),
            "{why}"
        );
    }
}
