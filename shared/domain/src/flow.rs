//! Job flows (issue 33): jobs that run after others (`--after`), batches
//! (`--batch`) and jobs unique while active (`--unique`). The rules checked
//! at enqueue live here; the store's side is `agentq_shared::store::flow`.

use crate::{
    input::{DispatchInput, InvalidInput},
    record::JobRecord,
    status::{JobState, WaitReason},
};

/// Most parents one job may name.
pub const MAX_PARENTS: usize = 100;

/// Longest batch name, in characters.
pub const MAX_BATCH_CHARS: usize = 200;

/// What an idempotency key of a job enqueued `--unique` is stored as (the
/// idempotency key's own namespace, `{ns}:key:`): user keys hold no
/// whitespace, so these never meet one.
pub const UNIQUE_PREFIX: &str = "unique ";

/// Parses `--after ID[,ID…]` (NDJSON `after`: the same ids as an array): job
/// ids (ULIDs), at most [`MAX_PARENTS`], repeats dropped.
///
/// # Errors
/// Names the field `after`.
///
/// ```
/// use agentq_domain::flow::parse_after;
/// assert_eq!(parse_after(["01J0000000000000000000000A"]).unwrap().len(), 1);
/// assert_eq!(parse_after(["../x"]).unwrap_err().field, "after");
/// ```
pub fn parse_after<'a>(
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<String>, InvalidInput> {
    let mut out: Vec<String> = Vec::new();
    for id in ids {
        let id = id.trim();
        if id.len() != 26 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(InvalidInput::new(
                "after",
                format!("`{id}` is not a job id (26 letters and digits)"),
            ));
        }
        let id = id.to_ascii_uppercase();
        if !out.contains(&id) {
            out.push(id);
        }
    }
    if out.is_empty() {
        return Err(InvalidInput::new("after", "names no job"));
    }
    if out.len() > MAX_PARENTS {
        return Err(InvalidInput::new(
            "after",
            format!("at most {MAX_PARENTS} jobs (got {})", out.len()),
        ));
    }
    Ok(out)
}

/// Checks a batch name: 1 to [`MAX_BATCH_CHARS`] characters, none of them
/// whitespace, a control character or `:`.
///
/// # Errors
/// Names the field `batch`.
pub fn check_batch(name: &str) -> Result<(), InvalidInput> {
    let n = name.chars().count();
    if n == 0 || n > MAX_BATCH_CHARS {
        return Err(InvalidInput::new(
            "batch",
            format!("must be 1 to {MAX_BATCH_CHARS} characters (got {n})"),
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == ':')
    {
        return Err(InvalidInput::new(
            "batch",
            format!("must not contain whitespace, control characters or `:` (found {c:?})"),
        ));
    }
    Ok(())
}

/// Refuses parents on a delayed job (`at`/`in`): a dependent job starts when
/// its parents end, a delayed one at its time; one job cannot wait for both.
///
/// # Errors
/// Names the field `after`.
pub fn check_not_delayed(parents: &[String], input: &DispatchInput) -> Result<(), InvalidInput> {
    if parents.is_empty() || input.at.is_none() {
        return Ok(());
    }
    Err(InvalidInput::new(
        "after",
        "cannot be combined with at or in: a job waits for its parents or for a time, not both",
    ))
}

/// Makes `rec` wait for `parents` (from [`parse_after`]): state `waiting`,
/// reason `dependency`, in no lane until the last parent ends.
pub fn wait_for(rec: &mut JobRecord, parents: &[String], any: bool) {
    if parents.is_empty() {
        return;
    }
    rec.after = parents.join(",");
    rec.after_any = any;
    rec.state = JobState::Waiting;
    rec.reason = Some(WaitReason::Dependency);
}

/// The parents a record waits for (its `after`).
pub fn parents(rec: &JobRecord) -> Vec<&str> {
    rec.after.split(',').filter(|s| !s.is_empty()).collect()
}

/// The key a job enqueued `--unique` without `--key` is unique by: its pool
/// (agent), organisation, repository, issue (or pull request) and task, the
/// task as a hash: `{agent}/{org}/{repo}#{issue}!{pr}/{hash of task}`.
pub fn derived_unique_key(input: &DispatchInput) -> String {
    // FNV-1a, 64 bits: stable across builds and hosts.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in input.task.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!(
        "{}/{}/{}#{}!{}/{h:016x}",
        input.agent, input.org, input.repo, input.issue, input.pr
    )
}

/// What `rec.key` is stored as for a job unique while active: the user's key
/// (or [`derived_unique_key`]) after [`UNIQUE_PREFIX`].
pub fn make_unique(rec: &mut JobRecord) {
    let key = if rec.key.is_empty() {
        derived_unique_key(&rec.input)
    } else {
        std::mem::take(&mut rec.key)
    };
    rec.key = format!("{UNIQUE_PREFIX}{key}");
}

/// Whether `rec`'s pool is one of `pools` (config `unique_pools`: its every
/// job is unique while active).
pub fn unique_pool(rec: &JobRecord, pools: &[String]) -> bool {
    !pools.is_empty() && pools.contains(&crate::record::placement(&rec.input).0)
}

/// A stored key as the user knows it (without [`UNIQUE_PREFIX`]).
pub fn shown_key(key: &str) -> &str {
    key.strip_prefix(UNIQUE_PREFIX).unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_ids_are_checked_and_deduplicated() {
        let a = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
        assert_eq!(parse_after([a, a]).unwrap(), vec![a.to_string()]);
        for bad in [
            "",
            "x",
            "01ARZ3NDEKTSV4RRFFQ69G5FA/",
            "01ARZ3NDEKTSV4RRFFQ69G5FAVV",
        ] {
            assert_eq!(parse_after([bad]).unwrap_err().field, "after", "{bad}");
        }
        let many: Vec<String> = (0..=MAX_PARENTS)
            .map(|i| format!("01ARZ3NDEKTSV4RRFFQ69{i:05}"))
            .collect();
        assert!(parse_after(many.iter().map(String::as_str)).is_err());
    }

    #[test]
    fn batch_names_are_checked() {
        assert!(check_batch("sweep-2026-12-07").is_ok());
        for bad in ["", "a b", "a:b", "a\n"] {
            assert_eq!(check_batch(bad).unwrap_err().field, "batch", "{bad:?}");
        }
    }

    #[test]
    fn a_delayed_job_cannot_also_wait_for_parents() {
        let parents = vec!["01JPARENT".to_string()];
        let delayed = DispatchInput {
            at: Some("2026-12-07T06:00:00Z".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(
            check_not_delayed(&parents, &delayed).unwrap_err().field,
            "after"
        );
        assert!(check_not_delayed(&[], &delayed).is_ok());
        assert!(check_not_delayed(&parents, &DispatchInput::default()).is_ok());
    }

    #[test]
    fn a_unique_key_is_derived_from_pool_repo_issue_and_task() {
        let input = |task: &str| DispatchInput {
            repo: "go-io".into(),
            org: "core".into(),
            agent: "codex".into(),
            issue: 15,
            task: task.into(),
            ..Default::default()
        };
        assert_eq!(
            derived_unique_key(&input("a")),
            derived_unique_key(&input("a"))
        );
        assert_ne!(
            derived_unique_key(&input("a")),
            derived_unique_key(&input("b"))
        );
        assert!(derived_unique_key(&input("a")).starts_with("codex/core/go-io#15!0/"));
        let mut rec = JobRecord::new("x".into(), input("a"), 3, crate::stamp::Stamp::from_ms(0));
        rec.key = "k#1".into();
        make_unique(&mut rec);
        assert_eq!(rec.key, "unique k#1");
        assert_eq!(shown_key(&rec.key), "k#1");
    }
}
