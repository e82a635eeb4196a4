//! Reading a job input from one JSON document (one NDJSON line), naming the
//! field on every refusal.

use super::{check_idempotency_key, DispatchInput, InvalidInput};

impl DispatchInput {
    /// Parses one JSON document (one NDJSON line) into an input, naming the field
    /// on a type error, which serde's own messages do not do.
    ///
    /// # Errors
    /// Malformed JSON, a non-object, an unknown field or a field of the wrong type.
    pub fn from_json(text: &str) -> Result<Self, InvalidInput> {
        Self::from_map(json_object(text)?, false)
    }

    /// Parses one line of `agentq enqueue -`: the input's fields plus an optional
    /// idempotency `key` (see [`check_idempotency_key`]; `null` means none).
    ///
    /// # Errors
    /// As [`DispatchInput::from_json`], and a `key` that is not a valid key.
    pub fn from_json_with_key(text: &str) -> Result<(Self, Option<String>), InvalidInput> {
        let mut map = json_object(text)?;
        let key = match map.remove("key") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(k)) => {
                check_idempotency_key(&k)?;
                Some(k)
            }
            Some(other) => {
                return Err(InvalidInput::new(
                    "key",
                    format!("expected a string, got {other}"),
                ))
            }
        };
        Ok((Self::from_map(map, true)?, key))
    }

    fn from_map(
        map: serde_json::Map<String, serde_json::Value>,
        with_key: bool,
    ) -> Result<Self, InvalidInput> {
        let mut input = DispatchInput::default();
        for (key, value) in map {
            let field = key.as_str();
            let bad =
                |want: &str| InvalidInput::new(field, format!("expected {want}, got {value}"));
            match field {
                "repo" | "org" | "task" | "agent" | "template" | "plan_template" | "persona"
                | "branch" | "tag" => {
                    let s = match &value {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Null => String::new(),
                        _ => return Err(bad("a string")),
                    };
                    *input.string_field_mut(field) = s;
                }
                "issue" | "pr" => {
                    let n = match &value {
                        serde_json::Value::Null => 0,
                        v => v.as_u64().ok_or_else(|| bad("a positive integer"))?,
                    };
                    if field == "issue" {
                        input.issue = n;
                    } else {
                        input.pr = n;
                    }
                }
                "dry_run" => {
                    input.dry_run = match &value {
                        serde_json::Value::Null => false,
                        v => v.as_bool().ok_or_else(|| bad("true or false"))?,
                    }
                }
                "auto_merge" => {
                    input.auto_merge = match &value {
                        serde_json::Value::Null => None,
                        v => Some(v.as_bool().ok_or_else(|| bad("true, false or null"))?),
                    }
                }
                "priority" => {
                    input.priority = match &value {
                        serde_json::Value::Null => Default::default(),
                        serde_json::Value::String(s) => {
                            s.parse().map_err(|e| InvalidInput::new(field, e))?
                        }
                        _ => return Err(bad("\"high\", \"normal\" or \"low\"")),
                    }
                }
                "at" | "in" => {
                    let s = match &value {
                        serde_json::Value::Null => continue,
                        serde_json::Value::String(s) => s,
                        _ => return Err(bad("a string")),
                    };
                    if input.at.is_some() {
                        return Err(InvalidInput::new(field, "give `at` or `in`, not both"));
                    }
                    input.at = Some(if field == "at" {
                        super::when::at(s)?
                    } else {
                        super::when::in_to_at(super::when::parse_in(s)?)
                    });
                }
                "variables" => {
                    input.variables = serde_json::from_value(value.clone())
                        .map_err(|_| bad("an object of string values"))?;
                }
                other => {
                    return Err(InvalidInput::new(
                        other,
                        format!(
                            "unknown field (known: repo, org, task, agent, template, \
                             plan_template, variables, persona, issue, pr, branch, tag, \
                             dry_run, auto_merge, priority, at, in{})",
                            if with_key { ", key" } else { "" }
                        ),
                    ))
                }
            }
        }
        Ok(input)
    }

    fn string_field_mut(&mut self, field: &str) -> &mut String {
        match field {
            "repo" => &mut self.repo,
            "org" => &mut self.org,
            "task" => &mut self.task,
            "agent" => &mut self.agent,
            "template" => &mut self.template,
            "plan_template" => &mut self.plan_template,
            "persona" => &mut self.persona,
            "branch" => &mut self.branch,
            _ => &mut self.tag,
        }
    }
}

/// One JSON document that must be an object.
fn json_object(text: &str) -> Result<serde_json::Map<String, serde_json::Value>, InvalidInput> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| InvalidInput::new("json", format!("malformed JSON: {e}")))?;
    match value {
        serde_json::Value::Object(map) => Ok(map),
        _ => Err(InvalidInput::new("json", "expected a JSON object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::MAX_KEY_CHARS;

    #[test]
    fn json_errors_name_the_field() {
        assert_eq!(DispatchInput::from_json("{").unwrap_err().field, "json");
        assert_eq!(DispatchInput::from_json("[1]").unwrap_err().field, "json");
        assert_eq!(
            DispatchInput::from_json(r#"{"issue":"x"}"#)
                .unwrap_err()
                .field,
            "issue"
        );
        assert_eq!(
            DispatchInput::from_json(r#"{"issue":-1}"#)
                .unwrap_err()
                .field,
            "issue"
        );
        assert_eq!(
            DispatchInput::from_json(r#"{"bogus":1}"#)
                .unwrap_err()
                .field,
            "bogus"
        );
        let v = DispatchInput::from_json(r#"{"repo":"r","task":"t","pr":3,"variables":{"a":"b"}}"#)
            .unwrap();
        assert_eq!(v.pr, 3);
        assert_eq!(v.variables["a"], "b");
    }

    #[test]
    fn priority_and_due_time_are_read_naming_the_field() {
        let v =
            DispatchInput::from_json(r#"{"priority":"high","at":"2026-12-07T06:00Z"}"#).unwrap();
        assert_eq!(v.priority, crate::priority::Priority::High);
        assert_eq!(v.at, Some("2026-12-07T06:00:00Z".parse().unwrap()));
        let v = DispatchInput::from_json(r#"{"in":"2h"}"#).unwrap();
        let due = v.at.unwrap().ms();
        assert!((due - crate::clock::now_ms() - 7_200_000).abs() < 5_000);
        for (line, field) in [
            (r#"{"priority":"urgent"}"#, "priority"),
            (r#"{"priority":1}"#, "priority"),
            (r#"{"at":"soon"}"#, "at"),
            (r#"{"in":"soon"}"#, "in"),
            (r#"{"at":"2026-12-07T06:00Z","in":"2h"}"#, "in"),
        ] {
            assert_eq!(
                DispatchInput::from_json(line).unwrap_err().field,
                field,
                "{line}"
            );
        }
    }

    #[test]
    fn keys_are_checked_and_kept_out_of_the_input() {
        let line = r#"{"repo":"r","task":"t","issue":1,"key":"r#1"}"#;
        let (v, key) = DispatchInput::from_json_with_key(line).unwrap();
        assert_eq!((v.repo.as_str(), key.as_deref()), ("r", Some("r#1")));
        assert_eq!(
            DispatchInput::from_json(line).unwrap_err().field,
            "key",
            "without the key variant it is an unknown field"
        );
        let (_, none) = DispatchInput::from_json_with_key(r#"{"repo":"r","key":null}"#).unwrap();
        assert_eq!(none, None);
        for bad in [
            r#"{"key":""}"#,
            r#"{"key":"a b"}"#,
            r#"{"key":"a\tb"}"#,
            r#"{"key":"a\u0000"}"#,
            r#"{"key":"a\u00a0b"}"#,
            r#"{"key":7}"#,
        ] {
            assert_eq!(
                DispatchInput::from_json_with_key(bad).unwrap_err().field,
                "key",
                "{bad}"
            );
        }
        assert!(check_idempotency_key(&"é".repeat(MAX_KEY_CHARS)).is_ok());
        assert!(check_idempotency_key(&"k".repeat(MAX_KEY_CHARS + 1)).is_err());
    }
}
