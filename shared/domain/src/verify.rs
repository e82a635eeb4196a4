//! The verify stage's words: what it concluded about a job's pull request
//! ([`Verify`], the record's `verify` field) and its configuration
//! (`[verify]`, with `[verify.pools.NAME]` overrides). The stage itself is
//! the worker's (`worker/src/verify/`), after upstream `pkg/agentic/verify.go`
//! (wait, merge, one rebase and retry, else `needs-review`) and
//! `pkg/monitor/harvest.go` (no binaries or oversized files handed over).

use std::{collections::BTreeMap, fmt, str::FromStr};

use serde::Deserialize;

pub use crate::status::JobState;

/// What the verify stage concluded (the record's `verify`; empty: it did
/// not run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verify {
    /// The pull request was merged (the job is `merged`).
    Merged,
    /// A person must look: the checks failed or never finished, the merge was
    /// refused after one rebase, or harvest refused the branch (the job is
    /// `completed`, `verify_reason` says why).
    NeedsReview,
}

impl Verify {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Merged => "merged",
            Self::NeedsReview => "needs_review",
        }
    }
}

impl fmt::Display for Verify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Verify {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "merged" => Ok(Self::Merged),
            "needs_review" => Ok(Self::NeedsReview),
            other => Err(format!("unknown verify result `{other}`")),
        }
    }
}

/// How a pull request is merged (`merge_style`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeStyleConf {
    /// A merge commit.
    #[default]
    Merge,
    /// Rebased onto the base.
    Rebase,
    /// One squashed commit.
    Squash,
}

/// `[verify]`: the stage after the pull request, and harvest's limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerifyConfig {
    /// Merge the pull request once its checks pass (per pool below). Off:
    /// nothing waits after the pull request.
    pub auto_merge: bool,
    /// `merge`, `rebase` or `squash`.
    pub merge_style: MergeStyleConf,
    /// Delete the agent branch on the forge once merged.
    pub delete_branch_after_merge: bool,
    /// How long to wait for the head's combined commit status, seconds.
    pub verify_timeout_secs: u64,
    /// How often the combined status is read while it is pending, ms.
    pub poll_ms: u64,
    /// Largest file a branch may add or change, MiB (harvest).
    pub max_file_mb: u64,
    /// Most files a branch may change (harvest); 0: no limit.
    pub max_changed_files: u64,
    /// Per-pool overrides.
    pub pools: BTreeMap<String, VerifyPool>,
}

/// `[verify.pools.NAME]`: a pool's own values.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerifyPool {
    /// See [`VerifyConfig::auto_merge`].
    pub auto_merge: Option<bool>,
    /// See [`VerifyConfig::merge_style`].
    pub merge_style: Option<MergeStyleConf>,
    /// See [`VerifyConfig::max_file_mb`].
    pub max_file_mb: Option<u64>,
    /// See [`VerifyConfig::max_changed_files`].
    pub max_changed_files: Option<u64>,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        Self {
            auto_merge: false,
            merge_style: MergeStyleConf::Merge,
            delete_branch_after_merge: true,
            verify_timeout_secs: 600,
            poll_ms: 2000,
            max_file_mb: 1,
            max_changed_files: 500,
            pools: BTreeMap::new(),
        }
    }
}

/// The values in force for one pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyFor {
    /// Merge once the checks pass.
    pub auto_merge: bool,
    /// How.
    pub merge_style: MergeStyleConf,
    /// Largest file, bytes.
    pub max_file_bytes: u64,
    /// Most changed files (0: no limit).
    pub max_changed_files: u64,
}

impl VerifyConfig {
    /// The values for `pool`: its overrides, else the global ones.
    pub fn for_pool(&self, pool: &str) -> VerifyFor {
        let p = self.pools.get(pool).cloned().unwrap_or_default();
        VerifyFor {
            auto_merge: p.auto_merge.unwrap_or(self.auto_merge),
            merge_style: p.merge_style.unwrap_or(self.merge_style),
            max_file_bytes: p
                .max_file_mb
                .unwrap_or(self.max_file_mb)
                .saturating_mul(1 << 20),
            max_changed_files: p.max_changed_files.unwrap_or(self.max_changed_files),
        }
    }

    /// The values for a job of `pool` whose input says `auto_merge` (the
    /// job's word over the pool's).
    pub fn for_job(&self, pool: &str, auto_merge: Option<bool>) -> VerifyFor {
        let mut v = self.for_pool(pool);
        if let Some(a) = auto_merge {
            v.auto_merge = a;
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for v in [Verify::Merged, Verify::NeedsReview] {
            assert_eq!(v.as_str().parse::<Verify>(), Ok(v));
        }
        assert!("".parse::<Verify>().is_err());
    }

    #[test]
    fn a_pool_overrides_the_global_values() {
        let mut c = VerifyConfig::default();
        c.pools.insert(
            "codex".into(),
            VerifyPool {
                auto_merge: Some(true),
                max_file_mb: Some(2),
                ..VerifyPool::default()
            },
        );
        assert!(c.for_pool("codex").auto_merge);
        assert_eq!(c.for_pool("codex").max_file_bytes, 2 << 20);
        assert!(!c.for_pool("claude").auto_merge);
        assert_eq!(c.for_pool("claude").max_file_bytes, 1 << 20);
    }

    #[test]
    fn a_jobs_auto_merge_is_over_its_pools() {
        let mut c = VerifyConfig::default();
        c.pools.insert(
            "codex".into(),
            VerifyPool {
                auto_merge: Some(true),
                ..VerifyPool::default()
            },
        );
        assert!(c.for_job("codex", None).auto_merge);
        assert!(!c.for_job("codex", Some(false)).auto_merge);
        assert!(!c.for_job("claude", None).auto_merge);
        assert!(c.for_job("claude", Some(true)).auto_merge);
        assert_eq!(
            c.for_job("claude", Some(true)).max_file_bytes,
            c.for_pool("claude").max_file_bytes
        );
    }
}
