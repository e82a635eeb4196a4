//! Prompt templates, personas and plans ([`agentq_domain::templates`],
//! re-exported), looked up in a user directory first ([`Templates`]).

use std::{collections::BTreeMap, path::PathBuf};

pub use agentq_domain::templates::*;

/// Where templates come from: the user directory, if any, then the built-in ones.
#[derive(Debug, Clone, Default)]
pub struct Templates {
    user_dir: Option<PathBuf>,
}

impl Templates {
    /// Templates with an optional user override directory.
    pub fn new(user_dir: Option<PathBuf>) -> Self {
        Self { user_dir }
    }

    fn load(&self, kind: TemplateKind, slug: &str) -> Result<String, TemplateError> {
        let rel = kind.rel_path(slug);
        if let Some(dir) = &self.user_dir {
            if let Ok(text) = std::fs::read_to_string(dir.join(&rel)) {
                return Ok(text);
            }
        }
        builtin(&rel)
            .map(str::to_string)
            .ok_or_else(|| kind.missing(slug, self.user_dir.as_deref()))
    }

    /// The instructions of a template set (`coding`, `conventions`, `security`).
    ///
    /// # Errors
    /// [`TemplateError::Missing`].
    pub fn template_set(&self, name: &str) -> Result<String, TemplateError> {
        self.load(TemplateKind::Set, name)
    }

    /// A persona's text.
    ///
    /// # Errors
    /// [`TemplateError::Missing`].
    pub fn persona(&self, slug: &str) -> Result<String, TemplateError> {
        self.load(TemplateKind::Persona, slug)
    }

    /// A plan, rendered as markdown phases with `{{key}}` / `{{ key }}` replaced
    /// from `vars` ([`render_plan_text`]).
    ///
    /// # Errors
    /// Missing or invalid plan, or variables the plan uses that `vars` lacks.
    pub fn plan(
        &self,
        slug: &str,
        vars: &BTreeMap<String, String>,
    ) -> Result<String, TemplateError> {
        let text = self.load(TemplateKind::Plan, slug)?;
        render_plan_text(slug, &text, vars)
    }
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
