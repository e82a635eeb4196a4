//! One NDJSON line of `agentq enqueue -` read in one pass into a typed struct
//! whose strings borrow from the line (issue 34): no `serde_json::Value` tree,
//! no map of owned keys, no second parse for the flow fields.
//!
//! This is the fast way only: it accepts exactly the lines the field-naming
//! reader ([`DispatchInput::from_json_with_key`]) accepts, and reads them the
//! same, and gives up (`None`) on anything else, for that reader to refuse
//! with its message naming the field. A line it gives up on is never refused
//! by it: the caller reads it again the slow way.

use std::{borrow::Cow, collections::BTreeMap};

use serde::Deserialize;

use super::{check_idempotency_key, DispatchInput};

/// A line's fields, as they are in the text (strings without escapes
/// borrowed). `Option` for a field that may be `null` or missing.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Borrowed<'a> {
    #[serde(borrow)]
    repo: Option<Cow<'a, str>>,
    #[serde(borrow)]
    org: Option<Cow<'a, str>>,
    #[serde(borrow)]
    task: Option<Cow<'a, str>>,
    #[serde(borrow)]
    agent: Option<Cow<'a, str>>,
    #[serde(borrow)]
    template: Option<Cow<'a, str>>,
    #[serde(borrow)]
    plan_template: Option<Cow<'a, str>>,
    /// Not `Option`: `null` is refused (as the slow reader does).
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(borrow)]
    persona: Option<Cow<'a, str>>,
    issue: Option<u64>,
    pr: Option<u64>,
    #[serde(borrow)]
    branch: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tag: Option<Cow<'a, str>>,
    dry_run: Option<bool>,
    auto_merge: Option<bool>,
    #[serde(borrow)]
    priority: Option<Cow<'a, str>>,
    #[serde(borrow)]
    at: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "in")]
    in_: Option<Cow<'a, str>>,
    #[serde(borrow)]
    key: Option<Cow<'a, str>>,
    #[serde(borrow)]
    after: Option<Vec<Cow<'a, str>>>,
    after_any: Option<bool>,
    #[serde(borrow)]
    batch: Option<Cow<'a, str>>,
    unique: Option<bool>,
}

/// What [`read_line`] read: the job input (not yet validated), its key and
/// its flow fields as given (checked by the caller: `agentq_shared::flow`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineFields {
    /// The input, as [`DispatchInput::from_json_with_key`] reads it.
    pub input: DispatchInput,
    /// `key`, checked ([`check_idempotency_key`]).
    pub key: Option<String>,
    /// `after`, as given (empty when missing or `null`).
    pub after: Vec<String>,
    /// `after_any` (`false` when missing or `null`).
    pub after_any: bool,
    /// `batch`, as given.
    pub batch: Option<String>,
    /// `unique` (`false` when missing or `null`).
    pub unique: bool,
}

fn owned(s: Option<Cow<'_, str>>) -> String {
    s.map(Cow::into_owned).unwrap_or_default()
}

/// Reads one line the fast way; `None` when it is not a line the slow reader
/// would accept as it stands (malformed, a field of the wrong type, an
/// unknown or repeated field, a bad `priority`, `at`, `in` or `key`): read it
/// again with [`DispatchInput::from_json_with_key`], which names the field.
pub fn read_line(text: &str) -> Option<LineFields> {
    let b: Borrowed<'_> = serde_json::from_str(text).ok()?;
    let at = match (b.at, b.in_) {
        (Some(_), Some(_)) => return None,
        (Some(at), None) => Some(super::when::at(&at).ok()?),
        (None, Some(delay)) => Some(super::when::in_to_at(super::when::parse_in(&delay).ok()?)),
        (None, None) => None,
    };
    let priority = match b.priority {
        Some(p) => p.parse().ok()?,
        None => Default::default(),
    };
    let key = match b.key {
        Some(k) => {
            check_idempotency_key(&k).ok()?;
            Some(k.into_owned())
        }
        None => None,
    };
    let input = DispatchInput {
        repo: owned(b.repo),
        org: owned(b.org),
        task: owned(b.task),
        agent: owned(b.agent),
        template: owned(b.template),
        plan_template: owned(b.plan_template),
        variables: b.variables,
        persona: owned(b.persona),
        issue: b.issue.unwrap_or(0),
        pr: b.pr.unwrap_or(0),
        branch: owned(b.branch),
        tag: owned(b.tag),
        dry_run: b.dry_run.unwrap_or(false),
        auto_merge: b.auto_merge,
        priority,
        at,
    };
    Some(LineFields {
        input,
        key,
        after: b
            .after
            .unwrap_or_default()
            .into_iter()
            .map(Cow::into_owned)
            .collect(),
        after_any: b.after_any.unwrap_or(false),
        batch: b.batch.map(Cow::into_owned),
        unique: b.unique.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slow reader's view of a line without flow fields.
    fn slow(text: &str) -> Option<(DispatchInput, Option<String>)> {
        DispatchInput::from_json_with_key(text).ok()
    }

    #[test]
    fn a_line_reads_the_same_both_ways_escapes_included() {
        for line in [
            r#"{"repo":"demo","task":"bench","issue":7,"agent":"claude"}"#,
            // Escapes: the strings are not borrowed, and come out unescaped.
            r#"{"repo":"r","task":"a \"quoted\" \\ task\nwith é and \u00e9 and \ud83d\ude00 / \/","issue":1}"#,
            r#"{"repo":"r","org":"o","task":"t","agent":"claude:opus","template":"security",
                "plan_template":"p/q","persona":"x","variables":{"k":"v\tw","a":"\"b\""},
                "pr":3,"branch":"feature/x","tag":"v1","dry_run":true,"auto_merge":false,
                "priority":"high","at":"2026-12-07T06:00Z","key":"r#1"}"#,
            r#"{"repo":null,"task":null,"agent":null,"issue":null,"pr":null,"dry_run":null,
                "auto_merge":null,"priority":null,"at":null,"in":null,"key":null}"#,
            r#"  {"task":"t"}  "#,
        ] {
            let fast = read_line(line).unwrap_or_else(|| panic!("fast: {line}"));
            let (input, key) = slow(line).unwrap_or_else(|| panic!("slow: {line}"));
            assert_eq!(fast.input, input, "{line}");
            assert_eq!(fast.key, key, "{line}");
        }
        let f = read_line(r#"{"task":"a \"q\" \\ b\n\u00e9"}"#).unwrap();
        assert_eq!(f.input.task, "a \"q\" \\ b\né");
        // Written back (as the record's input is), it reads back exactly.
        let again = serde_json::to_string(&f.input).unwrap();
        assert_eq!(read_line(&again).unwrap().input, f.input);
    }

    #[test]
    fn the_flow_fields_are_read_as_given() {
        let f = read_line(
            r#"{"repo":"r","after":["01ARZ3NDEKTSV4RRFFQ69G5FAV"],"after_any":true,"batch":"b","unique":true}"#,
        )
        .unwrap();
        assert_eq!(f.after, vec!["01ARZ3NDEKTSV4RRFFQ69G5FAV".to_string()]);
        assert!(f.after_any && f.unique);
        assert_eq!(f.batch.as_deref(), Some("b"));
        let f = read_line(r#"{"after":null,"after_any":null,"batch":null,"unique":null}"#).unwrap();
        assert!(f.after.is_empty() && !f.after_any && f.batch.is_none() && !f.unique);
    }

    #[test]
    fn what_the_slow_reader_refuses_the_fast_one_gives_up_on() {
        for line in [
            "{",
            "[1]",
            "7",
            r#"{"issue":"x"}"#,
            r#"{"issue":-1}"#,
            r#"{"issue":1.0}"#,
            r#"{"issue":1e3}"#,
            r#"{"issue":18446744073709551616}"#,
            r#"{"bogus":1}"#,
            r#"{"repo":1}"#,
            r#"{"dry_run":"yes"}"#,
            r#"{"auto_merge":1}"#,
            r#"{"priority":"urgent"}"#,
            r#"{"priority":1}"#,
            r#"{"at":"soon"}"#,
            r#"{"in":"0s"}"#,
            r#"{"at":"2026-12-07T06:00Z","in":"2h"}"#,
            r#"{"variables":null}"#,
            r#"{"variables":{"a":1}}"#,
            r#"{"variables":[]}"#,
            r#"{"key":""}"#,
            r#"{"key":"a b"}"#,
            r#"{"key":7}"#,
            r#"{"after":"x"}"#,
            r#"{"after":[1]}"#,
            r#"{"after_any":"yes"}"#,
            r#"{"batch":3}"#,
            r#"{"unique":"yes"}"#,
            // A repeated field: the slow reader keeps the last; not guessed here.
            r#"{"repo":"a","repo":"b"}"#,
            r#"{"repo":"a"} x"#,
        ] {
            assert!(read_line(line).is_none(), "{line}");
        }
        // The slow reader refuses every one of these that is about the input
        // or its key, naming the field.
        for (line, field) in [
            ("{", "json"),
            (r#"{"issue":1.0}"#, "issue"),
            (r#"{"variables":null}"#, "variables"),
            (r#"{"priority":"urgent"}"#, "priority"),
            (r#"{"key":7}"#, "key"),
            (r#"{"repo":"a"} x"#, "json"),
        ] {
            assert_eq!(
                DispatchInput::from_json_with_key(line).unwrap_err().field,
                field,
                "{line}"
            );
        }
    }
}
