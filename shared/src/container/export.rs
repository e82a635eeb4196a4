//! The containers that read the agent's work out of the sandbox: its commits
//! as a bundle, its uncommitted changes as a patch.

use bollard::models::ContainerCreateBody;

use super::{
    body::{bind, container_body},
    ContainerJob,
};
use crate::config::Config;

/// Shell script of the export container: prints a git bundle of the commits on
/// the working tree's `HEAD` that are not in `$1` (the commit the run started
/// from) on stdout. Exit 3: no `HEAD` commit; exit 4: `HEAD` is `$1` (nothing
/// new). It runs in the sandbox, on a read-only mount, with no network: whatever
/// the agent did to the repository's configuration only affects this container,
/// and the worker treats the output as data.
pub const EXPORT_SCRIPT: &str = r#"cd /workspace || exit 2
head=$(git rev-parse --verify --quiet 'HEAD^{commit}') || exit 3
[ "$head" = "$1" ] && exit 4
exec git bundle create - HEAD "^$1""#;

/// Shell script of the leftovers container: prints, on stdout, a binary patch
/// of everything in the working tree that `HEAD` does not have (changes to
/// tracked files and untracked files not ignored; not the question in
/// `BLOCKED.md`, which the outcome reads), as `git diff --binary`
/// against `HEAD` of a temporary index filled by `git add -A`. The agent's own
/// index is never touched, and the new objects go to `/tmp` (the tree is
/// mounted read-only): `GIT_INDEX_FILE` and `GIT_OBJECT_DIRECTORY` there, the
/// repository's objects as an alternate. Hooks and fsmonitor are off; external
/// diff and textconv drivers are not used. Exit 3: no `HEAD` commit. Like the
/// export, it runs in the sandbox and its output is data to the worker.
pub const LEFTOVERS_SCRIPT: &str = r#"cd /workspace || exit 2
git rev-parse --verify --quiet 'HEAD^{commit}' >/dev/null || exit 3
objects=$(git rev-parse --git-path objects) && objects=$(cd "$objects" && pwd -P) || exit 2
mkdir -p /tmp/agentq-leftovers/objects || exit 2
export GIT_INDEX_FILE=/tmp/agentq-leftovers/index GIT_OBJECT_DIRECTORY=/tmp/agentq-leftovers/objects GIT_ALTERNATE_OBJECT_DIRECTORIES="$objects"
g() { git -c core.hooksPath=/dev/null -c core.fsmonitor=false -c core.untrackedCache=false "$@"; }
g read-tree HEAD || exit 5
g add -A -- . ':(exclude)BLOCKED.md' >/dev/null || exit 5
exec git -c core.hooksPath=/dev/null -c core.fsmonitor=false diff --cached --binary --no-ext-diff --no-textconv --no-color --full-index HEAD"#;

/// Time limit of each command the watchdog runs after the agent (the
/// export containers' own, 30 s: an honest export takes seconds).
pub const AFTER_LIMIT_MS: u64 = 30_000;

/// What the agent container's watchdog runs once the agent is gone
/// (`--after`, see `worker/watchdog/after.rs`), for the heartbeat
/// directory's [`AFTER_FILE`](super::AFTER_FILE): section 0 the export
/// ([`EXPORT_SCRIPT`]: the commits since `start_sha` as a bundle), section 1
/// the leftovers ([`LEFTOVERS_SCRIPT`]), each as the containers would run
/// them, in `/workspace`, within [`AFTER_LIMIT_MS`], the two at once (one
/// after the other cost the committing job 20-30 ms more on two cores).
pub fn after_plan(start_sha: &str) -> Vec<u8> {
    let mut args: Vec<String> = vec![
        "2".into(),
        "/workspace".into(),
        AFTER_LIMIT_MS.to_string(),
        // At once (`p`): the two only read the tree, and each one's output
        // is untrusted data to the worker (see `worker/watchdog/after.rs`).
        "p".into(),
        "2".into(),
    ];
    for cmd in [
        vec!["sh", "-c", EXPORT_SCRIPT, "sh", start_sha],
        vec!["sh", "-c", LEFTOVERS_SCRIPT],
    ] {
        args.push(cmd.len().to_string());
        args.extend(cmd.into_iter().map(str::to_string));
    }
    super::encode_argv(&args)
}

/// The create-container body that prints the agent's uncommitted work as a
/// patch (see [`LEFTOVERS_SCRIPT`]), sandboxed as [`export_container`].
pub fn leftovers_container(cfg: &Config, job: &ContainerJob<'_>) -> ContainerCreateBody {
    let command = vec![
        "sh".to_string(),
        "-c".to_string(),
        LEFTOVERS_SCRIPT.to_string(),
    ];
    read_only_tree_body(cfg, job, command, "export")
}

/// The create-container body that exports the agent's commits as a bundle (see
/// [`EXPORT_SCRIPT`]): the job's image and user, the working tree read-only, no
/// network, no environment beyond the basics, no logging (the bundle is read
/// from the attached stdout); with a [`Watchdog`](super::Watchdog), its two read-only directories
/// too.
pub fn export_container(
    cfg: &Config,
    job: &ContainerJob<'_>,
    start_sha: &str,
) -> ContainerCreateBody {
    let command = vec![
        "sh".to_string(),
        "-c".to_string(),
        EXPORT_SCRIPT.to_string(),
        "sh".to_string(),
        start_sha.to_string(),
    ];
    read_only_tree_body(cfg, job, command, "export")
}

/// An export-like container: the job's image and user, the working tree
/// read-only, no network, no API keys, no agent config directories.
fn read_only_tree_body(
    cfg: &Config,
    job: &ContainerJob<'_>,
    command: Vec<String>,
    stage: &str,
) -> ContainerCreateBody {
    let mut body = container_body(
        cfg,
        job,
        command,
        None::<&fn(&str) -> Option<String>>,
        stage,
    );
    if let Some(hc) = body.host_config.as_mut() {
        let mut mounts = vec![bind(job.repo_dir, "/workspace", true)];
        if let Some(w) = &job.watchdog {
            mounts.extend(w.mounts());
        }
        hc.mounts = Some(mounts);
        hc.network_mode = Some("none".into());
        hc.extra_hosts = None;
    }
    body
}
