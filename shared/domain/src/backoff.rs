//! Exponential backoff, the one formula for every wait that doubles: an
//! infrastructure retry of a job and a retried forge request.

use std::time::Duration;

/// `base * 2^n`, at most `cap` (no overflow for any `n`).
pub fn doubling(base: Duration, n: u32, cap: Duration) -> Duration {
    let factor = 1u32.checked_shl(n).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(cap).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_base_and_stops_at_the_cap() {
        let s = Duration::from_secs;
        assert_eq!(doubling(s(5), 0, s(300)), s(5));
        assert_eq!(doubling(s(5), 1, s(300)), s(10));
        assert_eq!(doubling(s(5), 2, s(300)), s(20));
        assert_eq!(doubling(s(5), 30, s(300)), s(300));
        assert_eq!(doubling(s(5), 64, s(300)), s(300));
    }
}
