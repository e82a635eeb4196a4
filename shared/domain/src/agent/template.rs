//! A configured agent's command (`[agents.NAME] command`): an argument vector
//! whose entries may hold placeholders, substituted as data (never shell
//! text): each entry stays one argument whatever the value.

use std::fmt;

use crate::container_paths::{ANSWER_PATH, PROMPT_PATH, SUMMARY_FILE};

/// What a placeholder stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    /// `{prompt}`: the prompt itself (cut over 100 KiB, see
    /// `prompt::for_argument`).
    Prompt,
    /// `{prompt_file}`: the whole prompt's file, [`PROMPT_PATH`].
    PromptFile,
    /// `{answer_file}`: the operator's answer to a blocked job's question.
    AnswerFile,
    /// `{summary_file}`: where the agent may write its final message
    /// ([`SUMMARY_FILE`]).
    SummaryFile,
    /// `{model}`: the model part of `pool:model`, else the pool's
    /// `default_model`.
    Model,
    /// `{workspace}`: the repository's working tree, `/workspace`.
    Workspace,
}

impl Placeholder {
    /// Every placeholder, as written.
    pub const ALL: [(&'static str, Placeholder); 6] = [
        ("prompt", Self::Prompt),
        ("prompt_file", Self::PromptFile),
        ("answer_file", Self::AnswerFile),
        ("summary_file", Self::SummaryFile),
        ("model", Self::Model),
        ("workspace", Self::Workspace),
    ];

    fn named(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
    }

    fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, p)| *p == self)
            .map_or("", |(n, _)| n)
    }
}

/// The value of the job-independent placeholders.
fn fixed_value(p: Placeholder) -> Option<&'static str> {
    match p {
        Placeholder::PromptFile => Some(PROMPT_PATH),
        Placeholder::AnswerFile => Some(ANSWER_PATH),
        Placeholder::SummaryFile => Some(SUMMARY_FILE),
        Placeholder::Workspace => Some("/workspace"),
        Placeholder::Prompt | Placeholder::Model => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Slot(Placeholder),
}

/// A parsed command: entries of text and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    argv: Vec<Vec<Piece>>,
    /// The entries as configured (placeholders unexpanded), for display.
    raw: Vec<String>,
}

impl Template {
    /// Parses `command`. `{{` and `}}` stand for literal braces.
    ///
    /// # Errors
    /// An empty command or program, an unknown placeholder, an unclosed or
    /// unmatched brace: the message starts with the entry's index
    /// (`[3]: unknown placeholder {foo}`), for the caller to prefix the key.
    pub fn parse(command: &[String]) -> Result<Self, String> {
        if command.is_empty() {
            return Err(": is empty (give the program and its arguments)".into());
        }
        if command[0].trim().is_empty() {
            return Err("[0]: the program is empty".into());
        }
        let mut argv = Vec::with_capacity(command.len());
        for (i, arg) in command.iter().enumerate() {
            argv.push(parse_entry(arg).map_err(|e| format!("[{i}]: {e}"))?);
        }
        Ok(Self {
            argv,
            raw: command.to_vec(),
        })
    }

    /// The command as configured, placeholders unexpanded.
    pub fn raw(&self) -> &[String] {
        &self.raw
    }

    /// Whether `p` is anywhere in the command.
    pub fn uses(&self, p: Placeholder) -> bool {
        self.argv.iter().flatten().any(|x| *x == Piece::Slot(p))
    }

    /// The command with each placeholder replaced by its value: `prompt` for
    /// `{prompt}`, `model` for `{model}` (empty when there is none: a job
    /// without one is refused before it gets here), fixed paths for the rest.
    pub fn expand(&self, prompt: &str, model: Option<&str>) -> Vec<String> {
        self.argv
            .iter()
            .map(|pieces| {
                let mut out = String::new();
                for piece in pieces {
                    match piece {
                        Piece::Text(t) => out.push_str(t),
                        Piece::Slot(Placeholder::Prompt) => out.push_str(prompt),
                        Piece::Slot(Placeholder::Model) => out.push_str(model.unwrap_or_default()),
                        Piece::Slot(p) => out.push_str(fixed_value(*p).unwrap_or_default()),
                    }
                }
                out
            })
            .collect()
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quoted: Vec<String> = self.raw.iter().map(|a| format!("{a:?}")).collect();
        write!(f, "[{}]", quoted.join(", "))
    }
}

fn parse_entry(arg: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = arg.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => {
                            return Err(format!(
                                "unclosed brace in {arg:?} (write {{{{ for a literal brace)"
                            ))
                        }
                    }
                }
                let p = Placeholder::named(&name).ok_or_else(|| {
                    let known: Vec<String> = Placeholder::ALL
                        .iter()
                        .map(|(n, _)| format!("{{{n}}}"))
                        .collect();
                    format!(
                        "unknown placeholder {{{name}}} (known: {})",
                        known.join(" ")
                    )
                })?;
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Slot(p));
            }
            '}' => {
                return Err(format!(
                    "unmatched `}}` in {arg:?} (write }}}} for a literal brace)"
                ))
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

impl fmt::Display for Placeholder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{}}}", self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[&str]) -> Result<Template, String> {
        Template::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn expand(v: &[&str]) -> Vec<String> {
        t(v).unwrap().expand("THE PROMPT", Some("org/m:1"))
    }

    #[test]
    fn each_placeholder_is_its_value() {
        assert_eq!(expand(&["x", "{prompt}"])[1], "THE PROMPT");
        assert_eq!(expand(&["x", "{prompt_file}"])[1], "/agentq/prompt.md");
        assert_eq!(expand(&["x", "{answer_file}"])[1], "/agentq/ANSWER.md");
        assert_eq!(expand(&["x", "{summary_file}"])[1], SUMMARY_FILE);
        assert_eq!(expand(&["x", "{model}"])[1], "org/m:1");
        assert_eq!(expand(&["x", "{workspace}"])[1], "/workspace");
    }

    #[test]
    fn placeholders_are_parts_of_an_entry_and_stay_one_argument() {
        assert_eq!(
            expand(&["aider", "--model={model}", "--read={workspace}/README.md"]),
            ["aider", "--model=org/m:1", "--read=/workspace/README.md"]
        );
        let hostile = t(&["x", "{prompt}"])
            .unwrap()
            .expand("a b; $(id) `x` {model}", None);
        assert_eq!(hostile, ["x", "a b; $(id) `x` {model}"]);
        assert_eq!(expand(&["x", "{{literal}}", ""]), ["x", "{literal}", ""]);
        assert!(!t(&["x", "{{prompt}}"]).unwrap().uses(Placeholder::Prompt));
        assert!(t(&["x", "-p{prompt}"]).unwrap().uses(Placeholder::Prompt));
    }

    #[test]
    fn bad_commands_are_refused_with_the_entry_named() {
        let e = |v: &[&str]| t(v).unwrap_err();
        assert!(e(&[]).contains("is empty"));
        assert!(e(&[" "]).starts_with("[0]: the program is empty"));
        assert!(e(&["a", "b", "c", "{foo}"]).starts_with("[3]: unknown placeholder {foo}"));
        assert!(e(&["a", "{model"]).starts_with("[1]: unclosed brace"));
        assert!(e(&["a", "x}"]).starts_with("[1]: unmatched `}`"));
        assert!(e(&["a", "{}"]).starts_with("[1]: unknown placeholder {}"));
    }

    #[test]
    fn the_display_is_the_command_as_configured() {
        assert_eq!(
            t(&["aider", "--model", "{model}"]).unwrap().to_string(),
            r#"["aider", "--model", "{model}"]"#
        );
    }

    /// `raw` is what `agentq agents` shows; each placeholder displays as it
    /// is written, and what it displays parses back to it.
    #[test]
    fn raw_is_the_command_as_configured_and_placeholders_display_as_written() {
        let cmd = ["aider", "--model={model}", "{{x}}"];
        assert_eq!(t(&cmd).unwrap().raw(), cmd);
        for (name, p) in Placeholder::ALL {
            assert_eq!(p.to_string(), format!("{{{name}}}"));
            assert!(t(&["x", &p.to_string()]).unwrap().uses(p), "{p}");
        }
    }
}
