//! Every change of a job's state that a run makes, as a typed value. Each
//! constructor names one step of a job's life and alone knows which record
//! fields that step writes; the store applies a [`Transition`] atomically,
//! fenced by the run's token (`agentq_shared::store::Move`).
//!
//! The record's message fields mean one thing each: `question` is only ever a
//! blocked job's question, `error` is why a job failed, timed out or is being
//! retried.

use std::time::Duration;

use crate::{
    stamp::Stamp,
    status::{JobState, QaSummary, WaitReason},
};

/// Where a parked job waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParkIn {
    /// Its pool's lane (it waits for a slot, pacing or a pause).
    Lane,
    /// The line of this workspace (it waits for the job running there).
    Workspace(String),
}

/// What happens to the job's run after a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The run goes on, holding the job.
    Continue,
    /// The run ends; the job waits, with no delivery, until what it waits for
    /// changes.
    Park(ParkIn),
    /// The run ends; a new delivery comes after `delay` (first in line when
    /// `front`).
    Deliver {
        /// How long until the delivery is due.
        delay: Duration,
        /// First in line rather than last.
        front: bool,
    },
    /// The run ends with the job in a final state.
    End,
}

/// How a run ended, each message in a field named for what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The agent finished and QA (if on) passed.
    Completed,
    /// The agent asked a question (`BLOCKED.md`); `agentq resume` answers it.
    Blocked {
        /// The agent's question.
        question: String,
    },
    /// The job failed: the agent's exit code, QA, a refused workspace, or an
    /// infrastructure error that used up its attempts.
    Failed {
        /// Why.
        error: String,
    },
    /// The agent ran past its timeout and was killed.
    TimedOut {
        /// Which timeout.
        error: String,
    },
    /// A person cancelled the job.
    Cancelled,
}

impl Outcome {
    /// The job's final state.
    pub fn state(&self) -> JobState {
        match self {
            Self::Completed => JobState::Completed,
            Self::Blocked { .. } => JobState::Blocked,
            Self::Failed { .. } => JobState::Failed,
            Self::TimedOut { .. } => JobState::TimedOut,
            Self::Cancelled => JobState::Cancelled,
        }
    }

    /// The question or the error; empty for a completed or cancelled job.
    pub fn message(&self) -> &str {
        match self {
            Self::Blocked { question } => question,
            Self::Failed { error } | Self::TimedOut { error } => error,
            Self::Completed | Self::Cancelled => "",
        }
    }

    /// From a state and its message, as the outcome rules give them.
    pub fn from_state(state: JobState, message: String) -> Self {
        match state {
            JobState::Completed => Self::Completed,
            JobState::Blocked => Self::Blocked { question: message },
            JobState::TimedOut => Self::TimedOut { error: message },
            JobState::Cancelled => Self::Cancelled,
            _ => Self::Failed { error: message },
        }
    }

    /// The job failed for `error`, whatever the run said before.
    pub fn fail(error: impl Into<String>) -> Self {
        Self::Failed {
            error: error.into(),
        }
    }
}

/// What a finished run reports besides its outcome.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunReport {
    /// The agent's exit code, when it exited by itself.
    pub exit_code: Option<i64>,
    /// QA's result, when QA ran.
    pub qa: Option<QaSummary>,
    /// The pull request opened, if any.
    pub pr_url: Option<String>,
    /// Forge write-back errors (the job's outcome stands).
    pub forge_error: String,
    /// What the verify stage concluded, and why (for `needs_review`).
    pub verify: Option<(crate::verify::Verify, String)>,
}

impl RunReport {
    /// The state a run with `outcome` and this report ends the job in (the
    /// record's and `status.json`'s): the outcome's, except that only a
    /// completed job whose pull request was merged is `merged`.
    pub fn final_state(&self, outcome: &Outcome) -> JobState {
        match (outcome, &self.verify) {
            (Outcome::Completed, Some((crate::verify::Verify::Merged, _))) => JobState::Merged,
            _ => outcome.state(),
        }
    }
}

/// One change of a job's record: the state, exactly the fields this step
/// writes, and what happens to the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The new state.
    pub state: JobState,
    /// Record fields written.
    pub fields: Vec<(&'static str, String)>,
    /// What happens to the run.
    pub next: Next,
    /// Count a new attempt (`attempt` and `tries` + 1).
    pub bump_attempt: bool,
    /// No event or history entry when the state and reason stay the same.
    pub quiet: bool,
    /// Keep the job's granted slot although the run ends (left to another host).
    pub keep_slot: bool,
}

/// Record fields a run writes without changing the job's state. Each
/// constructor names what the run learnt and alone knows its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Record fields written.
    pub fields: Vec<(&'static str, String)>,
}

impl Note {
    /// Prep is done: the job's workspace, its agent branch and whether the
    /// agent ran there before.
    pub fn prepared(workspace_dir: &str, branch: &str, resumed: bool) -> Self {
        Self {
            fields: vec![
                ("workspace_dir", workspace_dir.to_string()),
                ("branch", branch.to_string()),
                ("resumed", u8::from(resumed).to_string()),
            ],
        }
    }

    /// The agent's container (its id, for `agentq inspect` and the reaper).
    pub fn container(id: &str) -> Self {
        Self {
            fields: vec![("container", id.to_string())],
        }
    }

    /// What the run's agent left uncommitted (see `JobRecord::leftovers`;
    /// empty: nothing).
    pub fn leftovers(message: &str) -> Self {
        Self {
            fields: vec![("leftovers", message.to_string())],
        }
    }

    /// The agent's final message of this run, as read back (see
    /// `JobRecord::summary`), and why there is none when it could not be read.
    pub fn summary(summary: &crate::summary::Summary) -> Self {
        Self {
            fields: vec![
                ("summary", summary.text.clone()),
                ("summary_note", summary.note.clone()),
            ],
        }
    }

    /// Agent run number `run`'s time is on the forge's issue (added once).
    pub fn time_tracked(run: u32) -> Self {
        Self {
            fields: vec![("time_tracked", run.to_string())],
        }
    }
}

impl Transition {
    fn new(state: JobState, next: Next) -> Self {
        Self {
            state,
            fields: Vec::new(),
            next,
            bump_attempt: false,
            quiet: false,
            keep_slot: false,
        }
    }

    fn set(mut self, field: &'static str, value: impl Into<String>) -> Self {
        self.fields.push((field, value.into()));
        self
    }

    /// Sets a moment: every time field of the record is a [`Stamp`].
    fn at(self, field: &'static str, at: Stamp) -> Self {
        self.set(field, at.to_string())
    }

    /// The value this transition writes to `field`, if any.
    pub fn field(&self, field: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, v)| v.as_str())
    }

    /// The run starts: a new attempt on `host` by `worker`; what the job
    /// waited for is cleared.
    pub fn preparing(host: &str, worker: &str, started_at: Stamp) -> Self {
        let mut t = Self::new(JobState::Preparing, Next::Continue)
            .set("host", host)
            .set("worker", worker)
            .at("started_at", started_at)
            .set("reason", "")
            .set("waiting_on", "")
            .set("affinity_since", "")
            .set("resume_at", "")
            // The summary of an earlier attempt is that attempt's.
            .set("summary", "")
            .set("summary_note", "")
            // Started: a later grant counts against the daily limit again
            // (`wake.lua`, `crate::pacing`).
            .set("paced_day", "");
        t.bump_attempt = true;
        t
    }

    /// The agent starts: its run count and the prompt it gets (so that a
    /// resume on another host has it all), and what of it the agent's command
    /// line left out (empty: nothing).
    pub fn running(runs: u32, prompt: &str, prompt_cut: &str) -> Self {
        Self::new(JobState::Running, Next::Continue)
            .set("runs", runs.to_string())
            .set("prompt", prompt)
            .set("prompt_cut", prompt_cut)
            // What an earlier attempt left uncommitted is that attempt's.
            .set("leftovers", "")
    }

    /// QA runs.
    pub fn qa() -> Self {
        Self::new(JobState::Qa, Next::Continue)
    }

    /// The forge is told.
    pub fn reporting() -> Self {
        Self::new(JobState::Reporting, Next::Continue)
    }

    /// A dry run prepared its branch and prompt: done.
    pub fn dry_run_done(branch: &str, prompt: &str) -> Self {
        Self::new(JobState::Completed, Next::End)
            .set("branch", branch)
            .set("prompt", prompt)
            .at("finished_at", Stamp::now())
    }

    /// Cancelled before it ran.
    pub fn cancelled() -> Self {
        Self::new(JobState::Cancelled, Next::End).at("finished_at", Stamp::now())
    }

    /// The job cannot run at all (an unknown agent, a missing persona or plan):
    /// failed at once, no retry.
    pub fn refused(error: &str) -> Self {
        Self::new(JobState::Failed, Next::End)
            .set("error", error)
            .at("finished_at", Stamp::now())
    }

    /// Waits in its pool's lane or a workspace's line for `reason`
    /// (`waiting_on`: the job or host it waits for), without a delivery.
    pub fn parked(at: ParkIn, reason: WaitReason, waiting_on: &str) -> Self {
        let mut t = Self::new(JobState::Waiting, Next::Park(at))
            .set("reason", reason.as_str())
            .set("waiting_on", waiting_on);
        t.quiet = true;
        t
    }

    /// Given back to its pool's lane at its first place in line, in `state`
    /// (`Queued` for a shutdown, else `Waiting`). `refund`: the run's `tries`,
    /// given back so that the run spends no attempt. `error`: what went wrong,
    /// when something did.
    pub fn handed_back(
        state: JobState,
        reason: WaitReason,
        refund: Option<u32>,
        error: Option<&str>,
    ) -> Self {
        let mut t = Self::new(state, Next::Park(ParkIn::Lane)).set("reason", reason.as_str());
        if let Some(tries) = refund {
            t = t.set("tries", tries.saturating_sub(1).to_string());
        }
        if let Some(e) = error {
            t = t.set("error", e);
        }
        t
    }

    /// Its agent hit the provider's usage limit: back to its pool's lane at
    /// its first place in line, waiting (reason `quota`) until `resume_at`
    /// when its paused pool resumes. The run spends nothing:
    /// `attempt` and `tries` (the run's, counted at its start) are given back.
    /// `line`: the output line that said so, as people see it.
    pub fn quota_wait(resume_at: Stamp, line: &str, attempt: u32, tries: u32) -> Self {
        Self::handed_back(
            JobState::Waiting,
            WaitReason::Quota,
            Some(tries),
            Some(line),
        )
        .set("attempt", attempt.saturating_sub(1).to_string())
        .at("resume_at", resume_at)
    }

    /// Left, with its slot, to `host`, which has its workspace (since
    /// `since`); this host looks again after `recheck`.
    pub fn left_to_host(host: &str, since: Stamp, recheck: Duration) -> Self {
        let mut t = Self::new(
            JobState::Waiting,
            Next::Deliver {
                delay: recheck,
                front: false,
            },
        )
        .set("reason", WaitReason::Affinity.as_str())
        .set("waiting_on", host)
        .at("affinity_since", since);
        t.quiet = true;
        t.keep_slot = true;
        t
    }

    /// An infrastructure error, retried after `delay`.
    pub fn infra_retry(error: &str, delay: Duration) -> Self {
        Self::new(
            JobState::Waiting,
            Next::Deliver {
                delay,
                front: false,
            },
        )
        .set("reason", WaitReason::Retry.as_str())
        .set("error", error)
    }

    /// The run is over: its outcome and what it reports.
    pub fn finished(outcome: &Outcome, report: &RunReport) -> Self {
        let (question, error) = match outcome {
            Outcome::Blocked { question } => (question.as_str(), ""),
            Outcome::Failed { error } | Outcome::TimedOut { error } => ("", error.as_str()),
            Outcome::Completed | Outcome::Cancelled => ("", ""),
        };
        let qa = report.qa.as_ref();
        let verify = report.verify.as_ref();
        let mut t = Self::new(report.final_state(outcome), Next::End)
            .set(
                "verify",
                verify.map(|v| v.0.to_string()).unwrap_or_default(),
            )
            .set(
                "verify_reason",
                verify.map(|v| v.1.clone()).unwrap_or_default(),
            )
            .set("question", question)
            .set("error", error)
            .at("finished_at", Stamp::now())
            .set("forge_error", report.forge_error.clone())
            .set("pr_url", report.pr_url.clone().unwrap_or_default())
            .set(
                "qa_status",
                qa.map(|q| q.status.to_string()).unwrap_or_default(),
            )
            .set(
                "qa_command",
                qa.map(|q| q.command.clone()).unwrap_or_default(),
            )
            .set(
                "qa_output",
                qa.map(|q| q.output_tail.clone()).unwrap_or_default(),
            );
        if let Some(c) = report.exit_code {
            t = t.set("exit_code", c.to_string());
        }
        t
    }

    /// Whether the run ends with this transition.
    pub fn ends_run(&self) -> bool {
        self.next != Next::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_run_forgets_what_an_earlier_attempt_left_uncommitted() {
        let t = Transition::running(2, "prompt", "");
        assert!(
            t.fields
                .iter()
                .any(|(k, v)| *k == "leftovers" && v.is_empty()),
            "{:?}",
            t.fields
        );
    }

    #[test]
    fn a_quota_wait_spends_no_attempt_and_parks_in_the_lane() {
        let t = Transition::quota_wait(
            "2026-12-07T15:00:00Z".parse().unwrap(),
            "usage limit reached",
            1,
            1,
        );
        assert_eq!(t.state, JobState::Waiting);
        assert_eq!(t.next, Next::Park(ParkIn::Lane));
        assert!(!t.bump_attempt);
        assert_eq!(t.field("reason"), Some("quota"));
        assert_eq!(t.field("attempt"), Some("0"));
        assert_eq!(t.field("tries"), Some("0"));
        assert_eq!(t.field("resume_at"), Some("2026-12-07T15:00:00.000Z"));
        assert_eq!(t.field("error"), Some("usage limit reached"));
        // The next run clears it.
        let p = Transition::preparing("h", "w", Stamp::from_ms(0));
        assert_eq!(p.field("resume_at"), Some(""));
    }

    #[test]
    fn notes_write_their_fields_only() {
        let names = |n: Note| n.fields.iter().map(|(k, _)| *k).collect::<Vec<_>>();
        assert_eq!(
            names(Note::prepared("/w", "agent/x", true)),
            ["workspace_dir", "branch", "resumed"]
        );
        assert_eq!(Note::prepared("/w", "b", true).fields[2].1, "1");
        assert_eq!(names(Note::container("c1")), ["container"]);
        let summary = crate::summary::Summary {
            text: "Done".into(),
            note: String::new(),
        };
        assert_eq!(
            Note::summary(&summary).fields,
            [
                ("summary", "Done".to_string()),
                ("summary_note", String::new())
            ]
        );
        assert_eq!(
            Note::time_tracked(3).fields,
            [("time_tracked", "3".to_string())]
        );
    }
    use crate::status::QaStatus;

    #[test]
    fn preparing_counts_an_attempt_and_clears_what_the_job_waited_for() {
        let t = Transition::preparing("host-a", "w1", "2026-11-28T00:00:00.000Z".parse().unwrap());
        assert_eq!(t.state, JobState::Preparing);
        assert!(t.bump_attempt && !t.ends_run());
        assert_eq!(t.field("host"), Some("host-a"));
        for cleared in [
            "reason",
            "waiting_on",
            "affinity_since",
            "summary",
            "summary_note",
            "paced_day",
        ] {
            assert_eq!(t.field(cleared), Some(""), "{cleared}");
        }
    }

    #[test]
    fn running_records_the_run_count_and_prompt() {
        let t = Transition::running(2, "Fix it", "");
        assert_eq!(
            (t.state, t.field("runs"), t.field("prompt")),
            (JobState::Running, Some("2"), Some("Fix it"))
        );
    }

    #[test]
    fn a_blocked_outcome_writes_only_the_question() {
        let t = Transition::finished(
            &Outcome::Blocked {
                question: "Which DB?".into(),
            },
            &RunReport {
                exit_code: Some(0),
                ..Default::default()
            },
        );
        assert_eq!(t.state, JobState::Blocked);
        assert_eq!(t.next, Next::End);
        assert_eq!(
            (t.field("question"), t.field("error"), t.field("exit_code")),
            (Some("Which DB?"), Some(""), Some("0"))
        );
    }

    #[test]
    fn a_failure_writes_only_the_error() {
        for outcome in [
            Outcome::fail("Agent exited with code 3"),
            Outcome::TimedOut {
                error: "Agent exited with code 3".into(),
            },
        ] {
            let t = Transition::finished(&outcome, &RunReport::default());
            assert_eq!(t.state, outcome.state());
            assert_eq!(
                (t.field("question"), t.field("error")),
                (Some(""), Some("Agent exited with code 3"))
            );
            assert_eq!(t.field("exit_code"), None);
        }
    }

    #[test]
    fn a_finished_run_records_qa_and_the_pull_request() {
        let report = RunReport {
            exit_code: Some(0),
            qa: Some(QaSummary {
                status: QaStatus::Passed,
                command: "go test ./...".into(),
                output_tail: "ok".into(),
            }),
            pr_url: Some("http://forge/pr/1".into()),
            forge_error: String::new(),
            verify: None,
        };
        let t = Transition::finished(&Outcome::Completed, &report);
        assert_eq!(t.field("qa_status"), Some("passed"));
        assert_eq!(t.field("qa_command"), Some("go test ./..."));
        assert_eq!(t.field("pr_url"), Some("http://forge/pr/1"));
        assert_eq!(t.state, JobState::Completed);
        assert_eq!(t.field("verify"), Some(""));
    }

    #[test]
    fn a_merged_pull_request_makes_a_completed_job_merged() {
        use crate::verify::Verify;
        let merged = RunReport {
            verify: Some((Verify::Merged, String::new())),
            ..Default::default()
        };
        let t = Transition::finished(&Outcome::Completed, &merged);
        assert_eq!(
            (t.state, t.field("verify")),
            (JobState::Merged, Some("merged"))
        );
        assert_eq!(merged.final_state(&Outcome::Completed), JobState::Merged);
        // Never a failed one.
        let t = Transition::finished(&Outcome::fail("x"), &merged);
        assert_eq!(t.state, JobState::Failed);
        assert_eq!(merged.final_state(&Outcome::fail("x")), JobState::Failed);
        let review = RunReport {
            verify: Some((Verify::NeedsReview, "checks failed: ci/build".into())),
            ..Default::default()
        };
        let t = Transition::finished(&Outcome::Completed, &review);
        assert_eq!(
            (t.state, t.field("verify"), t.field("verify_reason")),
            (
                JobState::Completed,
                Some("needs_review"),
                Some("checks failed: ci/build")
            )
        );
    }

    #[test]
    fn a_hand_back_parks_in_the_lane_and_may_refund_the_attempt() {
        let t = Transition::handed_back(
            JobState::Waiting,
            WaitReason::HostError,
            Some(3),
            Some("no image"),
        );
        assert_eq!(t.next, Next::Park(ParkIn::Lane));
        assert_eq!(
            (t.field("reason"), t.field("tries"), t.field("error")),
            (Some("host_error"), Some("2"), Some("no image"))
        );
        let t = Transition::handed_back(JobState::Queued, WaitReason::Shutdown, None, None);
        assert_eq!((t.field("tries"), t.field("error")), (None, None));
    }

    #[test]
    fn parking_is_quiet_and_names_what_the_job_waits_for() {
        let t = Transition::parked(ParkIn::Workspace("ws".into()), WaitReason::Workspace, "01J");
        assert!(t.quiet && t.ends_run());
        assert_eq!(t.field("waiting_on"), Some("01J"));
    }

    #[test]
    fn leaving_a_job_to_its_workspace_host_keeps_the_slot() {
        let t = Transition::left_to_host("host-b", Stamp::from_ms(42), Duration::from_secs(2));
        assert!(t.keep_slot && t.quiet);
        assert_eq!(
            t.next,
            Next::Deliver {
                delay: Duration::from_secs(2),
                front: false
            }
        );
        assert_eq!(t.field("affinity_since"), Some("1970-01-01T00:00:00.042Z"));
    }

    #[test]
    fn an_infra_retry_waits_for_its_delivery_with_the_error() {
        let t = Transition::infra_retry("engine down", Duration::from_secs(5));
        assert_eq!(t.state, JobState::Waiting);
        assert_eq!(
            (t.field("reason"), t.field("error")),
            (Some("retry"), Some("engine down"))
        );
    }

    #[test]
    fn refused_and_cancelled_end_the_run() {
        let t = Transition::refused("unknown agent `x`");
        assert_eq!((t.state, t.next.clone()), (JobState::Failed, Next::End));
        assert_eq!(t.field("question"), None);
        assert_eq!(Transition::cancelled().state, JobState::Cancelled);
    }

    #[test]
    fn outcomes_map_states_and_messages_both_ways() {
        for (state, msg) in [
            (JobState::Completed, ""),
            (JobState::Blocked, "q"),
            (JobState::Failed, "e"),
            (JobState::TimedOut, "t"),
            (JobState::Cancelled, ""),
        ] {
            let o = Outcome::from_state(state, msg.to_string());
            assert_eq!((o.state(), o.message()), (state, msg));
        }
    }
}
