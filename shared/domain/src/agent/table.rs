//! The agent table as the workers run it: the built-in agents, with the
//! pools of `[agents.NAME]` added or overriding them. Built once from the
//! configuration (at load, see `Config::agent_table`); everything that needs
//! to know the pools (enqueue, the worker's preflight and lanes, the
//! registry, `agentq agents`) asks it.

use std::{collections::BTreeMap, sync::Arc};

use super::{builtin, model, template::Template, AgentError, AgentSpec, Placeholder, PromptVia};
use crate::agent::AgentConfig;

/// Variables agentq sets in every agent container, which `env_keys` may not
/// forward (`env` may set none of `HOME` and `AGENTQ_*`).
const SET_BY_AGENTQ: &[&str] = &[
    "HOME",
    "AGENTQ_JOB_ID",
    "AGENTQ_PROMPT_FILE",
    "AGENTQ_ANSWER_FILE",
    "AGENTQ_SUMMARY_FILE",
];

/// A configured pool's command and how it takes its prompt and model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configured {
    /// The command, placeholders unexpanded.
    pub template: Template,
    /// `{model}` when the job names none.
    pub default_model: Option<String>,
    /// The prompt on standard input (`stdin = true`).
    pub stdin: bool,
}

impl Configured {
    /// How the prompt reaches the command: on standard input when `stdin`
    /// and a watchdog is there to give it; else as an argument when the
    /// command has `{prompt}`, as a file when it has `{prompt_file}`, else
    /// not at all (it is in `/agentq/prompt.md` either way).
    pub fn prompt_via(&self, watchdog: bool) -> PromptVia {
        if self.stdin && watchdog {
            PromptVia::Stdin
        } else if self.template.uses(Placeholder::Prompt) {
            PromptVia::Argument
        } else if self.template.uses(Placeholder::PromptFile) {
            PromptVia::File
        } else {
            PromptVia::Unused
        }
    }
}

/// One pool of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// The pool's name (the part of an agent name before `:`).
    pub name: String,
    /// One of the built-in agents' names.
    pub builtin: bool,
    /// The configured command; `None`: the built-in one.
    pub configured: Option<Arc<Configured>>,
    /// Output that means the agent hit its provider's limits (for the quota
    /// handling); shown by `agentq agents`.
    pub limit_patterns: Vec<String>,
}

impl Pool {
    /// How the prompt reaches this pool's command, with a watchdog (as the
    /// worker runs it); `model` matters for `codex:review` only.
    pub fn prompt_via(&self, model: Option<&str>) -> PromptVia {
        match &self.configured {
            Some(c) => c.prompt_via(true),
            None => builtin::prompt_via(&self.name, model, true),
        }
    }
}

/// The pools agentq runs: see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentTable {
    pools: Vec<Pool>,
}

impl Default for AgentTable {
    fn default() -> Self {
        Self::builtin()
    }
}

/// The built-in table, built once.
static BUILTIN: std::sync::LazyLock<AgentTable> = std::sync::LazyLock::new(|| AgentTable {
    pools: builtin::AGENTS
        .iter()
        .map(|name| Pool {
            name: name.to_string(),
            builtin: true,
            configured: None,
            limit_patterns: default_limit_patterns(name),
        })
        .collect(),
});

impl AgentTable {
    /// The built-in agents only.
    pub fn builtin() -> Self {
        BUILTIN.clone()
    }

    /// The built-in table with `[agents.NAME]` applied: a pool with `command`
    /// is added (or replaces a built-in command); one without only overrides a
    /// built-in pool's settings.
    ///
    /// # Errors
    /// The first invalid value, named by its key
    /// (`agents.aider.command[3]: unknown placeholder {foo}`).
    pub fn from_config(agents: &BTreeMap<String, AgentConfig>) -> Result<Self, String> {
        let mut table = Self::builtin();
        for (name, a) in agents {
            let pool = configured_pool(name, a).map_err(|e| format!("agents.{name}{e}"))?;
            match table.pools.iter_mut().find(|p| p.name == *name) {
                Some(p) => *p = pool,
                None => table.pools.push(pool),
            }
        }
        Ok(table)
    }

    /// The pools: the built-in ones first, then the configured ones by name.
    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }

    /// The pools' names, in [`AgentTable::pools`] order.
    pub fn names(&self) -> Vec<String> {
        self.pools.iter().map(|p| p.name.clone()).collect()
    }

    /// The pool named `name`.
    pub fn get(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// Parses `pool[:model]` against the table (split at the first `:`).
    ///
    /// # Errors
    /// An unknown pool, a bad model name, a model for a configured command
    /// without `{model}`, or none for one with `{model}` and no
    /// `default_model`.
    pub fn parse(&self, agent: &str) -> Result<AgentSpec, AgentError> {
        let (base, m) = model::split(agent);
        let pool = self
            .get(base)
            .ok_or_else(|| AgentError::Unknown(agent.to_string()))?;
        if let Some(m) = m {
            model::check(m).map_err(|e| AgentError::BadModel(format!("`{m}`: {e}")))?;
        }
        if let Some(c) = &pool.configured {
            let uses_model = c.template.uses(Placeholder::Model);
            if m.is_some() && !uses_model {
                return Err(AgentError::TakesNoModel(base.to_string()));
            }
            if m.is_none() && uses_model && c.default_model.is_none() {
                return Err(AgentError::NeedsModel(base.to_string()));
            }
        }
        Ok(AgentSpec {
            base: base.to_string(),
            model: m.map(str::to_string),
            configured: pool.configured.clone(),
        })
    }
}

/// Whether `name` is a safe pool name: `^[a-z][a-z0-9_-]{0,31}$`.
pub fn is_pool_name(name: &str) -> bool {
    name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
}

/// Whether `name` is a valid environment variable name: `^[A-Za-z_][A-Za-z0-9_]*$`.
pub fn is_env_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks one `[agents.NAME]` table; errors start after `agents.NAME`.
fn configured_pool(name: &str, a: &AgentConfig) -> Result<Pool, String> {
    if !is_pool_name(name) {
        return Err(": not a valid pool name (a lowercase letter, then up to 31 lowercase letters, digits, `_` or `-`)".into());
    }
    let builtin = builtin::AGENTS.contains(&name);
    for (i, k) in a.env_keys.iter().enumerate() {
        if !is_env_name(k) {
            return Err(format!(".env_keys[{i}]: `{k}` is not a variable name"));
        }
        if SET_BY_AGENTQ.contains(&k.as_str()) {
            return Err(format!(".env_keys[{i}]: `{k}` is set by agentq itself"));
        }
    }
    for (k, v) in &a.env {
        if !is_env_name(k) {
            return Err(format!(".env: `{k}` is not a variable name"));
        }
        if k == "HOME" || k.starts_with("AGENTQ_") {
            return Err(format!(".env.{k}: set by agentq itself"));
        }
        if v.contains('\0') {
            return Err(format!(".env.{k}: the value has a NUL byte"));
        }
    }
    for (i, d) in a.home_dirs.iter().enumerate() {
        let p = std::path::Path::new(d);
        let bad = d.trim().is_empty()
            || d.contains('\0')
            || p.is_absolute()
            || p.components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)));
        if bad {
            return Err(format!(
                ".home_dirs[{i}]: `{d}` must be a relative path under agent_home, without `..`"
            ));
        }
    }
    for (i, pat) in a.limit_patterns.iter().enumerate() {
        if pat.trim().is_empty() {
            return Err(format!(".limit_patterns[{i}]: is empty"));
        }
    }
    if let Some(m) = &a.default_model {
        model::check(m).map_err(|e| format!(".default_model: `{m}` {e}"))?;
    }
    let configured = match &a.command {
        Some(command) => {
            let template = Template::parse(command).map_err(|e| format!(".command{e}"))?;
            if a.stdin && template.uses(Placeholder::Prompt) {
                return Err(
                    ".stdin: the command takes {prompt} too; give the prompt one way".into(),
                );
            }
            Some(Arc::new(Configured {
                template,
                default_model: a.default_model.clone(),
                stdin: a.stdin,
            }))
        }
        None if !builtin => {
            return Err(format!(
                ": `{name}` is not a built-in agent ({}); give its `command`",
                builtin::AGENTS.join(", ")
            ))
        }
        None if a.default_model.is_some() => {
            return Err(".default_model: only with `command`".into())
        }
        None if a.stdin => return Err(".stdin: only with `command`".into()),
        None => None,
    };
    Ok(Pool {
        name: name.to_string(),
        builtin,
        configured,
        limit_patterns: if a.limit_patterns.is_empty() {
            default_limit_patterns(name)
        } else {
            a.limit_patterns.clone()
        },
    })
}

/// A pool's `limit_patterns` when the operator set none: the built-in
/// agent's ([`crate::quota::builtin_patterns`]), none for other pools.
fn default_limit_patterns(name: &str) -> Vec<String> {
    crate::quota::builtin_patterns(name)
        .iter()
        .map(|p| p.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(toml_text: &str) -> Result<AgentTable, String> {
        let agents: BTreeMap<String, AgentConfig> =
            toml::from_str(toml_text).map_err(|e| e.to_string())?;
        AgentTable::from_config(&agents)
    }

    const AIDER: &str = r#"
[aider]
image = "agentq-aider"
command = ["aider", "--yes-always", "--message-file", "{prompt_file}", "--model", "{model}"]
default_model = "openai/stub"
env_keys = ["OPENAI_API_KEY"]
env = { OPENAI_BASE_URL = "http://host.docker.internal:8000/v1" }
home_dirs = [".aider"]
writable_home = true
limit_patterns = ["rate limit", "quota exceeded"]
"#;

    #[test]
    fn a_configured_pool_joins_the_built_in_ones() {
        let t = table(AIDER).unwrap();
        assert_eq!(
            t.names(),
            ["codex", "claude", "gemini", "coderabbit", "local", "aider"]
        );
        let a = t.parse("aider").unwrap();
        assert_eq!(
            a.command("P"),
            (
                "aider".to_string(),
                [
                    "--yes-always",
                    "--message-file",
                    "/agentq/prompt.md",
                    "--model",
                    "openai/stub"
                ]
                .map(String::from)
                .to_vec()
            )
        );
        assert_eq!(a.prompt_via(true), PromptVia::File);
        assert_eq!(
            t.parse("aider:org/m:tag").unwrap().command("P").1[4],
            "org/m:tag"
        );
        assert_eq!(
            t.get("aider").unwrap().limit_patterns,
            ["rate limit", "quota exceeded"]
        );
        assert!(t.get("aider").unwrap().configured.is_some());
        assert!(matches!(
            table("").unwrap().parse("aider"),
            Err(AgentError::Unknown(_))
        ));
    }

    /// `pools` is what the worker's lanes, the registry and `agentq agents`
    /// walk; each pool says how its command takes the prompt.
    #[test]
    fn the_pools_are_the_built_in_ones_then_the_configured_ones() {
        let t = table(AIDER).unwrap();
        let pools: Vec<(&str, bool, bool)> = t
            .pools()
            .iter()
            .map(|p| (p.name.as_str(), p.builtin, p.configured.is_some()))
            .collect();
        assert_eq!(
            pools,
            [
                ("codex", true, false),
                ("claude", true, false),
                ("gemini", true, false),
                ("coderabbit", true, false),
                ("local", true, false),
                ("aider", false, true),
            ]
        );
        assert_eq!(AgentTable::default(), AgentTable::builtin());
        assert_eq!(AgentTable::builtin().pools().len(), 5);
        let via = |pool: &str, model| t.get(pool).unwrap().prompt_via(model);
        assert_eq!(via("aider", None), PromptVia::File);
        assert_eq!(via("codex", None), PromptVia::Stdin);
        assert_eq!(via("codex", Some("review")), PromptVia::Unused);
        assert_eq!(via("gemini", None), PromptVia::Argument);
    }

    #[test]
    fn prompt_delivery_of_a_configured_command() {
        let t = table(
            "[a]\ncommand = [\"a\", \"{prompt}\"]\n[s]\ncommand = [\"s\", \"-\"]\nstdin = true\n[n]\ncommand = [\"n\"]\n",
        )
        .unwrap();
        let a = t.parse("a").unwrap();
        assert_eq!(a.prompt_via(true), PromptVia::Argument);
        assert_eq!(a.command("P").1, ["P"]);
        let s = t.parse("s").unwrap();
        assert_eq!(s.prompt_via(true), PromptVia::Stdin);
        assert_eq!(s.prompt_via(false), PromptVia::Unused);
        assert_eq!(s.stdin_command(), ("s".to_string(), vec!["-".to_string()]));
        assert_eq!(t.parse("n").unwrap().prompt_via(true), PromptVia::Unused);
    }

    #[test]
    fn a_built_in_overridden_without_command_keeps_its_command() {
        let t = table("[claude]\nimage = \"x\"\nenv = { A = \"1\" }\nlimit_patterns = [\"429\"]\n")
            .unwrap();
        let c = t.parse("claude:opus").unwrap();
        assert_eq!(c, AgentSpec::parse("claude:opus").unwrap());
        assert_eq!(t.get("claude").unwrap().limit_patterns, ["429"]);
        // Without limit_patterns of its own, a built-in pool keeps its defaults.
        let t = table("[codex]\nimage = \"x\"\n").unwrap();
        assert_eq!(
            t.get("codex").unwrap().limit_patterns,
            crate::quota::builtin_patterns("codex")
        );
        assert_eq!(
            AgentTable::builtin().get("gemini").unwrap().limit_patterns,
            crate::quota::builtin_patterns("gemini")
        );
        let t = table("[claude]\ncommand = [\"my-claude\", \"{prompt}\"]\n").unwrap();
        assert_eq!(t.parse("claude").unwrap().command("P").0, "my-claude");
        assert_eq!(t.names().len(), 5);
    }

    #[test]
    fn models_are_required_or_refused_by_the_command() {
        let t = table("[m]\ncommand = [\"m\", \"{model}\"]\n[n]\ncommand = [\"n\"]\n").unwrap();
        let e = t.parse("m").unwrap_err();
        assert_eq!(e, AgentError::NeedsModel("m".into()));
        assert!(e.to_string().contains("agents.m.default_model"), "{e}");
        assert_eq!(t.parse("m:x").unwrap().command("").1, ["x"]);
        assert_eq!(
            t.parse("n:x").unwrap_err(),
            AgentError::TakesNoModel("n".into())
        );
        assert!(t.parse("n").is_ok());
        assert!(matches!(t.parse("m:-rf"), Err(AgentError::BadModel(_))));
    }

    #[test]
    fn each_bad_value_is_refused_with_its_key() {
        let refused = |toml_text: &str, key: &str| {
            let e = table(toml_text).unwrap_err();
            assert!(e.starts_with(key), "{toml_text}: {e}");
        };
        refused(
            "[aider]\ncommand = [\"a\", \"b\", \"c\", \"{foo}\"]\n",
            "agents.aider.command[3]: unknown placeholder {foo}",
        );
        refused(
            "[aider]\ncommand = [\"a\", \"{prompt\"]\n",
            "agents.aider.command[1]: unclosed brace",
        );
        refused("[aider]\ncommand = []\n", "agents.aider.command: is empty");
        refused(
            "[Aider]\ncommand = [\"a\"]\n",
            "agents.Aider: not a valid pool name",
        );
        refused(
            "[\"a b\"]\ncommand = [\"a\"]\n",
            "agents.a b: not a valid pool name",
        );
        refused(
            &format!("[{}]\ncommand = [\"a\"]\n", "a".repeat(33)),
            "agents.aaaa",
        );
        refused(
            "[x]\ncommand = [\"a\"]\nenv = { \"1X\" = \"v\" }\n",
            "agents.x.env: `1X` is not a variable name",
        );
        refused(
            "[x]\ncommand = [\"a\"]\nenv = { X = \"a\\u0000b\" }\n",
            "agents.x.env.X: the value has a NUL byte",
        );
        refused(
            "[x]\ncommand = [\"a\"]\nenv = { HOME = \"/\" }\n",
            "agents.x.env.HOME: set by agentq",
        );
        refused(
            "[x]\ncommand = [\"a\"]\nenv_keys = [\"A-B\"]\n",
            "agents.x.env_keys[0]",
        );
        refused(
            "[x]\ncommand = [\"a\"]\nenv_keys = [\"K\", \"AGENTQ_SUMMARY_FILE\"]\n",
            "agents.x.env_keys[1]",
        );
        refused(
            "[x]\ncommand = [\"a\"]\nhome_dirs = [\"/etc\"]\n",
            "agents.x.home_dirs[0]",
        );
        refused(
            "[x]\ncommand = [\"a\"]\nhome_dirs = [\".a\", \"../b\"]\n",
            "agents.x.home_dirs[1]",
        );
        refused(
            "[x]\ncommand = [\"a\"]\nhome_dirs = [\"\"]\n",
            "agents.x.home_dirs[0]",
        );
        // A relative path with a NUL byte (only the NUL check refuses it).
        refused(
            "[x]\ncommand = [\"a\"]\nhome_dirs = [\"a\\u0000b\"]\n",
            "agents.x.home_dirs[0]",
        );
        refused(
            "[x]\ncommand = [\"a\"]\nlimit_patterns = [\" \"]\n",
            "agents.x.limit_patterns[0]: is empty",
        );
        refused(
            "[x]\ncommand = [\"a\"]\ndefault_model = \"-x\"\n",
            "agents.x.default_model",
        );
        refused(
            "[x]\ncommand = [\"a\", \"{prompt}\"]\nstdin = true\n",
            "agents.x.stdin",
        );
        refused(
            "[x]\nimage = \"i\"\n",
            "agents.x: `x` is not a built-in agent",
        );
        refused(
            "[claude]\ndefault_model = \"m\"\n",
            "agents.claude.default_model: only with `command`",
        );
        refused(
            "[claude]\nstdin = true\n",
            "agents.claude.stdin: only with `command`",
        );
    }

    #[test]
    fn pool_names_are_safe_identifiers() {
        for ok in ["aider", "a", "qwen-code", "mini_swe", &"a".repeat(32)] {
            assert!(is_pool_name(ok), "{ok}");
        }
        for bad in [
            "",
            "1a",
            "-a",
            "A",
            "a.b",
            "a:b",
            "a/b",
            "a b",
            &"a".repeat(33),
        ] {
            assert!(!is_pool_name(bad), "{bad}");
        }
    }
}
