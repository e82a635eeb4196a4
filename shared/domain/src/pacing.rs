//! Pacing as upstream defines it: per pool, the least time between two
//! starts (sustained, or shorter in a burst window before the daily reset)
//! and, added here, a daily limit of starts.
//!
//! Upstream (`dappco.re/go/agent`, `pkg/runner`: `RateConfig` and
//! `Service.delayForAgent`) reads `rates.POOL` from `agents.yaml`:
//!
//! ```text
//! type RateConfig struct {
//!     ResetUTC       string `yaml:"reset_utc"`       // "HH:MM", default "06:00"
//!     DailyLimit     int    `yaml:"daily_limit"`
//!     MinDelay       int    `yaml:"min_delay"`       // declared, never read
//!     SustainedDelay int    `yaml:"sustained_delay"` // seconds
//!     BurstWindow    int    `yaml:"burst_window"`    // hours
//!     BurstDelay     int    `yaml:"burst_delay"`     // seconds
//! }
//! ```
//!
//! and `delayForAgent` returns 0 when the pool has no rate or its
//! `sustained_delay` is 0; else `burst_delay` when `burst_window > 0` and the
//! hours until the next `reset_utc` are at most `burst_window`; else
//! `sustained_delay`. Upstream sleeps that delay before each dispatch;
//! agentq makes it the least gap between two starts of the pool, on every
//! host (the wake script, `agentq_shared::store::park`, on Redis's clock).
//!
//! Upstream declares `daily_limit` but enforces it nowhere; agentq does: at
//! most `daily_limit` starts per pool per *day*, a day running from one
//! `reset_utc` to the next, counted in Redis in the same Lua call that
//! grants the start. [`Pacing::day_window`] and [`Pacing::delay_ms`] are
//! computed the same way in `wake.lua` (UTC has no daylight saving: a day is
//! always 24 h).

use chrono::{DateTime, NaiveTime, Timelike, Utc};
use serde::Deserialize;

/// One day, in ms.
pub const DAY_MS: i64 = 86_400_000;

/// Upstream's default `reset_utc`.
pub const DEFAULT_RESET_UTC: &str = "06:00";

/// One pool's `[pacing.POOL]` table (upstream's `RateConfig`, in seconds
/// and hours as upstream; fractions allowed).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pacing {
    /// When the provider's day starts, `HH:MM` UTC (default `06:00`).
    pub reset_utc: String,
    /// Most starts per day (0: no limit).
    pub daily_limit: u32,
    /// Least seconds between two starts outside the burst window (0: no
    /// pacing at all, as upstream, whatever the burst keys say).
    pub sustained_delay: f64,
    /// Hours before the reset in which `burst_delay` applies (0: none).
    pub burst_window: f64,
    /// Least seconds between two starts inside the burst window.
    pub burst_delay: f64,
}

impl Default for Pacing {
    fn default() -> Self {
        Self {
            reset_utc: DEFAULT_RESET_UTC.into(),
            daily_limit: 0,
            sustained_delay: 0.0,
            burst_window: 0.0,
            burst_delay: 0.0,
        }
    }
}

/// Parses `HH:MM` (00:00 to 23:59).
///
/// # Errors
/// Anything else.
pub fn parse_hh_mm(s: &str) -> Result<NaiveTime, String> {
    let bad = || format!("`{s}` is not HH:MM (00:00 to 23:59)");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m) = (
        h.parse::<u32>().map_err(|_| bad())?,
        m.parse::<u32>().map_err(|_| bad())?,
    );
    NaiveTime::from_hms_opt(h, m, 0).ok_or_else(bad)
}

fn secs_ms(s: f64) -> i64 {
    (s * 1000.0).round() as i64
}

impl Pacing {
    /// Checks the values the types cannot.
    ///
    /// # Errors
    /// The first bad value, naming its key.
    pub fn validate(&self) -> Result<(), String> {
        parse_hh_mm(&self.reset_utc).map_err(|e| format!("reset_utc: {e}"))?;
        for (key, v) in [
            ("sustained_delay", self.sustained_delay),
            ("burst_window", self.burst_window),
            ("burst_delay", self.burst_delay),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("{key}: `{v}` is not a number of 0 or more"));
            }
        }
        if self.burst_window > 24.0 {
            return Err(format!(
                "burst_window: `{}` hours is more than a day",
                self.burst_window
            ));
        }
        Ok(())
    }

    /// `reset_utc` (validated at load; upstream's 06:00 if not).
    pub fn reset(&self) -> NaiveTime {
        parse_hh_mm(&self.reset_utc).unwrap_or(NaiveTime::from_hms_opt(6, 0, 0).expect("06:00"))
    }

    /// `reset_utc` as ms after midnight UTC.
    pub fn reset_ms(&self) -> i64 {
        i64::from(self.reset().num_seconds_from_midnight()) * 1000
    }

    /// The day `now_ms` is in: from the last reset at or before it to the
    /// next reset after it (ms). At the reset itself a new day begins (as
    /// upstream: `now.Before(resetToday)` is false at the reset).
    pub fn day_window(&self, now_ms: i64) -> (i64, i64) {
        let start = now_ms - (now_ms - self.reset_ms()).rem_euclid(DAY_MS);
        (start, start + DAY_MS)
    }

    /// The least gap between two starts at `now_ms` (upstream's
    /// `delayForAgent`), ms.
    pub fn delay_ms(&self, now_ms: i64) -> i64 {
        if self.sustained_delay <= 0.0 {
            return 0;
        }
        let (_, next_reset) = self.day_window(now_ms);
        let burst_window_ms = (self.burst_window * 3_600_000.0).round() as i64;
        if burst_window_ms > 0 && next_reset - now_ms <= burst_window_ms {
            return secs_ms(self.burst_delay);
        }
        secs_ms(self.sustained_delay)
    }

    /// When the pool may start again after a start at `last_ms`, seen at
    /// `now_ms` (`now_ms` or earlier: now). The gap is the one that holds at
    /// `now_ms`; when the burst window opens before that gap has passed, the
    /// shorter burst gap from its opening.
    pub fn next_start_ms(&self, last_ms: i64, now_ms: i64) -> i64 {
        let mut next = last_ms + self.delay_ms(now_ms);
        if self.sustained_delay > 0.0 && self.burst_window > 0.0 {
            let (_, reset) = self.day_window(now_ms);
            let opens = reset - (self.burst_window * 3_600_000.0).round() as i64;
            if opens > now_ms && opens < next {
                next = next.min(opens.max(last_ms + secs_ms(self.burst_delay)));
            }
        }
        next
    }

    /// The arguments of the wake script's pacing (`wake.lua`, ARGV[4]):
    /// `reset_ms daily_limit sustained_ms burst_window_ms burst_ms`.
    pub fn lua_arg(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.reset_ms(),
            self.daily_limit,
            secs_ms(self.sustained_delay),
            (self.burst_window * 3_600_000.0).round() as i64,
            secs_ms(self.burst_delay)
        )
    }
}

/// `ms` as a UTC time.
pub fn utc_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    fn pacing(toml_text: &str) -> Pacing {
        let p: Pacing = toml::from_str(toml_text).unwrap();
        p.validate().unwrap();
        p
    }

    #[test]
    fn defaults_are_upstreams() {
        let p = pacing("");
        assert_eq!(p.reset_utc, "06:00");
        assert_eq!((p.daily_limit, p.sustained_delay), (0, 0.0));
        assert_eq!(p.reset_ms(), 6 * 3_600_000);
    }

    #[test]
    fn no_sustained_delay_is_no_pacing_even_with_a_burst() {
        let p = pacing("burst_window = 2\nburst_delay = 30\n");
        assert_eq!(p.delay_ms(ms("2026-12-07T05:00:00Z")), 0);
        assert_eq!(p.delay_ms(ms("2026-12-07T12:00:00Z")), 0);
        assert_eq!(p.next_start_ms(1000, 1000), 1000);
    }

    #[test]
    fn sustained_delay_outside_the_burst_window() {
        let p = pacing("sustained_delay = 120\nburst_window = 2\nburst_delay = 30\n");
        // 06:00 reset: 03:59 is 2 h 1 min before it.
        assert_eq!(p.delay_ms(ms("2026-12-07T03:59:00Z")), 120_000);
        // Just after the reset: a new day, far from the next reset.
        assert_eq!(p.delay_ms(ms("2026-12-07T06:00:00Z")), 120_000);
        // Without a burst window the sustained delay always holds.
        let flat = pacing("sustained_delay = 90\n");
        assert_eq!(flat.delay_ms(ms("2026-12-07T05:59:00Z")), 90_000);
    }

    #[test]
    fn burst_delay_inside_the_burst_window() {
        let p = pacing("sustained_delay = 120\nburst_window = 2\nburst_delay = 30\n");
        // Exactly 2 h before: inside (upstream's `<=`).
        assert_eq!(p.delay_ms(ms("2026-12-07T04:00:00Z")), 30_000);
        assert_eq!(p.delay_ms(ms("2026-12-07T05:59:59Z")), 30_000);
    }

    #[test]
    fn a_reset_near_midnight_puts_the_burst_window_across_it() {
        let p = pacing(
            "reset_utc = \"00:30\"\nsustained_delay = 60\nburst_window = 1\nburst_delay = 5\n",
        );
        // 23:45 is 45 min before the 00:30 reset of the next day.
        assert_eq!(p.delay_ms(ms("2026-12-07T23:45:00Z")), 5_000);
        assert_eq!(p.delay_ms(ms("2026-12-08T00:15:00Z")), 5_000);
        assert_eq!(p.delay_ms(ms("2026-12-07T23:15:00Z")), 60_000);
        assert_eq!(p.delay_ms(ms("2026-12-08T00:30:00Z")), 60_000);
        assert_eq!(
            p.day_window(ms("2026-12-07T23:45:00Z")),
            (ms("2026-12-07T00:30:00Z"), ms("2026-12-08T00:30:00Z"))
        );
        assert_eq!(
            p.day_window(ms("2026-12-08T00:15:00Z")),
            (ms("2026-12-07T00:30:00Z"), ms("2026-12-08T00:30:00Z"))
        );
    }

    #[test]
    fn a_day_runs_from_one_reset_to_the_next() {
        let p = pacing("reset_utc = \"06:00\"\n");
        let day = (ms("2026-12-06T06:00:00Z"), ms("2026-12-07T06:00:00Z"));
        assert_eq!(p.day_window(ms("2026-12-07T05:59:59.999Z")), day);
        assert_eq!(p.day_window(ms("2026-12-06T06:00:00Z")), day);
        assert_eq!(p.day_window(ms("2026-12-06T23:00:00Z")), day);
        // The reset itself begins the next day.
        assert_eq!(
            p.day_window(ms("2026-12-07T06:00:00Z")),
            (ms("2026-12-07T06:00:00Z"), ms("2026-12-08T06:00:00Z"))
        );
        // The same next reset as the quota parser's `next_utc`.
        for now in [
            "2026-12-07T05:00:00Z",
            "2026-12-07T06:00:00Z",
            "2026-12-07T07:00:00Z",
        ] {
            let next = crate::quota::next_utc(p.reset(), utc_ms(ms(now)));
            assert_eq!(p.day_window(ms(now)).1, next.timestamp_millis(), "{now}");
        }
    }

    #[test]
    fn the_next_start_waits_the_gap_or_the_burst_windows_opening() {
        let p = pacing("sustained_delay = 3600\nburst_window = 2\nburst_delay = 60\n");
        let last = ms("2026-12-07T01:00:00Z");
        // Far from the burst window: the sustained hour.
        assert_eq!(p.next_start_ms(last, last), ms("2026-12-07T02:00:00Z"));
        // The window opens at 04:00, before the hour from 03:30 has passed.
        let last = ms("2026-12-07T03:30:00Z");
        assert_eq!(p.next_start_ms(last, last), ms("2026-12-07T04:00:00Z"));
        // Inside it: the burst gap.
        let last = ms("2026-12-07T04:30:00Z");
        assert_eq!(p.next_start_ms(last, last), ms("2026-12-07T04:31:00Z"));
    }

    #[test]
    fn bad_values_are_refused_by_key() {
        for (text, want) in [
            ("reset_utc = \"6:00\"\n", "reset_utc: `6:00` is not HH:MM"),
            ("reset_utc = \"24:00\"\n", "reset_utc: `24:00` is not HH:MM"),
            ("reset_utc = \"06:60\"\n", "reset_utc"),
            ("sustained_delay = -1\n", "sustained_delay: `-1`"),
            ("burst_delay = -0.5\n", "burst_delay"),
            ("burst_window = 25\n", "burst_window"),
        ] {
            let p: Pacing = toml::from_str(text).unwrap();
            let e = p.validate().unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
        assert!(toml::from_str::<Pacing>("daily_limit = -1\n").is_err());
        assert!(toml::from_str::<Pacing>("min_dealy = 1\n").is_err());
        assert_eq!(
            pacing("reset_utc = \"23:59\"\n").lua_arg(),
            format!("{} 0 0 0 0", (23 * 60 + 59) * 60_000)
        );
    }
}
