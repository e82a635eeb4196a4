//! Configuration: one TOML file (`agentq.toml`) with environment overrides.
//!
//! Precedence, lowest first: built-in defaults, the file (`--config`, `AGENTQ_CONFIG`,
//! or `./agentq.toml` if present), environment variables, command-line flags.

use std::{collections::BTreeMap, path::PathBuf};

use serde::Deserialize;

pub use crate::agent::AgentConfig;

mod timing;

/// Default Redis URL.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Default agent image (seed: `core-dev`).
pub const DEFAULT_IMAGE: &str = "core-dev";

/// `docker.agent_user`'s default, as numbers.
pub const DEFAULT_AGENT_IDS: (u32, u32) = (1000, 1000);

/// Longest a walk of an agent's working tree may take before the tree counts
/// as over its limits (a tree that cannot be measured in time is the agent's
/// doing; see [`Config::tree_bounds`]).
pub const TREE_WALK_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);
/// The least `poll_ms` (a lower value is raised to it at load).
pub const MIN_POLL_MS: u64 = 50;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `redis://` or `rediss://` URL, with auth if needed
    /// (`rediss://user:password@host:port/`), or a Sentinel group:
    /// `redis+sentinel://[user:password@]host:port[,host:port...]/service`.
    pub redis_url: String,
    /// How many replicas must hold a batch of new jobs before `agentq
    /// enqueue` reports them queued (Redis `WAIT`); unset: 1 with a Sentinel
    /// URL, else 0. See [`Config::min_replicas`].
    pub redis_min_replicas: Option<u32>,
    /// For `rediss://`: a PEM file of the CA that signed the server's
    /// certificate, trusted instead of the system's roots.
    pub redis_ca_file: Option<PathBuf>,
    /// Prefix of every agentq Redis key.
    pub namespace: String,
    /// Where workspaces are made.
    pub workspace_root: PathBuf,
    /// Where repositories are cloned from: `{git_base}/{org}/{repo}.git`. A URL or a
    /// local directory of bare repositories.
    pub git_base: String,
    /// Infrastructure attempts per job before it fails for good.
    pub max_attempts: u32,
    /// First infrastructure retry delay in seconds; doubles per attempt, capped at 300.
    pub retry_base_secs: u64,
    /// apalis-redis worker heartbeat, seconds. A worker silent for
    /// `heartbeat_secs * missed_heartbeats` is dead and its jobs are re-delivered.
    pub heartbeat_secs: u64,
    /// See `heartbeat_secs`.
    pub missed_heartbeats: u32,
    /// A directory overriding the built-in templates (`sets/`, `personas/`, `plans/`).
    pub templates_dir: Option<PathBuf>,
    /// The Forgejo forge.
    pub forge: ForgeConfig,
    /// Container settings for every agent.
    pub docker: DockerConfig,
    /// Per-pool limits (`[limits]`), pacing (`[rates]`) and backoff (`[backoff]`).
    #[serde(flatten)]
    pub admission: crate::admission::AdmissionConfig,
    /// How often an idle worker fetches deliveries though nothing told it to,
    /// milliseconds: a safety net for a lost publish. New work and due retries
    /// wake it at once (pub/sub, the timer wait); jobs that wait are parked
    /// and never polled.
    pub poll_ms: u64,
    /// Delete apalis's copies of finished deliveries this long after they finished,
    /// seconds (agentq's own records stay until `agentq purge`).
    pub vacuum_after_secs: u64,
    /// Run build/lint/test checks after a completed agent run.
    pub auto_qa: bool,
    /// Commit what the agent left uncommitted (kept as a patch either way) on
    /// the agent branch, under the agents' git identity, so it is pushed and
    /// checked with the rest.
    pub commit_leftovers: bool,
    /// Time limit of each QA command, seconds.
    pub qa_timeout_secs: u64,
    /// Per-agent overrides and added pools, keyed by pool (`claude`, `codex`,
    /// `aider`, …).
    pub agents: BTreeMap<String, AgentConfig>,
    /// The agent table built from `agents` at load ([`Config::agent_table`]).
    #[serde(skip)]
    pub agent_table: crate::agent::AgentTable,
    /// Largest a job's working tree may grow, MiB (checked during and after the
    /// run; over it the job fails). 0: no limit.
    pub workspace_limit_mb: u64,
    /// Most entries (files, directories, links…: inodes) a job's working tree
    /// may hold, checked with the size; over it the job fails. 0: no limit.
    pub workspace_limit_files: u64,
    /// Host circuit breaker: after this many infrastructure failures in a row a
    /// worker stops taking jobs for `host_cooldown_secs` and shows as degraded.
    pub host_failures: u32,
    /// See `host_failures`, seconds.
    pub host_cooldown_secs: u64,
    /// Least free space the workspace root's file system must have, GB. Under
    /// it before a job's prep, the host degrades (takes no jobs) instead of
    /// starting jobs it cannot finish; under it after a run, the run was the
    /// host's failure (retried), not the agent's. 0: no check.
    pub min_free_gb: f64,
    /// How often one worker of the pool looks for waiting jobs whose delivery
    /// was lost, seconds (jobs whose run lease expired are looked for every
    /// heartbeat).
    pub sweep_secs: u64,
    /// A job whose workspace is on another live host is left to that host for
    /// this long (it has the tree and the history); then any host takes it and
    /// rebuilds the workspace from the shared remote. 0: no affinity.
    pub affinity_secs: u64,
    /// A finished workspace is kept this long after its last use, seconds
    /// (default 7 days); one whose last job is blocked is kept for the resume.
    pub workspace_keep_secs: u64,
    /// Most disk this host's workspaces may use, GB (0: no budget). Over it, the
    /// least recently used ones go first; never one with a running or blocked job.
    pub workspace_budget_gb: f64,
    /// How often each host looks at its workspaces (keep, budget, purged jobs),
    /// seconds.
    pub workspace_sweep_secs: u64,
    /// Commits of history the agent's working tree gets (a shallow copy), so
    /// preparing a workspace costs the same whatever the repository's age. 0:
    /// all of it.
    pub agent_history_depth: u32,
    /// A fleet's first worker to start in a namespace pauses the whole
    /// fleet (as `agentq pause --all` does), so a fresh deployment runs
    /// nothing until an operator runs `agentq unpause --all`; later starts
    /// (restarts included) pause nothing.
    pub start_paused: bool,
    /// The web console's address as people reach it (`https://agentq.example`):
    /// notifications and pull requests link to `{web_url}/jobs/{id}`. Empty: no link.
    pub web_url: String,
    /// Webhook receivers of job and pool events (`[[notify]]`, see
    /// [`crate::notify`]).
    pub notify: Vec<crate::notify::NotifyConfig>,
    /// How long a notification is retried (exponential backoff from
    /// `notify_backoff_ms`) before it is dead-lettered, hours.
    pub notify_retry_hours: f64,
    /// First retry delay of a notification, milliseconds; doubles per try,
    /// capped at 10 minutes.
    pub notify_backoff_ms: u64,
    /// Time limit of one notification request (connect, send, answer), seconds.
    pub notify_timeout_secs: u64,
    /// Most notifications the outbox holds; at the bound the oldest is
    /// dead-lettered (and counted), never dropped silently.
    pub notify_outbox_max: u64,
    /// The verify stage after the pull request, and harvest's limits
    /// (`[verify]`, see [`crate::verify::VerifyConfig`]).
    pub verify: crate::verify::VerifyConfig,
    /// Most disk this host's build caches may use, GB (Go build and module
    /// cache, npm, cargo registry and target directories, pip: Docker named
    /// volumes mounted into QA, and into agents with `cache_for_agents`).
    /// Over it, the least recently used caches are emptied after a QA run,
    /// never one in use. 0: no caches (each QA run starts cold).
    pub qa_cache_gb: f64,
    /// Mount the same build caches into agent runs too (agents also build).
    pub cache_for_agents: bool,
    /// Periodic jobs (`[[schedule]]`, see [`crate::schedule`]).
    pub schedule: Vec<crate::schedule::ScheduleConfig>,
    /// Pools whose every job is enqueued `--unique` (README: Unique jobs).
    pub unique_pools: Vec<String>,
}

/// Container settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DockerConfig {
    /// Agent image (env `AGENT_DOCKER_IMAGE`).
    pub image: String,
    /// Kill the agent after this many seconds; the job ends `timed_out`.
    pub timeout_secs: u64,
    /// Memory limit in MiB (0: none).
    pub memory_mb: u64,
    /// CPU limit in cores (0: none).
    pub cpus: f64,
    /// Process limit (0: none).
    pub pids_limit: i64,
    /// On cancel or shutdown, seconds between SIGTERM and SIGKILL.
    pub stop_grace_secs: u64,
    /// Home directory whose `.codex`, `.claude`, `.gemini` are mounted read-only
    /// (seed: `DIR_HOME`). Empty: `$DIR_HOME`, else `$HOME`.
    pub agent_home: String,
    /// API keys forwarded to every agent by name, when set in the worker's env.
    pub env_keys: Vec<String>,
    /// Git identity inside the container.
    pub git_user_name: String,
    /// Git identity inside the container.
    pub git_user_email: String,
    /// `OLLAMA_HOST` inside the container.
    pub ollama_host: String,
    /// `uid:gid` agents and QA run as. Never root: a worker running as root gives
    /// the working tree to this user; a worker running as another user runs its
    /// agents as itself.
    pub agent_user: String,
    /// The Docker network agents run on, created by the worker if missing, with
    /// traffic between containers disabled.
    pub network: String,
    /// Map `host.docker.internal` to the host in agent containers. Always on for
    /// the `local` pool (it needs Ollama on the host); off otherwise, so an agent
    /// has no name for the host its worker and Redis run on.
    pub host_gateway: bool,
    /// Extra bind mounts for agent and QA containers (caches, fixtures).
    pub mounts: Vec<ExtraMount>,
}

/// One extra bind mount.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExtraMount {
    /// Host path (absolute).
    pub source: PathBuf,
    /// Path in the container (absolute; not `/workspace` or `/agentq`).
    pub target: String,
    /// Mount read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// The Forgejo forge.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForgeConfig {
    /// Base URL, e.g. `https://forge.example` (env `AGENTQ_FORGE_URL`). Empty: no forge.
    pub url: String,
    /// Name of the environment variable holding the API token (never the token itself).
    /// The same token authenticates `git push` (as the password of `git_user`).
    pub token_env: String,
    /// User name for `git push` over HTTP.
    pub git_user: String,
    /// Push the agent's branch and open a pull request when it has new commits.
    pub auto_pr: bool,
    /// Open the pull request even when QA failed.
    pub pr_on_qa_failure: bool,
    /// Base branch of pull requests; empty: the repository's default branch.
    pub base_branch: String,
    /// Retries of a forge call on 429/5xx/connection errors.
    pub max_retries: u32,
    /// First retry delay in ms (doubles per retry; `Retry-After` wins).
    pub retry_base_ms: u64,
    /// How the agent's run time is recorded on the job's issue.
    pub time_tracking: TimeTracking,
    /// Budget of each stage's forge calls together (the issue read before the
    /// run; the whole write-back after it), retries included, seconds. A
    /// write-back that runs out is recorded in `forge_error` and done again later
    /// in the background, holding no slot.
    pub timeout_secs: u64,
    /// How often a worker retries write-backs that ran out of budget, seconds.
    pub writeback_retry_secs: u64,
}

/// How the agent's run time is recorded on the job's issue (`[forge] time_tracking`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeTracking {
    /// After each agent run, add its duration as a tracked time on the issue
    /// (`POST …/issues/{index}/times`), once per run. Safe with any number of jobs
    /// sharing one token.
    #[default]
    Times,
    /// Start the token owner's stopwatch on the issue before the run and stop it
    /// after. A forge keeps one running stopwatch per user: starting one on another
    /// issue stops this one, so this is only right when at most one job with this
    /// token runs at a time.
    Stopwatch,
    /// Record nothing.
    Off,
}

impl Default for ForgeConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            token_env: "FORGE_TOKEN".into(),
            git_user: "agentq".into(),
            auto_pr: true,
            pr_on_qa_failure: false,
            base_branch: String::new(),
            max_retries: 4,
            retry_base_ms: 500,
            time_tracking: TimeTracking::Times,
            timeout_secs: 30,
            writeback_retry_secs: 60,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            redis_url: DEFAULT_REDIS_URL.into(),
            redis_ca_file: None,
            redis_min_replicas: None,
            namespace: "agentq".into(),
            workspace_root: default_workspace_root(),
            git_base: "http://127.0.0.1:3000".into(),
            max_attempts: 3,
            retry_base_secs: 5,
            templates_dir: None,
            forge: ForgeConfig::default(),
            heartbeat_secs: 10,
            missed_heartbeats: 3,
            docker: DockerConfig::default(),
            admission: Default::default(),
            poll_ms: 30_000,
            vacuum_after_secs: 600,
            auto_qa: true,
            commit_leftovers: false,
            qa_timeout_secs: 900,
            agents: BTreeMap::new(),
            agent_table: crate::agent::AgentTable::builtin(),
            workspace_limit_mb: 10 * 1024,
            workspace_limit_files: 200_000,
            host_failures: 3,
            host_cooldown_secs: 60,
            min_free_gb: 1.0,
            sweep_secs: 30,
            affinity_secs: 10,
            workspace_keep_secs: 7 * 24 * 3600,
            workspace_budget_gb: 0.0,
            workspace_sweep_secs: 300,
            agent_history_depth: 200,
            start_paused: false,
            web_url: String::new(),
            notify: Vec::new(),
            notify_retry_hours: 24.0,
            notify_backoff_ms: 1000,
            notify_timeout_secs: 10,
            notify_outbox_max: 10_000,
            verify: Default::default(),
            qa_cache_gb: 10.0,
            cache_for_agents: false,
            schedule: Vec::new(),
            unique_pools: Vec::new(),
        }
    }
}

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            image: DEFAULT_IMAGE.into(),
            timeout_secs: 3600,
            memory_mb: 4096,
            cpus: 2.0,
            pids_limit: 1024,
            stop_grace_secs: 10,
            agent_home: String::new(),
            env_keys: [
                "OPENAI_API_KEY",
                "ANTHROPIC_API_KEY",
                "GEMINI_API_KEY",
                "GOOGLE_API_KEY",
            ]
            .map(String::from)
            .to_vec(),
            git_user_name: "Virgil".into(),
            git_user_email: "virgil@lethean.io".into(),
            ollama_host: "http://host.docker.internal:11434".into(),
            agent_user: "1000:1000".into(),
            network: "agentq-agents".into(),
            host_gateway: false,
            mounts: Vec::new(),
        }
    }
}

/// `~` or `~/…` at the start of `path` as `home` (the README's example config
/// says `workspace_root = "~/.agentq/workspace"`); any other path as it is.
pub fn expand_home(path: &std::path::Path, home: Option<&std::ffi::OsStr>) -> PathBuf {
    match (path.strip_prefix("~"), home) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_path_buf(),
    }
}

fn default_workspace_root() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".agentq/workspace")
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// The file is not valid for agentq.
    #[error("invalid config {0}: {1}")]
    Parse(PathBuf, String),
    /// An environment override has a bad value.
    #[error("invalid value for {0}: {1}")]
    Env(&'static str, String),
}

impl Config {
    /// Parses a TOML document.
    ///
    /// # Errors
    /// TOML syntax errors, unknown keys and invalid values, as text.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let mut cfg: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        cfg.validate()?;
        cfg.agent_table = crate::agent::AgentTable::from_config(&cfg.agents)?;
        cfg.apply_floors();
        Ok(cfg)
    }

    /// Raises values below their floors, once, at load (so no use site clamps):
    /// `heartbeat_secs`, `missed_heartbeats`, `sweep_secs`,
    /// `workspace_sweep_secs`, `max_attempts` and the backoff's `failures` and
    /// `pause_secs` at least 1; `poll_ms` at least 50.
    pub fn apply_floors(&mut self) {
        self.heartbeat_secs = self.heartbeat_secs.max(1);
        self.missed_heartbeats = self.missed_heartbeats.max(1);
        self.sweep_secs = self.sweep_secs.max(1);
        self.workspace_sweep_secs = self.workspace_sweep_secs.max(1);
        self.max_attempts = self.max_attempts.max(1);
        self.poll_ms = self.poll_ms.max(MIN_POLL_MS);
        let backoff = &mut self.admission.backoff;
        backoff.failures = backoff.failures.max(1);
        backoff.pause_secs = backoff.pause_secs.max(1);
    }

    /// Checks values the types cannot.
    ///
    /// # Errors
    /// The first invalid value, naming its key.
    pub fn validate(&self) -> Result<(), String> {
        self.agent_ids()
            .map_err(|e| format!("docker.agent_user: {e}"))?;
        crate::notify::validate(&self.notify)?;
        if !(self.notify_retry_hours.is_finite() && self.notify_retry_hours >= 0.0) {
            return Err("notify_retry_hours: must be a number of hours, 0 or more".into());
        }
        let table = crate::agent::AgentTable::from_config(&self.agents)?;
        // Pool names in [limits], [rates] and [pacing] are the table's.
        self.admission.validate(&table.names())?;
        crate::schedule::validate(&self.schedule, &table)?;
        let pools = table.names();
        if let Some(p) = self.unique_pools.iter().find(|p| !pools.contains(p)) {
            return Err(format!("unique_pools: no pool `{p}` in the agent table"));
        }
        for m in &self.docker.mounts {
            if !m.source.is_absolute() || !m.target.starts_with('/') {
                return Err(format!(
                    "docker.mounts: `{}` → `{}`: both paths must be absolute",
                    m.source.display(),
                    m.target
                ));
            }
            let t = m.target.trim_end_matches('/');
            for reserved in [
                "/workspace",
                crate::container_paths::AGENT_INPUT_DIR,
                crate::container_paths::AGENT_OUT_DIR,
            ] {
                if t == reserved || t.starts_with(&format!("{reserved}/")) || t.is_empty() {
                    return Err(format!(
                        "docker.mounts: target `{}` is reserved for agentq",
                        m.target
                    ));
                }
            }
        }
        Ok(())
    }

    /// `docker.agent_user` as numbers. Root (`0`) is refused.
    ///
    /// # Errors
    /// Not `uid:gid` in numbers, or uid 0.
    pub fn agent_ids(&self) -> Result<(u32, u32), String> {
        let v = &self.docker.agent_user;
        let (u, g) = v.split_once(':').unwrap_or((v.as_str(), v.as_str()));
        let (Ok(uid), Ok(gid)) = (u.parse::<u32>(), g.parse::<u32>()) else {
            return Err(format!(
                "`{v}` is not `uid:gid` in numbers (e.g. 1000:1000)"
            ));
        };
        if uid == 0 {
            return Err("agents never run as root (uid 0)".into());
        }
        Ok((uid, gid))
    }

    /// `uid:gid` agents run as, for a worker whose effective ids are
    /// `process_ids`: `docker.agent_user` when the worker is root (it gives
    /// them the working tree), else the worker's own ids.
    /// (`agentq_shared::config::AgentRunIds` asks this process's ids.)
    pub fn agent_run_ids_as(&self, process_ids: (u32, u32)) -> (u32, u32) {
        let (uid, gid) = process_ids;
        if uid == 0 {
            // Validated at load; the fallback is the documented default.
            self.agent_ids().unwrap_or(DEFAULT_AGENT_IDS)
        } else {
            (uid, gid)
        }
    }

    /// Whether agents of `pool` get `host.docker.internal`: the pool's
    /// `host_gateway`, else `docker.host_gateway`, and always for `local`.
    pub fn host_gateway_for(&self, pool: &str) -> bool {
        let own = self.agents.get(pool).and_then(|a| a.host_gateway);
        own.unwrap_or(self.docker.host_gateway) || pool == "local"
    }

    /// The agent table the workers run: the built-in agents with
    /// `[agents.NAME]` applied (built at load).
    pub fn agent_table(&self) -> &crate::agent::AgentTable {
        &self.agent_table
    }

    /// Rebuilds [`Config::agent_table`] after `agents` was changed in code.
    ///
    /// # Errors
    /// An invalid `[agents.NAME]` value, by key.
    pub fn rebuild_agent_table(&mut self) -> Result<(), String> {
        self.agent_table = crate::agent::AgentTable::from_config(&self.agents)?;
        Ok(())
    }

    /// Applies `AGENTQ_*` and `AGENT_DOCKER_IMAGE` overrides from `get`.
    ///
    /// # Errors
    /// A numeric override that does not parse.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = get("AGENTQ_REDIS_URL") {
            self.redis_url = v;
        }
        if let Some(v) = get("AGENTQ_REDIS_CA_FILE") {
            // Empty: the system's roots.
            self.redis_ca_file = (!v.is_empty()).then(|| v.into());
        }
        if let Some(v) = get("AGENTQ_REDIS_MIN_REPLICAS") {
            self.redis_min_replicas = Some(
                v.parse()
                    .map_err(|_| ConfigError::Env("AGENTQ_REDIS_MIN_REPLICAS", v))?,
            );
        }
        if let Some(v) = get("AGENTQ_NAMESPACE") {
            self.namespace = v;
        }
        if let Some(v) = get("AGENTQ_WORKSPACE_ROOT") {
            self.workspace_root = v.into();
        }
        if let Some(v) = get("AGENTQ_GIT_BASE") {
            self.git_base = v;
        }
        if let Some(v) = get("AGENTQ_FORGE_URL") {
            self.forge.url = v;
        }
        if let Some(v) = get("AGENTQ_TEMPLATES_DIR") {
            self.templates_dir = Some(v.into());
        }
        if let Some(v) = get("AGENT_DOCKER_IMAGE") {
            self.docker.image = v;
        }
        if let Some(v) = get("AGENTQ_MAX_ATTEMPTS") {
            self.max_attempts = v
                .parse()
                .map_err(|_| ConfigError::Env("AGENTQ_MAX_ATTEMPTS", v))?;
        }
        if let Some(v) = get("AGENTQ_AGENT_TIMEOUT_SECS") {
            self.docker.timeout_secs = v
                .parse()
                .map_err(|_| ConfigError::Env("AGENTQ_AGENT_TIMEOUT_SECS", v))?;
        }
        Ok(())
    }

    /// Replicas that must acknowledge new jobs before they count as queued:
    /// [`Config::redis_min_replicas`], else 1 for a Sentinel group (so that
    /// a job reported queued survives the primary's loss: Sentinel promotes
    /// the replica that has the most of its data), else 0.
    pub fn min_replicas(&self) -> u32 {
        self.redis_min_replicas
            .unwrap_or(u32::from(self.redis_url.starts_with("redis+sentinel://")))
    }

    /// The image for an agent pool: the pool's override, else the global image.
    pub fn image_for(&self, pool: &str) -> &str {
        self.agents
            .get(pool)
            .and_then(|a| a.image.as_deref())
            .unwrap_or(&self.docker.image)
    }

    /// The timeout for an agent pool, seconds.
    pub fn timeout_for(&self, pool: &str) -> u64 {
        self.agents
            .get(pool)
            .and_then(|a| a.timeout_secs)
            .unwrap_or(self.docker.timeout_secs)
    }

    /// The home whose agent config directories are mounted.
    pub fn agent_home(&self) -> PathBuf {
        if !self.docker.agent_home.is_empty() {
            return PathBuf::from(&self.docker.agent_home);
        }
        std::env::var_os("DIR_HOME")
            .or_else(|| std::env::var_os("HOME"))
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/nonexistent"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_in_the_workspace_root_is_the_workers_host() {
        let mut cfg = Config {
            workspace_root: "/var/lib/agentq/ws/{host}".into(),
            ..Config::default()
        };
        assert_eq!(
            cfg.workspace_root_of("a1b2"),
            PathBuf::from("/var/lib/agentq/ws/a1b2")
        );
        cfg.workspace_root = "/srv/ws".into();
        assert_eq!(cfg.workspace_root_of("a1b2"), PathBuf::from("/srv/ws"));
    }

    #[test]
    fn infra_retries_double_from_retry_base_secs_up_to_five_minutes() {
        let cfg = Config {
            retry_base_secs: 5,
            ..Config::default()
        };
        let secs: Vec<u64> = [1, 2, 3, 30]
            .map(|t| cfg.infra_retry_delay(t).as_secs())
            .to_vec();
        assert_eq!(secs, [5, 10, 20, 300]);
    }

    /// The README's example `agentq.toml`.
    fn readme_config() -> &'static str {
        include_str!("../../../README.md")
            .split("```toml\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .expect("README has a ```toml block")
    }

    #[test]
    fn the_readme_example_config_is_accepted_and_read() {
        let block = readme_config();
        // Unknown keys are refused (deny_unknown_fields), so every key parses
        // into a field; the values that differ from the defaults arrive.
        let cfg = Config::from_toml(block).unwrap();
        assert_eq!(cfg.workspace_root, PathBuf::from("~/.agentq/workspace"));
        assert_eq!(
            expand_home(&cfg.workspace_root, Some(std::ffi::OsStr::new("/h"))),
            PathBuf::from("/h/.agentq/workspace")
        );
        assert_eq!(cfg.git_base, "http://127.0.0.1:3000");
        assert_eq!(cfg.admission.pool_limit("claude"), 3);
        assert_eq!(cfg.admission.limits["claude"].model("opus"), 1);
        assert_eq!(cfg.admission.pool_limit("codex"), 4);
        assert_eq!(cfg.admission.rate_ms("gemini"), 10_000);
        assert_eq!(cfg.forge.url, "https://forge.example");
        assert_eq!(cfg.forge.token_env, "FORGE_TOKEN");
        assert_eq!(cfg.docker.memory_mb, 4096);
        assert_eq!(cfg.timeout_for("claude"), 1800);
        assert_eq!(cfg.timeout_for("codex"), 3600);
        assert_eq!(
            cfg.agents["claude"].qa,
            Some(vec![vec!["make".to_string(), "check".to_string()]])
        );
    }

    #[test]
    fn the_readme_configured_agent_example_is_accepted() {
        let block = include_str!("../../../README.md")
            .split("```toml\n")
            .find(|b| b.starts_with("[agents.aider]"))
            .and_then(|b| b.split("```").next())
            .expect("README has the [agents.aider] example");
        let cfg = Config::from_toml(block).unwrap();
        let aider = cfg.agent_table().get("aider").unwrap();
        assert_eq!(aider.limit_patterns, ["rate limit", "quota exceeded"]);
        assert!(cfg.host_gateway_for("aider") && !cfg.host_gateway_for("codex"));
        let spec = cfg.agent_table().parse("aider").unwrap();
        assert_eq!(spec.command("").1[4], "openai/stub");
    }

    #[test]
    fn min_replicas_is_one_for_a_sentinel_group_unless_set() {
        let mut cfg = Config::default();
        assert_eq!(cfg.min_replicas(), 0);
        cfg.redis_url = "redis+sentinel://127.0.0.1:26379/mymaster".into();
        assert_eq!(cfg.min_replicas(), 1);
        cfg.apply_env(|k| (k == "AGENTQ_REDIS_MIN_REPLICAS").then(|| "0".to_string()))
            .unwrap();
        assert_eq!(cfg.min_replicas(), 0);
        assert!(cfg
            .apply_env(|k| (k == "AGENTQ_REDIS_MIN_REPLICAS").then(|| "two".to_string()))
            .is_err());
    }

    /// Another value of the same type, for [`every_key_of_the_readme_example_config_has_an_effect`].
    fn changed(v: &toml::Value) -> toml::Value {
        use toml::Value as V;
        match v {
            V::Integer(n) => V::Integer(n + 1),
            V::Float(f) => V::Float(f + 0.5),
            V::Boolean(b) => V::Boolean(!b),
            V::String(s) => V::String(format!("{s}x")),
            V::Array(a) if a.is_empty() => V::Array(vec![V::String("x".into())]),
            V::Array(a) => V::Array(a[..a.len() - 1].to_vec()),
            V::Table(t) => V::Table(t.iter().map(|(k, v)| (k.clone(), changed(v))).collect()),
            V::Datetime(d) => V::Datetime(*d),
        }
    }

    #[test]
    fn every_key_of_the_readme_example_config_has_an_effect() {
        let block = readme_config();
        let doc: toml::Table = block.parse().unwrap();
        let base = format!("{:?}", Config::from_toml(block).unwrap());
        // Every leaf key, changed alone: the loaded configuration changes, or
        // the new value is refused. A key parsed into nothing would fail here.
        let mut leaves = Vec::new();
        for (k, v) in &doc {
            match v {
                toml::Value::Table(t) => {
                    leaves.extend(t.keys().map(|k2| vec![k.clone(), k2.clone()]))
                }
                _ => leaves.push(vec![k.clone()]),
            }
        }
        assert!(
            leaves.len() >= 10,
            "only {} keys in the README example",
            leaves.len()
        );
        for path in leaves {
            let mut edited = doc.clone();
            let mut at = &mut edited;
            for seg in &path[..path.len() - 1] {
                at = at.get_mut(seg).unwrap().as_table_mut().unwrap();
            }
            let leaf = at.get_mut(&path[path.len() - 1]).unwrap();
            *leaf = changed(leaf);
            if let Ok(cfg) = Config::from_toml(&toml::to_string(&edited).unwrap()) {
                assert_ne!(
                    format!("{cfg:?}"),
                    base,
                    "README key {} has no effect",
                    path.join(".")
                );
            }
        }
    }

    #[test]
    fn a_tilde_is_the_home_directory() {
        let home = Some(std::ffi::OsStr::new("/home/ann"));
        let p = |s: &str| std::path::PathBuf::from(s);
        assert_eq!(
            expand_home(&p("~/.agentq/workspace"), home),
            p("/home/ann/.agentq/workspace")
        );
        assert_eq!(expand_home(&p("~"), home), p("/home/ann"));
        assert_eq!(expand_home(&p("/srv/ws"), home), p("/srv/ws"));
        assert_eq!(expand_home(&p("~bob/x"), home), p("~bob/x"));
        assert_eq!(expand_home(&p("~/x"), None), p("~/x"));
    }

    #[test]
    fn file_then_env() {
        let mut cfg = Config::from_toml(
            "namespace = \"x\"\n[docker]\nimage = \"a\"\n[agents.claude]\nimage = \"c\"\ntimeout_secs = 5\n",
        )
        .unwrap();
        assert_eq!(cfg.image_for("claude"), "c");
        assert_eq!(cfg.image_for("codex"), "a");
        assert_eq!(cfg.timeout_for("claude"), 5);
        cfg.apply_env(|k| (k == "AGENT_DOCKER_IMAGE").then(|| "b".to_string()))
            .unwrap();
        assert_eq!(cfg.image_for("codex"), "b");
        assert_eq!(cfg.namespace, "x");
    }

    #[test]
    fn agents_never_run_as_root_and_mounts_stay_out_of_agentqs_paths() {
        assert_eq!(Config::default().agent_ids().unwrap(), (1000, 1000));
        let e = Config::from_toml("[docker]\nagent_user = \"0:0\"\n").unwrap_err();
        assert!(e.contains("docker.agent_user") && e.contains("root"), "{e}");
        let e = Config::from_toml("[docker]\nagent_user = \"dev\"\n").unwrap_err();
        assert!(e.contains("uid:gid"), "{e}");
        let e = Config::from_toml(
            "[docker]\nmounts = [{ source = \"/x\", target = \"/workspace/y\" }]\n",
        )
        .unwrap_err();
        assert!(e.contains("reserved"), "{e}");
        let e = Config::from_toml(
            "[docker]\nmounts = [{ source = \"/x\", target = \"/agentq-out\" }]\n",
        )
        .unwrap_err();
        assert!(e.contains("`/agentq-out` is reserved"), "{e}");
        let ok = Config::from_toml(
            "[docker]\nmounts = [{ source = \"/x\", target = \"/cache\", read_only = true }]\n",
        )
        .unwrap();
        assert_eq!(ok.docker.mounts[0].target, "/cache");
        assert!(ok.host_gateway_for("local") && !ok.host_gateway_for("codex"));
    }

    /// A root worker gives agents `docker.agent_user`; any other runs them
    /// as itself.
    #[test]
    fn agents_run_as_agent_user_under_a_root_worker_else_as_the_worker() {
        let cfg = Config::from_toml("[docker]\nagent_user = \"1234:5678\"\n").unwrap();
        assert_eq!(cfg.agent_run_ids_as((0, 0)), (1234, 5678));
        assert_eq!(cfg.agent_run_ids_as((0, 7)), (1234, 5678));
        assert_eq!(cfg.agent_run_ids_as((1000, 100)), (1000, 100));
    }

    #[test]
    fn forge_time_tracking_defaults_to_tracked_times() {
        let cfg = Config::from_toml("[forge]\nurl = \"http://f\"\n").unwrap();
        assert_eq!(cfg.forge.time_tracking, TimeTracking::Times);
        assert_eq!((cfg.forge.max_retries, cfg.forge.retry_base_ms), (4, 500));
        let cfg = Config::from_toml(
            "[forge]\ntime_tracking = \"stopwatch\"\nmax_retries = 1\nretry_base_ms = 20\n",
        )
        .unwrap();
        assert_eq!(cfg.forge.time_tracking, TimeTracking::Stopwatch);
        assert_eq!((cfg.forge.max_retries, cfg.forge.retry_base_ms), (1, 20));
        assert!(Config::from_toml("[forge]\ntime_tracking = \"sometimes\"\n").is_err());
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(Config::from_toml("nope = 1").unwrap_err().contains("nope"));
    }
}
