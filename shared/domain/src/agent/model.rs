//! Agent names as users write them: `pool[:model]`, split at the first `:`,
//! with the model checked so that it can never be read as an option or a path.

/// Longest model name, bytes.
pub const MAX_MODEL_BYTES: usize = 128;

/// Splits `pool[:model]` at the first `:` (`local:org/model:tag` is pool
/// `local`, model `org/model:tag`). Nothing is checked.
pub fn split(agent: &str) -> (&str, Option<&str>) {
    match agent.split_once(':') {
        Some((b, m)) => (b, Some(m)),
        None => (agent, None),
    }
}

/// Checks a model name: letters, digits and `. _ - : / @ +`, at most
/// [`MAX_MODEL_BYTES`]; not empty, not starting with `-` (an option) or `/`
/// (a path), no `..` and no `//`. Whitespace, control characters, `$`,
/// backticks, `;`, quotes and `\` are among what is refused.
///
/// # Errors
/// Why the name is refused.
pub fn check(model: &str) -> Result<(), String> {
    if model.is_empty() {
        return Err("is empty".into());
    }
    if model.len() > MAX_MODEL_BYTES {
        return Err(format!("is longer than {MAX_MODEL_BYTES} bytes"));
    }
    if model.starts_with('-') {
        return Err("starts with `-` (it could be read as an option)".into());
    }
    if model.starts_with('/') {
        return Err("starts with `/` (it could be read as a path)".into());
    }
    if model.contains("..") || model.contains("//") {
        return Err("has `..` or `//` (it could be read as a path)".into());
    }
    if let Some(c) = model.chars().find(|c| {
        !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/' | '@' | '+'))
    }) {
        return Err(format!(
            "has {c:?} (allowed: letters, digits and . _ - : / @ +)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_at_the_first_colon() {
        assert_eq!(split("local:devstral:24b"), ("local", Some("devstral:24b")));
        assert_eq!(
            split("local:org/model:tag"),
            ("local", Some("org/model:tag"))
        );
        assert_eq!(split("aider:openai/stub"), ("aider", Some("openai/stub")));
        assert_eq!(split("claude"), ("claude", None));
        assert_eq!(split("claude:"), ("claude", Some("")));
    }

    #[test]
    fn model_names_as_users_write_them_are_accepted() {
        for m in [
            "devstral:24b",
            "org/model:tag",
            "claude-opus-4-1",
            "openai/stub",
            "gpt-5",
            "qwen2.5-coder:7b-instruct",
            "hf.co/org/model@rev+q4",
            "haiku",
        ] {
            assert_eq!(check(m), Ok(()), "{m}");
        }
        assert_eq!(check(&"a".repeat(MAX_MODEL_BYTES)), Ok(()));
    }

    #[test]
    fn names_that_could_be_options_or_paths_are_refused() {
        let refused = |m: &str, why: &str| {
            let e = check(m).expect_err(m);
            assert!(e.contains(why), "{m}: {e}");
        };
        refused("", "empty");
        refused("-x", "option");
        refused("--model=x", "option");
        refused("..", "..");
        refused("org/../etc", "..");
        refused("/etc/passwd", "path");
        refused("org//model", "//");
        refused("a b", "' '");
        refused("a\tb", "'\\t'");
        refused("a\nb", "'\\n'");
        refused("a\u{7}b", "'\\u{7}'");
        refused("$(id)", "'$'");
        refused("a`id`", "'`'");
        refused("a;b", "';'");
        refused("a'b", "'\\''");
        refused("a\"b", "'\"'");
        refused("a\\b", "'\\\\'");
        refused("é", "'é'");
        refused(&"a".repeat(MAX_MODEL_BYTES + 1), "longer than 128");
    }
}
