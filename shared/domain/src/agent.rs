//! The agent table: which program runs for an agent name, with which arguments
//! (the seed's `agentCommand`).

use std::fmt;

/// Agent pools agentq knows how to run.
pub const AGENTS: &[&str] = &["codex", "claude", "gemini", "coderabbit", "local"];

/// Default model of the `local` agent (seed: `devstral-24b`).
pub const DEFAULT_LOCAL_MODEL: &str = "devstral-24b";

/// The fixed prompt of `codex:review` (seed).
pub const CODEX_REVIEW_PROMPT: &str = "Review the last 2 commits via git diff HEAD~2. Check for bugs, security issues, missing tests, naming issues. Report pass/fail with specifics. Do NOT make changes.";

/// The sandbox note appended to claude's system prompt (seed).
pub const CLAUDE_SANDBOX_PROMPT: &str = "SANDBOX: You are restricted to the current directory only. Do NOT use absolute paths. Do NOT navigate outside this repository.";

/// The `local` agent's launcher. The model and the prompt arrive as positional
/// parameters `$1` and `$2`: they are never part of the script text, so nothing in a
/// task can be run by the shell (the seed interpolated the prompt with `%q`).
/// codex's last message goes to [`crate::workspace::SUMMARY_FILE`], as
/// [`CODEX_LAST_MESSAGE`] says.
pub const LOCAL_SCRIPT: &str = r#"socat TCP-LISTEN:11434,fork,reuseaddr TCP:host.docker.internal:11434 & sleep 0.5 && exec codex exec --dangerously-bypass-approvals-and-sandbox --oss --local-provider ollama -m "$1" -o /agentq-out/summary.md "$2""#;

/// Where codex writes its last message (`-o`): the run's summary file
/// ([`crate::workspace::SUMMARY_FILE`], in the agent's output directory
/// [`crate::workspace::AGENT_OUT_DIR`], the one writable place besides
/// `/workspace` the worker reads back), which the worker reads after the run,
/// as data and bounded, as the job's `summary`. The seed's
/// `../.meta/agent-codex.log` is `/.meta/…` from `/workspace`, a directory no
/// container has.
pub const CODEX_LAST_MESSAGE: &str = crate::workspace::SUMMARY_FILE;

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
    /// Not at all (coderabbit, `codex:review`: fixed instructions).
    Unused,
}

/// Stands for the prompt in [`AgentSpec::stdin_command`] while it is built.
const STDIN_MARK: &str = "\u{0}agentq-prompt-on-stdin\u{0}";

/// An agent name split into its pool and optional model: `claude:haiku` is pool
/// `claude`, model `haiku`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSpec {
    /// The pool: the part before `:`.
    pub base: String,
    /// The model or variant: the part after `:`, if any.
    pub model: Option<String>,
}

/// An agent name that agentq cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// The pool is not one of [`AGENTS`].
    #[error("unknown agent `{0}` (known: codex, claude, gemini, coderabbit, local, each with an optional :model)")]
    Unknown(String),
    /// The model part has characters that are not allowed.
    #[error("invalid model `{0}` (letters, digits, . _ -; at most 64 characters)")]
    BadModel(String),
}

impl AgentSpec {
    /// Parses `base[:model]`, refusing unknown pools and unsafe model names.
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
        let (base, model) = match agent.split_once(':') {
            Some((b, m)) => (b, Some(m)),
            None => (agent, None),
        };
        if !AGENTS.contains(&base) {
            return Err(AgentError::Unknown(agent.to_string()));
        }
        if let Some(m) = model {
            let ok = !m.is_empty()
                && m.len() <= 64
                && m.starts_with(|c: char| c.is_ascii_alphanumeric())
                && m.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !ok {
                return Err(AgentError::BadModel(m.to_string()));
            }
        }
        Ok(Self {
            base: base.to_string(),
            model: model.map(str::to_string),
        })
    }

    /// The pool name (the part before `:`), which limits and backoff key on.
    pub fn pool(&self) -> &str {
        &self.base
    }

    /// How this agent's CLI takes the prompt, when it can read standard input
    /// (`stdin`: a watchdog is there to give it the prompt file).
    ///
    /// codex: `codex exec -` reads the prompt from standard input ("For
    /// `codex exec -`, where the prompt is delivered on stdin rather than as an
    /// argument", <https://docs.rs/codex-wrapper/0.4.1/codex_wrapper/exec/fn.run_codex_with_stdin_prompt.html>;
    /// `codex exec --help`: a piped stdin is read, and appended when a prompt
    /// argument is given too). claude: in print mode (`-p`) without a prompt
    /// argument the prompt is standard input (`cat file | claude -p`,
    /// <https://docs.anthropic.com/claude/docs/claude-code/cli-usage>; "supplying
    /// input via stdin (without a prompt positional)",
    /// <https://docs.rs/crate/unified-agent-api-claude-code/latest/source/examples/print_stdin_text.rs>).
    /// gemini's `-p` and the `local` launcher take it only as an argument.
    pub fn prompt_via(&self, stdin: bool) -> PromptVia {
        match self.base.as_str() {
            "coderabbit" => PromptVia::Unused,
            "codex" if self.model.as_deref() == Some("review") => PromptVia::Unused,
            "codex" | "claude" if stdin => PromptVia::Stdin,
            _ => PromptVia::Argument,
        }
    }

    /// The program and its arguments when the prompt comes on standard input
    /// ([`PromptVia::Stdin`]): codex's prompt argument is `-`, claude has none.
    pub fn stdin_command(&self) -> (String, Vec<String>) {
        let (cmd, mut args) = self.command(STDIN_MARK);
        match self.base.as_str() {
            "claude" => args.retain(|a| a != STDIN_MARK),
            _ => {
                for a in &mut args {
                    if a == STDIN_MARK {
                        *a = "-".into();
                    }
                }
            }
        }
        (cmd, args)
    }

    /// The program and its argument vector inside the container (the seed's
    /// `agentCommand`). The prompt is one vector entry, never shell text.
    pub fn command(&self, prompt: &str) -> (String, Vec<String>) {
        let model = self.model.as_deref();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        match self.base.as_str() {
            "gemini" => {
                let mut args = s(&["-p", prompt, "--yolo", "--sandbox"]);
                if let Some(m) = model {
                    args.extend(["-m".to_string(), format!("gemini-2.5-{m}")]);
                }
                ("gemini".into(), args)
            }
            "codex" if model == Some("review") => (
                "codex".into(),
                s(&[
                    "exec",
                    "--dangerously-bypass-approvals-and-sandbox",
                    CODEX_REVIEW_PROMPT,
                ]),
            ),
            "codex" => {
                let mut args = s(&[
                    "exec",
                    "--dangerously-bypass-approvals-and-sandbox",
                    "-o",
                    CODEX_LAST_MESSAGE,
                ]);
                if let Some(m) = model {
                    args.extend(s(&["--model", m]));
                }
                args.push(prompt.to_string());
                ("codex".into(), args)
            }
            "claude" => {
                let mut args = s(&[
                    "-p",
                    prompt,
                    "--output-format",
                    "text",
                    "--dangerously-skip-permissions",
                    "--no-session-persistence",
                    "--append-system-prompt",
                    CLAUDE_SANDBOX_PROMPT,
                ]);
                if let Some(m) = model {
                    args.extend(s(&["--model", m]));
                }
                ("claude".into(), args)
            }
            "coderabbit" => {
                let mut args = s(&["review", "--plain", "--base", "HEAD~1"]);
                if let Some(m) = model {
                    args.extend(s(&["--type", m]));
                }
                if !prompt.is_empty() {
                    args.extend(s(&["--config", "CLAUDE.md"]));
                }
                ("coderabbit".into(), args)
            }
            _ => {
                // "local": parse() admits no other pool.
                let m = model.unwrap_or(DEFAULT_LOCAL_MODEL);
                ("sh".into(), s(&["-c", LOCAL_SCRIPT, "sh", m, prompt]))
            }
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
        assert_eq!(CODEX_LAST_MESSAGE, crate::workspace::SUMMARY_FILE);
        assert!(CODEX_LAST_MESSAGE.starts_with(&format!("{}/", crate::workspace::AGENT_OUT_DIR)));
        assert!(LOCAL_SCRIPT.contains(&format!("-o {} ", crate::workspace::SUMMARY_FILE)));
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
