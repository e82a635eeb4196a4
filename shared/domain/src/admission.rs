//! Admission settings from the config: per-pool limits (`[limits]`), pacing
//! (`[rates]`) and pool backoff (`[backoff]`). The store applies them
//! (`agentq_shared::store::limits`, `agentq_shared::store::park`).

use std::collections::BTreeMap;

use serde::Deserialize;

/// A pool's limit in the config: `claude = 2` or `claude = { total = 3, opus = 1 }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum LimitSpec {
    /// Jobs of the pool at once (0: unlimited).
    Total(u32),
    /// `total` for the pool and one entry per model.
    Detailed(BTreeMap<String, u32>),
}

impl LimitSpec {
    /// The pool-wide limit (0: unlimited).
    pub fn total(&self) -> u32 {
        match self {
            Self::Total(n) => *n,
            Self::Detailed(m) => m.get("total").copied().unwrap_or(0),
        }
    }

    /// The limit for one model (0: unlimited).
    pub fn model(&self, model: &str) -> u32 {
        match self {
            Self::Total(_) => 0,
            Self::Detailed(m) if model != "total" => m.get(model).copied().unwrap_or(0),
            Self::Detailed(_) => 0,
        }
    }
}

/// Pool backoff (the seed's `trackFailureRate`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackoffConfig {
    /// Consecutive fast failures that pause a pool.
    pub failures: u32,
    /// A failure is fast when the agent ran less than this, seconds.
    pub window_secs: u64,
    /// How long the pool pauses, seconds.
    pub pause_secs: u64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            failures: 3,
            window_secs: 60,
            pause_secs: 1800,
        }
    }
}

/// `priority_age_secs`'s default: ten minutes.
pub const DEFAULT_PRIORITY_AGE_SECS: u64 = 600;

/// Everything admission needs to know, from the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdmissionConfig {
    /// Per-pool limits.
    pub limits: BTreeMap<String, LimitSpec>,
    /// Minimum seconds between two starts in a pool (upstream's `rates`).
    pub rates: BTreeMap<String, f64>,
    /// Pool backoff.
    pub backoff: BackoffConfig,
    /// Per-pool pacing as upstream defines it (`[pacing.POOL]`, see
    /// [`crate::pacing`]); for such a pool it replaces `[rates]`.
    pub pacing: BTreeMap<String, crate::pacing::Pacing>,
    /// A job that waited in its lane longer than this, seconds, counts one
    /// priority level higher (so a `low` job is not starved by a steady
    /// stream of `normal` ones; see [`crate::priority`]). 0: never.
    pub priority_age_secs: u64,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            limits: BTreeMap::new(),
            rates: BTreeMap::new(),
            backoff: BackoffConfig::default(),
            pacing: BTreeMap::new(),
            priority_age_secs: DEFAULT_PRIORITY_AGE_SECS,
        }
    }
}

impl BackoffConfig {
    /// Consecutive fast failures that pause a pool (at least 1, see
    /// `Config::apply_floors`).
    pub fn failures_to_pause(&self) -> u32 {
        self.failures
    }

    /// How long a pool pauses (at least 1 s, see `Config::apply_floors`).
    pub fn pause(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.pause_secs)
    }

    /// A failure is fast when the agent ran less than this.
    pub fn window(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.window_secs)
    }
}

impl AdmissionConfig {
    /// The limit of `pool` (0: unlimited).
    pub fn pool_limit(&self, pool: &str) -> u32 {
        self.limits.get(pool).map(LimitSpec::total).unwrap_or(0)
    }

    /// The pacing of `pool`, when it has a `[pacing.POOL]` table.
    pub fn pacing(&self, pool: &str) -> Option<&crate::pacing::Pacing> {
        self.pacing.get(pool)
    }

    /// Checks the pool names of `[limits]`, `[rates]` and `[pacing]` against
    /// the pools of the agent table (`known`), and the pacing values.
    ///
    /// # Errors
    /// The first unknown pool (naming the known ones) or bad value.
    pub fn validate(&self, known: &[String]) -> Result<(), String> {
        let tables = [
            ("limits", self.limits.keys().collect::<Vec<_>>()),
            ("rates", self.rates.keys().collect()),
            ("pacing", self.pacing.keys().collect()),
        ];
        for (table, pools) in tables {
            if let Some(p) = pools.into_iter().find(|p| !known.contains(p)) {
                return Err(format!(
                    "[{table}]: unknown pool `{p}` (known pools: {}; add [agents.{p}] to configure one)",
                    known.join(", ")
                ));
            }
        }
        for (pool, s) in &self.rates {
            if !s.is_finite() || *s < 0.0 {
                return Err(format!("rates.{pool}: `{s}` is not a number of 0 or more"));
            }
        }
        for (pool, p) in &self.pacing {
            p.validate().map_err(|e| format!("pacing.{pool}.{e}"))?;
        }
        Ok(())
    }

    /// Pacing of `pool`: least time between two starts, ms (0: none).
    pub fn rate_ms(&self, pool: &str) -> u64 {
        self.rates
            .get(pool)
            .map(|s| (s * 1000.0) as u64)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn limits_pacing_and_backoff_read_as_configured() {
        let a: AdmissionConfig = toml::from_str(
            r#"
[limits]
claude = { total = 3, opus = 1 }
codex = 2
[rates]
gemini = 1.5
[backoff]
failures = 5
window_secs = 30
pause_secs = 600
"#,
        )
        .unwrap();
        assert_eq!(
            (
                a.pool_limit("claude"),
                a.pool_limit("codex"),
                a.pool_limit("local")
            ),
            (3, 2, 0)
        );
        let claude = &a.limits["claude"];
        // `total` is the pool's, never a model's.
        assert_eq!(
            (
                claude.model("opus"),
                claude.model("sonnet"),
                claude.model("total")
            ),
            (1, 0, 0)
        );
        assert_eq!(a.limits["codex"].model("opus"), 0);
        assert_eq!((a.rate_ms("gemini"), a.rate_ms("codex")), (1500, 0));
        assert!(a.pacing("claude").is_none());
        let b = &a.backoff;
        assert_eq!(
            (b.failures_to_pause(), b.window(), b.pause()),
            (5, Duration::from_secs(30), Duration::from_secs(600))
        );
    }

    #[test]
    fn unknown_pools_are_refused_naming_the_known_ones() {
        let known: Vec<String> = ["claude", "codex"].map(String::from).to_vec();
        for (text, table) in [
            ("[limits]\nclaud = 2\n", "[limits]: unknown pool `claud`"),
            ("[rates]\ngemini = 2\n", "[rates]: unknown pool `gemini`"),
            (
                "[pacing.aider]\ndaily_limit = 2\n",
                "[pacing]: unknown pool `aider`",
            ),
        ] {
            let a: AdmissionConfig = toml::from_str(text).unwrap();
            let e = a.validate(&known).unwrap_err();
            assert!(e.contains(table), "{e}");
            assert!(e.contains("known pools: claude, codex"), "{e}");
        }
        let a: AdmissionConfig =
            toml::from_str("[limits]\nclaude = 1\n[pacing.codex]\nreset_utc = \"5:00\"\n").unwrap();
        assert!(a
            .validate(&known)
            .unwrap_err()
            .starts_with("pacing.codex.reset_utc"));
        let a: AdmissionConfig = toml::from_str("[rates]\ncodex = -1\n").unwrap();
        assert!(a.validate(&known).unwrap_err().starts_with("rates.codex"));
        let a: AdmissionConfig = toml::from_str(
            "[limits]\nclaude = 1\n[pacing.codex]\ndaily_limit = 3\nsustained_delay = 1.5\n",
        )
        .unwrap();
        a.validate(&known).unwrap();
        assert_eq!(a.pacing("codex").unwrap().daily_limit, 3);
    }
}
