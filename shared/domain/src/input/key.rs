//! The idempotency key a job may be enqueued with.

use super::InvalidInput;

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
