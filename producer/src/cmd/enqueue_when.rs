//! `agentq enqueue --priority/--at/--in`: the scheduling flags, checked as
//! their NDJSON fields are (`priority`, `at`, `in`), naming the field.

use agentq_shared::input::{when, DispatchInput, InvalidInput};

/// `input` with the flags' priority and due time.
///
/// # Errors
/// A priority that is not high, normal or low (field `priority`); a time or
/// delay that does not parse (field `at` / `in`).
pub fn with_schedule(
    mut input: DispatchInput,
    priority: &Option<String>,
    at: &Option<String>,
    in_: &Option<String>,
) -> Result<DispatchInput, InvalidInput> {
    if let Some(p) = priority {
        let line = serde_json::json!({ "priority": p }).to_string();
        input.priority = DispatchInput::from_json(&line)?.priority;
    }
    if let Some(at) = at {
        input.at = Some(when::at(at)?);
    }
    if let Some(delay) = in_ {
        input.at = Some(when::in_to_at(when::parse_in(delay)?));
    }
    Ok(input)
}
