//! Prompt templates, personas and plans: shipped with agentq (compiled in from the
//! repository's `templates/` directory) and overridable from a user directory with
//! the same layout (`sets/{name}.md`, `personas/{slug}.md`, `plans/{slug}.toml`).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::Deserialize;

const BUILTIN: &[(&str, &str)] = &[
    (
        "sets/coding.md",
        include_str!("../../../templates/sets/coding.md"),
    ),
    (
        "sets/conventions.md",
        include_str!("../../../templates/sets/conventions.md"),
    ),
    (
        "sets/security.md",
        include_str!("../../../templates/sets/security.md"),
    ),
    (
        "personas/engineer.md",
        include_str!("../../../templates/personas/engineer.md"),
    ),
    (
        "personas/reviewer.md",
        include_str!("../../../templates/personas/reviewer.md"),
    ),
    (
        "personas/security-auditor.md",
        include_str!("../../../templates/personas/security-auditor.md"),
    ),
    (
        "plans/bug-fix.toml",
        include_str!("../../../templates/plans/bug-fix.toml"),
    ),
    (
        "plans/feature.toml",
        include_str!("../../../templates/plans/feature.toml"),
    ),
];

/// A template, persona or plan that cannot be used. These are problems with the
/// job, not the infrastructure: retrying does not help.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// No file for the slug in the user directory or among the built-in ones.
    #[error("{kind} `{slug}` not found (looked in {searched})")]
    Missing {
        /// `persona`, `plan_template` or `template`.
        kind: &'static str,
        /// The slug asked for.
        slug: String,
        /// Where agentq looked.
        searched: String,
    },
    /// A plan that is not valid TOML of the plan shape.
    #[error("plan_template `{0}` is invalid: {1}")]
    BadPlan(String, String),
    /// A plan uses variables the job did not give.
    #[error("plan_template `{0}` needs variables the job does not set: {1} (pass them with --var KEY=VALUE)")]
    MissingVariables(String, String),
}

/// A plan template: phases of tasks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Title.
    pub title: String,
    /// What the plan is for.
    #[serde(default)]
    pub description: String,
    /// Phases, in order.
    pub phases: Vec<Phase>,
}

/// One phase of a plan.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// Phase name.
    pub name: String,
    /// Tasks of the phase.
    #[serde(default)]
    pub tasks: Vec<String>,
}

/// Where templates come from.
#[derive(Debug, Clone, Default)]
pub struct Templates {
    user_dir: Option<PathBuf>,
}

impl Templates {
    /// Templates with an optional user override directory.
    pub fn new(user_dir: Option<PathBuf>) -> Self {
        Self { user_dir }
    }

    fn load(&self, kind: &'static str, rel: &str, slug: &str) -> Result<String, TemplateError> {
        if let Some(dir) = &self.user_dir {
            if let Ok(text) = std::fs::read_to_string(dir.join(rel)) {
                return Ok(text);
            }
        }
        if let Some((_, text)) = BUILTIN.iter().find(|(p, _)| *p == rel) {
            return Ok((*text).to_string());
        }
        let searched = match &self.user_dir {
            Some(d) => format!("{} and the built-in templates", d.join(rel).display()),
            None => "the built-in templates".to_string(),
        };
        Err(TemplateError::Missing {
            kind,
            slug: slug.to_string(),
            searched,
        })
    }

    /// The instructions of a template set (`coding`, `conventions`, `security`).
    ///
    /// # Errors
    /// [`TemplateError::Missing`].
    pub fn template_set(&self, name: &str) -> Result<String, TemplateError> {
        self.load("template", &format!("sets/{name}.md"), name)
    }

    /// A persona's text.
    ///
    /// # Errors
    /// [`TemplateError::Missing`].
    pub fn persona(&self, slug: &str) -> Result<String, TemplateError> {
        self.load("persona", &format!("personas/{slug}.md"), slug)
    }

    /// A plan, rendered as markdown phases with `{{key}}` / `{{ key }}` replaced
    /// from `vars`.
    ///
    /// # Errors
    /// Missing or invalid plan, or variables the plan uses that `vars` lacks.
    pub fn plan(
        &self,
        slug: &str,
        vars: &BTreeMap<String, String>,
    ) -> Result<String, TemplateError> {
        let text = self.load("plan_template", &format!("plans/{slug}.toml"), slug)?;
        let missing = missing_variables(&text, vars);
        if !missing.is_empty() {
            return Err(TemplateError::MissingVariables(
                slug.to_string(),
                missing.join(", "),
            ));
        }
        let plan: Plan = toml::from_str(&substitute(&text, vars))
            .map_err(|e| TemplateError::BadPlan(slug.to_string(), e.to_string()))?;
        Ok(render_plan(&plan))
    }
}

/// Replaces `{{key}}` and `{{ key }}` with `vars[key]`; unknown keys stay as they are.
///
/// ```
/// use std::collections::BTreeMap;
/// let vars = BTreeMap::from([("bug".to_string(), "the crash".to_string())]);
/// assert_eq!(agentq_domain::templates::substitute("Fix {{ bug }} ({{bug}})", &vars), "Fix the crash (the crash)");
/// ```
pub fn substitute(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let key = after[..end].trim();
                match vars.get(key) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn missing_variables(text: &str, vars: &BTreeMap<String, String>) -> Vec<String> {
    let mut missing = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let key = after[..end].trim().to_string();
        if !vars.contains_key(&key) && !missing.contains(&key) {
            missing.push(key);
        }
        rest = &after[end + 2..];
    }
    missing
}

fn render_plan(plan: &Plan) -> String {
    let mut out = format!("{}\n", plan.title);
    if !plan.description.is_empty() {
        out.push_str(&format!("\n{}\n", plan.description));
    }
    for (i, phase) in plan.phases.iter().enumerate() {
        out.push_str(&format!("\n### Phase {}: {}\n\n", i + 1, phase.name));
        for task in &phase.tasks {
            out.push_str(&format!("- [ ] {task}\n"));
        }
    }
    out
}

/// Where the built-in templates live in the source tree (for documentation).
pub fn builtin_dir() -> &'static Path {
    Path::new("templates")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn substitution_handles_both_spellings_and_leaves_unknowns() {
        let v = vars(&[("a", "1"), ("b", "2")]);
        assert_eq!(substitute("{{a}}-{{ b }}-{{ c }}-{{", &v), "1-2-{{ c }}-{{");
    }

    #[test]
    fn builtin_plan_renders_phases() {
        let t = Templates::new(None);
        let text = t
            .plan("bug-fix", &vars(&[("bug", "the login crash")]))
            .unwrap();
        assert!(text.contains("### Phase 1: Reproduce"), "{text}");
        assert!(
            text.contains("- [ ] Write a test that shows the login crash"),
            "{text}"
        );
        assert!(text.contains("### Phase 3: Finish"));
        assert!(!text.contains("{{"));
    }

    #[test]
    fn missing_things_are_clear_errors() {
        let t = Templates::new(None);
        let e = t.plan("bug-fix", &BTreeMap::new()).unwrap_err().to_string();
        assert!(e.contains("bug") && e.contains("--var"), "{e}");
        let e = t.persona("nobody").unwrap_err().to_string();
        assert!(e.contains("persona `nobody` not found"), "{e}");
        assert!(t.plan("nope", &BTreeMap::new()).is_err());
    }

    #[test]
    fn user_dir_overrides_builtin() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("personas")).unwrap();
        std::fs::write(dir.path().join("personas/engineer.md"), "custom").unwrap();
        let t = Templates::new(Some(dir.path().to_path_buf()));
        assert_eq!(t.persona("engineer").unwrap(), "custom");
        assert!(t.persona("reviewer").unwrap().contains("reviewer"));
    }
}
