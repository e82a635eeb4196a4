//! Prompt templates, personas and plans: shipped with agentq (compiled in from the
//! repository's `templates/` directory) and overridable from a user directory with
//! the same layout (`sets/{name}.md`, `personas/{slug}.md`, `plans/{slug}.toml`).
//! Reading the user directory is `agentq_shared::templates::Templates`'s; the
//! built-in texts, the layout and the rendering are here.

use std::{collections::BTreeMap, path::Path};

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

/// What a slug names: a template set, a persona or a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateKind {
    /// A template set (`sets/{name}.md`).
    Set,
    /// A persona (`personas/{slug}.md`).
    Persona,
    /// A plan (`plans/{slug}.toml`).
    Plan,
}

impl TemplateKind {
    /// How errors call it: `template`, `persona` or `plan_template`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Set => "template",
            Self::Persona => "persona",
            Self::Plan => "plan_template",
        }
    }

    /// Its file for `slug`, relative to a template directory.
    pub fn rel_path(self, slug: &str) -> String {
        match self {
            Self::Set => format!("sets/{slug}.md"),
            Self::Persona => format!("personas/{slug}.md"),
            Self::Plan => format!("plans/{slug}.toml"),
        }
    }

    /// The error for a `slug` found neither in `user_dir` nor among the
    /// built-in templates.
    pub fn missing(self, slug: &str, user_dir: Option<&Path>) -> TemplateError {
        let rel = self.rel_path(slug);
        let searched = match user_dir {
            Some(d) => format!("{} and the built-in templates", d.join(rel).display()),
            None => "the built-in templates".to_string(),
        };
        TemplateError::Missing {
            kind: self.label(),
            slug: slug.to_string(),
            searched,
        }
    }
}

/// The built-in text at `rel` (e.g. `personas/engineer.md`), if agentq ships one.
pub fn builtin(rel: &str) -> Option<&'static str> {
    BUILTIN
        .iter()
        .find(|(p, _)| *p == rel)
        .map(|(_, text)| *text)
}

/// The plan `slug` whose TOML is `text`, rendered as markdown phases with
/// `{{key}}` / `{{ key }}` replaced from `vars`.
///
/// # Errors
/// An invalid plan, or variables the plan uses that `vars` lacks.
pub fn render_plan_text(
    slug: &str,
    text: &str,
    vars: &BTreeMap<String, String>,
) -> Result<String, TemplateError> {
    let missing = missing_variables(text, vars);
    if !missing.is_empty() {
        return Err(TemplateError::MissingVariables(
            slug.to_string(),
            missing.join(", "),
        ));
    }
    let plan: Plan = toml::from_str(&substitute(text, vars))
        .map_err(|e| TemplateError::BadPlan(slug.to_string(), e.to_string()))?;
    Ok(render_plan(&plan))
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
    fn builtin_plan_renders_phases_from_its_text() {
        let text = builtin("plans/bug-fix.toml").unwrap();
        let out = render_plan_text("bug-fix", text, &vars(&[("bug", "the login crash")])).unwrap();
        assert!(out.contains("### Phase 1: Reproduce"), "{out}");
        assert!(
            out.contains("- [ ] Write a test that shows the login crash"),
            "{out}"
        );
        assert!(!out.contains("{{"));
        let e = render_plan_text("bug-fix", text, &BTreeMap::new()).unwrap_err();
        assert!(
            e.to_string().contains("bug") && e.to_string().contains("--var"),
            "{e}"
        );
        let e = render_plan_text("odd", "title = 1", &BTreeMap::new()).unwrap_err();
        assert!(
            matches!(e, TemplateError::BadPlan(ref s, _) if s == "odd"),
            "{e}"
        );
    }

    #[test]
    fn each_kind_has_its_file_and_its_name_in_errors() {
        assert_eq!(TemplateKind::Set.rel_path("coding"), "sets/coding.md");
        assert_eq!(TemplateKind::Persona.rel_path("x"), "personas/x.md");
        assert_eq!(TemplateKind::Plan.rel_path("x"), "plans/x.toml");
        for kind in [TemplateKind::Set, TemplateKind::Persona, TemplateKind::Plan] {
            assert!(builtin(&kind.rel_path("nobody")).is_none());
        }
        assert!(builtin("personas/engineer.md").is_some());
        let e = TemplateKind::Persona.missing("nobody", None).to_string();
        assert_eq!(
            e,
            "persona `nobody` not found (looked in the built-in templates)"
        );
        let e = TemplateKind::Plan
            .missing("p", Some(Path::new("/t")))
            .to_string();
        assert_eq!(
            e,
            "plan_template `p` not found (looked in /t/plans/p.toml and the built-in templates)"
        );
    }
}
