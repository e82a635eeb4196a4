//! A job's record: one Redis hash that every host and the CLI read.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{
    input::DispatchInput,
    stamp::Stamp,
    status::{JobState, QaStatus, WaitReason},
};

/// An optional name stored as a string: `None` is the empty string, in Redis
/// and in JSON alike (what scripts reading `--json` have always seen); a name
/// this version does not know reads as `None`.
mod name_or_empty {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<T: std::fmt::Display, S: Serializer>(
        v: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, T: std::str::FromStr, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        Ok(String::deserialize(d)?.parse().ok())
    }
}

/// The job record. Stored as a flat Redis hash (see [`JobRecord::to_fields`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobRecord {
    /// ULID.
    pub id: String,
    /// Current state.
    pub state: JobState,
    /// Why the job waits, when `waiting`.
    #[serde(with = "name_or_empty", default)]
    pub reason: Option<WaitReason>,
    /// The validated input.
    pub input: DispatchInput,
    /// Deliveries started so far (1 on the first run); never reset.
    pub attempt: u32,
    /// Deliveries since the job was last enqueued, retried or resumed: what
    /// `max_attempts` limits.
    pub tries: u32,
    /// Infrastructure attempts allowed before the job fails for good.
    pub max_attempts: u32,
    /// Enqueue sequence: a delivery carrying an older number is stale and skipped.
    pub seq: u64,
    /// Agent runs in this workspace (the seed's `runs`).
    pub runs: u32,
    /// Host of the last worker that picked the job up.
    pub host: String,
    /// Id of that worker.
    pub worker: String,
    /// Agent container id of the current or last run.
    pub container: String,
    /// Agent exit code of the last run.
    pub exit_code: Option<i64>,
    /// A blocked job's question (only that; see [`crate::transition`]).
    pub question: String,
    /// Why the job failed or timed out, or the infrastructure error its retry
    /// waits out.
    pub error: String,
    /// Workspace directory on the worker's host.
    pub workspace_dir: String,
    /// What the agent left uncommitted in its last run, when it did (kept as
    /// a patch in the workspace's `.meta/`, not pushed): one line; empty
    /// otherwise.
    pub leftovers: String,
    /// The agent's final message in its last run (what it wrote to
    /// `/agentq-out/summary.md`, codex's `-o` file), read back as data: at
    /// most 16 KiB, cut with a marker, control characters made visible (see
    /// `agentq_domain::summary`); empty when it left none. A new attempt, a
    /// retry or a resume empties it.
    pub summary: String,
    /// Why the last run has no summary although its agent left something
    /// there (a symlink, a FIFO, a directory); empty otherwise.
    pub summary_note: String,
    /// The agent's branch.
    pub branch: String,
    /// The prompt of the latest run (or dry run).
    pub prompt: String,
    /// When the latest run's agent took its prompt as one argument and the
    /// prompt was too long for that: what was cut (the agent had the whole
    /// prompt in `/agentq/prompt.md`); empty otherwise.
    pub prompt_cut: String,
    /// The workspace already existed when the job was prepared.
    pub resumed: bool,
    /// The answer given with `agentq resume`, written to `ANSWER.md`.
    pub answer: String,
    /// How QA went; `None` when QA did not run.
    #[serde(with = "name_or_empty", default)]
    pub qa_status: Option<QaStatus>,
    /// The QA command that failed.
    pub qa_command: String,
    /// The end of the QA output.
    pub qa_output: String,
    /// The pull request, if one was opened or found.
    pub pr_url: String,
    /// Forge errors met while reporting (the job's own outcome stands).
    pub forge_error: String,
    /// What the verify stage concluded (`merged`, `needs_review`); `None`
    /// when it did not run.
    #[serde(with = "name_or_empty", default)]
    pub verify: Option<crate::verify::Verify>,
    /// Why a person must look (`verify = needs_review`); empty otherwise.
    pub verify_reason: String,
    /// The last agent run (see `runs`) whose time was added to the issue as a
    /// tracked time, so a repeated report never adds it twice (0: none).
    pub time_tracked: u32,
    /// Created. Every moment on the record is a [`Stamp`] (written as RFC 3339).
    pub created_at: Stamp,
    /// Last change.
    pub updated_at: Stamp,
    /// Current run's start; `None` before the first run.
    #[serde(with = "crate::stamp::or_empty")]
    pub started_at: Option<Stamp>,
    /// Reached its final state; `None` while it is not in one.
    #[serde(with = "crate::stamp::or_empty")]
    pub finished_at: Option<Stamp>,
    /// Idempotency key given at enqueue (`--key`), or empty.
    pub key: String,
    /// Fencing token of the run that holds the job now (`{worker}/{n}`), or
    /// empty: writes of any other run are refused.
    pub owner: String,
    /// apalis task id of the job's latest delivery (not the prompt, which is
    /// `input.task`). Stored, and shown in JSON, as `task`, as it always was.
    #[serde(rename = "task")]
    pub delivery_task_id: String,
    /// While `waiting` for its workspace: the id of the job running in it (empty
    /// when an older waiter is first in line).
    pub waiting_on: String,
    /// When other hosts first left the job to the host that has its workspace;
    /// `None` when it never waited for that.
    #[serde(with = "crate::stamp::or_empty")]
    pub affinity_since: Option<Stamp>,
    /// When a wake last granted the job a slot (by Redis's clock, the clock
    /// pacing is measured on); `None` when no wake ever did (a dry run needs
    /// no slot). Written only by the wake's Lua, in milliseconds (a [`Stamp`]
    /// reads both forms). (agentq before 2026-12-07 wrote `admitted_ms`,
    /// ignored now: no alias, since a record admitted before and after an
    /// upgrade holds both, and a duplicate field would make it unreadable.)
    #[serde(with = "crate::stamp::or_empty")]
    pub admitted_at: Option<Stamp>,
    /// While `waiting` for its provider's usage limit (reason `quota`): when
    /// the limit resets and the pool resumes; `None` otherwise.
    #[serde(with = "crate::stamp::or_empty")]
    pub resume_at: Option<Stamp>,
    /// The jobs it runs after (`--after`), comma-separated ids; empty for
    /// none (see `crate::flow`).
    pub after: String,
    /// Runs once every parent is final, however it ended (`--after-any`).
    pub after_any: bool,
    /// The batch it belongs to (`--batch`), or empty.
    pub batch: String,
}

impl JobRecord {
    /// A fresh record in state `queued` (`scheduled` with a due time, see
    /// [`DispatchInput::at`]).
    pub fn new(id: String, input: DispatchInput, max_attempts: u32, now: Stamp) -> Self {
        Self {
            id,
            state: if input.at.is_none() {
                JobState::Queued
            } else {
                JobState::Scheduled
            },
            input,
            max_attempts,
            seq: 1,
            created_at: now,
            updated_at: now,
            ..Self::default()
        }
    }

    /// The record as hash fields (see [`crate::flat`]): strings as they are,
    /// numbers in decimal, `resumed` as `1`/`0`, nothing as the empty string,
    /// the input as JSON.
    pub fn to_fields(&self) -> Vec<(&'static str, String)> {
        crate::flat::to_fields(self)
    }

    /// The fields a new record stores: [`JobRecord::to_fields`] without the
    /// empty ones, the zeros that read back as 0 anyway, and `task` (set only
    /// with a delivery). Each field costs Redis time at enqueue.
    pub fn fields_to_create(&self) -> Vec<(&'static str, String)> {
        self.to_fields()
            .into_iter()
            .filter(|(k, v)| kept_at_create(k, v))
            .collect()
    }

    /// The record as enqueue writes it: [`JobRecord::fields_to_create`] and
    /// `extra` (fields only the store knows: place in line, pool, delivery),
    /// as one JSON object of strings (see `agentq_domain::keys::Keys::fresh`).
    ///
    /// Written in one pass (issue 34): each field's text goes straight into
    /// the JSON, escaped once, with no list of fields or string per field in
    /// between (the input's own JSON is text in one buffer, then escaped as
    /// the `input` field's string: the hash field holds that text).
    pub fn packed(&self, extra: &[(&'static str, String)]) -> String {
        let mut packed = Vec::with_capacity(512);
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.pack_into(&mut packed, &extra);
        String::from_utf8(packed).expect("serde_json writes UTF-8")
    }

    /// [`JobRecord::packed`] written at the end of `out` (a buffer a batch
    /// reuses from record to record), `extra` borrowed.
    pub fn pack_into(&self, out: &mut Vec<u8>, extra: &[(&str, &str)]) {
        let start = out.len();
        out.push(b'{');
        let mut entry = |k: &str, v: &str| {
            if out.len() > start + 1 {
                out.push(b',');
            }
            crate::json_text::push_str(out, k);
            out.push(b':');
            crate::json_text::push_str(out, v);
        };
        crate::flat::for_each_field(self, |k, v| {
            if kept_at_create(k, v) {
                entry(k, v);
            }
        });
        for (k, v) in extra {
            entry(k, v);
        }
        out.push(b'}');
    }

    /// Reads back a record [`JobRecord::packed`] wrote.
    ///
    /// # Errors
    /// Not a JSON object of strings, or not a record (see
    /// [`JobRecord::from_fields`]).
    pub fn from_packed(packed: &str) -> Result<Self, String> {
        let mut fields = HashMap::new();
        Self::unpack_into(&mut fields, packed)?;
        Self::from_fields(fields)
    }

    /// Adds the fields of a packed record ([`JobRecord::packed`]) to `fields`,
    /// under those already there.
    ///
    /// # Errors
    /// Not a JSON object of strings.
    pub fn unpack_into(fields: &mut HashMap<String, String>, packed: &str) -> Result<(), String> {
        let more: HashMap<String, String> =
            serde_json::from_str(packed).map_err(|e| format!("{PACKED}: {e}"))?;
        for (k, v) in more {
            fields.entry(k).or_insert(v);
        }
        Ok(())
    }

    /// What a one-line view of the job says about it: the question, else the
    /// error, else why it waits, else what the agent left uncommitted; empty
    /// when there is none.
    pub fn message(&self) -> &str {
        if !self.question.is_empty() {
            &self.question
        } else if !self.error.is_empty() {
            &self.error
        } else if let Some(r) = self.reason {
            r.as_str()
        } else {
            &self.leftovers
        }
    }

    /// Reads a record back from its hash fields. Missing fields take empty values,
    /// so records written by an older agentq still load.
    ///
    /// # Errors
    /// A hash without an id, an unknown state or an unreadable input.
    pub fn from_fields(f: HashMap<String, String>) -> Result<Self, String> {
        if f.get("id").is_none_or(String::is_empty) {
            return Err("id: missing".into());
        }
        if !f.contains_key("state") {
            return Err("state: missing".into());
        }
        crate::flat::from_fields(f)
    }
}

/// What [`Unreadable::field`] names for a packed record (see
/// [`JobRecord::packed`]) that is not a JSON object of strings.
pub const PACKED: &str = "packed";

/// A job's record that does not parse: the field, and why. The job is failed
/// with [`Unreadable`]'s text as its error and its record kept for inspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The field that does not parse (`attempt`, `input`, [`PACKED`], or
    /// `record` when no one field is to blame).
    pub field: String,
    /// Why.
    pub why: String,
}

impl Unreadable {
    /// From the error of [`JobRecord::from_fields`] or
    /// [`JobRecord::from_packed`] (`FIELD: why`).
    pub fn from_error(e: &str) -> Self {
        match e.split_once(": ") {
            Some((field, why))
                if !field.is_empty()
                    && field
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
            {
                Self {
                    field: field.to_string(),
                    why: why.to_string(),
                }
            }
            _ => Self {
                field: "record".to_string(),
                why: e.to_string(),
            },
        }
    }
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "record unreadable: {}: {}", self.field, self.why)
    }
}

/// A job as read from Redis: its record, or why its record cannot be read
/// (shown as `corrupt`, the field named; never dropped from a view).
// Read one at a time and taken apart at once: boxing the record buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum RecordView {
    /// The record.
    Ok(JobRecord),
    /// A record that does not parse.
    Unreadable {
        /// The job's id.
        id: String,
        /// What does not parse.
        problem: Unreadable,
    },
}

impl RecordView {
    /// The job's id.
    pub fn id(&self) -> &str {
        match self {
            RecordView::Ok(r) => &r.id,
            RecordView::Unreadable { id, .. } => id,
        }
    }
}

/// Numeric fields that read as 0 when missing (see [`JobRecord::from_fields`]).
const ZERO_WHEN_MISSING: &[&str] = &[
    "attempt",
    "tries",
    "runs",
    "time_tracked",
    "resumed",
    "after_any",
];

/// Whether a new record stores field `k` of text `v` (see
/// [`JobRecord::fields_to_create`]).
fn kept_at_create(k: &str, v: &str) -> bool {
    !v.is_empty() && k != "task" && !(v == "0" && ZERO_WHEN_MISSING.contains(&k))
}

/// Fields a re-run (retry, resume) empties: what the last run concluded.
pub const RERUN_CLEARED: &[&str] = &[
    "question",
    "error",
    "exit_code",
    "finished_at",
    "reason",
    "leftovers",
    "summary",
    "summary_note",
    "resume_at",
    "verify",
    "verify_reason",
];

/// Where a job waits for its turn: its pool and its model (empty: none), as the
/// record's `pool` and `model` fields (see `agentq_shared::store::park`).
pub fn placement(input: &DispatchInput) -> (String, String) {
    // Checked against the configured table at enqueue; a record edited by
    // hand waits under its own name and fails when a worker gets it.
    match crate::agent::model::split(&input.agent) {
        (pool, Some(m)) if crate::agent::model::check(m).is_ok() => (pool.into(), m.into()),
        (pool, None) => (pool.into(), String::new()),
        _ => (input.agent.clone(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let input = DispatchInput {
            repo: "r".into(),
            task: "t".into(),
            issue: 1,
            ..Default::default()
        };
        let mut rec = JobRecord::new(
            "01J".into(),
            input,
            3,
            "2026-01-01T00:00:00Z".parse().unwrap(),
        );
        let read = |fields: Vec<(&str, String)>| {
            let map = fields.into_iter().map(|(k, v)| (k.to_string(), v));
            JobRecord::from_fields(map.collect()).unwrap()
        };
        // A new record stores fewer fields and reads back the same.
        assert_eq!(read(rec.fields_to_create()), rec);
        assert!(rec.fields_to_create().len() < rec.to_fields().len());
        rec.exit_code = Some(3);
        rec.resumed = true;
        rec.time_tracked = 2;
        rec.reason = Some(WaitReason::Slot);
        rec.qa_status = Some(QaStatus::Passed);
        rec.admitted_at = Some(Stamp::from_ms(1_767_225_600_000));
        assert_eq!(read(rec.to_fields()), rec);
    }

    /// The delivery's apalis task id keeps its stored name, `task`: records
    /// written before the field was renamed read the same.
    #[test]
    fn the_delivery_task_id_is_stored_as_task() {
        let mut rec = JobRecord::new("01J".into(), DispatchInput::default(), 3, Stamp::from_ms(0));
        rec.delivery_task_id = "01TASK".into();
        let fields = rec.to_fields();
        assert!(
            fields.contains(&("task", "01TASK".to_string())),
            "{fields:?}"
        );
        let mut old: HashMap<String, String> = [("id", "01J"), ("state", "queued")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        old.insert("task".into(), "01OLD".into());
        assert_eq!(
            JobRecord::from_fields(old).unwrap().delivery_task_id,
            "01OLD"
        );
        assert!(!rec.fields_to_create().iter().any(|(k, _)| *k == "task"));
    }

    #[test]
    fn an_unreadable_field_is_named() {
        let input = DispatchInput {
            repo: "r".into(),
            task: "t".into(),
            issue: 1,
            ..Default::default()
        };
        let rec = JobRecord::new(
            "01J".into(),
            input,
            3,
            "2026-01-01T00:00:00Z".parse().unwrap(),
        );
        let with = |k: &str, v: &str| {
            let mut f: HashMap<String, String> = rec
                .to_fields()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            f.insert(k.to_string(), v.to_string());
            Unreadable::from_error(&JobRecord::from_fields(f).unwrap_err())
        };
        for (field, bad) in [
            ("attempt", "x7"),
            ("seq", "nine"),
            ("input", "{not json"),
            ("input", r#"{"repo": 5}"#),
            ("state", "sideways"),
        ] {
            let u = with(field, bad);
            assert_eq!(u.field, field, "{u}");
            assert!(u
                .to_string()
                .starts_with(&format!("record unreadable: {field}: ")));
        }
        let u = Unreadable::from_error(&JobRecord::from_packed("{").unwrap_err());
        assert_eq!(u.field, PACKED);
    }

    #[test]
    fn a_packed_record_reads_back_the_same() {
        let input = DispatchInput {
            repo: "r".into(),
            task: "quotes \" and \\ and\nlines, ünïcode".into(),
            issue: 1,
            ..Default::default()
        };
        let mut rec = JobRecord::new(
            "01J".into(),
            input,
            3,
            "2026-01-01T00:00:00Z".parse().unwrap(),
        );
        rec.key = "r#1".into();
        let extra = [("order", "7".to_string()), ("pool", "codex".to_string())];
        let packed = rec.packed(&extra);
        let fields: HashMap<String, String> = serde_json::from_str(&packed).unwrap();
        assert_eq!(
            (fields["order"].as_str(), fields["state"].as_str()),
            ("7", "queued")
        );
        assert_eq!(JobRecord::from_packed(&packed).unwrap(), rec);
        // Written in one pass, byte for byte what the list of fields makes
        // as a JSON object, a fuller record included (issue 34).
        let by_list = |rec: &JobRecord| {
            let entries: Vec<String> = rec
                .fields_to_create()
                .iter()
                .chain(&extra)
                .map(|(k, v)| {
                    format!(
                        "{}:{}",
                        serde_json::to_string(k).unwrap(),
                        serde_json::to_string(v).unwrap()
                    )
                })
                .collect();
            format!("{{{}}}", entries.join(","))
        };
        assert_eq!(packed, by_list(&rec));
        let mut full = rec.clone();
        full.input.variables = [("k".to_string(), "v \"w\"".to_string())].into();
        full.input.auto_merge = Some(false);
        full.input.dry_run = true;
        full.input.at = Some(Stamp::from_ms(1_800_000_000_123));
        full.reason = Some(WaitReason::Backoff);
        full.exit_code = Some(-3);
        full.resumed = true;
        full.attempt = 2;
        full.after = "01A,01B".into();
        full.after_any = true;
        // Text with every kind of character escaping can meet (issue 34:
        // strings with nothing to escape are copied as they are).
        full.error = "tab\t nul\0 esc\u{1b} del\u{7f} c1\u{9b} \u{2028} 😀 </ \\ \"".into();
        full.input.task = "\u{1f}\r\n\u{8}\u{c} é 日本".into();
        assert_eq!(full.packed(&extra), by_list(&full));
        assert_eq!(JobRecord::from_packed(&full.packed(&[])).unwrap(), full);
        // Not JSON: a corrupt record, not a panic.
        assert!(JobRecord::from_packed("{")
            .unwrap_err()
            .starts_with("packed: "));
    }

    #[test]
    fn the_message_is_the_question_else_the_error_else_the_wait_reason() {
        let mut rec = JobRecord::new("01J".into(), DispatchInput::default(), 3, Stamp::from_ms(0));
        assert_eq!(rec.message(), "");
        rec.reason = Some(WaitReason::Backoff);
        assert_eq!(rec.message(), "backoff");
        rec.error = "boom".into();
        assert_eq!(rec.message(), "boom");
        rec.question = "Which DB?".into();
        assert_eq!(rec.message(), "Which DB?");
    }

    #[test]
    fn json_shows_no_reason_or_qa_status_as_empty_strings() {
        let rec = JobRecord::new("01J".into(), DispatchInput::default(), 3, Stamp::from_ms(0));
        let v = serde_json::to_value(&rec).unwrap();
        assert_eq!(
            (v["reason"].as_str(), v["qa_status"].as_str()),
            (Some(""), Some(""))
        );
        let back: JobRecord = serde_json::from_value(v).unwrap();
        assert_eq!(back, rec);
    }
}
