//! Harvest checks before a branch is handed over for review (upstream
//! `pkg/monitor/harvest.go`, `checkSafety`): no binary file, no file over
//! `max_file_mb`, no more than `max_changed_files`. A refused branch keeps
//! its commits in the worker's repository and on the shared remote; no pull
//! request is opened, and the job ends `completed` with `verify =
//! needs_review` and the reason.
//!
//! The commits are the agent's: every git read here is bounded in bytes and
//! time ([`crate::git::git_bounded`]), and the paths are data (never a shell
//! word, never a path on the host).

use std::{path::Path, time::Duration};

use agentq_shared::verify::VerifyFor;

use crate::git::git_bounded;

/// Most bytes of a listing read; a longer one is refused as too big to check.
const MAX_LIST_BYTES: usize = 4 << 20;

/// Longest one git read may take.
const READ_TIME: Duration = Duration::from_secs(60);

/// One changed file: its path and new blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    /// Path (as git gives it; shown cut).
    pub path: String,
    /// New blob id (all zeros: deleted).
    pub blob: String,
}

/// Why the branch from `base` to `head` in the bare repository `git_dir` is
/// refused, or `None` when it passes.
pub async fn refusal(git_dir: &Path, base: &str, head: &str, limits: &VerifyFor) -> Option<String> {
    match check(git_dir, base, head, limits).await {
        Ok(r) => r,
        Err(e) => Some(format!("cannot inspect the branch: {e:#}")),
    }
}

async fn check(
    git_dir: &Path,
    base: &str,
    head: &str,
    limits: &VerifyFor,
) -> anyhow::Result<Option<String>> {
    let range = format!("{base}...{head}");
    let (raw, cut) = git_bounded(
        git_dir,
        &[
            "diff",
            "--raw",
            "-z",
            "--no-renames",
            "--no-abbrev",
            &range,
            "--",
        ],
        b"",
        MAX_LIST_BYTES,
        READ_TIME,
    )
    .await?;
    if cut {
        return Ok(Some(format!(
            "the list of changed files is over {} MiB",
            MAX_LIST_BYTES >> 20
        )));
    }
    let changed = parse_raw(&raw);
    if let Some(why) = too_many(changed.len(), limits) {
        return Ok(Some(why));
    }
    let (numstat, cut) = git_bounded(
        git_dir,
        &["diff", "--numstat", "-z", "--no-renames", &range, "--"],
        b"",
        MAX_LIST_BYTES,
        READ_TIME,
    )
    .await?;
    if cut {
        return Ok(Some("the change statistics are too long to check".into()));
    }
    if let Some(path) = first_binary(&numstat) {
        return Ok(Some(format!("binary file added: {}", shown(&path))));
    }
    let present: Vec<&Changed> = changed.iter().filter(|c| !is_zero(&c.blob)).collect();
    let ids: String = present.iter().map(|c| format!("{}\n", c.blob)).collect();
    let (sizes, _) = git_bounded(
        git_dir,
        &["cat-file", "--batch-check=%(objectsize)"],
        ids.as_bytes(),
        MAX_LIST_BYTES,
        READ_TIME,
    )
    .await?;
    let sizes = String::from_utf8_lossy(&sizes);
    for (c, size) in present.iter().zip(sizes.lines()) {
        if let Some(why) = too_large(&c.path, size.trim().parse().unwrap_or(0), limits) {
            return Ok(Some(why));
        }
    }
    Ok(None)
}

fn is_zero(blob: &str) -> bool {
    blob.bytes().all(|b| b == b'0')
}

/// A path as shown in a reason: control characters made visible, cut.
fn shown(path: &str) -> String {
    agentq_shared::text::cut(&agentq_shared::text::strip_controls(path), 200)
}

/// More files changed than allowed?
pub fn too_many(n: usize, limits: &VerifyFor) -> Option<String> {
    (limits.max_changed_files > 0 && n as u64 > limits.max_changed_files).then(|| {
        format!(
            "{n} files changed, more than max_changed_files ({})",
            limits.max_changed_files
        )
    })
}

/// A file over the size limit?
pub fn too_large(path: &str, size: u64, limits: &VerifyFor) -> Option<String> {
    (size > limits.max_file_bytes).then(|| {
        format!(
            "large file: {} ({size} bytes, over max_file_mb = {})",
            shown(path),
            limits.max_file_bytes >> 20
        )
    })
}

/// `git diff --raw -z`: `:mode mode old new status\0path\0` per file.
pub fn parse_raw(raw: &[u8]) -> Vec<Changed> {
    let mut out = Vec::new();
    let mut parts = raw.split(|b| *b == 0);
    while let Some(meta) = parts.next() {
        if meta.is_empty() {
            continue;
        }
        let Some(path) = parts.next() else { break };
        let meta = String::from_utf8_lossy(meta);
        let blob = meta
            .split_whitespace()
            .nth(3)
            .unwrap_or_default()
            .to_string();
        out.push(Changed {
            path: String::from_utf8_lossy(path).into_owned(),
            blob,
        });
    }
    out
}

/// `git diff --numstat -z`: `added\tdeleted\tpath\0`; a binary file is
/// `-\t-\tpath`. The first binary path, if any.
pub fn first_binary(numstat: &[u8]) -> Option<String> {
    numstat
        .split(|b| *b == 0)
        .map(String::from_utf8_lossy)
        .find_map(|entry| {
            entry
                .strip_prefix("-\t-\t")
                .map(|p| p.trim_start_matches('\n').to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> VerifyFor {
        VerifyFor {
            auto_merge: false,
            merge_style: Default::default(),
            max_file_bytes: 1 << 20,
            max_changed_files: 2,
        }
    }

    #[test]
    fn raw_lines_give_paths_and_blobs() {
        let raw = b":000000 100644 0000000000000000000000000000000000000000 1111111111111111111111111111111111111111 A\0a b.txt\0:100644 000000 2222222222222222222222222222222222222222 0000000000000000000000000000000000000000 D\0gone\0";
        let c = parse_raw(raw);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].path, "a b.txt");
        assert!(is_zero(&c[1].blob));
    }

    #[test]
    fn a_binary_is_found_in_numstat() {
        assert_eq!(
            first_binary(b"3\t0\ta.txt\0-\t-\tlogo.png\0"),
            Some("logo.png".into())
        );
        assert_eq!(first_binary(b"3\t0\ta.txt\0"), None);
    }

    #[test]
    fn limits_refuse_with_the_reason() {
        assert!(too_many(3, &limits()).unwrap().contains("3 files changed"));
        assert_eq!(too_many(2, &limits()), None);
        let why = too_large("big.txt", 2 << 20, &limits()).unwrap();
        assert!(why.starts_with("large file: big.txt"), "{why}");
        assert_eq!(too_large("ok.txt", 1 << 20, &limits()), None);
    }
}
