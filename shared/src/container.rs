//! The agent container as data (the seed's `containerCommand`, as a Docker API
//! create-container body rather than a `docker run` line), with hardening.

use std::{collections::HashMap, path::Path, time::Duration};

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountTypeEnum};

use crate::{
    agent::{AgentSpec, PromptVia},
    config::Config,
    prompt::{self, PromptCut, ANSWER_PATH, PROMPT_PATH},
    workspace::{AGENT_INPUT_DIR, AGENT_OUT_DIR, SUMMARY_FILE},
};

/// Label: the job id.
pub const LABEL_JOB: &str = "agentq.job";
/// Label: the job's attempt.
pub const LABEL_ATTEMPT: &str = "agentq.attempt";
/// Label: the worker id that started the container.
pub const LABEL_WORKER: &str = "agentq.worker";
/// Label: `agent` or `qa`.
pub const LABEL_STAGE: &str = "agentq.stage";
/// Label: the namespace, so reaping never touches another installation's containers.
pub const LABEL_NAMESPACE: &str = "agentq.namespace";
/// Label: the Redis of the namespace, without credentials ([`redis_label`]), so
/// that a worker of another namespace on the same engine can tell whether the
/// container's run is still held.
pub const LABEL_REDIS: &str = "agentq.redis";
/// Label: the container's time limit, seconds (for reaping by age when its
/// Redis is unknown).
pub const LABEL_TIMEOUT: &str = "agentq.timeout_secs";

/// A Redis URL as a label: user, password, query and fragment removed (no
/// secret ever goes on a container).
pub fn redis_label(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    match url.find("://") {
        Some(s) => {
            let rest = &url[s + 3..];
            let host_end = rest.find('/').unwrap_or(rest.len());
            let rest = match rest[..host_end].rfind('@') {
                Some(at) => &rest[at + 1..],
                None => rest,
            };
            format!("{}://{rest}", &url[..s])
        }
        None => String::new(),
    }
}

/// Where the watchdog's directory is mounted in the container (read-only).
pub const WATCHDOG_MOUNT: &str = "/agentq-bin";
/// Where the run's heartbeat directory is mounted in the container (read-only).
pub const BEAT_MOUNT: &str = "/agentq-beat";
/// The agent's `HOME` in every container: a scratch file system of its own
/// (tmpfs, owned by the agent's uid, mode 0700, thrown away with the
/// container), whatever user the image has for that uid and whatever home its
/// passwd names. The agent's read-only config directories (`.codex`,
/// `.claude`, `.gemini` of `agent_home`) are mounted inside it.
pub use crate::workspace::AGENT_HOME;
/// Size of the scratch [`AGENT_HOME`].
const AGENT_HOME_SIZE: &str = "1g";
/// The watchdog's file name in [`Watchdog::bin_dir`].
pub const WATCHDOG_EXE: &str = "agentq-watchdog";
/// The heartbeat's file name in [`Watchdog::beat_dir`].
pub const BEAT_FILE: &str = "beat";
/// File in the heartbeat directory that releases a held agent container (see
/// [`held`]): the command, as [`encode_argv`] writes it.
pub const GO_FILE: &str = "go";

/// The dead-man switch of one container run: the container's process is the
/// watchdog (`{bin_dir}/agentq-watchdog`, from the host, never from the image),
/// which runs the command and stops it once `{beat_dir}/beat` has not been
/// touched for `stale_after`, so the container cannot outlive the worker that
/// touches it.
#[derive(Debug, Clone, Copy)]
pub struct Watchdog<'a> {
    /// Host directory holding the watchdog executable; mounted read-only at
    /// [`WATCHDOG_MOUNT`].
    pub bin_dir: &'a Path,
    /// Host directory of this run's heartbeat file; mounted read-only at
    /// [`BEAT_MOUNT`].
    pub beat_dir: &'a Path,
    /// How old the heartbeat may get before the command is stopped (rounded to
    /// whole milliseconds, at least 1).
    pub stale_after: Duration,
}

impl Watchdog<'_> {
    fn mounts(&self) -> [Mount; 2] {
        [
            bind(self.bin_dir, WATCHDOG_MOUNT, true),
            bind(self.beat_dir, BEAT_MOUNT, true),
        ]
    }

    /// The container's entrypoint: the watchdog, its options and `--`; the
    /// command follows as `cmd`.
    fn entrypoint(&self) -> Vec<String> {
        let ms = self.stale_after.as_millis().clamp(1, u128::from(u64::MAX));
        vec![
            format!("{WATCHDOG_MOUNT}/{WATCHDOG_EXE}"),
            "--beat".into(),
            format!("{BEAT_MOUNT}/{BEAT_FILE}"),
            "--stale-ms".into(),
            ms.to_string(),
            "--".into(),
        ]
    }
}

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

fn bind(source: &Path, target: &str, read_only: bool) -> Mount {
    Mount {
        target: Some(target.to_string()),
        source: Some(source.to_string_lossy().into_owned()),
        typ: Some(MountTypeEnum::BIND),
        read_only: Some(read_only),
        ..Default::default()
    }
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
/// from the attached stdout); with a [`Watchdog`], its two read-only directories
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

/// The same agent container, held: it starts (Docker's slow part) while the
/// workspace is prepared, and its watchdog runs nothing until the worker
/// writes the command to [`GO_FILE`] in the run's heartbeat directory (a
/// directory the container sees read-only and the agent never could write).
/// `None` without a watchdog: such a container can only start when its
/// command is known.
pub fn held(mut body: ContainerCreateBody) -> Option<ContainerCreateBody> {
    let entrypoint = body.entrypoint.as_mut().filter(|e| !e.is_empty())?;
    let dashes = entrypoint.iter().rposition(|a| a == "--")?;
    entrypoint.splice(
        dashes..dashes,
        ["--argv-from".to_string(), format!("{BEAT_MOUNT}/{GO_FILE}")],
    );
    body.cmd = Some(Vec::new());
    Some(body)
}

/// A held container's command (the `cmd` of its unheld body) for [`GO_FILE`]:
/// each argument as its length in bytes, `:`, and the bytes, so that no byte
/// of a prompt can split an argument or start another.
pub fn encode_argv(cmd: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for arg in cmd {
        out.extend_from_slice(arg.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(arg.as_bytes());
    }
    out
}

/// The mount options of the scratch [`AGENT_HOME`]: owned by the agent's
/// `uid:gid` (numbers; a name is left to the kernel's default, root). Not
/// `writable` (`writable_home = false`): owned by root, mode 0555, so the
/// agent (never root, no capabilities) can read it but not write in it; the
/// config directories are still mounted inside.
fn home_tmpfs(user: &str, writable: bool) -> String {
    if !writable {
        return "rw,exec,nosuid,nodev,size=1m,mode=0555,uid=0,gid=0".to_string();
    }
    let mut opts = format!("rw,exec,nosuid,nodev,size={AGENT_HOME_SIZE},mode=0700");
    let (uid, gid) = user.split_once(':').unwrap_or((user, user));
    if let (Ok(uid), Ok(gid)) = (uid.parse::<u32>(), gid.parse::<u32>()) {
        opts.push_str(&format!(",uid={uid},gid={gid}"));
    }
    opts
}

fn container_body<F: Fn(&str) -> Option<String>>(
    cfg: &Config,
    job: &ContainerJob<'_>,
    command: Vec<String>,
    env: Option<&F>,
    stage: &str,
) -> ContainerCreateBody {
    let pool = job.agent.pool();
    let env = |k: &str| env.and_then(|f| f(k));
    let mut env_list = Vec::new();
    let mut keys: Vec<&String> = cfg.docker.env_keys.iter().collect();
    if let Some(a) = cfg.agents.get(pool) {
        keys.extend(a.env_keys.iter());
    }
    for key in keys {
        if let Some(v) = env(key) {
            env_list.push(format!("{key}={v}"));
        }
    }
    let own = cfg.agents.get(pool);
    let d = &cfg.docker;
    env_list.extend([
        "TERM=dumb".to_string(),
        "NO_COLOR=1".to_string(),
        "CI=true".to_string(),
        format!("HOME={AGENT_HOME}"),
        "GOCACHE=/tmp/go-cache".to_string(),
        "GOPATH=/tmp/go".to_string(),
        format!("GIT_USER_NAME={}", d.git_user_name),
        format!("GIT_USER_EMAIL={}", d.git_user_email),
        format!("GIT_AUTHOR_NAME={}", d.git_user_name),
        format!("GIT_AUTHOR_EMAIL={}", d.git_user_email),
        format!("GIT_COMMITTER_NAME={}", d.git_user_name),
        format!("GIT_COMMITTER_EMAIL={}", d.git_user_email),
        format!("OLLAMA_HOST={}", d.ollama_host),
        format!("AGENTQ_JOB_ID={}", job.job_id),
        format!("AGENTQ_PROMPT_FILE={AGENT_INPUT_DIR}/prompt.md"),
        format!("AGENTQ_ANSWER_FILE={ANSWER_PATH}"),
    ]);
    if stage == "agent" {
        // The pool's fixed values (`[agents.NAME] env`), the agent's only:
        // never QA's or export's. One of agentq's (`OLLAMA_HOST`, `TERM`…)
        // is replaced; `HOME` and `AGENTQ_*` are refused at load.
        for (k, v) in own.map(|a| &a.env).into_iter().flatten() {
            let prefix = format!("{k}=");
            env_list.retain(|e| !e.starts_with(&prefix));
            env_list.push(format!("{k}={v}"));
        }
    }

    let mut mounts = vec![
        bind(job.repo_dir, "/workspace", false),
        bind(job.input_dir, AGENT_INPUT_DIR, true),
    ];
    for m in &d.mounts {
        mounts.push(bind(&m.source, &m.target, m.read_only));
    }
    if let Some(w) = &job.watchdog {
        mounts.extend(w.mounts());
    }
    let home = cfg.agent_home();
    let mut config_dirs: Vec<&str> = Vec::new();
    if stage == "agent" {
        // A built-in pool's own directories (unless its command is
        // replaced), then those the pool's `home_dirs` adds.
        if job.agent.configured().is_none() {
            config_dirs.extend(crate::agent::builtin_home_dirs(pool));
        }
        config_dirs.extend(
            own.iter()
                .flat_map(|a| a.home_dirs.iter().map(String::as_str)),
        );
    }
    for dir in config_dirs {
        let src = home.join(dir);
        if src.is_dir() {
            mounts.push(bind(&src, &format!("{AGENT_HOME}/{dir}"), true));
        }
    }

    let labels = HashMap::from([
        (LABEL_JOB.to_string(), job.job_id.to_string()),
        (LABEL_ATTEMPT.to_string(), job.attempt.to_string()),
        (LABEL_WORKER.to_string(), job.worker_id.to_string()),
        (LABEL_NAMESPACE.to_string(), job.namespace.to_string()),
        (LABEL_STAGE.to_string(), stage.to_string()),
        (LABEL_REDIS.to_string(), redis_label(&cfg.redis_url)),
        (
            LABEL_TIMEOUT.to_string(),
            cfg.timeout_for(pool).max(cfg.qa_timeout_secs).to_string(),
        ),
    ]);

    let host_config = HostConfig {
        mounts: Some(mounts),
        network_mode: Some(d.network.clone()),
        extra_hosts: cfg
            .host_gateway_for(pool)
            .then(|| vec!["host.docker.internal:host-gateway".into()]),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges".into()]),
        privileged: Some(false),
        memory: (d.memory_mb > 0).then(|| (d.memory_mb * 1024 * 1024) as i64),
        nano_cpus: (d.cpus > 0.0).then_some((d.cpus * 1e9) as i64),
        pids_limit: (d.pids_limit > 0).then_some(d.pids_limit),
        tmpfs: Some(HashMap::from([
            (
                "/tmp".to_string(),
                "rw,exec,nosuid,nodev,size=1g".to_string(),
            ),
            (
                AGENT_HOME.to_string(),
                home_tmpfs(
                    &job.user,
                    // The agent's only: QA's tools (npm, cargo, composer)
                    // write their caches in HOME.
                    stage != "agent" || own.and_then(|a| a.writable_home).unwrap_or(true),
                ),
            ),
        ])),
        // With a watchdog, the watchdog is PID 1: the kernel never delivers
        // SIGSTOP or SIGKILL (nor any signal it has no handler for) to a
        // namespace's init from inside the namespace, so the agent cannot stop
        // it; it reaps orphans and passes `docker stop`'s SIGTERM to the
        // command's group. Without one, tini does that.
        init: Some(job.watchdog.is_none()),
        // Output is streamed to the worker (capped there); no engine-side copy.
        log_config: Some(bollard::models::HostConfigLogConfig {
            typ: Some("none".into()),
            config: None,
        }),
        ..Default::default()
    };

    ContainerCreateBody {
        image: Some(cfg.image_for(pool).to_string()),
        cmd: Some(command),
        entrypoint: Some(job.watchdog.map_or_else(Vec::new, |w| w.entrypoint())),
        env: Some(env_list),
        working_dir: Some("/workspace".into()),
        labels: Some(labels),
        user: Some(job.user.clone()),
        attach_stdin: Some(false),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(false),
        tty: Some(false),
        host_config: Some(host_config),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_held_body_waits_for_its_command_and_the_command_cannot_be_split() {
        let body = ContainerCreateBody {
            entrypoint: Some(vec![
                "/agentq-bin/agentq-watchdog".into(),
                "--beat".into(),
                "/agentq-beat/beat".into(),
                "--".into(),
            ]),
            cmd: Some(vec!["codex".into(), "prompt".into()]),
            ..Default::default()
        };
        let held_body = held(body.clone()).unwrap();
        assert_eq!(
            held_body.entrypoint.unwrap()[3..],
            ["--argv-from", "/agentq-beat/go", "--"]
        );
        assert_eq!(held_body.cmd, Some(vec![]));
        // Without a watchdog there is nothing to hold it.
        let bare = ContainerCreateBody {
            entrypoint: Some(vec![]),
            ..body
        };
        assert!(held(bare).is_none());
        let argv = ["codex".to_string(), "a 3:b\u{0}4:--rm".to_string()];
        assert_eq!(encode_argv(&argv), b"5:codex12:a 3:b\x004:--rm".to_vec());
    }
    use super::*;

    fn test_job<'a>(agent: &'a AgentSpec, watchdog: Option<Watchdog<'a>>) -> ContainerJob<'a> {
        ContainerJob {
            job_id: "J",
            attempt: 2,
            worker_id: "W",
            namespace: "agentq",
            agent,
            prompt: "P",
            repo_dir: Path::new("/ws/repo"),
            input_dir: Path::new("/ws/.meta/input"),
            out_dir: Some(Path::new("/ws/.meta/agent-out")),
            user: "1000:1000".into(),
            watchdog,
        }
    }

    #[test]
    fn spec_follows_the_seed_and_hardens() {
        let cfg = Config::default();
        let agent = AgentSpec::parse("claude").unwrap();
        let job = test_job(&agent, None);
        let env = |k: &str| (k == "ANTHROPIC_API_KEY").then(|| "sk".to_string());
        let body = agent_container(&cfg, &job, env);
        assert_eq!(body.image.as_deref(), Some("core-dev"));
        let cmd = body.cmd.unwrap();
        assert_eq!(cmd[0], "claude");
        assert_eq!(cmd[1..3], ["-p".to_string(), "P".to_string()]);
        let env = body.env.unwrap();
        assert!(env.contains(&"ANTHROPIC_API_KEY=sk".to_string()));
        assert!(
            !env.iter().any(|e| e.starts_with("OPENAI_API_KEY")),
            "unset keys are not passed"
        );
        assert!(env.contains(&"CI=true".to_string()));
        let labels = body.labels.unwrap();
        assert_eq!(labels[LABEL_JOB], "J");
        assert_eq!(labels[LABEL_ATTEMPT], "2");
        let hc = body.host_config.unwrap();
        assert_eq!(hc.cap_drop.unwrap(), ["ALL"]);
        let mounts = hc.mounts.unwrap();
        assert_eq!(mounts[0].target.as_deref(), Some("/workspace"));
        assert_eq!(mounts[1].target.as_deref(), Some("/agentq"));
        assert_eq!(
            mounts[1].read_only,
            Some(true),
            "the agent cannot change its input"
        );
        assert!(
            !mounts
                .iter()
                .any(|m| m.source.as_deref() == Some("/ws/.meta")),
            "the worker's own files are never mounted"
        );
        assert_eq!(hc.network_mode.as_deref(), Some("agentq-agents"));
        assert_eq!(hc.extra_hosts, None, "no name for the host unless asked");
        assert_eq!(body.user.as_deref(), Some("1000:1000"));
        assert_eq!(
            body.entrypoint,
            Some(vec![]),
            "the image's entrypoint is not used"
        );
        assert!(
            !mounts
                .iter()
                .any(|m| m.target.as_deref() == Some(WATCHDOG_MOUNT)
                    || m.target.as_deref() == Some(BEAT_MOUNT)),
            "no watchdog unless asked"
        );
        let local = AgentSpec::parse("local").unwrap();
        let body = agent_container(
            &cfg,
            &ContainerJob {
                agent: &local,
                ..job.clone()
            },
            |_| None,
        );
        assert!(
            body.host_config.unwrap().extra_hosts.is_some(),
            "local needs Ollama on the host"
        );
        let export = export_container(&cfg, &job, "abc");
        let hc = export.host_config.unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some("none"));
        let m = hc.mounts.unwrap();
        assert_eq!((m.len(), m[0].read_only), (1, Some(true)));
        assert_eq!(export.cmd.unwrap().last().map(String::as_str), Some("abc"));
        assert!(!mounts
            .iter()
            .any(|m| m.source.as_deref().unwrap_or("").contains("docker.sock")));
    }

    #[test]
    fn watchdog_wraps_every_container() {
        let cfg = Config::default();
        let agent = AgentSpec::parse("codex").unwrap();
        let wd = Watchdog {
            bin_dir: Path::new("/run/agentq/bin"),
            beat_dir: Path::new("/run/agentq/beat/J-2-agent"),
            stale_after: Duration::from_secs(90),
        };
        let job = test_job(&agent, Some(wd));
        let entrypoint: Vec<String> = [
            "/agentq-bin/agentq-watchdog",
            "--beat",
            "/agentq-beat/beat",
            "--stale-ms",
            "90000",
            "--",
        ]
        .map(String::from)
        .to_vec();
        let watchdog_mounts = |mounts: &[Mount]| {
            let find = |target: &str| {
                mounts
                    .iter()
                    .find(|m| m.target.as_deref() == Some(target))
                    .map(|m| (m.source.clone().unwrap(), m.read_only))
            };
            assert_eq!(
                find(WATCHDOG_MOUNT),
                Some(("/run/agentq/bin".to_string(), Some(true)))
            );
            assert_eq!(
                find(BEAT_MOUNT),
                Some(("/run/agentq/beat/J-2-agent".to_string(), Some(true)))
            );
        };

        let agent_body = agent_container(&cfg, &job, |_| None);
        let qa_body = qa_container(&cfg, &job, vec!["go".into(), "test".into()]);
        let export_body = export_container(&cfg, &job, "abc");
        // codex reads its prompt on stdin: the watchdog opens the file for it.
        let mut agent_entrypoint = entrypoint.clone();
        agent_entrypoint.splice(
            5..5,
            ["--stdin-from".to_string(), "/agentq/prompt.md".to_string()],
        );
        assert_eq!(agent_body.entrypoint.as_ref(), Some(&agent_entrypoint));
        assert_eq!(agent_body.cmd.as_ref().unwrap().last().unwrap(), "-");
        let leftovers_body = leftovers_container(&cfg, &job);
        for (body, first) in [
            (&agent_body, "codex"),
            (&qa_body, "go"),
            (&export_body, "sh"),
            (&leftovers_body, "sh"),
        ] {
            if first != "codex" {
                assert_eq!(body.entrypoint.as_ref(), Some(&entrypoint));
            }
            assert_eq!(
                body.cmd.as_ref().unwrap()[0],
                first,
                "the command stays the cmd"
            );
            let hc = body.host_config.as_ref().unwrap();
            assert_eq!(
                hc.init,
                Some(false),
                "the watchdog is PID 1, out of the agent's reach"
            );
            watchdog_mounts(hc.mounts.as_ref().unwrap());
        }
        let export_mounts = export_body.host_config.unwrap().mounts.unwrap();
        assert_eq!(
            export_mounts.len(),
            3,
            "the repository and the watchdog's two"
        );
        assert_eq!(export_mounts[0].target.as_deref(), Some("/workspace"));
        assert_eq!(export_mounts[0].read_only, Some(true));

        let short = ContainerJob {
            watchdog: Some(Watchdog {
                stale_after: Duration::from_micros(10),
                ..wd
            }),
            ..job.clone()
        };
        let ep = qa_container(&cfg, &short, vec!["true".into()])
            .entrypoint
            .unwrap();
        assert_eq!(ep[4], "1", "never 0 ms");
    }

    #[test]
    fn only_the_agent_gets_the_output_directory_and_the_summary_file() {
        let cfg = Config::default();
        let agent = AgentSpec::parse("codex").unwrap();
        let job = test_job(&agent, None);
        let out_mount = |body: &ContainerCreateBody| {
            body.host_config
                .as_ref()
                .and_then(|hc| hc.mounts.as_ref())
                .and_then(|m| {
                    m.iter()
                        .find(|m| m.target.as_deref() == Some(AGENT_OUT_DIR))
                })
                .map(|m| (m.source.clone().unwrap_or_default(), m.read_only))
        };
        let body = agent_container(&cfg, &job, |_| None);
        assert_eq!(
            out_mount(&body),
            Some(("/ws/.meta/agent-out".to_string(), Some(false)))
        );
        assert!(body
            .env
            .as_ref()
            .unwrap()
            .contains(&format!("AGENTQ_SUMMARY_FILE={SUMMARY_FILE}")));
        let cmd = body.cmd.unwrap();
        let o = cmd.iter().position(|a| a == "-o").unwrap();
        assert_eq!(cmd[o + 1], SUMMARY_FILE, "codex's -o is the summary file");
        for other in [
            qa_container(&cfg, &job, vec!["true".into()]),
            export_container(&cfg, &job, "abc"),
            leftovers_container(&cfg, &job),
        ] {
            assert_eq!(out_mount(&other), None);
            assert!(!other
                .env
                .unwrap_or_default()
                .iter()
                .any(|e| e.starts_with("AGENTQ_SUMMARY_FILE=")));
        }
    }

    #[test]
    fn the_redis_label_carries_no_credentials() {
        assert_eq!(
            redis_label("rediss://user:s3cret@redis.example:6380/2?x=y"),
            "rediss://redis.example:6380/2"
        );
        assert_eq!(
            redis_label("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            redis_label("redis+sentinel://:pw@h1:26379,h2:26379/mymaster"),
            "redis+sentinel://h1:26379,h2:26379/mymaster"
        );
        assert_eq!(redis_label("garbage"), "");
    }

    #[test]
    fn home_is_a_scratch_tmpfs_of_the_agent_and_long_prompts_are_cut_for_arguments() {
        let cfg = Config::default();
        let gemini = AgentSpec::parse("gemini").unwrap();
        let big = format!("## TASK\n\nx\n\n## PLAN\n\n{}\n", "p".repeat(200 * 1024));
        let job = ContainerJob {
            prompt: &big,
            ..test_job(&gemini, None)
        };
        let body = agent_container(&cfg, &job, |_| None);
        assert!(body
            .env
            .as_ref()
            .unwrap()
            .contains(&format!("HOME={AGENT_HOME}")));
        let tmpfs = body.host_config.as_ref().unwrap().tmpfs.clone().unwrap();
        assert!(
            tmpfs[AGENT_HOME].contains("mode=0700")
                && tmpfs[AGENT_HOME].ends_with(",uid=1000,gid=1000"),
            "{tmpfs:?}"
        );
        let arg = &body.cmd.unwrap()[2];
        assert!(arg.len() <= prompt::ARGUMENT_PROMPT_MAX_BYTES && arg.contains("## PROMPT CUT"));
        assert!(prompt_cut(&job).is_some());
        // Without a watchdog to open the file, claude takes it as an argument.
        let claude = AgentSpec::parse("claude").unwrap();
        let job = test_job(&claude, None);
        assert_eq!(prompt_via(&job), PromptVia::Argument);
        assert_eq!(agent_container(&cfg, &job, |_| None).cmd.unwrap()[2], "P");
    }

    #[test]
    fn a_configured_pool_gets_its_command_env_home_dirs_and_home() {
        let home = tempfile::tempdir().unwrap();
        for d in [".aider", ".codex", ".claude"] {
            std::fs::create_dir(home.path().join(d)).unwrap();
        }
        let mut cfg = Config::from_toml(&format!(
            r#"
[docker]
agent_home = "{}"
[agents.aider]
image = "agentq-aider"
command = ["aider", "--message={{prompt}}", "--model", "{{model}}", "--out", "{{summary_file}}"]
default_model = "openai/stub"
env = {{ OPENAI_BASE_URL = "http://host.docker.internal:8000/v1", OLLAMA_HOST = "http://o" }}
home_dirs = [".aider"]
writable_home = false
host_gateway = true
[agents.claude]
home_dirs = [".aider"]
"#,
            home.path().display()
        ))
        .unwrap();
        let aider = cfg.agent_table().parse("aider").unwrap();
        let big = format!("## TASK\n\nx\n\n## PLAN\n\n{}\n", "p".repeat(200 * 1024));
        let job = ContainerJob {
            prompt: &big,
            ..test_job(&aider, None)
        };
        let body = agent_container(&cfg, &job, |_| None);
        assert_eq!(body.image.as_deref(), Some("agentq-aider"));
        let cmd = body.cmd.clone().unwrap();
        assert_eq!(cmd[0], "aider");
        assert!(cmd[1].starts_with("--message=## TASK") && cmd[1].contains("## PROMPT CUT"));
        assert!(cmd[1].len() <= prompt::ARGUMENT_PROMPT_MAX_BYTES + "--message=".len());
        assert_eq!(
            cmd[2..],
            [
                "--model",
                "openai/stub",
                "--out",
                crate::workspace::SUMMARY_FILE
            ]
        );
        assert!(prompt_cut(&job).is_some(), "the record notes the cut");
        let env = body.env.clone().unwrap();
        assert!(env.contains(&"OPENAI_BASE_URL=http://host.docker.internal:8000/v1".to_string()));
        assert!(env.contains(&"OLLAMA_HOST=http://o".to_string()));
        assert_eq!(
            env.iter().filter(|e| e.starts_with("OLLAMA_HOST=")).count(),
            1
        );
        let hc = body.host_config.unwrap();
        let targets: Vec<_> = hc
            .mounts
            .unwrap()
            .into_iter()
            .filter_map(|m| m.target)
            .collect();
        assert!(targets.contains(&format!("{AGENT_HOME}/.aider")));
        assert!(
            !targets.contains(&format!("{AGENT_HOME}/.codex")),
            "a configured command gets its own dirs only"
        );
        let tmpfs = hc.tmpfs.unwrap();
        assert!(
            tmpfs[AGENT_HOME].contains("mode=0555,uid=0,gid=0"),
            "{tmpfs:?}"
        );
        assert!(hc.extra_hosts.is_some(), "the pool's host_gateway");
        // Fixed values are the agent's only.
        for body in [
            qa_container(&cfg, &job, vec!["true".into()]),
            export_container(&cfg, &job, "abc"),
            leftovers_container(&cfg, &job),
        ] {
            let env = body.env.unwrap();
            assert!(
                !env.iter().any(|e| e.starts_with("OPENAI_BASE_URL")),
                "{env:?}"
            );
            let hc = body.host_config.unwrap();
            let mounts = hc.mounts.unwrap_or_default();
            assert!(!mounts
                .iter()
                .any(|m| m.target.as_deref() == Some("/agentq-home/.aider")));
            // `writable_home = false` is the agent's only: QA's tools write
            // their caches in HOME.
            let tmpfs = hc.tmpfs.unwrap();
            assert!(tmpfs[AGENT_HOME].contains("mode=0700"), "{tmpfs:?}");
        }
        // A built-in pool keeps its directories and gets the extra ones.
        let claude = cfg.agent_table().parse("claude").unwrap();
        let body = agent_container(&cfg, &test_job(&claude, None), |_| None);
        let targets: Vec<_> = body
            .host_config
            .unwrap()
            .mounts
            .unwrap()
            .into_iter()
            .filter_map(|m| m.target)
            .collect();
        for d in [".codex", ".claude", ".aider"] {
            assert!(
                targets.contains(&format!("{AGENT_HOME}/{d}")),
                "{d}: {targets:?}"
            );
        }
        cfg.agents.get_mut("aider").unwrap().writable_home = None;
        let body = agent_container(&cfg, &job, |_| None);
        assert!(body.host_config.unwrap().tmpfs.unwrap()[AGENT_HOME].contains("mode=0700"));
    }
}
