//! One `[agents.NAME]` table of `agentq.toml`, as written (checked and turned
//! into a pool by [`crate::agent::AgentTable::from_config`]).

use std::collections::BTreeMap;

use serde::Deserialize;

/// Overrides for one agent pool.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Image for this pool.
    pub image: Option<String>,
    /// Timeout for this pool, seconds.
    pub timeout_secs: Option<u64>,
    /// Extra env keys forwarded by name.
    pub env_keys: Vec<String>,
    /// QA commands for this pool, replacing the detected ones (each an argument vector).
    pub qa: Option<Vec<Vec<String>>>,
    /// The pool's command (program and arguments, with placeholders such as
    /// `{prompt_file}` and `{model}`; see `agent::Template`). Required for a
    /// pool that is not built in; for a built-in pool, it replaces the
    /// built-in command.
    pub command: Option<Vec<String>>,
    /// `{model}` when the job names none (`pool` rather than `pool:model`).
    pub default_model: Option<String>,
    /// The command reads the prompt on standard input.
    pub stdin: bool,
    /// Fixed environment values of this pool's agent containers (not of QA
    /// or export). Not secret: `agentq agents` shows them; secrets go by name
    /// in `env_keys`.
    pub env: BTreeMap<String, String>,
    /// Config directories under `agent_home` mounted read-only inside the
    /// agent's scratch home (a built-in pool keeps its own too).
    pub home_dirs: Vec<String>,
    /// The agent's scratch home is writable (default); `false`: the agent
    /// cannot write in it.
    pub writable_home: Option<bool>,
    /// Output that means the agent hit its provider's limits (for quota
    /// handling); shown by `agentq agents`.
    pub limit_patterns: Vec<String>,
    /// Map `host.docker.internal` to the host for this pool's containers;
    /// unset: `docker.host_gateway` (always on for `local`).
    pub host_gateway: Option<bool>,
}
