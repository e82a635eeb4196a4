//! Periodic jobs: `[[schedule]]` entries of `agentq.toml`.
//!
//! ```toml
//! [[schedule]]
//! name = "nightly-security"
//! cron = "0 3 * * *"          # five fields, or six with seconds first
//! tz = "Europe/Berlin"        # default UTC
//! [schedule.job]              # the fields of an NDJSON job line
//! repo = "go-io"
//! task = "Security pass"
//! template = "security"
//! ```
//!
//! A tick is one occurrence of the cron expression in its time zone, named
//! by its Unix seconds. Every worker sleeps until the next tick; Redis holds
//! the last tick enqueued (see `agentq_shared::store::schedules`), so each
//! tick gives exactly one job, with idempotency key `schedule:{name}:{tick}`.

use chrono::{DateTime, TimeZone, Utc};
use croner::{
    parser::{CronParser, Seconds},
    Cron,
};
use serde::Deserialize;

use crate::input::DispatchInput;

/// Longest schedule name.
pub const MAX_NAME_CHARS: usize = 64;

/// One `[[schedule]]` entry.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Its name: `[a-z0-9][a-z0-9_-]*`, at most 64 characters, unique.
    pub name: String,
    /// Cron expression: minute hour day-of-month month day-of-week, or six
    /// fields with seconds first.
    pub cron: String,
    /// IANA time zone the expression is read in (`Europe/Berlin`); empty: UTC.
    #[serde(default)]
    pub tz: String,
    /// The job each tick enqueues: the fields of an NDJSON job line (no
    /// `key`, `at` or `in`: the tick gives the key).
    #[serde(default)]
    pub job: toml::Table,
}

impl ScheduleConfig {
    /// The parsed cron expression.
    ///
    /// # Errors
    /// One that does not parse.
    pub fn parsed_cron(&self) -> Result<Cron, String> {
        CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(&self.cron)
            .map_err(|e| format!("`{}` is not a cron expression: {e}", self.cron))
    }

    /// The time zone.
    ///
    /// # Errors
    /// An unknown zone.
    pub fn zone(&self) -> Result<chrono_tz::Tz, String> {
        if self.tz.is_empty() {
            return Ok(chrono_tz::UTC);
        }
        self.tz.parse().map_err(|_| {
            format!(
                "`{}` is not an IANA time zone (e.g. Europe/Berlin)",
                self.tz
            )
        })
    }

    /// The job a tick enqueues, checked as an NDJSON line is (agents from
    /// `agents`).
    ///
    /// # Errors
    /// A field that breaks a rule, by name.
    pub fn job_input(
        &self,
        agents: &crate::agent::AgentTable,
    ) -> Result<DispatchInput, crate::input::InvalidInput> {
        for field in ["key", "at", "in"] {
            if self.job.contains_key(field) {
                return Err(crate::input::InvalidInput::new(
                    field,
                    "not in a schedule's job (each tick gives its own key and time)",
                ));
            }
        }
        let json = serde_json::to_string(&self.job)
            .map_err(|e| crate::input::InvalidInput::new("json", format!("not a job line: {e}")))?;
        DispatchInput::from_json(&json)?.validated_for(agents)
    }

    /// The latest tick at or before `now` (Unix seconds), if any.
    pub fn latest_tick(&self, now: DateTime<Utc>) -> Option<i64> {
        let (cron, tz) = (self.parsed_cron().ok()?, self.zone().ok()?);
        cron.find_previous_occurrence(&now.with_timezone(&tz), true)
            .ok()
            .map(|t| t.timestamp())
    }

    /// The first tick after `now` (Unix seconds), if any.
    pub fn next_tick(&self, now: DateTime<Utc>) -> Option<i64> {
        let (cron, tz) = (self.parsed_cron().ok()?, self.zone().ok()?);
        cron.find_next_occurrence(&now.with_timezone(&tz), false)
            .ok()
            .map(|t| t.timestamp())
    }

    /// The idempotency key of the job of tick `tick`.
    pub fn tick_key(&self, tick: i64) -> String {
        format!("schedule:{}:{tick}", self.name)
    }
}

/// A tick (Unix seconds) as RFC 3339 UTC.
pub fn tick_text(tick: i64) -> String {
    Utc.timestamp_opt(tick, 0)
        .single()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Checks every entry: its name, cron expression, time zone and job.
///
/// # Errors
/// The first bad value, naming its key (`schedule[i].cron`, …).
pub fn validate(
    entries: &[ScheduleConfig],
    agents: &crate::agent::AgentTable,
) -> Result<(), String> {
    for (i, s) in entries.iter().enumerate() {
        let ok_name = s.name.chars().count() <= MAX_NAME_CHARS
            && s.name
                .starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !ok_name {
            return Err(format!(
                "schedule[{i}].name: `{}` is not a schedule name (a lowercase letter or digit, \
                 then up to 63 lowercase letters, digits, `-` or `_`)",
                s.name
            ));
        }
        if entries[..i].iter().any(|o| o.name == s.name) {
            return Err(format!("schedule[{i}].name: `{}` is named twice", s.name));
        }
        s.parsed_cron()
            .map_err(|e| format!("schedule[{i}].cron: {e}"))?;
        s.zone().map_err(|e| format!("schedule[{i}].tz: {e}"))?;
        s.job_input(agents)
            .map_err(|e| format!("schedule[{i}].job.{e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(text: &str) -> ScheduleConfig {
        toml::from_str(text).unwrap()
    }

    const GOOD: &str = r#"
name = "nightly"
cron = "0 3 * * *"
tz = "Europe/Berlin"
[job]
repo = "go-io"
task = "Security pass"
branch = "main"
"#;

    #[test]
    fn ticks_follow_the_expression_in_its_zone() {
        let s = entry(GOOD);
        let table = crate::agent::AgentTable::builtin();
        validate(std::slice::from_ref(&s), &table).unwrap();
        // 2026-12-07T12:00Z is 13:00 in Berlin: the last tick was 03:00
        // Berlin (02:00Z) that day, the next is 03:00 Berlin the next day.
        let now = Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap();
        assert_eq!(
            tick_text(s.latest_tick(now).unwrap()),
            "2026-12-07T02:00:00Z"
        );
        assert_eq!(tick_text(s.next_tick(now).unwrap()), "2026-12-08T02:00:00Z");
        assert_eq!(s.tick_key(5), "schedule:nightly:5");
        let secs = entry("name = \"s\"\ncron = \"*/2 * * * * *\"\n[job]\nrepo = \"r\"\ntask = \"t\"\nbranch = \"m\"");
        let t = secs.next_tick(now).unwrap();
        assert_eq!(t - now.timestamp(), 2, "seconds-level expressions");
    }

    #[test]
    fn bad_entries_name_the_key() {
        let table = crate::agent::AgentTable::builtin();
        let check = |text: &str| validate(&[entry(text)], &table).unwrap_err();
        let base = "name = \"n\"\ncron = \"* * * * *\"\n";
        let job = "[job]\nrepo = \"r\"\ntask = \"t\"\nbranch = \"main\"\n";
        assert!(
            check(&format!("name = \"Bad Name\"\ncron = \"* * * * *\"\n{job}"))
                .starts_with("schedule[0].name:")
        );
        assert!(check(&format!("name = \"n\"\ncron = \"nope\"\n{job}"))
            .starts_with("schedule[0].cron:"));
        assert!(
            check(&format!("{base}tz = \"Mars/Olympus\"\n{job}")).starts_with("schedule[0].tz:")
        );
        assert!(check(&format!("{base}[job]\nrepo = \"r\"\n")).starts_with("schedule[0].job.task:"));
        assert!(check(&format!("{base}{job}key = \"k\"\n")).starts_with("schedule[0].job.key:"));
        assert!(check(&format!("{base}{job}priority = \"urgent\"\n"))
            .starts_with("schedule[0].job.priority:"));
        let two = [
            entry(&format!("{base}{job}")),
            entry(&format!("{base}{job}")),
        ];
        assert!(validate(&two, &table).unwrap_err().contains("named twice"));
    }
}
