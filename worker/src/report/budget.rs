//! The errors of a stage's forge calls, and the time those calls may take
//! together.

use agentq_shared::forge::ForgeClient;

use super::WriteBack;

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
    /// Harvest refused the branch (see [`crate::verify::harvest`]): why. No
    /// pull request is opened; the verify stage records it.
    pub harvest: Option<String>,
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
            harvest: None,
        }
    }

    /// A failure of `what`, with its error.
    pub fn add(&mut self, what: &str, e: impl std::fmt::Display) {
        tracing::warn!(error = %e, "forge: {what} failed");
        self.errors.push(format!("{what}: {e}"));
    }

    /// A failure of `what` that may go away (5xx, unreachable): recorded, and
    /// the write-back is done again later.
    pub(super) fn add_forge(&mut self, what: &str, e: agentq_shared::forge::ForgeError) {
        if e.is_transient() {
            self.again = true;
        }
        self.add(what, e);
    }

    /// Something worth knowing that is not a failure (e.g. time tracking is off on
    /// the repository), recorded with the errors as `note: …`.
    pub(super) fn note(&mut self, text: String) {
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
