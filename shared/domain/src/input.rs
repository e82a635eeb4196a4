//! The job input (the seed's `DispatchInput`), its defaults and its validation.
//!
//! Every rule that decides whether a job may enter the queue lives here, so the
//! producer refuses bad input before anything reaches Redis, and the worker can
//! re-check a record it reads back without a second copy of the rules.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Default Forge organisation (seed: `core`).
pub const DEFAULT_ORG: &str = "core";
/// Default agent (seed: `codex`).
pub const DEFAULT_AGENT: &str = "codex";
/// Default prompt template set (seed: `coding`).
pub const DEFAULT_TEMPLATE: &str = "coding";
/// Template sets a job may name.
pub const TEMPLATES: &[&str] = &["coding", "conventions", "security"];

const MAX_TASK_BYTES: usize = 64 * 1024;
/// Most bytes of an answer to a blocked job (it goes into the prompt, like a
/// task).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
const MAX_VAR_VALUE_BYTES: usize = 8 * 1024;
const MAX_VARS: usize = 64;

/// What a script asks agentq to do: the seed's `DispatchInput`, field for field,
/// with the same JSON names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchInput {
    /// Target repository on the Forge, e.g. `go-io`.
    #[serde(default)]
    pub repo: String,
    /// Forge organisation (default `core`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub org: String,
    /// What the agent should do.
    #[serde(default)]
    pub task: String,
    /// `codex` (default), `claude`, `gemini`, `coderabbit`, `local`, with an optional `:model`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub agent: String,
    /// Prompt template set: `coding` (default), `conventions` or `security`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub template: String,
    /// Plan template slug.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub plan_template: String,
    /// Template variable substitution.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// Persona slug.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub persona: String,
    /// Forge issue number: workspace `task-{n}`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub issue: u64,
    /// Pull request number: workspace `pr-{n}`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pr: u64,
    /// Branch: workspace `{branch}`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub branch: String,
    /// Tag: workspace `{tag}` (immutable).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tag: String,
    /// Prepare the workspace and prompt, but run no agent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Why a job input was refused. The message always names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidInput {
    /// The JSON name of the offending field (or `json` for a malformed document).
    pub field: String,
    /// What is wrong and what would be accepted.
    pub message: String,
}

impl InvalidInput {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl DispatchInput {
    /// Parses one JSON document (one NDJSON line) into an input, naming the field
    /// on a type error, which serde's own messages do not do.
    ///
    /// # Errors
    /// Malformed JSON, a non-object, an unknown field or a field of the wrong type.
    pub fn from_json(text: &str) -> Result<Self, InvalidInput> {
        Self::from_map(json_object(text)?, false)
    }

    /// Parses one line of `agentq enqueue -`: the input's fields plus an optional
    /// idempotency `key` (see [`check_idempotency_key`]; `null` means none).
    ///
    /// # Errors
    /// As [`DispatchInput::from_json`], and a `key` that is not a valid key.
    pub fn from_json_with_key(text: &str) -> Result<(Self, Option<String>), InvalidInput> {
        let mut map = json_object(text)?;
        let key = match map.remove("key") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(k)) => {
                check_idempotency_key(&k)?;
                Some(k)
            }
            Some(other) => {
                return Err(InvalidInput::new(
                    "key",
                    format!("expected a string, got {other}"),
                ))
            }
        };
        Ok((Self::from_map(map, true)?, key))
    }

    fn from_map(
        map: serde_json::Map<String, serde_json::Value>,
        with_key: bool,
    ) -> Result<Self, InvalidInput> {
        let mut input = DispatchInput::default();
        for (key, value) in map {
            let field = key.as_str();
            let bad =
                |want: &str| InvalidInput::new(field, format!("expected {want}, got {value}"));
            match field {
                "repo" | "org" | "task" | "agent" | "template" | "plan_template" | "persona"
                | "branch" | "tag" => {
                    let s = match &value {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Null => String::new(),
                        _ => return Err(bad("a string")),
                    };
                    *input.string_field_mut(field) = s;
                }
                "issue" | "pr" => {
                    let n = match &value {
                        serde_json::Value::Null => 0,
                        v => v.as_u64().ok_or_else(|| bad("a positive integer"))?,
                    };
                    if field == "issue" {
                        input.issue = n;
                    } else {
                        input.pr = n;
                    }
                }
                "dry_run" => {
                    input.dry_run = match &value {
                        serde_json::Value::Null => false,
                        v => v.as_bool().ok_or_else(|| bad("true or false"))?,
                    }
                }
                "variables" => {
                    input.variables = serde_json::from_value(value.clone())
                        .map_err(|_| bad("an object of string values"))?;
                }
                other => {
                    return Err(InvalidInput::new(
                        other,
                        format!(
                            "unknown field (known: repo, org, task, agent, template, \
                             plan_template, variables, persona, issue, pr, branch, tag, \
                             dry_run{})",
                            if with_key { ", key" } else { "" }
                        ),
                    ))
                }
            }
        }
        Ok(input)
    }

    fn string_field_mut(&mut self, field: &str) -> &mut String {
        match field {
            "repo" => &mut self.repo,
            "org" => &mut self.org,
            "task" => &mut self.task,
            "agent" => &mut self.agent,
            "template" => &mut self.template,
            "plan_template" => &mut self.plan_template,
            "persona" => &mut self.persona,
            "branch" => &mut self.branch,
            _ => &mut self.tag,
        }
    }

    /// Fills in the seed's defaults (org `core`, agent `codex`, template `coding`).
    pub fn with_defaults(mut self) -> Self {
        if self.org.is_empty() {
            self.org = DEFAULT_ORG.into();
        }
        if self.agent.is_empty() {
            self.agent = DEFAULT_AGENT.into();
        }
        if self.template.is_empty() {
            self.template = DEFAULT_TEMPLATE.into();
        }
        self
    }

    /// Applies the defaults and checks every field.
    ///
    /// # Errors
    /// The first field that breaks a rule, by name.
    ///
    /// ```
    /// use agentq_domain::input::DispatchInput;
    /// let input = DispatchInput { repo: "go-io".into(), task: "Fix tests".into(), issue: 15, ..Default::default() };
    /// let input = input.validated().unwrap();
    /// assert_eq!(input.org, "core");
    /// assert_eq!(input.agent, "codex");
    /// ```
    pub fn validated(self) -> Result<Self, InvalidInput> {
        self.validated_for(&crate::agent::AgentTable::builtin())
    }

    /// [`DispatchInput::validated`], the agent checked against `agents` (the
    /// configured table, `Config::agent_table`).
    ///
    /// # Errors
    /// The first field that breaks a rule, by name.
    pub fn validated_for(self, agents: &crate::agent::AgentTable) -> Result<Self, InvalidInput> {
        let input = self.with_defaults();
        if input.repo.trim().is_empty() {
            return Err(InvalidInput::new("repo", "is required"));
        }
        check_name("repo", &input.repo)?;
        check_name("org", &input.org)?;
        if input.task.trim().is_empty() {
            return Err(InvalidInput::new("task", "is required"));
        }
        if input.task.len() > MAX_TASK_BYTES {
            return Err(InvalidInput::new(
                "task",
                format!("is longer than {MAX_TASK_BYTES} bytes"),
            ));
        }
        if input.task.contains('\0') {
            return Err(InvalidInput::new("task", "contains a NUL byte"));
        }
        agents
            .parse(&input.agent)
            .map_err(|e| InvalidInput::new("agent", e.to_string()))?;
        if !TEMPLATES.contains(&input.template.as_str()) {
            return Err(InvalidInput::new(
                "template",
                format!(
                    "unknown template `{}` (known: {})",
                    input.template,
                    TEMPLATES.join(", ")
                ),
            ));
        }
        if !input.plan_template.is_empty() {
            check_slug("plan_template", &input.plan_template)?;
        }
        if !input.persona.is_empty() {
            check_slug("persona", &input.persona)?;
        }
        if input.issue == 0 && input.pr == 0 && input.branch.is_empty() && input.tag.is_empty() {
            return Err(InvalidInput::new(
                "issue",
                "one of issue, pr, branch or tag is required",
            ));
        }
        if !input.branch.is_empty() {
            check_ref("branch", &input.branch)?;
        }
        if !input.tag.is_empty() {
            check_ref("tag", &input.tag)?;
        }
        if input.variables.len() > MAX_VARS {
            return Err(InvalidInput::new(
                "variables",
                format!("at most {MAX_VARS} variables"),
            ));
        }
        for (key, value) in &input.variables {
            let ok_key = !key.is_empty()
                && key.len() <= 64
                && key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !ok_key {
                return Err(InvalidInput::new(
                    "variables",
                    format!("invalid variable name `{key}` (letters, digits, _ - . ; at most 64)"),
                ));
            }
            if value.len() > MAX_VAR_VALUE_BYTES || value.contains('\0') {
                return Err(InvalidInput::new(
                    "variables",
                    format!("value of `{key}` is over {MAX_VAR_VALUE_BYTES} bytes or has a NUL"),
                ));
            }
        }
        Ok(input)
    }
}

/// Checks an answer to a blocked job as a task is checked: not empty, at most
/// [`MAX_ANSWER_BYTES`], no NUL and no control character but newline, tab and
/// carriage return (a browser's form sends CR LF).
///
/// # Errors
/// [`InvalidInput`] naming `answer`.
pub fn check_answer(answer: &str) -> Result<(), InvalidInput> {
    if answer.trim().is_empty() {
        return Err(InvalidInput::new("answer", "must not be empty"));
    }
    if answer.len() > MAX_ANSWER_BYTES {
        return Err(InvalidInput::new(
            "answer",
            format!("is longer than {MAX_ANSWER_BYTES} bytes"),
        ));
    }
    if answer.contains('\0') {
        return Err(InvalidInput::new("answer", "contains a NUL byte"));
    }
    if let Some(c) = answer
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
    {
        return Err(InvalidInput::new(
            "answer",
            format!("contains a control character ({c:?})"),
        ));
    }
    Ok(())
}

/// Longest idempotency key, in characters.
pub const MAX_KEY_CHARS: usize = 200;

/// Checks an idempotency key (`--key`, `"key"` in NDJSON): 1 to
/// [`MAX_KEY_CHARS`] characters, none of them whitespace or a control character.
///
/// # Errors
/// Names the field `key`.
///
/// ```
/// use agentq_domain::input::check_idempotency_key;
/// assert!(check_idempotency_key("go-io#15").is_ok());
/// assert_eq!(check_idempotency_key("a b").unwrap_err().field, "key");
/// ```
pub fn check_idempotency_key(key: &str) -> Result<(), InvalidInput> {
    let n = key.chars().count();
    if n == 0 || n > MAX_KEY_CHARS {
        return Err(InvalidInput::new(
            "key",
            format!("must be 1 to {MAX_KEY_CHARS} characters (got {n})"),
        ));
    }
    if let Some(c) = key.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(InvalidInput::new(
            "key",
            format!("must not contain whitespace or control characters (found {c:?})"),
        ));
    }
    Ok(())
}

/// One JSON document that must be an object.
fn json_object(text: &str) -> Result<serde_json::Map<String, serde_json::Value>, InvalidInput> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| InvalidInput::new("json", format!("malformed JSON: {e}")))?;
    match value {
        serde_json::Value::Object(map) => Ok(map),
        _ => Err(InvalidInput::new("json", "expected a JSON object")),
    }
}

/// A repository or organisation name: one path segment, no `..`, no leading `-`.
fn check_name(field: &str, value: &str) -> Result<(), InvalidInput> {
    let ok = !value.is_empty()
        && value.len() <= 100
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !value.contains("..")
        && !value.ends_with(".git");
    accept(
        ok,
        field,
        value,
        "a safe name (letters, digits, . _ -; must start with a letter or digit; no `..`; \
         at most 100 characters)",
    )
}

/// `Ok` when `ok`, else the error for `field`: `value` is not `what`.
fn accept(ok: bool, field: &str, value: &str, what: &str) -> Result<(), InvalidInput> {
    if ok {
        Ok(())
    } else {
        Err(InvalidInput::new(field, format!("`{value}` is not {what}")))
    }
}

/// A persona or plan slug: lowercase segments separated by `/`, no `..`.
fn check_slug(field: &str, value: &str) -> Result<(), InvalidInput> {
    let ok = value.len() <= 100
        && value.split('/').all(|seg| {
            !seg.is_empty()
                && seg.starts_with(|c: char| c.is_ascii_alphanumeric())
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        });
    accept(
        ok,
        field,
        value,
        "a slug (letters, digits, _ -, segments separated by /)",
    )
}

/// A git branch or tag name that is safe on a command line and as a directory name
/// (a subset of `git check-ref-format`).
fn check_ref(field: &str, value: &str) -> Result<(), InvalidInput> {
    let ok = value.len() <= 200
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
        && !value.contains("..")
        && !value.contains("//")
        && !value.contains("/.")
        && !value.ends_with('/')
        && !value.ends_with('.')
        && !value.ends_with(".lock");
    accept(
        ok,
        field,
        value,
        "a safe git ref (letters, digits, . _ - /; must start with a letter or digit; no \
         `..`, `//`, trailing `/` or `.lock`)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> DispatchInput {
        DispatchInput {
            repo: "go-io".into(),
            task: "Fix the failing tests".into(),
            issue: 15,
            ..Default::default()
        }
    }

    fn field_of(input: DispatchInput) -> String {
        input.validated().unwrap_err().field
    }

    #[test]
    fn defaults_follow_the_seed() {
        let v = ok().validated().unwrap();
        assert_eq!(
            (v.org.as_str(), v.agent.as_str(), v.template.as_str()),
            ("core", "codex", "coding")
        );
    }

    #[test]
    fn refusals_name_the_field() {
        assert_eq!(
            field_of(DispatchInput {
                repo: String::new(),
                ..ok()
            }),
            "repo"
        );
        assert_eq!(
            field_of(DispatchInput {
                task: " ".into(),
                ..ok()
            }),
            "task"
        );
        assert_eq!(field_of(DispatchInput { issue: 0, ..ok() }), "issue");
        assert_eq!(
            field_of(DispatchInput {
                repo: "../../etc".into(),
                ..ok()
            }),
            "repo"
        );
        assert_eq!(
            field_of(DispatchInput {
                org: "a/b".into(),
                ..ok()
            }),
            "org"
        );
        assert_eq!(
            field_of(DispatchInput {
                branch: "--upload-pack=x".into(),
                ..ok()
            }),
            "branch"
        );
        assert_eq!(
            field_of(DispatchInput {
                tag: "v1/../../x".into(),
                ..ok()
            }),
            "tag"
        );
        assert_eq!(
            field_of(DispatchInput {
                agent: "gpt".into(),
                ..ok()
            }),
            "agent"
        );
        assert_eq!(
            field_of(DispatchInput {
                template: "x".into(),
                ..ok()
            }),
            "template"
        );
        assert_eq!(
            field_of(DispatchInput {
                persona: "../x".into(),
                ..ok()
            }),
            "persona"
        );
    }

    #[test]
    fn branch_with_slashes_is_fine() {
        let v = DispatchInput {
            issue: 0,
            branch: "feature/x-1".into(),
            ..ok()
        };
        assert!(v.validated().is_ok());
    }

    #[test]
    fn json_errors_name_the_field() {
        assert_eq!(DispatchInput::from_json("{").unwrap_err().field, "json");
        assert_eq!(DispatchInput::from_json("[1]").unwrap_err().field, "json");
        assert_eq!(
            DispatchInput::from_json(r#"{"issue":"x"}"#)
                .unwrap_err()
                .field,
            "issue"
        );
        assert_eq!(
            DispatchInput::from_json(r#"{"issue":-1}"#)
                .unwrap_err()
                .field,
            "issue"
        );
        assert_eq!(
            DispatchInput::from_json(r#"{"bogus":1}"#)
                .unwrap_err()
                .field,
            "bogus"
        );
        let v = DispatchInput::from_json(r#"{"repo":"r","task":"t","pr":3,"variables":{"a":"b"}}"#)
            .unwrap();
        assert_eq!(v.pr, 3);
        assert_eq!(v.variables["a"], "b");
    }

    #[test]
    fn every_field_is_read_from_json_and_the_limits_are_exact() {
        let i = DispatchInput::from_json(
            r#"{"repo":"r","org":"o","task":"t","agent":"claude","template":"security",
                "plan_template":"p","persona":"q","branch":"b","tag":"v1","issue":7,"pr":null,
                "variables":{"k":"v"},"dry_run":true}"#,
        )
        .unwrap();
        let fields = [
            &i.repo,
            &i.org,
            &i.task,
            &i.agent,
            &i.template,
            &i.plan_template,
            &i.persona,
            &i.branch,
            &i.tag,
        ];
        assert_eq!(
            fields,
            ["r", "o", "t", "claude", "security", "p", "q", "b", "v1"]
        );
        assert_eq!((i.issue, i.pr, i.dry_run), (7, 0, true));
        let null = DispatchInput::from_json(r#"{"repo":"r","task":"t","agent":null}"#).unwrap();
        assert_eq!(null.agent, "", "null is the field's default");
        // The README's 64 KiB (task, answer) and 8 KiB (a variable's value),
        // to the byte.
        let job = |task: String| DispatchInput {
            repo: "r".into(),
            task,
            issue: 1,
            ..Default::default()
        };
        job("a".repeat(64 * 1024)).validated().unwrap();
        assert_eq!(
            job("a".repeat(64 * 1024 + 1))
                .validated()
                .unwrap_err()
                .field,
            "task"
        );
        assert!(check_answer(&"a".repeat(64 * 1024)).is_ok());
        let var = |n: usize| DispatchInput {
            variables: [("k".to_string(), "v".repeat(n))].into(),
            ..job("t".into())
        };
        assert!(var(8 * 1024).validated().is_ok());
        assert!(var(8 * 1024 + 1).validated().is_err());
        // At most 64 variables, named by letters, digits, `_ - .`, at most 64
        // bytes, not starting with a digit or punctuation but `_`.
        let named = |names: &[String]| DispatchInput {
            variables: names.iter().map(|k| (k.clone(), "v".to_string())).collect(),
            ..job("t".into())
        };
        let many = |n: usize| (0..n).map(|i| format!("v{i}")).collect::<Vec<_>>();
        assert!(named(&many(64)).validated().is_ok());
        assert!(named(&many(65)).validated().is_err());
        for ok in ["_a.b-c9".to_string(), "k".repeat(64)] {
            assert!(named(std::slice::from_ref(&ok)).validated().is_ok(), "{ok}");
        }
        for bad in ["", "1a", "-a", "a b", "a/b", &"k".repeat(65)] {
            let e = named(&[bad.to_string()]).validated().unwrap_err();
            assert_eq!(e.field, "variables", "{bad:?}");
        }
        // Personas and plans: slugs, `/`-separated, at most 100 bytes.
        let persona = |p: &str| DispatchInput {
            persona: p.to_string(),
            ..job("t".into())
        };
        for ok in ["reviewer", "team/a_b-1", &"p".repeat(100)] {
            assert!(persona(ok).validated().is_ok(), "{ok}");
        }
        for bad in ["a//b", "../x", "-a", "a.b", "a b", &"p".repeat(101)] {
            let e = persona(bad).validated().unwrap_err();
            assert_eq!(e.field, "persona", "{bad:?}");
        }
    }

    #[test]
    fn answers_are_checked_like_tasks() {
        assert!(check_answer("yes,\r\ngo on\twith it").is_ok());
        for bad in [
            String::new(),
            " \n".to_string(),
            "a".repeat(MAX_ANSWER_BYTES + 1),
            "yes\0".to_string(),
            "yes\u{1b}[2J".to_string(),
            "yes\u{9b}2J".to_string(),
        ] {
            assert_eq!(check_answer(&bad).unwrap_err().field, "answer", "{bad:?}");
        }
    }

    #[test]
    fn keys_are_checked_and_kept_out_of_the_input() {
        let line = r#"{"repo":"r","task":"t","issue":1,"key":"r#1"}"#;
        let (v, key) = DispatchInput::from_json_with_key(line).unwrap();
        assert_eq!((v.repo.as_str(), key.as_deref()), ("r", Some("r#1")));
        assert_eq!(
            DispatchInput::from_json(line).unwrap_err().field,
            "key",
            "without the key variant it is an unknown field"
        );
        let (_, none) = DispatchInput::from_json_with_key(r#"{"repo":"r","key":null}"#).unwrap();
        assert_eq!(none, None);
        for bad in [
            r#"{"key":""}"#,
            r#"{"key":"a b"}"#,
            r#"{"key":"a\tb"}"#,
            r#"{"key":"a\u0000"}"#,
            r#"{"key":"a\u00a0b"}"#,
            r#"{"key":7}"#,
        ] {
            assert_eq!(
                DispatchInput::from_json_with_key(bad).unwrap_err().field,
                "key",
                "{bad}"
            );
        }
        assert!(check_idempotency_key(&"é".repeat(MAX_KEY_CHARS)).is_ok());
        assert!(check_idempotency_key(&"k".repeat(MAX_KEY_CHARS + 1)).is_err());
    }
}
