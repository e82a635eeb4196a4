//! Write-back to the forge: time tracked on the issue, branch push, commit status, pull
//! request and the outcome comment (upstream `auto_pr.go`). Forge trouble is
//! recorded on the job and never changes the job's own outcome.

use std::sync::Arc;

use agentq_shared::{
    config::TimeTracking,
    forge::{
        job_marker, AddTime, CommitState, CreatePull, CreateStatus, ForgeClient, StopwatchOutcome,
        TimeOutcome, TrackingUnavailable,
    },
    record::JobRecord,
    text::{cut, cut_lines, strip_controls},
    transition::Outcome,
};

use crate::{context::WorkerCtx, git::git, prep::Prepared, qa::QaResult, save::Saved};

/// Commit status context agentq reports under.
pub const STATUS_CONTEXT: &str = "agentq/qa";

/// Errors met while talking to the forge, for the job record, and the budget
/// of the stage's forge calls: together, retries included, they may take
/// `forge.timeout_secs` (time spent elsewhere, e.g. in QA, does not count).
/// Once it is spent the remaining calls are skipped, and what was left of the
/// write-back ([`ForgeErrors::redo`]) is done later by
/// [`crate::writeback`], holding no slot.
#[derive(Debug)]
pub struct ForgeErrors {
    errors: Vec<String>,
    budget: std::time::Duration,
    used: std::time::Duration,
    spent: bool,
    /// A call failed for now (budget spent, 5xx, unreachable): [`Self::redo`]
    /// is worth doing again later.
    again: bool,
    /// What to do again later if [`Self::again`].
    pub redo: WriteBack,
}

impl Default for ForgeErrors {
    fn default() -> Self {
        Self::with_budget(std::time::Duration::from_secs(30))
    }
}

impl ForgeErrors {
    /// No errors yet; `budget` for the forge calls together.
    pub fn with_budget(budget: std::time::Duration) -> Self {
        Self {
            errors: Vec::new(),
            budget,
            used: std::time::Duration::ZERO,
            spent: false,
            again: false,
            redo: WriteBack::default(),
        }
    }

    /// A failure of `what`, with its error.
    pub fn add(&mut self, what: &str, e: impl std::fmt::Display) {
        tracing::warn!(error = %e, "forge: {what} failed");
        self.errors.push(format!("{what}: {e}"));
    }

    /// A failure of `what` that may go away (5xx, unreachable): recorded, and
    /// the write-back is done again later.
    fn add_forge(&mut self, what: &str, e: agentq_shared::forge::ForgeError) {
        if e.is_transient() {
            self.again = true;
        }
        self.add(what, e);
    }

    /// Something worth knowing that is not a failure (e.g. time tracking is off on
    /// the repository), recorded with the errors as `note: …`.
    fn note(&mut self, text: String) {
        tracing::info!("forge: {text}");
        self.errors.push(format!("note: {text}"));
    }

    /// All errors, one per line.
    pub fn text(&self) -> String {
        self.errors.join("\n")
    }

    /// Whether something of the write-back is to be done again later.
    pub fn redo_later(&self) -> bool {
        self.again && !self.redo.is_empty()
    }

    /// `forge` with a deadline at the end of what is left of the budget: its
    /// requests end by then, and it begins no retry that could not (it returns
    /// the last failure instead).
    pub fn client(&self, forge: &ForgeClient) -> ForgeClient {
        let left = self.budget.saturating_sub(self.used);
        forge.with_deadline(tokio::time::Instant::now() + left)
    }

    /// Runs one forge call (`what`, made with [`Self::client`]) within what is
    /// left of the budget; `None` when the budget was spent before or while it
    /// ran without an answer. Once spent, it says so once and the rest of the
    /// stage's calls are skipped.
    pub async fn within<T>(
        &mut self,
        what: &str,
        call: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        if self.spent {
            return None;
        }
        let left = self.budget.saturating_sub(self.used);
        let answer = if left < MIN_CALL {
            None
        } else {
            let began = std::time::Instant::now();
            // The client's own deadline ends the call first; this is the backstop.
            let answer = tokio::time::timeout(left + BACKSTOP, call).await.ok();
            self.used += began.elapsed();
            answer
        };
        if answer.is_none() || self.budget.saturating_sub(self.used) < MIN_CALL {
            self.spent = true;
            self.again = true;
            self.add(
                what,
                format!(
                    "the forge did not answer in time: the budget of {}s for the forge calls (forge.timeout_secs) is spent; the rest of the write-back is skipped and done again later",
                    self.budget.as_secs()
                ),
            );
        }
        answer
    }
}

/// Less budget than this left is none: no call can do anything in it.
const MIN_CALL: std::time::Duration = std::time::Duration::from_millis(100);

/// How long past the budget a forge call may run before it is dropped (its
/// client's deadline ends it before that).
const BACKSTOP: std::time::Duration = std::time::Duration::from_millis(500);

/// What of a job's write-back is to be done (again): the pull request, the
/// commit status and the outcome comment, each dropped once done. Stored as
/// JSON in Redis while it waits for [`crate::writeback`].
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct WriteBack {
    /// The job.
    pub job: String,
    /// Repository owner.
    pub org: String,
    /// Repository.
    pub repo: String,
    /// The job's issue (0: none).
    pub issue: u64,
    /// The run (the record's `runs`) whose write-back this is: only while the
    /// record is final with this run is it done (a later run has its own).
    #[serde(default)]
    pub runs: u32,
    /// The pull request to find or open (an empty base: the repository's
    /// default branch, looked up first).
    pub pull: Option<CreatePull>,
    /// Its URL once known.
    pub pr_url: Option<String>,
    /// The last commit status to set: (sha, status).
    pub status: Option<(String, CreateStatus)>,
    /// The outcome comment.
    pub comment: Option<CommentText>,
}

impl WriteBack {
    /// Nothing left to do.
    pub fn is_empty(&self) -> bool {
        self.pull.is_none() && self.status.is_none() && self.comment.is_none()
    }

    fn of(rec: &JobRecord) -> Self {
        Self {
            job: rec.id.clone(),
            org: rec.input.org.clone(),
            repo: rec.input.repo.clone(),
            issue: rec.input.issue,
            ..Self::default()
        }
    }

    fn for_job(&mut self, rec: &JobRecord) -> &mut Self {
        if self.job.is_empty() {
            *self = Self::of(rec);
        }
        self
    }
}

/// The outcome comment's text around the pull request line (known only once
/// the pull request is open).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CommentText {
    /// Before the pull request line.
    pub head: String,
    /// After it.
    pub tail: String,
}

impl CommentText {
    /// The body, with the pull request's URL if any.
    pub fn body(&self, pr_url: Option<&str>) -> String {
        let pr = pr_url
            .map(|u| format!("- Pull request: {u}\n"))
            .unwrap_or_default();
        format!("{}{pr}{}", self.head, self.tail)
    }
}

fn forge_for<'a>(ctx: &'a WorkerCtx, rec: &JobRecord) -> Option<&'a ForgeClient> {
    (rec.input.issue > 0).then_some(()).and(ctx.forge.as_ref())
}

/// When the agent's run started, for the time recorded on the issue.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    started_at: chrono::DateTime<chrono::Utc>,
    started: std::time::Instant,
}

impl RunClock {
    /// Whole seconds since the start, rounded up (a run always counts at least 1 s:
    /// the forge refuses a zero time).
    fn seconds(&self) -> u64 {
        self.started.elapsed().as_secs_f64().ceil().max(1.0) as u64
    }
}

/// Starts timing the agent's run. With `[forge] time_tracking = "stopwatch"` it
/// also starts the token owner's stopwatch on the issue ("already running" is fine).
pub async fn start_timer(ctx: &WorkerCtx, rec: &JobRecord, errors: &mut ForgeErrors) -> RunClock {
    if ctx.cfg.forge.time_tracking == TimeTracking::Stopwatch {
        if let Some(f) = forge_for(ctx, rec) {
            let i = &rec.input;
            let fc = errors.client(f);
            let started = errors
                .within(
                    "start stopwatch",
                    fc.start_stopwatch(&i.org, &i.repo, i.issue),
                )
                .await;
            match started {
                Some(Ok(StopwatchOutcome::Unavailable { reason, first })) => {
                    tracking_unavailable(rec, reason, first, errors)
                }
                Some(Ok(_)) | None => {}
                Some(Err(e)) => errors.add("start stopwatch", e),
            }
        }
    }
    RunClock {
        started_at: chrono::Utc::now(),
        started: std::time::Instant::now(),
    }
}

/// Records the time of agent run number `run` (the record's `runs`) on the issue,
/// per `[forge] time_tracking`:
///
/// - `times` (default): adds the run's duration as a tracked time of the token's
///   user, created at the run's start. Once per run: the job record's
///   `time_tracked` says which run was added last, and the client checks the forge
///   before retrying a failed request. Any number of jobs can do this at once.
/// - `stopwatch`: stops the issue's stopwatch. A stopwatch that is no longer
///   running (another job with the same token started one) is reported.
/// - `off`: nothing.
///
/// A repository without time tracking is noted once per worker, not on every job.
pub async fn track_time(
    ctx: &WorkerCtx,
    rec: &JobRecord,
    run: u32,
    clock: &RunClock,
    errors: &mut ForgeErrors,
) {
    let Some(f) = forge_for(ctx, rec) else {
        return;
    };
    let i = &rec.input;
    match ctx.cfg.forge.time_tracking {
        TimeTracking::Off => {}
        TimeTracking::Stopwatch => {
            let fc = errors.client(f);
            let stopped = errors
                .within(
                    "stop stopwatch",
                    fc.stop_stopwatch(&i.org, &i.repo, i.issue),
                )
                .await;
            stopped_stopwatch(rec, stopped, errors)
        }
        TimeTracking::Times => {
            match ctx.store.get(&rec.id).await {
                Ok(Some(now)) if now.time_tracked >= run => return,
                Ok(_) => {}
                Err(e) => {
                    errors.add("track time (read the job record)", e);
                    return;
                }
            }
            let time = AddTime {
                seconds: clock.seconds(),
                created: clock.started_at,
            };
            let fc = errors.client(f);
            let added = errors
                .within("track time", fc.add_time(&i.org, &i.repo, i.issue, &time))
                .await;
            match added {
                None => {}
                Some(Ok(TimeOutcome::Added(_) | TimeOutcome::AlreadyAdded(_))) => {
                    if let Err(e) = ctx
                        .store
                        .note(&rec.id, &agentq_shared::transition::Note::time_tracked(run))
                        .await
                    {
                        tracing::warn!(job = %rec.id, error = %e, "cannot record that the run's time was tracked");
                    }
                }
                Some(Ok(TimeOutcome::Unavailable { reason, first })) => {
                    tracking_unavailable(rec, reason, first, errors)
                }
                Some(Err(e)) => errors.add("track time", e),
            }
        }
    }
}

/// What stopping the stopwatch told, noted.
fn stopped_stopwatch(
    rec: &JobRecord,
    stopped: Option<Result<StopwatchOutcome, agentq_shared::forge::ForgeError>>,
    errors: &mut ForgeErrors,
) {
    match stopped {
        None => {}
        Some(Ok(StopwatchOutcome::NotRunning)) => errors.add(
            "stop stopwatch",
            "it was not running: another start with the same token stopped it \
                 (a forge keeps one stopwatch per user), so the time on the issue is short; \
                 use time_tracking = \"times\" when jobs run in parallel",
        ),
        Some(Ok(StopwatchOutcome::Unavailable { reason, first })) => {
            tracking_unavailable(rec, reason, first, errors)
        }
        Some(Ok(_)) => {}
        Some(Err(e)) => errors.add("stop stopwatch", e),
    }
}

fn tracking_unavailable(
    rec: &JobRecord,
    reason: TrackingUnavailable,
    first: bool,
    errors: &mut ForgeErrors,
) {
    if first {
        errors.note(format!(
            "time not tracked on {}/{}: {}; not asking again for a while",
            rec.input.org,
            rec.input.repo,
            reason.describe()
        ));
    }
}

/// The pushed branch: its head and the base it is ahead of.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// Head commit.
    pub sha: String,
    /// Base branch.
    pub base: String,
}

/// The saved agent branch, when it has commits ahead of the base branch and a
/// forge is there to open a pull request for it.
pub async fn pull_branch(
    ctx: &Arc<WorkerCtx>,
    rec: &JobRecord,
    prepared: &Prepared,
    saved: &Saved,
    errors: &mut ForgeErrors,
) -> Option<Pushed> {
    let forge = ctx.forge.as_ref()?;
    if !ctx.cfg.forge.auto_pr {
        return None;
    }
    let Saved::At(sha) = saved else {
        return None;
    };
    let base = if !ctx.cfg.forge.base_branch.is_empty() {
        ctx.cfg.forge.base_branch.clone()
    } else {
        let fc = errors.client(forge);
        let repo = errors
            .within(
                "read repository",
                fc.get_repo(&rec.input.org, &rec.input.repo),
            )
            .await;
        let Some(repo) = repo else {
            // The budget is spent: the base is looked up when the write-back
            // is done again (an empty base says so).
            return Some(Pushed {
                sha: sha.clone(),
                base: String::new(),
            });
        };
        match repo {
            Ok(r) if !r.default_branch.is_empty() => r.default_branch,
            Ok(_) => "main".into(),
            Err(e) => {
                errors.add("read repository", &e);
                return None;
            }
        }
    };
    let git_dir = prepared.workspace.worker_repo();
    let ahead = git(
        &git_dir,
        &[
            "rev-list",
            "--count",
            &format!("refs/remotes/origin/{base}..{sha}"),
        ],
    )
    .await;
    match ahead.as_deref().map(str::parse::<u64>) {
        Ok(Ok(n)) if n > 0 => Some(Pushed {
            sha: sha.clone(),
            base,
        }),
        Ok(_) => None,
        Err(e) => {
            errors.add("count commits ahead of the base", e);
            None
        }
    }
}

/// Sets the commit status of the pushed head.
pub async fn set_status(
    ctx: &WorkerCtx,
    rec: &JobRecord,
    pushed: &Pushed,
    state: CommitState,
    description: &str,
    errors: &mut ForgeErrors,
) {
    let Some(forge) = ctx.forge.as_ref() else {
        return;
    };
    let status = CreateStatus {
        state,
        target_url: None,
        description: Some(description.chars().take(140).collect()),
        context: STATUS_CONTEXT.into(),
    };
    errors.redo.for_job(rec).status = Some((pushed.sha.clone(), status.clone()));
    let fc = errors.client(forge);
    let set = errors
        .within(
            "set commit status",
            fc.create_status(&rec.input.org, &rec.input.repo, &pushed.sha, &status),
        )
        .await;
    match set {
        Some(Ok(_)) => errors.redo.status = None,
        Some(Err(e)) => errors.add_forge("set commit status", e),
        None => {}
    }
}

/// Opens the pull request for the pushed branch, or finds the one already open.
pub async fn open_pull(
    ctx: &WorkerCtx,
    rec: &JobRecord,
    prepared: &Prepared,
    pushed: &Pushed,
    errors: &mut ForgeErrors,
) -> Option<String> {
    let forge = ctx.forge.as_ref()?;
    let i = &rec.input;
    let commits = if pushed.base.is_empty() {
        // Base unknown (the forge's budget was spent): no list.
        String::new()
    } else {
        git(
            &prepared.workspace.worker_repo(),
            &[
                "log",
                "--oneline",
                &format!("refs/remotes/origin/{}..{}", pushed.base, pushed.sha),
            ],
        )
        .await
        .unwrap_or_default()
    };
    let first_line = i.task.lines().next().unwrap_or("").trim();
    let short: String = first_line.chars().take(60).collect();
    let mut body = format!("{}\n\n", i.task.trim());
    if i.issue > 0 {
        body.push_str(&format!("Closes #{}\n\n", i.issue));
    }
    body.push_str(&format!(
        "- Agent: `{}`\n- Branch: `{}`\n- Job: `{}`\n\nCommits:\n```\n{}\n```\n",
        i.agent,
        prepared.branch,
        rec.id,
        cut(&cut_lines(commits.trim_end(), 200), 8 * 1024)
    ));
    // Commit subjects are the agent's text: no control characters on the forge.
    let pull = CreatePull {
        head: prepared.branch.clone(),
        base: pushed.base.clone(),
        title: strip_controls(&format!("[agent/{}] {}", i.agent, short)),
        body: strip_controls(&body),
    };
    errors.redo.for_job(rec).pull = Some(pull.clone());
    let fc = errors.client(forge);
    let opened = errors
        .within(
            "open pull request",
            fc.find_or_create_pull(&i.org, &i.repo, &pull),
        )
        .await;
    match opened {
        Some(Ok((pr, _created))) => {
            errors.redo.pull = None;
            errors.redo.pr_url = Some(pr.html_url.clone());
            Some(pr.html_url)
        }
        Some(Err(e)) => {
            errors.add_forge("open pull request", e);
            None
        }
        None => None,
    }
}

/// What the outcome comment says.
#[derive(Debug)]
pub struct Comment<'a> {
    /// How the run ended.
    pub outcome: &'a Outcome,
    /// QA result.
    pub qa: Option<&'a QaResult>,
    /// Pull request URL.
    pub pr_url: Option<&'a str>,
    /// The agent's branch.
    pub branch: &'a str,
    /// The agent's final message (empty: none).
    pub summary: &'a str,
}

/// Most bytes of the agent's summary an outcome comment carries (the record
/// has all of it, up to its own cap).
pub const COMMENT_SUMMARY_MAX: usize = 4 * 1024;

/// The agent's summary as the comment shows it: cut to
/// [`COMMENT_SUMMARY_MAX`] bytes, each line quoted (`> `), so that it reads
/// as the agent's words and cannot end the comment's own lines.
fn quoted_summary(summary: &str) -> String {
    let summary = cut(summary.trim(), COMMENT_SUMMARY_MAX);
    let quoted: Vec<String> = summary
        .lines()
        .map(|l| {
            if l.is_empty() {
                ">".into()
            } else {
                format!("> {l}")
            }
        })
        .collect();
    format!(
        "\n**Summary** (the agent's last message):\n\n{}\n",
        quoted.join("\n")
    )
}

/// Posts the outcome on the issue, or edits agentq's earlier comment for this job
/// (found by a hidden marker), so a re-run never posts twice.
pub async fn comment(ctx: &WorkerCtx, rec: &JobRecord, c: &Comment<'_>, errors: &mut ForgeErrors) {
    let Some(forge) = forge_for(ctx, rec) else {
        return;
    };
    let mut body = format!(
        "**agentq** job `{}`: **{}**\n\n- Agent: `{}`\n- Branch: `{}`\n",
        rec.id,
        c.outcome.state(),
        rec.input.agent,
        c.branch
    );
    if let Some(qa) = c.qa {
        let detail = if qa.command.is_empty() {
            String::new()
        } else {
            format!(" (`{}` {})", qa.command, qa.detail)
        };
        body.push_str(&format!("- QA: {}{}\n", qa.status, detail));
    }
    let label = match c.outcome {
        Outcome::Blocked { .. } => "Question",
        _ => "Reason",
    };
    let mut tail = String::new();
    if !c.outcome.message().is_empty() {
        tail.push_str(&format!("\n**{label}:** {}\n", c.outcome.message()));
    }
    if !c.summary.trim().is_empty() {
        tail.push_str(&quoted_summary(c.summary));
    }
    // The question, errors and summary are the agent's text: no control characters on
    // the forge (they would reach whoever reads the comment in a terminal).
    let text = CommentText {
        head: strip_controls(&body),
        tail: strip_controls(&tail),
    };
    let body = text.body(c.pr_url);
    errors.redo.for_job(rec).comment = Some(text);
    let i = &rec.input;
    let fc = errors.client(forge);
    let posted = errors
        .within(
            "comment on issue",
            fc.upsert_comment(&i.org, &i.repo, i.issue, &job_marker(&rec.id), &body),
        )
        .await;
    match posted {
        Some(Ok(_)) => errors.redo.comment = None,
        Some(Err(e)) => errors.add_forge("comment on issue", e),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_in_a_comment_is_quoted_and_bounded() {
        let q = quoted_summary("Fixed the tests.\n\nAll pass.\n");
        assert_eq!(
            q,
            "\n**Summary** (the agent's last message):\n\n> Fixed the tests.\n>\n> All pass.\n"
        );
        let long = quoted_summary(&"y".repeat(20_000));
        assert!(long.len() < COMMENT_SUMMARY_MAX + 200, "{}", long.len());
        assert!(long.contains(&agentq_shared::text::cut_marker(
            20_000 - COMMENT_SUMMARY_MAX
        )));
    }
}
