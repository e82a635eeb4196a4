//! The job input (the seed's `DispatchInput`), its defaults and its validation.
//!
//! Every rule that decides whether a job may enter the queue lives here, so the
//! producer refuses bad input before anything reaches Redis, and the worker can
//! re-check a record it reads back without a second copy of the rules.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::priority::Priority;

/// Default Forge organisation (seed: `core`).
pub const DEFAULT_ORG: &str = "core";
/// Default agent (seed: `codex`).
pub const DEFAULT_AGENT: &str = "codex";
/// Default prompt template set (seed: `coding`).
pub const DEFAULT_TEMPLATE: &str = "coding";
/// Template sets a job may name.
pub const TEMPLATES: &[&str] = &["coding", "conventions", "security"];

/// Most bytes of an answer to a blocked job (it goes into the prompt, like a
/// task).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

mod answer;
mod json;
mod key;
pub mod line;
mod validate;
pub mod when;

pub use self::{
    answer::check_answer,
    key::{check_idempotency_key, MAX_KEY_CHARS},
};

/// What a script asks agentq to do: the seed's `DispatchInput`, field for field,
/// with the same JSON names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchInput {
    /// Target repository on the Forge, e.g. `go-io`.
    #[serde(default)]
    pub repo: String,
    /// Forge organisation (default `core`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub org: String,
    /// What the agent should do.
    #[serde(default)]
    pub task: String,
    /// `codex` (default), `claude`, `gemini`, `coderabbit`, `local`, with an optional `:model`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub agent: String,
    /// Prompt template set: `coding` (default), `conventions` or `security`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub template: String,
    /// Plan template slug.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub plan_template: String,
    /// Template variable substitution.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// Persona slug.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub persona: String,
    /// Forge issue number: workspace `task-{n}`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub issue: u64,
    /// Pull request number: workspace `pr-{n}`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pr: u64,
    /// Branch: workspace `{branch}`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub branch: String,
    /// Tag: workspace `{tag}` (immutable).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tag: String,
    /// Prepare the workspace and prompt, but run no agent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Merge the pull request once its checks pass, whatever the pool's
    /// `[verify]` says (`Some(false)`: never). `None`: the pool decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_merge: Option<bool>,
    /// How soon the job takes a free slot of its pool (see
    /// [`crate::priority`]); `normal` by default.
    #[serde(default, skip_serializing_if = "Priority::is_normal")]
    pub priority: Priority,
    /// When the job is due (see [`when`]; a [`Stamp`](crate::stamp::Stamp),
    /// as every moment on the record): until then it is `scheduled`. `None`:
    /// at once. NDJSON `in` (a delay) is turned into it.
    #[serde(
        default,
        with = "crate::stamp::or_empty",
        skip_serializing_if = "Option::is_none"
    )]
    pub at: Option<crate::stamp::Stamp>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Why a job input was refused. The message always names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidInput {
    /// The JSON name of the offending field (or `json` for a malformed document).
    pub field: String,
    /// What is wrong and what would be accepted.
    pub message: String,
}

impl InvalidInput {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}
