//! The agent table: which program runs for an agent name, with which arguments
//! (the seed's `agentCommand`), and the pools an operator adds in
//! `[agents.NAME]` (see [`AgentTable`]).

mod builtin;
pub mod model;
mod settings;
mod table;
mod template;

use std::{fmt, sync::Arc};

pub use builtin::{
    home_dirs as builtin_home_dirs, AGENTS, CLAUDE_SANDBOX_PROMPT, CODEX_LAST_MESSAGE,
    CODEX_REVIEW_PROMPT, DEFAULT_LOCAL_MODEL, LOCAL_SCRIPT,
};
pub use settings::AgentConfig;
pub use table::{is_env_name, is_pool_name, AgentTable, Configured, Pool};
pub use template::{Placeholder, Template};

/// How an agent's command line gets the job's prompt. Whatever it is, the
/// whole prompt is also in `/agentq/prompt.md` (read-only) and named by
/// `$AGENTQ_PROMPT_FILE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptVia {
    /// On standard input (the prompt file, opened read-only by the watchdog):
    /// any size.
    Stdin,
    /// As one argument: cut to fit (see `prompt::for_argument`).
    Argument,
    /// As the path of the prompt file (`{prompt_file}` of a configured
    /// command): any size.
    File,
    /// Not at all (coderabbit, `codex:review`: fixed instructions).
    Unused,
}

impl PromptVia {
    /// As `agentq agents` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdin => "stdin",
            Self::Argument => "argument",
            Self::File => "file",
            Self::Unused => "unused",
        }
    }
}

/// An agent name split into its pool and optional model: `claude:haiku` is pool
/// `claude`, model `haiku`; `local:org/model:tag` is pool `local`, model
/// `org/model:tag` (split at the first `:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSpec {
    /// The pool: the part before the first `:`.
    pub base: String,
    /// The model or variant: the part after the first `:`, if any.
    pub model: Option<String>,
    /// The pool's configured command; `None`: the built-in one.
    configured: Option<Arc<Configured>>,
}

/// An agent name that agentq cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// The pool is not in the table.
    #[error("unknown agent `{0}` (known: the pools of `agentq agents`: codex, claude, gemini, coderabbit, local and those of [agents.NAME] with a command; each with an optional :model)")]
    Unknown(String),
    /// The model part is not allowed.
    #[error("invalid model {0}")]
    BadModel(String),
    /// A configured command with `{model}`, no model given and no default.
    #[error("agent `{0}` needs a model: give `{0}:MODEL`, or set agents.{0}.default_model")]
    NeedsModel(String),
    /// A model given to a configured command without `{model}`.
    #[error("agent `{0}` takes no model (its command has no {{model}})")]
    TakesNoModel(String),
}

impl AgentSpec {
    /// Parses `base[:model]` against the built-in agents only, refusing
    /// unknown pools and unsafe model names. Jobs are parsed against the
    /// configured table ([`AgentTable::parse`], `Config::agent_table`).
    ///
    /// # Errors
    /// [`AgentError`] for an unknown pool or a bad model.
    ///
    /// ```
    /// use agentq_domain::agent::AgentSpec;
    /// let a = AgentSpec::parse("claude:haiku").unwrap();
    /// assert_eq!((a.base.as_str(), a.model.as_deref()), ("claude", Some("haiku")));
    /// assert!(AgentSpec::parse("gpt").is_err());
    /// ```
    pub fn parse(agent: &str) -> Result<Self, AgentError> {
        AgentTable::builtin().parse(agent)
    }

    /// The pool name (the part before `:`), which limits and backoff key on.
    pub fn pool(&self) -> &str {
        &self.base
    }

    /// The configured command, if the pool has one.
    pub fn configured(&self) -> Option<&Configured> {
        self.configured.as_deref()
    }

    /// How this agent's CLI takes the prompt, when it can read standard input
    /// (`stdin`: a watchdog is there to give it the prompt file): see
    /// `builtin::prompt_via` for the built-in agents, [`Configured::prompt_via`]
    /// for a configured command.
    pub fn prompt_via(&self, stdin: bool) -> PromptVia {
        match &self.configured {
            Some(c) => c.prompt_via(stdin),
            None => builtin::prompt_via(&self.base, self.model.as_deref(), stdin),
        }
    }

    /// The program and its arguments when the prompt comes on standard input
    /// ([`PromptVia::Stdin`]): codex's prompt argument is `-`, claude has none;
    /// a configured command as it is.
    pub fn stdin_command(&self) -> (String, Vec<String>) {
        match &self.configured {
            Some(_) => self.command(""),
            None => builtin::stdin_command(&self.base, self.model.as_deref()),
        }
    }

    /// The program and its argument vector inside the container (the seed's
    /// `agentCommand`, or the configured command with its placeholders
    /// filled). The prompt is one vector entry, never shell text.
    pub fn command(&self, prompt: &str) -> (String, Vec<String>) {
        match &self.configured {
            Some(c) => {
                let model = self.model.as_deref().or(c.default_model.as_deref());
                let mut argv = c.template.expand(prompt, model).into_iter();
                let program = argv.next().unwrap_or_default();
                (program, argv.collect())
            }
            None => builtin::command(&self.base, self.model.as_deref(), prompt),
        }
    }
}

impl fmt::Display for AgentSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.model {
            Some(m) => write!(f, "{}:{m}", self.base),
            None => f.write_str(&self.base),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(agent: &str, prompt: &str) -> (String, Vec<String>) {
        AgentSpec::parse(agent).unwrap().command(prompt)
    }

    #[test]
    fn gemini_matches_seed() {
        assert_eq!(
            argv("gemini", "P"),
            (
                "gemini".into(),
                vec!["-p".into(), "P".into(), "--yolo".into(), "--sandbox".into()]
            )
        );
        assert_eq!(
            argv("gemini:flash", "P").1[4..],
            ["-m".to_string(), "gemini-2.5-flash".to_string()]
        );
    }

    #[test]
    fn codex_matches_seed() {
        let (cmd, a) = argv("codex", "P");
        assert_eq!(cmd, "codex");
        assert_eq!(
            a,
            [
                "exec",
                "--dangerously-bypass-approvals-and-sandbox",
                "-o",
                CODEX_LAST_MESSAGE,
                "P"
            ]
        );
        let (_, a) = argv("codex:gpt-5", "P");
        assert_eq!(
            a,
            [
                "exec",
                "--dangerously-bypass-approvals-and-sandbox",
                "-o",
                CODEX_LAST_MESSAGE,
                "--model",
                "gpt-5",
                "P"
            ]
        );
        let (_, a) = argv("codex:review", "P");
        assert_eq!(
            a,
            [
                "exec",
                "--dangerously-bypass-approvals-and-sandbox",
                CODEX_REVIEW_PROMPT
            ]
        );
    }

    #[test]
    fn claude_matches_seed() {
        let (cmd, a) = argv("claude:opus", "P");
        assert_eq!(cmd, "claude");
        assert_eq!(
            a,
            [
                "-p",
                "P",
                "--output-format",
                "text",
                "--dangerously-skip-permissions",
                "--no-session-persistence",
                "--append-system-prompt",
                CLAUDE_SANDBOX_PROMPT,
                "--model",
                "opus"
            ]
        );
        assert_eq!(argv("claude", "P").1.len(), 8);
    }

    #[test]
    fn coderabbit_matches_seed() {
        assert_eq!(
            argv("coderabbit", "").1,
            ["review", "--plain", "--base", "HEAD~1"]
        );
        assert_eq!(
            argv("coderabbit:committed", "P").1,
            [
                "review",
                "--plain",
                "--base",
                "HEAD~1",
                "--type",
                "committed",
                "--config",
                "CLAUDE.md"
            ]
        );
    }

    #[test]
    fn local_never_puts_the_prompt_in_shell_text() {
        let p = "$(touch /tmp/pwned) `id`";
        let (cmd, a) = argv("local", p);
        assert_eq!(cmd, "sh");
        assert_eq!(a[0], "-c");
        assert!(!a[1].contains("pwned"));
        assert_eq!(&a[2..], ["sh", DEFAULT_LOCAL_MODEL, p]);
        assert_eq!(argv("local:qwen3", "P").1[3], "qwen3");
    }

    #[test]
    fn unknown_and_bad_models_are_refused() {
        assert!(matches!(
            AgentSpec::parse("gpt"),
            Err(AgentError::Unknown(_))
        ));
        assert!(matches!(
            AgentSpec::parse("claude:"),
            Err(AgentError::BadModel(_))
        ));
        assert!(matches!(
            AgentSpec::parse("claude:$(x)"),
            Err(AgentError::BadModel(_))
        ));
    }

    #[test]
    fn codex_writes_its_last_message_to_the_summary_file() {
        assert_eq!(CODEX_LAST_MESSAGE, crate::container_paths::SUMMARY_FILE);
        assert!(
            CODEX_LAST_MESSAGE.starts_with(&format!("{}/", crate::container_paths::AGENT_OUT_DIR))
        );
        assert!(LOCAL_SCRIPT.contains(&format!("-o {} ", crate::container_paths::SUMMARY_FILE)));
    }

    #[test]
    fn codex_and_claude_read_the_prompt_on_stdin_the_others_as_an_argument() {
        let spec = |a: &str| AgentSpec::parse(a).unwrap();
        assert_eq!(spec("codex").prompt_via(true), PromptVia::Stdin);
        assert_eq!(spec("claude:opus").prompt_via(true), PromptVia::Stdin);
        assert_eq!(spec("claude").prompt_via(false), PromptVia::Argument);
        assert_eq!(spec("gemini").prompt_via(true), PromptVia::Argument);
        assert_eq!(spec("local").prompt_via(true), PromptVia::Argument);
        assert_eq!(spec("coderabbit").prompt_via(true), PromptVia::Unused);
        assert_eq!(spec("codex:review").prompt_via(true), PromptVia::Unused);
        let (_, a) = spec("codex:gpt-5").stdin_command();
        assert_eq!(a.last().map(String::as_str), Some("-"));
        assert_eq!(a[a.len() - 3..a.len() - 1], ["--model", "gpt-5"]);
        let (_, a) = spec("claude").stdin_command();
        assert_eq!(a[0], "-p");
        assert_eq!(a[1], "--output-format");
        assert_eq!(a.len(), 7);
    }
}
