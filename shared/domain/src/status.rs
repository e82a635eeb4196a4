//! Job states, the workspace `status.json` (the seed's `WorkspaceStatus`), and the
//! rule that turns an agent's exit into a final state (the seed's `detectFinalStatus`).

use std::{fmt, str::FromStr};

use crate::untrusted::{UntrustedFileError, UntrustedText};

use serde::{Deserialize, Serialize};

/// Where a job is in its life. Final states are [`JobState::is_final`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// In the queue, not picked up yet.
    #[default]
    Queued,
    /// Put back to run later (no slot, pool paused, or an infrastructure retry).
    Waiting,
    /// Cloning and writing the prompt.
    Preparing,
    /// The agent container runs.
    Running,
    /// Build and test checks run.
    Qa,
    /// Writing back to the forge.
    Reporting,
    /// The agent finished and nothing failed.
    Completed,
    /// The agent or an infrastructure step failed for good.
    Failed,
    /// The agent wrote `BLOCKED.md`: it needs an answer.
    Blocked,
    /// Cancelled by a person.
    Cancelled,
    /// The agent ran past its timeout and was killed.
    TimedOut,
    /// Completed, and its pull request was merged by the verify stage.
    Merged,
    /// Enqueued with `--at`/`--in`: waits for its due time, in no lane (see
    /// `agentq_shared::store::scheduled`), then `queued`.
    Scheduled,
}

/// States in which a job is under a run (the rest wait or are final).
pub const ACTIVE_STATES: &[JobState] = &[
    JobState::Preparing,
    JobState::Running,
    JobState::Qa,
    JobState::Reporting,
];

/// States a parked job may be in (anything else is skipped and dropped from its
/// lane when it reaches the head: cancelled, purged).
pub const PARKED_STATES: &[JobState] = &[JobState::Queued, JobState::Waiting];

/// Every state, in lifecycle order.
pub const ALL_STATES: &[JobState] = &[
    JobState::Queued,
    JobState::Waiting,
    JobState::Preparing,
    JobState::Running,
    JobState::Qa,
    JobState::Reporting,
    JobState::Completed,
    JobState::Failed,
    JobState::Blocked,
    JobState::Cancelled,
    JobState::TimedOut,
    JobState::Merged,
    JobState::Scheduled,
];

impl JobState {
    /// The state's name as stored in Redis and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Waiting => "waiting",
            Self::Preparing => "preparing",
            Self::Running => "running",
            Self::Qa => "qa",
            Self::Reporting => "reporting",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Blocked => "blocked",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed_out",
            Self::Merged => "merged",
            Self::Scheduled => "scheduled",
        }
    }

    /// True for states a job leaves only by an explicit retry or resume.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed
                | Self::Failed
                | Self::Blocked
                | Self::Cancelled
                | Self::TimedOut
                | Self::Merged
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_STATES
            .iter()
            .copied()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = ALL_STATES.iter().map(|s| s.as_str()).collect();
                format!("unknown state `{s}` (known: {})", names.join(", "))
            })
    }
}

/// The workspace's `status.json`: the seed's fields, plus agentq's job id and attempt.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceStatus {
    /// The job's state.
    pub status: JobState,
    /// Agent name, with model.
    pub agent: String,
    /// Repository.
    pub repo: String,
    /// Organisation.
    pub org: String,
    /// Task text.
    pub task: String,
    /// The agent's branch.
    pub branch: String,
    /// Kept for the seed's readers; agents run in containers, so always 0.
    pub pid: u32,
    /// When the current run started (RFC 3339).
    pub started_at: String,
    /// How many times an agent ran in this workspace.
    pub runs: u32,
    /// The blocked question or failure reason.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub question: String,
    /// Forge issue number, 0 if none.
    #[serde(default)]
    pub issue: u64,
    /// agentq job id.
    #[serde(default)]
    pub job_id: String,
    /// Delivery attempt of the job.
    #[serde(default)]
    pub attempt: u32,
    /// Agent exit code, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// When the job reached its state (RFC 3339).
    #[serde(default)]
    pub updated_at: String,
    /// QA result, when QA ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qa: Option<QaSummary>,
    /// The pull request, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pr_url: String,
    /// Forge errors met while reporting.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub forge_error: String,
    /// The agent's final message (see `JobRecord::summary`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
    /// Why there is no summary although the agent left something for one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary_note: String,
}

/// How the QA stage went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QaStatus {
    /// Every command passed.
    Passed,
    /// A command failed or timed out.
    Failed,
    /// Nothing to build or test.
    #[default]
    Skipped,
}

impl QaStatus {
    /// The lowercase name, as in `status.json` and the record's `qa_status`.
    pub fn as_str(&self) -> &'static str {
        match self {
            QaStatus::Passed => "passed",
            QaStatus::Failed => "failed",
            QaStatus::Skipped => "skipped",
        }
    }
}

impl FromStr for QaStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [QaStatus::Passed, QaStatus::Failed, QaStatus::Skipped]
            .into_iter()
            .find(|q| q.as_str() == s)
            .ok_or_else(|| format!("unknown QA status `{s}`"))
    }
}

impl fmt::Display for QaStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// QA's result as `status.json` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QaSummary {
    /// How QA went.
    pub status: QaStatus,
    /// The command that failed, if one did.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub command: String,
    /// The end of the output.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output_tail: String,
}

/// The outcome of an agent run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalStatus {
    /// `Completed`, `Blocked` or `Failed`.
    pub state: JobState,
    /// The blocked job's question or the failed job's error; empty on success.
    pub message: String,
}

/// Most of `BLOCKED.md` that is read (the rest is cut, and the question says so).
pub const BLOCKED_CAP: usize = 64 * 1024;

/// What reading `BLOCKED.md` gave (`agentq_shared::status::read_blocked`
/// reads it, at most [`BLOCKED_CAP`] bytes, as the hostile file it may be).
pub type BlockedFile = Result<Option<UntrustedText>, UntrustedFileError>;

/// The seed's `detectFinalStatus`, on what reading `BLOCKED.md` found: a non-empty
/// `BLOCKED.md` means blocked (its text is the question); a non-zero exit means
/// failed ("Agent exited with code N"); otherwise completed. A `BLOCKED.md` that
/// is a symlink, FIFO, directory or device fails the job, saying so.
pub fn detect_final_status(blocked: &BlockedFile, exit_code: i64) -> FinalStatus {
    match blocked {
        Err(e) => {
            return FinalStatus {
                state: JobState::Failed,
                message: e.to_string(),
            }
        }
        Ok(Some(t)) if !t.text.trim().is_empty() => {
            return FinalStatus {
                state: JobState::Blocked,
                message: t.text.trim().to_string(),
            }
        }
        Ok(_) => {}
    }
    if exit_code != 0 {
        return FinalStatus {
            state: JobState::Failed,
            message: format!("Agent exited with code {exit_code}"),
        };
    }
    FinalStatus {
        state: JobState::Completed,
        message: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_states_are_the_five_outcomes_and_merged_and_names_round_trip() {
        let finals: Vec<&str> = ALL_STATES
            .iter()
            .filter(|s| s.is_final())
            .map(|s| s.as_str())
            .collect();
        assert_eq!(
            finals,
            [
                "completed",
                "failed",
                "blocked",
                "cancelled",
                "timed_out",
                "merged"
            ]
        );
        for s in ALL_STATES {
            assert_eq!(s.to_string(), s.as_str());
            assert_eq!(s.as_str().parse::<JobState>(), Ok(*s));
        }
        let err = "done".parse::<JobState>().unwrap_err();
        assert!(err.contains("`done`") && err.contains("timed_out"), "{err}");
    }

    /// `detectFinalStatus` on each thing reading `BLOCKED.md` can give (the
    /// files themselves: agentq-shared's `status::tests`).
    #[test]
    fn final_status_from_what_blocked_md_gave() {
        let text = |t: &str| -> BlockedFile {
            Ok(Some(UntrustedText {
                text: t.to_string(),
                truncated: false,
            }))
        };
        let decide = |file: BlockedFile, code| {
            let f = detect_final_status(&file, code);
            (f.state, f.message)
        };
        assert_eq!(decide(Ok(None), 0), (JobState::Completed, String::new()));
        assert_eq!(
            decide(Ok(None), 3),
            (JobState::Failed, "Agent exited with code 3".into())
        );
        assert_eq!(decide(text("  \n"), 0).0, JobState::Completed);
        assert_eq!(
            decide(text("  Which DB?\n"), 1),
            (JobState::Blocked, "Which DB?".into())
        );
        assert_eq!(
            decide(Err(UntrustedFileError::Symlink("BLOCKED.md".into())), 0),
            (
                JobState::Failed,
                "BLOCKED.md is a symlink; refusing to read it".into()
            )
        );
    }

    /// The README's "at most 64 KiB" of `BLOCKED.md`, to the byte.
    #[test]
    fn blocked_md_is_read_up_to_64_kib() {
        assert_eq!(BLOCKED_CAP, 65_536);
    }

    #[test]
    fn wait_reasons_and_qa_statuses_parse_from_their_names() {
        for r in WAIT_REASONS {
            assert_eq!(r.as_str().parse::<WaitReason>().unwrap(), *r);
        }
        for q in [QaStatus::Passed, QaStatus::Failed, QaStatus::Skipped] {
            assert_eq!(q.as_str().parse::<QaStatus>().unwrap(), q);
        }
        assert!("".parse::<WaitReason>().is_err());
        assert!("nope".parse::<QaStatus>().is_err());
    }

    #[test]
    fn states_parse() {
        for s in ALL_STATES {
            assert_eq!(s.as_str().parse::<JobState>().unwrap(), *s);
        }
        assert!("nope".parse::<JobState>().is_err());
    }
}

/// Every [`WaitReason`].
pub const WAIT_REASONS: &[WaitReason] = &[
    WaitReason::Slot,
    WaitReason::Backoff,
    WaitReason::Retry,
    WaitReason::Shutdown,
    WaitReason::Orphaned,
    WaitReason::Lost,
    WaitReason::Fenced,
    WaitReason::HostError,
    WaitReason::HostDegraded,
    WaitReason::Workspace,
    WaitReason::Affinity,
    WaitReason::Unserved,
    WaitReason::Stopped,
    WaitReason::Quota,
    WaitReason::NoRoom,
    WaitReason::Dependency,
];

/// Why a job is `waiting` (the record's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitReason {
    /// No free slot in its pool (or model), or pacing between starts.
    Slot,
    /// Its pool is paused after fast failures.
    Backoff,
    /// An infrastructure error; tried again after a delay.
    Retry,
    /// Its worker shut down before it finished; handed back.
    Shutdown,
    /// Its worker stopped renewing the run lease mid-run (died or was cut off);
    /// put back first in line.
    Orphaned,
    /// Its delivery was lost (a Redis fault); put back first in line by the sweep.
    Lost,
    /// Its run could not renew the lease and stopped the agent; handed back.
    Fenced,
    /// The host could not start a container (e.g. a missing image); handed
    /// back without spending an attempt.
    HostError,
    /// The worker that got it is degraded (circuit breaker); handed back.
    HostDegraded,
    /// Another job runs in its workspace (the record's `waiting_on` names it).
    Workspace,
    /// Its workspace is on a live host (the record's `waiting_on` names it);
    /// other hosts leave it to that host for `affinity_secs`.
    Affinity,
    /// The worker that got it cannot run its pool (the pool's image is missing
    /// there); handed back, spending no attempt, to a worker that can.
    Unserved,
    /// An operator stopped its pool's running agents (`agentq stop --now`);
    /// handed back to `queued`, first in line, spending no attempt.
    Stopped,
    /// Its agent's provider said its usage limit is reached: the pool is
    /// paused on every host until the record's `resume_at`, and the job,
    /// having spent no attempt, runs first in its lane then.
    Quota,
    /// The worker that fetched it had no free place by then (the affinity
    /// claimer took the last one): handed back to `queued`, first in line,
    /// spending no attempt, for a worker with room.
    NoRoom,
    /// Enqueued with `--after`: waits, in no lane and with no delivery, until
    /// its parents end (the record's `after` names them); the script that
    /// ends the last parent puts it in its lane (`lua/flow_end.lua`).
    Dependency,
}

impl WaitReason {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Slot => "slot",
            Self::Backoff => "backoff",
            Self::Retry => "retry",
            Self::Shutdown => "shutdown",
            Self::Orphaned => "orphaned",
            Self::Lost => "lost",
            Self::Fenced => "fenced",
            Self::HostError => "host_error",
            Self::HostDegraded => "host_degraded",
            Self::Workspace => "workspace",
            Self::Affinity => "affinity",
            Self::Unserved => "unserved",
            Self::Stopped => "stopped",
            Self::Quota => "quota",
            Self::NoRoom => "no_room",
            Self::Dependency => "dependency",
        }
    }
}

impl FromStr for WaitReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WAIT_REASONS
            .iter()
            .copied()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown wait reason `{s}`"))
    }
}

impl std::fmt::Display for WaitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
