//! Workspace layout on disk: `{root}/{org}/{repo}/{pr-N|task-N|branch-NAME|tag-NAME}/`.
//!
//! The layout draws the trust boundary. Only `repo/` (the agent's working tree,
//! mounted read-write at `/workspace`) and `.meta/input/` (prompt and answer,
//! mounted read-only at `/agentq`) are ever seen by a container. Everything else
//! is the worker's and never mounted: `.meta/` (logs), `.meta/git` (the
//! worker-owned repository the agent's commits are imported into and pushed
//! from) and `status.json`. So nothing the agent writes can be planted where the
//! worker writes, and `git add -A` in the container never sees agentq's files.

use std::path::{Component, Path, PathBuf};

use crate::input::DispatchInput;

/// Paths of one job's workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    /// The workspace directory itself.
    pub dir: PathBuf,
}

/// A workspace path that would leave the workspace root.
#[derive(Debug, thiserror::Error)]
#[error("workspace path `{0}` would leave the workspace root")]
pub struct EscapesRoot(pub String);

impl Workspace {
    /// The workspace of `input` under `root`. The naming follows upstream: `pr-{n}`
    /// over `task-{n}` (issue) over `{branch}` over `{tag}`.
    ///
    /// # Errors
    /// [`EscapesRoot`] if the computed path is not strictly inside `root` (validation
    /// makes that impossible for inputs that went through
    /// [`DispatchInput::validated`]; this is the second lock on the door).
    pub fn for_input(root: &Path, input: &DispatchInput) -> Result<Self, EscapesRoot> {
        let rel = PathBuf::from(&input.org)
            .join(&input.repo)
            .join(workspace_name(input));
        let normal = rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !normal || rel.components().count() != 3 {
            return Err(EscapesRoot(rel.display().to_string()));
        }
        Ok(Self {
            dir: root.join(rel),
        })
    }

    /// The agent's working tree: `{dir}/repo` (hostile after a run).
    pub fn repo_dir(&self) -> PathBuf {
        self.dir.join("repo")
    }

    /// The worker's own files (logs): `{dir}/.meta`, never mounted.
    pub fn meta_dir(&self) -> PathBuf {
        self.dir.join(".meta")
    }

    /// What the agent reads (prompt, answer): `{dir}/.meta/input`, mounted
    /// read-only at [`AGENT_INPUT_DIR`].
    pub fn input_dir(&self) -> PathBuf {
        self.meta_dir().join("input")
    }

    /// The worker-owned bare repository: `{dir}/.meta/git`. Prep builds the
    /// working tree from it; the agent's commits are imported into it as data and
    /// pushed from it. Never mounted, never written by anything the agent runs.
    pub fn worker_repo(&self) -> PathBuf {
        self.meta_dir().join("git")
    }

    /// The clean checkout of the commit QA checks: `{dir}/.meta/qa-tree`
    /// (worker-made, mounted only in QA containers, removed after QA).
    pub fn qa_tree(&self) -> PathBuf {
        self.meta_dir().join("qa-tree")
    }

    /// The run's output directory: `{dir}/.meta/agent-out`, made fresh and
    /// empty for each run, owned by the agent's uid (mode 0700), mounted
    /// read-write at [`AGENT_OUT_DIR`] in the agent's container only; read
    /// back as data ([`SUMMARY_FILE`]) and removed after the run.
    pub fn agent_out_dir(&self) -> PathBuf {
        self.meta_dir().join("agent-out")
    }

    /// The answer to a blocked job's question: `.meta/input/ANSWER.md`
    /// (`/agentq/ANSWER.md` in the container).
    pub fn answer_file(&self) -> PathBuf {
        self.input_dir().join("ANSWER.md")
    }

    /// The workspace status file: `{dir}/status.json`.
    pub fn status_file(&self) -> PathBuf {
        status_file_in(&self.dir)
    }

    /// The agent's output: `.meta/agent-{pool}.log` (seed's `agentOutputFile`).
    pub fn agent_log(&self, pool: &str) -> PathBuf {
        self.meta_dir().join(format!("agent-{pool}.log"))
    }

    /// The prompt handed to the agent: `.meta/input/prompt.md`
    /// (`/agentq/prompt.md` in the container).
    pub fn prompt_file(&self) -> PathBuf {
        self.input_dir().join("prompt.md")
    }
}

pub use crate::container_paths::{AGENT_HOME, AGENT_INPUT_DIR, AGENT_OUT_DIR, SUMMARY_FILE};

/// The last path segment of a workspace: `pr-{n}`, `task-{n}`, `branch-{name}` or
/// `tag-{name}`, the name [escaped](escape_name). The map is injective: the kind
/// is always spelled out (so `--branch pr-2` is not `--pr 2`, and a tag is not
/// the branch of the same name), and the escaping keeps `rel/1` (`branch-rel%2F1`)
/// apart from `rel-1` (`branch-rel-1`). The workspace lease key is built from it
/// too, so two jobs hold the same lease exactly when they share a directory.
///
/// Before this naming a branch or tag workspace was the bare name with `/`
/// turned into `-`; such directories are not reused (a workspace is a per-host
/// cache: the next job rebuilds it from the remote) and housekeeping reclaims
/// them like any unused workspace.
pub fn workspace_name(input: &DispatchInput) -> String {
    if input.pr > 0 {
        format!("pr-{}", input.pr)
    } else if input.issue > 0 {
        format!("task-{}", input.issue)
    } else if !input.branch.is_empty() {
        format!("branch-{}", escape_name(&input.branch))
    } else {
        format!("tag-{}", escape_name(&input.tag))
    }
}

/// `name` as one readable path segment, injectively: ASCII letters, digits and
/// `.` `_` `-` stay, every other byte (`/` and `%` included) becomes `%XX`
/// (upper-case hex). Decoding is unambiguous, so two names never share a
/// segment; the result never contains `/`.
pub fn escape_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The agent's branch: `agent/{what the job is for}-{slug of task}`, so that the
/// same task text on two issues (or PRs, branches, tags) never shares a branch
/// or a pull request. The middle part is `issue-{n}`, `pr-{n}`, `branch-{name}`
/// or `tag-{name}`, where `{name}` is the branch or tag as a slug, followed by
/// `.{hash}` of the exact name when the slug lost something (`rel/1` and
/// `Rel-1` are not `rel-1`). The task part falls back to `task` when the task
/// has no usable characters.
///
/// A job whose record (or whose workspace, for the same task) already names a
/// branch keeps it: see [`legacy_agent_branch`] and the worker's prep.
///
/// ```
/// use agentq_domain::{input::DispatchInput, workspace::agent_branch};
/// let input = DispatchInput { task: "Fix the failing tests!".into(), issue: 15, ..Default::default() };
/// assert_eq!(agent_branch(&input), "agent/issue-15-fix-the-failing-tests");
/// ```
pub fn agent_branch(input: &DispatchInput) -> String {
    let task = slug(&input.task, 40);
    let task = if task.is_empty() {
        "task".to_string()
    } else {
        task
    };
    let of = if input.pr > 0 {
        format!("pr-{}", input.pr)
    } else if input.issue > 0 {
        format!("issue-{}", input.issue)
    } else if !input.branch.is_empty() {
        format!("branch-{}", ref_part(&input.branch))
    } else {
        format!("tag-{}", ref_part(&input.tag))
    };
    format!("agent/{of}-{task}")
}

/// The branch agentq used before branches named the job's issue, PR, branch or
/// tag: `agent/{slug of task}`, with fallbacks `issue-{n}` and `pr-{n}`. Jobs and
/// workspaces of that version keep it (see [`agent_branch`]).
pub fn legacy_agent_branch(input: &DispatchInput) -> String {
    let slug = slug(&input.task, 40);
    let name = if !slug.is_empty() {
        slug
    } else if input.issue > 0 {
        format!("issue-{}", input.issue)
    } else if input.pr > 0 {
        format!("pr-{}", input.pr)
    } else {
        "task".to_string()
    };
    format!("agent/{name}")
}

/// Whether `branch` (read back from a record or a workspace) is one agentq
/// could have named: `agent/` and then lower-case letters, digits, `-` and `.`
/// (never `..`, never a leading `.` or `-`), at most 200 bytes. Anything else is
/// not reused.
pub fn is_agent_branch(branch: &str) -> bool {
    let Some(rest) = branch.strip_prefix("agent/") else {
        return false;
    };
    branch.len() <= 200
        && !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'))
        && !rest.starts_with(['.', '-'])
        && !rest.contains("..")
        && !rest.ends_with('.')
        && !rest.ends_with(".lock")
}

/// A branch or tag name inside an agent branch: its slug, plus `.{hash}` of the
/// exact name when the slug is not the name (slugs have no `.`, so the two forms
/// never meet).
fn ref_part(name: &str) -> String {
    let s = slug(name, 40);
    if s == name {
        s
    } else {
        format!("{s}.{:012x}", fnv1a(name.as_bytes()) >> 16)
    }
}

/// 64-bit FNV-1a: a hash that stays the same across Rust versions and hosts
/// (branch names are shared through the remote).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Lower-cases `text`, turns runs of non-alphanumerics into one `-`, trims `-` at
/// both ends and cuts to `max` characters.
pub fn slug(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let mut cut: String = out.chars().take(max).collect();
    while cut.ends_with('-') {
        cut.pop();
    }
    cut
}

/// The status file of the workspace at `dir` (housekeeping reads its time).
pub fn status_file_in(dir: &Path) -> PathBuf {
    dir.join("status.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> DispatchInput {
        DispatchInput {
            repo: "go-io".into(),
            org: "core".into(),
            task: "t".into(),
            ..Default::default()
        }
    }

    #[test]
    fn naming_precedence() {
        let all = DispatchInput {
            pr: 2,
            issue: 3,
            branch: "b".into(),
            tag: "v1".into(),
            ..input()
        };
        assert_eq!(workspace_name(&all), "pr-2");
        assert_eq!(
            workspace_name(&DispatchInput {
                pr: 0,
                ..all.clone()
            }),
            "task-3"
        );
        assert_eq!(
            workspace_name(&DispatchInput {
                pr: 0,
                issue: 0,
                ..all.clone()
            }),
            "branch-b"
        );
        assert_eq!(
            workspace_name(&DispatchInput {
                pr: 0,
                issue: 0,
                branch: String::new(),
                ..all
            }),
            "tag-v1"
        );
        let ws = Workspace::for_input(
            Path::new("/ws"),
            &DispatchInput {
                issue: 3,
                ..input()
            },
        )
        .unwrap();
        assert_eq!(ws.dir, Path::new("/ws/core/go-io/task-3"));
        assert_eq!(
            ws.agent_log("codex"),
            Path::new("/ws/core/go-io/task-3/.meta/agent-codex.log")
        );
    }

    #[test]
    fn escaping_paths_are_refused() {
        let bad = DispatchInput {
            repo: "..".into(),
            issue: 1,
            ..input()
        };
        assert!(Workspace::for_input(Path::new("/ws"), &bad).is_err());
        // A branch or tag can no longer name `..`: its kind is spelled out.
        let odd = DispatchInput {
            branch: "..".into(),
            ..input()
        };
        assert_eq!(
            Workspace::for_input(Path::new("/ws"), &odd).unwrap().dir,
            Path::new("/ws/core/go-io/branch-..")
        );
    }

    #[test]
    fn slugs_and_branches() {
        assert_eq!(slug("  Hello, World!! ", 40), "hello-world");
        assert_eq!(slug(&"a".repeat(50), 40).len(), 40);
        assert_eq!(slug("aaaa bbbb", 5), "aaaa");
        assert_eq!(
            agent_branch(&DispatchInput {
                task: "!!!".into(),
                issue: 7,
                ..input()
            }),
            "agent/issue-7-task"
        );
        assert_eq!(
            agent_branch(&DispatchInput {
                task: "!!!".into(),
                pr: 4,
                ..input()
            }),
            "agent/pr-4-task"
        );
    }

    fn kinds(name: &str) -> [DispatchInput; 2] {
        [
            DispatchInput {
                branch: name.into(),
                ..input()
            },
            DispatchInput {
                tag: name.into(),
                ..input()
            },
        ]
    }

    /// Every input of a generated set of tricky names (and PR, issue numbers)
    /// gets its own workspace name, lease key and agent branch (the same task).
    #[test]
    fn workspace_names_and_agent_branches_are_injective() {
        let parts = [
            "rel", "1", "-", "/", ".", "_", "%", "%2F", "2F", "pr", "R", "x-1",
        ];
        let mut names = std::collections::BTreeSet::new();
        for a in parts {
            names.insert(a.to_string());
            for b in parts {
                names.insert(format!("{a}{b}"));
                for c in parts {
                    names.insert(format!("{a}{b}{c}"));
                }
            }
        }
        let mut inputs: Vec<DispatchInput> = names.iter().flat_map(|n| kinds(n)).collect();
        for n in [1, 2, 10, 12, 21] {
            inputs.push(DispatchInput { pr: n, ..input() });
            inputs.push(DispatchInput {
                issue: n,
                ..input()
            });
        }
        let mut dirs = std::collections::HashMap::new();
        let mut branches = std::collections::HashMap::new();
        for i in &inputs {
            let what = format!(
                "pr {} issue {} branch {:?} tag {:?}",
                i.pr, i.issue, i.branch, i.tag
            );
            let name = workspace_name(i);
            assert!(
                !name.contains('/') && name != "." && name != "..",
                "{what}: {name}"
            );
            if let Some(other) = dirs.insert(name.clone(), what.clone()) {
                panic!("{what} and {other} share the workspace {name}");
            }
            let b = agent_branch(i);
            assert!(is_agent_branch(&b), "{what}: {b}");
            if let Some(other) = branches.insert(b.clone(), what.clone()) {
                panic!("{what} and {other} share the branch {b}");
            }
        }
        assert!(dirs.len() > 3000, "{}", dirs.len());
        // The pairs of the issue, by name.
        let ws = |i: &DispatchInput| workspace_name(i);
        let [rel_slash, rel_slash_tag] = kinds("rel/1");
        let [rel_dash, _] = kinds("rel-1");
        assert_eq!(ws(&rel_slash), "branch-rel%2F1");
        assert_eq!(ws(&rel_dash), "branch-rel-1");
        assert_eq!(ws(&rel_slash_tag), "tag-rel%2F1");
        assert_ne!(
            ws(&kinds("pr-2")[0]),
            ws(&DispatchInput { pr: 2, ..input() })
        );
        assert_eq!(agent_branch(&rel_dash), "agent/branch-rel-1-t");
        assert!(agent_branch(&rel_slash).starts_with("agent/branch-rel-1."));
    }

    #[test]
    fn the_same_task_on_two_issues_gets_two_branches() {
        let on = |issue| DispatchInput {
            task: "Fix the build".into(),
            issue,
            ..input()
        };
        assert_eq!(agent_branch(&on(70)), "agent/issue-70-fix-the-build");
        assert_eq!(agent_branch(&on(71)), "agent/issue-71-fix-the-build");
        assert_eq!(legacy_agent_branch(&on(70)), "agent/fix-the-build");
        assert!(is_agent_branch("agent/fix-the-build"));
        for bad in [
            "agent/",
            "agent/-x",
            "agent/a..b",
            "main",
            "agent/A",
            "agent/x/y",
            "agent/x.lock",
        ] {
            assert!(!is_agent_branch(bad), "{bad}");
        }
    }
}
