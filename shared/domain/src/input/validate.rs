//! The seed's defaults and the rules every job input must keep.

use super::{DispatchInput, InvalidInput, DEFAULT_AGENT, DEFAULT_ORG, DEFAULT_TEMPLATE, TEMPLATES};

const MAX_TASK_BYTES: usize = 64 * 1024;
const MAX_VAR_VALUE_BYTES: usize = 8 * 1024;
const MAX_VARS: usize = 64;

impl DispatchInput {
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
    use crate::input::check_answer;

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
        assert_eq!(i.auto_merge, None);
        let merge = |v: &str| {
            DispatchInput::from_json(&format!(r#"{{"repo":"r","task":"t","auto_merge":{v}}}"#))
                .map(|i| i.auto_merge)
        };
        assert_eq!(merge("true"), Ok(Some(true)));
        assert_eq!(merge("false"), Ok(Some(false)));
        assert_eq!(merge("null"), Ok(None));
        assert_eq!(merge("\"yes\"").unwrap_err().field, "auto_merge");
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
}
