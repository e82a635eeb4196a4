//! What a repository is written in, from its marker files, and the commands that
//! build and test it (used by the prompt and by QA).

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
    /// The language of a repository whose top directory `has` the named
    /// marker files, in the seed's order (go.mod, composer.json,
    /// package.json), then Cargo.toml, then Python's markers. Looking at the
    /// files is `agentq_shared::language::DetectLanguage`'s.
    pub fn from_markers(has: impl Fn(&str) -> bool) -> Option<Self> {
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

    /// Each marker alone, and the seed's order when there are several.
    #[test]
    fn markers_give_the_language_in_the_seeds_order() {
        let of = |files: &[&str]| Language::from_markers(|f| files.contains(&f));
        for (file, lang) in [
            ("go.mod", Language::Go),
            ("Cargo.toml", Language::Rust),
            ("composer.json", Language::Php),
            ("package.json", Language::Node),
            ("pyproject.toml", Language::Python),
            ("requirements.txt", Language::Python),
        ] {
            assert_eq!(of(&[file]), Some(lang), "{file}");
        }
        assert_eq!(of(&[]), None);
        assert_eq!(of(&["README.md"]), None);
        let all = [
            "requirements.txt",
            "pyproject.toml",
            "Cargo.toml",
            "package.json",
            "composer.json",
            "go.mod",
        ];
        for (n, lang) in [
            (6, Language::Go),
            (5, Language::Php),
            (4, Language::Node),
            (3, Language::Rust),
            (2, Language::Python),
        ] {
            assert_eq!(of(&all[..n]), Some(lang), "{:?}", &all[..n]);
        }
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
