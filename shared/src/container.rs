//! The agent container as data (the seed's `containerCommand`, as a Docker API
//! create-container body rather than a `docker run` line), with hardening.

mod body;
mod export;
mod labels;
mod watchdog;

use std::path::Path;

use bollard::models::ContainerCreateBody;

use self::body::{bind, container_body};
pub use self::{
    export::{
        after_plan, export_container, leftovers_container, AFTER_LIMIT_MS, EXPORT_SCRIPT,
        LEFTOVERS_SCRIPT,
    },
    labels::{
        redis_label, LABEL_ATTEMPT, LABEL_JOB, LABEL_NAMESPACE, LABEL_REDIS, LABEL_STAGE,
        LABEL_TIMEOUT, LABEL_WORKER,
    },
    watchdog::{
        encode_argv, held, Watchdog, AFTER_FILE, BEAT_FILE, BEAT_MOUNT, GO_FILE, WATCHDOG_EXE,
        WATCHDOG_MOUNT,
    },
};
use crate::{
    agent::{AgentSpec, PromptVia},
    config::Config,
    prompt::{self, PromptCut, PROMPT_PATH},
    workspace::{AGENT_OUT_DIR, SUMMARY_FILE},
};

/// The agent's `HOME` in every container: a scratch file system of its own
/// (tmpfs, owned by the agent's uid, mode 0700, thrown away with the
/// container), whatever user the image has for that uid and whatever home its
/// passwd names. The agent's read-only config directories (`.codex`,
/// `.claude`, `.gemini` of `agent_home`) are mounted inside it.
pub use crate::workspace::AGENT_HOME;

/// Everything that identifies one agent container.
#[derive(Debug, Clone)]
pub struct ContainerJob<'a> {
    /// Job id.
    pub job_id: &'a str,
    /// Attempt number.
    pub attempt: u32,
    /// Worker id.
    pub worker_id: &'a str,
    /// Redis namespace.
    pub namespace: &'a str,
    /// The agent.
    pub agent: &'a AgentSpec,
    /// The prompt.
    pub prompt: &'a str,
    /// `{workspace}/repo` on the host.
    pub repo_dir: &'a Path,
    /// `{workspace}/.meta/input` on the host (prompt, answer), mounted read-only.
    pub input_dir: &'a Path,
    /// The run's output directory on the host (`{workspace}/.meta/agent-out`),
    /// mounted read-write at [`AGENT_OUT_DIR`] in the agent's container only
    /// (never QA, export or leftovers); `None`: not mounted.
    pub out_dir: Option<&'a Path>,
    /// `uid:gid` to run as (never root).
    pub user: String,
    /// The dead-man switch, if any: see [`Watchdog`]. It applies to every
    /// container of the job (agent, QA, export).
    pub watchdog: Option<Watchdog<'a>>,
}

/// The create-container body for an agent run.
///
/// `env` looks up the worker's environment: API keys are forwarded by name, only
/// when set. Mounts: repo → `/workspace`, the input directory (prompt, answer) →
/// `/agentq` read-only, the run's output directory → `/agentq-out` read-write
/// (with `AGENTQ_SUMMARY_FILE` naming the summary file in it), the agent's config directories read-only (`~/.codex`
/// always, `~/.claude` for claude, `~/.gemini` for gemini; only those that
/// exist), and `[docker] mounts`; with a [`Watchdog`], its two directories
/// read-only and the watchdog as entrypoint. Never the Docker socket, SSH keys,
/// the worker's own files, the forge token or Redis credentials.
pub fn agent_container(
    cfg: &Config,
    job: &ContainerJob<'_>,
    env: impl Fn(&str) -> Option<String>,
) -> ContainerCreateBody {
    let via = prompt_via(job);
    let (cmd, args) = match via {
        PromptVia::Stdin => job.agent.stdin_command(),
        PromptVia::Argument => job.agent.command(&prompt::for_argument(job.prompt).0),
        PromptVia::File | PromptVia::Unused => job.agent.command(job.prompt),
    };
    let mut command = vec![cmd];
    command.extend(args);
    let mut body = container_body(cfg, job, command, Some(&env), "agent");
    if let Some(out) = job.out_dir {
        // The one writable place besides `/workspace` that the worker reads
        // back (the summary, as data); counted in the working tree's bounds.
        if let Some(hc) = body.host_config.as_mut() {
            hc.mounts
                .get_or_insert_with(Vec::new)
                .push(bind(out, AGENT_OUT_DIR, false));
        }
        body.env
            .get_or_insert_with(Vec::new)
            .push(format!("AGENTQ_SUMMARY_FILE={SUMMARY_FILE}"));
    }
    if job.watchdog.is_some() {
        // The agent's commits and leftovers are read out by the watchdog
        // once it is gone, on a channel the agent never holds (see
        // `after_plan`).
        if let Some(entrypoint) = body.entrypoint.as_mut() {
            if let Some(dashes) = entrypoint.iter().rposition(|a| a == "--") {
                entrypoint.splice(
                    dashes..dashes,
                    ["--after".to_string(), format!("{BEAT_MOUNT}/{AFTER_FILE}")],
                );
            }
        }
    }
    if via == PromptVia::Stdin {
        // The watchdog opens the prompt file read-only as the agent's stdin.
        if let Some(entrypoint) = body.entrypoint.as_mut() {
            if let Some(dashes) = entrypoint.iter().rposition(|a| a == "--") {
                entrypoint.splice(
                    dashes..dashes,
                    ["--stdin-from".to_string(), PROMPT_PATH.to_string()],
                );
            }
        }
    }
    body
}

/// How the job's prompt reaches its agent: on standard input when the agent's
/// CLI reads it there and a watchdog is there to open the prompt file for it
/// (see [`AgentSpec::prompt_via`]).
pub fn prompt_via(job: &ContainerJob<'_>) -> PromptVia {
    job.agent.prompt_via(job.watchdog.is_some())
}

/// What of the prompt the agent's command line leaves out, when it takes the
/// prompt as an argument and the prompt is too long for one (see
/// [`prompt::for_argument`]); `None` when it gets all of it.
pub fn prompt_cut(job: &ContainerJob<'_>) -> Option<PromptCut> {
    match prompt_via(job) {
        PromptVia::Argument => prompt::for_argument(job.prompt).1,
        PromptVia::Stdin | PromptVia::File | PromptVia::Unused => None,
    }
}

/// The create-container body for one QA command: the job's image, the repository
/// at `/workspace`, the same hardening as the agent, no API keys and no agent
/// config directories.
pub fn qa_container(
    cfg: &Config,
    job: &ContainerJob<'_>,
    command: Vec<String>,
) -> ContainerCreateBody {
    container_body(cfg, job, command, None::<&fn(&str) -> Option<String>>, "qa")
}

#[cfg(test)]
mod tests;
