//! What a repository is written in ([`agentq_domain::language`], re-exported),
//! from the marker files in its working tree ([`DetectLanguage`]).

use std::path::Path;

pub use agentq_domain::language::*;

/// The language of a working tree on disk.
pub trait DetectLanguage: Sized {
    /// Detects the language from the marker files at the top of `repo`
    /// ([`Language::from_markers`]). Never follows a link the agent planted:
    /// only real files count.
    fn detect(repo: &Path) -> Option<Self>;
}

impl DetectLanguage for Language {
    fn detect(repo: &Path) -> Option<Self> {
        Language::from_markers(|f| {
            std::fs::symlink_metadata(repo.join(f)).is_ok_and(|m| m.is_file())
        })
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

    /// A marker that is a link (to a real file) or a directory does not count.
    #[test]
    fn a_linked_or_directory_marker_is_no_marker() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("real"), "").unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("go.mod")).unwrap();
        std::fs::create_dir(dir.path().join("Cargo.toml")).unwrap();
        assert_eq!(Language::detect(dir.path()), None);
    }
}
