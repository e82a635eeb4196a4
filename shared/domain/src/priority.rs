//! A job's priority (`--priority`, NDJSON `priority`) and the lane it parks in.
//!
//! A pool has one lane per model and priority: `normal` jobs in the model's
//! lane as before (`{ns}:lane:{pool}:{model}`), `high` and `low` ones in
//! `{model}~high` / `{model}~low` (`~` is in no model name, see
//! `crate::agent::model::check`). The wake compares only the lanes' heads:
//! the highest level first, a head that waited longer than
//! `priority_age_secs` counting one level higher, ties by place in line.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// How soon a job takes a free slot of its pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// After every `normal` and `high` job (unless it waited long).
    Low,
    /// The default.
    #[default]
    Normal,
    /// Before every `normal` and `low` job.
    High,
}

/// Every priority, lowest first.
pub const ALL_PRIORITIES: &[Priority] = &[Priority::Low, Priority::Normal, Priority::High];

/// The separator between a lane's model and its priority (see the module).
pub const LANE_SEP: char = '~';

impl Priority {
    /// The name as stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
        }
    }

    /// Whether this is the default (not stored, not shown in JSON input).
    pub fn is_normal(&self) -> bool {
        *self == Self::Normal
    }

    /// The lane (a member of `{ns}:lanes:{pool}`) of a job of model `model`
    /// (`-` or empty: none) at this priority.
    pub fn lane(self, model: &str) -> String {
        let model = if model.is_empty() { "-" } else { model };
        match self {
            Self::Normal => model.to_string(),
            p => format!("{model}{LANE_SEP}{}", p.as_str()),
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_PRIORITIES
            .iter()
            .copied()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown priority `{s}` (known: high, normal, low)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_keep_the_model_lane_for_normal_jobs() {
        assert_eq!(Priority::Normal.lane(""), "-");
        assert_eq!(Priority::Normal.lane("opus"), "opus");
        assert_eq!(Priority::High.lane(""), "-~high");
        assert_eq!(Priority::Low.lane("a:b"), "a:b~low");
        assert!(
            crate::agent::model::check("a~high").is_err(),
            "no model has `~`"
        );
        assert_eq!("high".parse(), Ok(Priority::High));
        assert!("urgent"
            .parse::<Priority>()
            .unwrap_err()
            .contains("high, normal, low"));
    }
}
