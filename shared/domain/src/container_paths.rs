//! Where things are inside an agent's container: fixed paths that the agent
//! table, the prompt, the configuration and the container builder all name.
//! A leaf: it uses nothing else of the crate.

/// Where `Workspace::input_dir` appears in the container (read-only).
pub const AGENT_INPUT_DIR: &str = "/agentq";

/// The agent's `HOME` in every container: a scratch tmpfs of its own, owned by
/// the agent's uid, thrown away with the container (see
/// `agentq_shared::container`).
pub const AGENT_HOME: &str = "/agentq-home";

/// Where the run's output directory appears in the agent container: the one
/// place besides `/workspace` the agent writes that the worker reads back, as
/// data and bounded (see `SUMMARY_FILE`).
pub const AGENT_OUT_DIR: &str = "/agentq-out";

/// The agent's final message (codex's `-o` file; `{summary_file}` in a
/// configured agent's command): read back after the run, bounded, as the job's
/// `summary`.
pub const SUMMARY_FILE: &str = "/agentq-out/summary.md";

/// Where the agent finds the whole prompt, whatever its command line got.
pub const PROMPT_PATH: &str = "/agentq/prompt.md";

/// Where the agent finds the operator's answer to its question (`$AGENTQ_ANSWER_FILE`).
pub const ANSWER_PATH: &str = "/agentq/ANSWER.md";
