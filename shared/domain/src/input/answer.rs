//! The answer to a blocked job, checked like a task.

use super::{InvalidInput, MAX_ANSWER_BYTES};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
