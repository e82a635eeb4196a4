//! The hardened create-container body shared by the agent, QA and export
//! containers: environment, mounts, labels and limits.

use std::{collections::HashMap, path::Path};

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountTypeEnum};

use super::{
    redis_label, ContainerJob, AGENT_HOME, LABEL_ATTEMPT, LABEL_JOB, LABEL_NAMESPACE, LABEL_REDIS,
    LABEL_STAGE, LABEL_TIMEOUT, LABEL_WORKER,
};
use crate::{config::Config, prompt::ANSWER_PATH, workspace::AGENT_INPUT_DIR};

/// Size of the scratch [`AGENT_HOME`].
const AGENT_HOME_SIZE: &str = "1g";

/// A bind mount of host `source` at `target`.
pub(super) fn bind(source: &Path, target: &str, read_only: bool) -> Mount {
    Mount {
        target: Some(target.to_string()),
        source: Some(source.to_string_lossy().into_owned()),
        typ: Some(MountTypeEnum::BIND),
        read_only: Some(read_only),
        ..Default::default()
    }
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

/// The hardened body every container of a job starts from: the job's image,
/// user, labels and mounts, `cmd` as the command, and with a [`Watchdog`](super::Watchdog) the
/// watchdog as entrypoint. `env` (the agent's only) forwards API keys.
pub(super) fn container_body<F: Fn(&str) -> Option<String>>(
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
