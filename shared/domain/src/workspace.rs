//! Workspace layout on disk: `{root}/{org}/{repo}/{pr-N|task-N|branch|tag}/`.
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

/// Where [`Workspace::input_dir`] appears in the container (read-only).
pub const AGENT_INPUT_DIR: &str = "/agentq";

/// The last path segment of a workspace: `pr-{n}`, `task-{n}`, `{branch}` or `{tag}`,
/// with `/` in a branch or tag turned into `-` so the workspace stays one directory.
pub fn workspace_name(input: &DispatchInput) -> String {
    if input.pr > 0 {
        format!("pr-{}", input.pr)
    } else if input.issue > 0 {
        format!("task-{}", input.issue)
    } else if !input.branch.is_empty() {
        input.branch.replace('/', "-")
    } else {
        input.tag.replace('/', "-")
    }
}

/// The agent's branch: `agent/{slug of task}`, with fallbacks `issue-{n}` and
/// `pr-{n}` when the task has no usable characters.
///
/// ```
/// use agentq_domain::{input::DispatchInput, workspace::agent_branch};
/// let input = DispatchInput { task: "Fix the failing tests!".into(), issue: 15, ..Default::default() };
/// assert_eq!(agent_branch(&input), "agent/fix-the-failing-tests");
/// ```
pub fn agent_branch(input: &DispatchInput) -> String {
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
            "b"
        );
        assert_eq!(
            workspace_name(&DispatchInput {
                pr: 0,
                issue: 0,
                branch: String::new(),
                ..all
            }),
            "v1"
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
        let bad = DispatchInput {
            branch: "..".into(),
            ..input()
        };
        assert!(Workspace::for_input(Path::new("/ws"), &bad).is_err());
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
            "agent/issue-7"
        );
        assert_eq!(
            agent_branch(&DispatchInput {
                task: "!!!".into(),
                pr: 4,
                ..input()
            }),
            "agent/pr-4"
        );
    }
}
