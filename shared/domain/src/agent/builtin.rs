//! The built-in agents (the seed's `agentCommand`): codex (and `codex:review`),
//! claude, gemini, coderabbit and local, exactly as the seed runs them.

use super::PromptVia;

/// Agent pools agentq knows how to run without configuration.
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
/// codex's last message goes to [`crate::container_paths::SUMMARY_FILE`], as
/// [`CODEX_LAST_MESSAGE`] says.
pub const LOCAL_SCRIPT: &str = r#"socat TCP-LISTEN:11434,fork,reuseaddr TCP:host.docker.internal:11434 & sleep 0.5 && exec codex exec --dangerously-bypass-approvals-and-sandbox --oss --local-provider ollama -m "$1" -o /agentq-out/summary.md "$2""#;

/// Where codex writes its last message (`-o`): the run's summary file
/// ([`crate::container_paths::SUMMARY_FILE`], in the agent's output directory
/// [`crate::container_paths::AGENT_OUT_DIR`], the one writable place besides
/// `/workspace` the worker reads back), which the worker reads after the run,
/// as data and bounded, as the job's `summary`. The seed's
/// `../.meta/agent-codex.log` is `/.meta/…` from `/workspace`, a directory no
/// container has.
pub const CODEX_LAST_MESSAGE: &str = crate::container_paths::SUMMARY_FILE;

/// Stands for the prompt in [`stdin_command`] while it is built.
const STDIN_MARK: &str = "\u{0}agentq-prompt-on-stdin\u{0}";

/// The read-only config directories under `agent_home` a built-in pool gets
/// inside its home: `.codex` always, `.claude` for claude, `.gemini` for gemini.
pub fn home_dirs(pool: &str) -> &'static [&'static str] {
    match pool {
        "claude" => &[".codex", ".claude"],
        "gemini" => &[".codex", ".gemini"],
        _ => &[".codex"],
    }
}

/// How a built-in agent's CLI takes the prompt, when it can read standard
/// input (`stdin`: a watchdog is there to give it the prompt file).
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
pub fn prompt_via(pool: &str, model: Option<&str>, stdin: bool) -> PromptVia {
    match pool {
        "coderabbit" => PromptVia::Unused,
        "codex" if model == Some("review") => PromptVia::Unused,
        "codex" | "claude" if stdin => PromptVia::Stdin,
        _ => PromptVia::Argument,
    }
}

/// The program and its arguments when the prompt comes on standard input
/// ([`PromptVia::Stdin`]): codex's prompt argument is `-`, claude has none.
pub fn stdin_command(pool: &str, model: Option<&str>) -> (String, Vec<String>) {
    let (cmd, mut args) = command(pool, model, STDIN_MARK);
    match pool {
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
pub fn command(pool: &str, model: Option<&str>, prompt: &str) -> (String, Vec<String>) {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    match pool {
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
            // "local": the table admits no other built-in pool.
            let m = model.unwrap_or(DEFAULT_LOCAL_MODEL);
            ("sh".into(), s(&["-c", LOCAL_SCRIPT, "sh", m, prompt]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What each built-in pool mounts from `agent_home` (the worker's
    /// container tests see them mounted; here, which for which pool).
    #[test]
    fn each_pool_gets_codex_config_and_its_own() {
        assert_eq!(home_dirs("claude"), [".codex", ".claude"]);
        assert_eq!(home_dirs("gemini"), [".codex", ".gemini"]);
        for pool in ["codex", "coderabbit", "local"] {
            assert_eq!(home_dirs(pool), [".codex"], "{pool}");
        }
    }

    #[test]
    fn the_stdin_command_runs_the_same_program() {
        for pool in ["codex", "claude"] {
            assert_eq!(stdin_command(pool, None).0, command(pool, None, "P").0);
            assert_eq!(stdin_command(pool, None).0, pool);
        }
    }
}
