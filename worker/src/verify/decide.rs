//! The verify stage's decisions, pure: what the combined status means, and
//! what to do after each answer to a merge (upstream `verify.go`:
//! `autoVerifyAndMerge` merges, rebases once and retries, else flags the pull
//! request `needs-review`).

use agentq_shared::forge::{CombinedStatus, MergeOutcome};

/// What the head's checks say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checks {
    /// Every check passed (`success` or `warning`), or there is none.
    Passed,
    /// Some failed: `context (state)` of each.
    Failed(Vec<String>),
    /// Some are still pending: their contexts.
    Pending(Vec<String>),
}

/// Reads a combined status (Forgejo's state rules, `CalcCommitStatus`: the
/// worst state of the latest status per context wins; error and failure
/// fail, pending waits, warning and success pass). A head with no status at
/// all passes: there is nothing to wait for.
pub fn read_checks(c: &CombinedStatus) -> Checks {
    let statuses = c.statuses.clone().unwrap_or_default();
    let failed: Vec<String> = statuses
        .iter()
        .filter(|s| matches!(s.status.as_str(), "error" | "failure"))
        .map(|s| format!("{} ({})", s.context, s.status))
        .collect();
    if !failed.is_empty() {
        return Checks::Failed(failed);
    }
    let pending: Vec<String> = statuses
        .iter()
        .filter(|s| !matches!(s.status.as_str(), "success" | "warning"))
        .map(|s| s.context.clone())
        .collect();
    if pending.is_empty() {
        Checks::Passed
    } else {
        Checks::Pending(pending)
    }
}

/// Why a person must look at the pull request (its comment says this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Review {
    /// Checks failed.
    ChecksFailed(Vec<String>),
    /// Checks still pending after `verify_timeout_secs`.
    TimedOut {
        /// The limit, seconds.
        secs: u64,
        /// The contexts still pending.
        pending: Vec<String>,
    },
    /// The rebase onto the moved base met conflicts.
    ConflictAfterRebase(String),
    /// The forge refused the merge, and a rebase could not help (the base did
    /// not move) or was done already.
    Refused(String),
    /// The pull request was closed without a merge.
    Closed,
    /// Harvest refused the branch: no pull request was opened.
    Harvest(String),
    /// The forge or git failed.
    Trouble(String),
}

impl Review {
    /// One line for the record and the events stream (at most 2000
    /// characters: check names and the forge's words are not ours).
    pub fn reason(&self) -> String {
        agentq_shared::text::cut(&self.full_reason(), 2000)
    }

    fn full_reason(&self) -> String {
        match self {
            Self::ChecksFailed(c) => format!("checks failed: {}", c.join(", ")),
            Self::TimedOut { secs, pending } => format!(
                "timeout: the checks did not finish within {secs}s (pending: {})",
                pending.join(", ")
            ),
            Self::ConflictAfterRebase(base) => {
                format!("conflict after one rebase: the agent branch does not rebase cleanly onto the new {base}")
            }
            Self::Refused(m) => format!("merge refused: {m}"),
            Self::Closed => "the pull request was closed without a merge".into(),
            Self::Harvest(m) => format!("harvest refused the branch: {m}"),
            Self::Trouble(m) => format!("cannot verify: {m}"),
        }
    }
}

/// The next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Merge it.
    Merge,
    /// Look again later (checks pending, time left).
    Wait,
    /// Rebase onto the moved base once, then check and merge again.
    Rebase(String),
    /// Merged (now or before).
    Merged,
    /// Flag it.
    NeedsReview(Review),
}

/// After reading the checks: merge, wait, or flag (timed out once
/// `time_left` is false).
pub fn after_checks(checks: Checks, time_left: bool, timeout_secs: u64) -> Step {
    match checks {
        Checks::Passed => Step::Merge,
        Checks::Failed(f) => Step::NeedsReview(Review::ChecksFailed(f)),
        Checks::Pending(_) if time_left => Step::Wait,
        Checks::Pending(pending) => Step::NeedsReview(Review::TimedOut {
            secs: timeout_secs,
            pending,
        }),
    }
}

/// After the forge answered a merge: done, one rebase (not done yet), or flag.
pub fn after_merge(outcome: MergeOutcome, rebased: bool) -> Step {
    match outcome {
        MergeOutcome::Merged => Step::Merged,
        MergeOutcome::AlreadyMerged => Step::Merged,
        MergeOutcome::Closed => Step::NeedsReview(Review::Closed),
        MergeOutcome::NotMergeable(m) if !rebased => Step::Rebase(m),
        MergeOutcome::Conflict(m) if !rebased => Step::Rebase(m),
        MergeOutcome::NotMergeable(m) | MergeOutcome::Conflict(m) => {
            Step::NeedsReview(Review::Refused(format!("{m} (after one rebase)")))
        }
    }
}

/// What the one rebase did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebased {
    /// Pushed at this commit.
    Pushed(String),
    /// The head already has the base's tip: the refusal is not about a moved
    /// base.
    BaseNotMoved,
    /// Conflicts.
    Conflict,
    /// Git or the push failed.
    Failed(String),
}

/// After the one rebase (the forge's refusal was `refused`): check and merge
/// again, or flag.
pub fn after_rebase(r: Rebased, refused: &str, base: &str) -> Step {
    match r {
        Rebased::Pushed(_) => Step::Merge,
        Rebased::BaseNotMoved => Step::NeedsReview(Review::Refused(refused.to_string())),
        Rebased::Conflict => Step::NeedsReview(Review::ConflictAfterRebase(base.to_string())),
        Rebased::Failed(e) => Step::NeedsReview(Review::Trouble(format!(
            "the forge refused the merge ({refused}) and the rebase failed: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentq_shared::forge::CommitStatus;

    fn combined(states: &[(&str, &str)]) -> CombinedStatus {
        CombinedStatus {
            sha: "abc".into(),
            statuses: Some(
                states
                    .iter()
                    .map(|(c, s)| CommitStatus {
                        id: 1,
                        status: s.to_string(),
                        target_url: String::new(),
                        description: String::new(),
                        context: c.to_string(),
                    })
                    .collect(),
            ),
        }
    }

    #[test]
    fn passing_checks_merge() {
        let c = read_checks(&combined(&[("agentq/qa", "success"), ("ci", "warning")]));
        assert_eq!(after_checks(c, true, 60), Step::Merge);
    }

    #[test]
    fn no_checks_at_all_merge() {
        assert_eq!(read_checks(&CombinedStatus::default()), Checks::Passed);
    }

    #[test]
    fn a_failed_check_needs_review_naming_it() {
        let c = read_checks(&combined(&[
            ("agentq/qa", "success"),
            ("ci/build", "failure"),
        ]));
        let step = after_checks(c, true, 60);
        let Step::NeedsReview(r) = step else {
            panic!("{step:?}")
        };
        assert_eq!(r.reason(), "checks failed: ci/build (failure)");
    }

    #[test]
    fn pending_checks_wait_while_there_is_time() {
        let c = read_checks(&combined(&[("ci", "pending"), ("agentq/qa", "success")]));
        assert_eq!(c, Checks::Pending(vec!["ci".into()]));
        assert_eq!(after_checks(c, true, 60), Step::Wait);
    }

    #[test]
    fn pending_checks_past_the_timeout_need_review() {
        let c = read_checks(&combined(&[("ci", "pending")]));
        let Step::NeedsReview(r) = after_checks(c, false, 60) else {
            panic!()
        };
        assert!(
            r.reason()
                .starts_with("timeout: the checks did not finish within 60s"),
            "{}",
            r.reason()
        );
    }

    #[test]
    fn a_merge_or_an_earlier_merge_is_merged() {
        assert_eq!(after_merge(MergeOutcome::Merged, false), Step::Merged);
        assert_eq!(after_merge(MergeOutcome::AlreadyMerged, true), Step::Merged);
    }

    #[test]
    fn a_first_refusal_rebases_once() {
        assert_eq!(
            after_merge(MergeOutcome::NotMergeable("behind".into()), false),
            Step::Rebase("behind".into())
        );
        assert_eq!(
            after_merge(MergeOutcome::Conflict("head out of date".into()), false),
            Step::Rebase("head out of date".into())
        );
    }

    #[test]
    fn a_refusal_after_the_rebase_needs_review() {
        let step = after_merge(MergeOutcome::NotMergeable("behind".into()), true);
        assert_eq!(
            step,
            Step::NeedsReview(Review::Refused("behind (after one rebase)".into()))
        );
    }

    #[test]
    fn a_closed_pull_request_needs_review() {
        assert_eq!(
            after_merge(MergeOutcome::Closed, false),
            Step::NeedsReview(Review::Closed)
        );
    }

    #[test]
    fn a_clean_rebase_merges_again() {
        assert_eq!(
            after_rebase(Rebased::Pushed("n".into()), "behind", "main"),
            Step::Merge
        );
    }

    #[test]
    fn a_conflicting_rebase_needs_review() {
        let Step::NeedsReview(r) = after_rebase(Rebased::Conflict, "behind", "main") else {
            panic!()
        };
        assert!(
            r.reason().starts_with("conflict after one rebase"),
            "{}",
            r.reason()
        );
    }

    #[test]
    fn a_refusal_not_about_the_base_needs_review_with_the_forges_words() {
        assert_eq!(
            after_rebase(
                Rebased::BaseNotMoved,
                "User not allowed to merge PR",
                "main"
            ),
            Step::NeedsReview(Review::Refused("User not allowed to merge PR".into()))
        );
    }

    #[test]
    fn a_failed_rebase_needs_review() {
        let step = after_rebase(Rebased::Failed("push refused".into()), "behind", "main");
        assert!(
            matches!(step, Step::NeedsReview(Review::Trouble(_))),
            "{step:?}"
        );
    }
}
