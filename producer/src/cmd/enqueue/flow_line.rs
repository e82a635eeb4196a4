//! An NDJSON line's flow fields (issue 33): `after` (an array of job ids),
//! `after_any`, `batch` and `unique`, taken out of the line before the job
//! input is read. A line without any of them is read as it was (one look for
//! the names, no second parse).

use agentq_shared::{flow, input::InvalidInput, record::JobRecord};

/// What `agentq enqueue - --batch NAME --unique` gives every line.
#[derive(Debug, Clone, Default)]
pub struct FlowDefaults {
    /// The batch of lines without their own.
    pub batch: String,
    /// Every line unique while active.
    pub unique: bool,
    /// Pools whose every job is unique (`unique_pools`).
    pub unique_pools: Vec<String>,
}

/// One line's flow fields.
#[derive(Debug, Clone, Default)]
pub struct FlowLine {
    after: Vec<String>,
    after_any: bool,
    batch: Option<String>,
    unique: bool,
}

impl FlowLine {
    /// The line's parents (`after`).
    pub fn parents(&self) -> &[String] {
        &self.after
    }

    /// The flow fields the fast reader
    /// ([`read_line`](agentq_shared::input::line::read_line)) took out of a
    /// line, checked as [`split`] checks them.
    ///
    /// # Errors
    /// As [`split`] (the caller reads the line again with it, for its message).
    pub fn from_fields(
        after: Vec<String>,
        after_any: bool,
        batch: Option<String>,
        unique: bool,
    ) -> Result<Self, InvalidInput> {
        let after = if after.is_empty() {
            after
        } else {
            flow::parse_after(after.iter().map(String::as_str))?
        };
        if after_any && after.is_empty() {
            return Err(InvalidInput {
                field: "after_any".into(),
                message: "needs \"after\"".into(),
            });
        }
        if let Some(b) = &batch {
            flow::check_batch(b)?;
        }
        Ok(Self {
            after,
            after_any,
            batch,
            unique,
        })
    }

    /// Puts these fields (and the command's defaults) on `rec`.
    pub fn apply(self, rec: &mut JobRecord, defaults: &FlowDefaults) {
        flow::wait_for(rec, &self.after, self.after_any);
        rec.batch = self.batch.unwrap_or_else(|| defaults.batch.clone());
        if self.unique || defaults.unique || flow::unique_pool(rec, &defaults.unique_pools) {
            flow::make_unique(rec);
        }
    }
}

fn bad(field: &str, want: &str, got: &serde_json::Value) -> InvalidInput {
    InvalidInput {
        field: field.into(),
        message: format!("expected {want}, got {got}"),
    }
}

/// Splits a line into the text of its job input (and key) and its flow fields.
///
/// # Errors
/// A flow field of the wrong type or value, naming it.
pub fn split(text: &str) -> Result<(std::borrow::Cow<'_, str>, FlowLine), InvalidInput> {
    let mentions = ["\"after", "\"batch\"", "\"unique\""]
        .iter()
        .any(|n| text.contains(n));
    if !mentions {
        return Ok((text.into(), FlowLine::default()));
    }
    let Ok(serde_json::Value::Object(mut map)) = serde_json::from_str::<serde_json::Value>(text)
    else {
        // The input's own reading names the problem.
        return Ok((text.into(), FlowLine::default()));
    };
    let mut out = FlowLine::default();
    match map.remove("after") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Array(ids)) => {
            let mut list = Vec::new();
            for v in &ids {
                list.push(
                    v.as_str()
                        .ok_or_else(|| bad("after", "an array of job ids", v))?
                        .to_string(),
                );
            }
            if !list.is_empty() {
                out.after = flow::parse_after(list.iter().map(String::as_str))?;
            }
        }
        Some(other) => return Err(bad("after", "an array of job ids", &other)),
    }
    match map.remove("after_any") {
        None | Some(serde_json::Value::Null) => {}
        Some(v) => {
            out.after_any = v
                .as_bool()
                .ok_or_else(|| bad("after_any", "true or false", &v))?
        }
    }
    if out.after_any && out.after.is_empty() {
        return Err(InvalidInput {
            field: "after_any".into(),
            message: "needs \"after\"".into(),
        });
    }
    match map.remove("batch") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::String(b)) => {
            flow::check_batch(&b)?;
            out.batch = Some(b);
        }
        Some(other) => return Err(bad("batch", "a string", &other)),
    }
    match map.remove("unique") {
        None | Some(serde_json::Value::Null) => {}
        Some(v) => {
            out.unique = v
                .as_bool()
                .ok_or_else(|| bad("unique", "true or false", &v))?
        }
    }
    Ok((serde_json::Value::Object(map).to_string().into(), out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_fields_are_taken_out_and_checked() {
        let (text, f) = split(r#"{"repo":"r","task":"t"}"#).unwrap();
        assert_eq!(text, r#"{"repo":"r","task":"t"}"#);
        assert!(f.after.is_empty() && f.batch.is_none() && !f.unique);
        let a = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
        let line = format!(
            r#"{{"repo":"r","after":["{a}"],"after_any":true,"batch":"b1","unique":true}}"#
        );
        let (text, f) = split(&line).unwrap();
        assert_eq!(text, r#"{"repo":"r"}"#);
        assert_eq!(f.after, vec![a.to_string()]);
        assert!(f.after_any && f.unique);
        assert_eq!(f.batch.as_deref(), Some("b1"));
        for (bad, field) in [
            (r#"{"after":"x"}"#, "after"),
            (r#"{"after":["x"]}"#, "after"),
            (r#"{"after":[1]}"#, "after"),
            (r#"{"after_any":true}"#, "after_any"),
            (r#"{"batch":"a b"}"#, "batch"),
            (r#"{"batch":3}"#, "batch"),
            (r#"{"unique":"yes"}"#, "unique"),
        ] {
            assert_eq!(split(bad).unwrap_err().field, field, "{bad}");
        }
    }
}
