//! What a repository is written in, from its marker files, and the commands that
//! build and test it (used by the prompt and by QA).

use std::path::Path;

/// A language agentq knows how to build and test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// `go.mod`.
    Go,
    /// `Cargo.toml`.
    Rust,
    /// `composer.json`.
    Php,
    /// `package.json`.
    Node,
    /// `pyproject.toml` or `requirements.txt`.
    Python,
}

impl Language {
    /// Detects the language from marker files, in the seed's order (go.mod,
    /// composer.json, package.json), then Cargo.toml, then Python's markers.
    pub fn detect(repo: &Path) -> Option<Self> {
        // Never follows a link the agent planted: only real files count.
        let has = |f: &str| std::fs::symlink_metadata(repo.join(f)).is_ok_and(|m| m.is_file());
        if has("go.mod") {
            Some(Self::Go)
        } else if has("composer.json") {
            Some(Self::Php)
        } else if has("package.json") {
            Some(Self::Node)
        } else if has("Cargo.toml") {
            Some(Self::Rust)
        } else if has("pyproject.toml") || has("requirements.txt") {
            Some(Self::Python)
        } else {
            None
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Go => "Go",
            Self::Rust => "Rust",
            Self::Php => "PHP",
            Self::Node => "JavaScript/TypeScript (Node)",
            Self::Python => "Python",
        }
    }

    /// The QA commands, in order (the seed's `runQA`, plus Rust and Python).
    pub fn qa_commands(self) -> Vec<Vec<String>> {
        let v = |c: &[&[&str]]| {
            c.iter()
                .map(|a| a.iter().map(|s| s.to_string()).collect())
                .collect()
        };
        match self {
            Self::Go => v(&[
                &["go", "build", "./..."],
                &["go", "vet", "./..."],
                &["go", "test", "./...", "-count=1", "-timeout", "120s"],
            ]),
            Self::Php => v(&[
                &["composer", "install", "--no-interaction"],
                &["composer", "test"],
            ]),
            Self::Node => v(&[&["npm", "install"], &["npm", "test"]]),
            Self::Rust => v(&[&["cargo", "build"], &["cargo", "test"]]),
            Self::Python => v(&[&["pytest"]]),
        }
    }

    /// The build command, for the prompt.
    pub fn build_command(self) -> String {
        self.qa_commands()
            .first()
            .map(|c| c.join(" "))
            .unwrap_or_default()
    }

    /// The test command, for the prompt.
    pub fn test_command(self) -> String {
        self.qa_commands()
            .last()
            .map(|c| c.join(" "))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_marker() {
        for (file, lang) in [
            ("go.mod", Language::Go),
            ("Cargo.toml", Language::Rust),
            ("composer.json", Language::Php),
            ("package.json", Language::Node),
            ("pyproject.toml", Language::Python),
            ("requirements.txt", Language::Python),
        ] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(file), "").unwrap();
            assert_eq!(Language::detect(dir.path()), Some(lang), "{file}");
        }
        assert_eq!(Language::detect(tempfile::tempdir().unwrap().path()), None);
    }

    #[test]
    fn go_follows_the_seed() {
        assert_eq!(
            Language::Go.test_command(),
            "go test ./... -count=1 -timeout 120s"
        );
        assert_eq!(Language::Go.qa_commands().len(), 3);
    }
}
