//! When and how long to wait before a request to the forge is tried again.

use std::{
    hash::{BuildHasher, Hasher},
    time::Duration,
};

use crate::config::ForgeConfig;

/// How failed requests are retried.
///
/// A request answered 429 or 5xx, or failing to connect, is retried up to
/// `max_retries` times. The wait before retry `n` (0-based) is the server's
/// `Retry-After` when it sent one, otherwise `base_delay * 2^n` with jitter (between
/// half and all of it); either way at most `max_delay`.
///
/// Requests that may have taken effect on the forge even though it answered 5xx
/// (adding a comment, a pull request, a tracked time, a commit status) are not
/// retried blindly: the client looks first whether the earlier attempt was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0: no retry).
    pub max_retries: u32,
    /// Backoff before the first retry.
    pub base_delay: Duration,
    /// Upper bound of any wait, `Retry-After` included.
    pub max_delay: Duration,
}

/// Upper bound of any wait between two attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(30);

impl Default for RetryPolicy {
    /// 4 retries, 500 ms base delay, 30 s at most.
    fn default() -> Self {
        Self {
            max_retries: 4,
            base_delay: Duration::from_millis(500),
            max_delay: MAX_DELAY,
        }
    }
}

impl From<&ForgeConfig> for RetryPolicy {
    /// `[forge] max_retries` and `retry_base_ms`; waits capped at 30 s.
    fn from(cfg: &ForgeConfig) -> Self {
        Self {
            max_retries: cfg.max_retries,
            base_delay: Duration::from_millis(cfg.retry_base_ms),
            max_delay: MAX_DELAY,
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn no_retries() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// The backoff ceiling before retry `retry` (0-based): `base_delay * 2^retry`,
    /// capped at `max_delay`. Jitter is applied on top of this by the client.
    pub fn backoff(&self, retry: u32) -> Duration {
        crate::backoff::doubling(self.base_delay, retry, self.max_delay)
    }

    /// The wait before retry `retry` when the server asked for `retry_after`:
    /// that (capped at `max_delay`) if present, otherwise [`RetryPolicy::backoff`].
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(wait) => wait.min(self.max_delay),
            None => self.backoff(retry),
        }
    }

    /// The wait actually slept before retry `retry`: the server's `Retry-After`
    /// (capped), else the backoff with jitter.
    pub(crate) fn wait(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(_) => self.delay(retry, retry_after),
            None => jitter(self.backoff(retry), random_u64()),
        }
    }
}

/// Parses a `Retry-After` header value: delay-seconds (`"120"`) or an HTTP-date
/// (`"Wed, 21 Oct 2015 07:28:00 GMT"`, relative to now; a past date is zero).
/// Anything else is `None`.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    parse_retry_after_at(value, chrono::Utc::now())
}

fn parse_retry_after_at(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: delay-seconds. Absurdly long values saturate.
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (when.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// `ceiling` with "equal jitter": between half of it and all of it, picked by `random`.
fn jitter(ceiling: Duration, random: u64) -> Duration {
    let half = ceiling / 2;
    let span = u64::try_from(ceiling.saturating_sub(half).as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(random % span.saturating_add(1))
}

fn random_u64() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(base_ms: u64, max_ms: u64) -> RetryPolicy {
        RetryPolicy {
            max_retries: 4,
            base_delay: Duration::from_millis(base_ms),
            max_delay: Duration::from_millis(max_ms),
        }
    }

    #[test]
    fn default_policy_is_four_retries_from_500ms_to_30s() {
        let p = RetryPolicy::default();
        assert_eq!(p.max_retries, 4);
        assert_eq!(p.base_delay, Duration::from_millis(500));
        assert_eq!(p.max_delay, Duration::from_secs(30));
        assert_eq!(RetryPolicy::no_retries().max_retries, 0);
    }

    #[test]
    fn policy_comes_from_the_forge_config() {
        let cfg = ForgeConfig {
            max_retries: 7,
            retry_base_ms: 20,
            ..ForgeConfig::default()
        };
        let p = RetryPolicy::from(&cfg);
        assert_eq!(p.max_retries, 7);
        assert_eq!(p.base_delay, Duration::from_millis(20));
        assert_eq!(p.max_delay, MAX_DELAY);
        // The defaults of the config are the defaults of the policy.
        assert_eq!(
            RetryPolicy::from(&ForgeConfig::default()),
            RetryPolicy::default()
        );
    }

    #[test]
    fn retry_after_seconds_form() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn retry_after_rejects_garbage() {
        for bad in ["", "  ", "-1", "1.5", "soon", "12s", "0x10"] {
            assert_eq!(parse_retry_after(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_http_date_form_is_relative_to_now() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            parse_retry_after_at("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after_at("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = policy(500, 30_000);
        let got: Vec<u64> = (0..8).map(|n| p.backoff(n).as_millis() as u64).collect();
        assert_eq!(got, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        // Huge retry numbers neither overflow nor exceed the cap.
        assert_eq!(p.backoff(31), Duration::from_secs(30));
        assert_eq!(p.backoff(64), Duration::from_secs(30));
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn retry_after_wins_but_is_capped_by_max_delay() {
        let p = policy(100, 5_000);
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(3600))),
            Duration::from_secs(5)
        );
        assert_eq!(p.delay(3, None), Duration::from_millis(800));
    }

    #[test]
    fn jitter_stays_between_half_and_full() {
        let ceiling = Duration::from_millis(1000);
        for r in [0, 1, 7, 499_999_999, 500_000_000, u64::MAX / 3, u64::MAX] {
            let d = jitter(ceiling, r);
            assert!(d >= Duration::from_millis(500) && d <= ceiling, "{d:?}");
        }
        assert_eq!(jitter(Duration::ZERO, 12345), Duration::ZERO);
    }
}
