//! The host circuit breaker: a worker that cannot run anything (a missing image,
//! a broken Docker engine) must not spend the queue's attempts.
//!
//! After `host_failures` infrastructure failures in a row the worker is
//! *degraded* for `host_cooldown_secs`: it takes no deliveries, hands back what
//! it gets without spending attempts, and says why in `agentq workers`,
//! `/healthz` and one log line. After the cooling period it tries again; one
//! more failure degrades it again at once, one success closes the breaker.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

/// Breaker state of one worker process.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    inner: Mutex<Inner>,
    /// How many times it opened, ever (a run compares it before and after).
    opened: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    failures: u32,
    until: Option<Instant>,
    reason: String,
}

impl Breaker {
    /// Degrades after `threshold` failures in a row (0: never), for `cooldown`.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold,
            cooldown,
            inner: Mutex::default(),
            opened: AtomicU64::new(0),
        }
    }

    /// An infrastructure failure; returns true when it degrades the worker now.
    pub fn failure(&self, reason: &str) -> bool {
        let mut i = self.inner.lock().unwrap();
        i.failures += 1;
        if self.threshold == 0 || i.failures < self.threshold {
            return false;
        }
        let was = i.until.is_some_and(|u| u > Instant::now());
        i.until = Some(Instant::now() + self.cooldown);
        i.reason = format!(
            "{} infrastructure failures in a row; last: {reason}",
            i.failures
        );
        // Only closed → open counts as an opening: a failure while degraded
        // (a run that failed meanwhile, taken as the host's) does not make
        // the other runs of that window the host's failures once more.
        if !was {
            self.opened.fetch_add(1, Ordering::SeqCst);
        }
        true
    }

    /// Degrades the worker now, for the cooling period, whatever the count:
    /// the host knows it cannot finish a job (its disk is under `min_free_gb`).
    /// Returns true when it was not degraded already.
    pub fn degrade(&self, reason: &str) -> bool {
        let mut i = self.inner.lock().unwrap();
        let was = i.until.is_some_and(|u| u > Instant::now());
        i.until = Some(Instant::now() + self.cooldown);
        i.reason = reason.to_string();
        if !was {
            self.opened.fetch_add(1, Ordering::SeqCst);
        }
        !was
    }

    /// A run that got past the infrastructure: closes the breaker.
    pub fn success(&self) {
        let mut i = self.inner.lock().unwrap();
        *i = Inner::default();
    }

    /// How many times the breaker opened since the worker started: a run that
    /// sees it change was on a degraded host (its failure is the host's).
    pub fn times_opened(&self) -> u64 {
        self.opened.load(Ordering::SeqCst)
    }

    /// Why the worker is degraded and for how long still, if it is.
    pub fn degraded(&self) -> Option<(String, Duration)> {
        let i = self.inner.lock().unwrap();
        let left = i.until?.checked_duration_since(Instant::now())?;
        Some((i.reason.clone(), left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_closes_on_success() {
        let b = Breaker::new(3, Duration::from_secs(60));
        assert!(!b.failure("x"));
        assert!(!b.failure("x"));
        assert!(b.degraded().is_none());
        assert!(b.failure("no such image"));
        let (why, left) = b.degraded().unwrap();
        assert!(why.contains("3 infrastructure failures") && why.contains("no such image"));
        assert!(left <= Duration::from_secs(60));
        b.success();
        assert!(b.degraded().is_none());
    }

    #[test]
    fn after_cooling_one_more_failure_degrades_again() {
        let b = Breaker::new(2, Duration::ZERO);
        b.failure("a");
        assert!(b.failure("a"));
        assert!(b.degraded().is_none(), "zero cooldown is over at once");
        assert!(b.failure("a"), "still failing: degraded again");
    }

    #[test]
    fn degrade_opens_at_once_with_its_reason() {
        let b = Breaker::new(3, Duration::from_secs(60));
        assert!(b.degrade("disk full"));
        assert!(!b.degrade("disk full"), "already degraded");
        assert_eq!(b.degraded().unwrap().0, "disk full");
        assert_eq!(b.times_opened(), 1);
        b.success();
        assert_eq!(b.times_opened(), 1, "closing does not reset the count");
        b.failure("x");
        b.failure("x");
        b.failure("x");
        assert_eq!(b.times_opened(), 2);
    }

    #[test]
    fn failures_while_degraded_are_not_new_openings() {
        let b = Breaker::new(1, Duration::from_secs(60));
        assert!(b.failure("docker"));
        assert_eq!(b.times_opened(), 1);
        b.failure("a run that failed meanwhile");
        b.failure("and another");
        assert_eq!(
            b.times_opened(),
            1,
            "one opening, however many failures in it"
        );
    }

    #[test]
    fn zero_threshold_never_opens() {
        let b = Breaker::new(0, Duration::from_secs(60));
        for _ in 0..10 {
            assert!(!b.failure("a"));
        }
        assert!(b.degraded().is_none());
    }
}
