//! The wall clock, in the two forms agentq stores: Unix milliseconds (scores,
//! leases, heartbeats) and RFC 3339 with milliseconds (record timestamps).

//!
//! Host time is for what people read (record timestamps); every time hosts
//! compare (slots, pacing, timers, the worker registry) is Redis's `TIME`.

/// The host's clock: with the test-only `fault-injection` feature, shifted by
/// `AGENTQ_TEST_CLOCK_OFFSET_MS` (a host whose clock is wrong).
fn utc_now() -> chrono::DateTime<chrono::Utc> {
    #[cfg(feature = "fault-injection")]
    {
        static OFFSET: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
        let offset = *OFFSET.get_or_init(|| {
            std::env::var("AGENTQ_TEST_CLOCK_OFFSET_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        });
        chrono::Utc::now() + chrono::Duration::milliseconds(offset)
    }
    #[cfg(not(feature = "fault-injection"))]
    chrono::Utc::now()
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    utc_now().timestamp_millis()
}

/// Now, as RFC 3339 UTC with milliseconds (`2026-11-28T17:00:00.123Z`).
pub fn now_rfc3339() -> String {
    utc_now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `after` from now, as RFC 3339 UTC in whole seconds (a pause's end).
pub fn rfc3339_after(after: std::time::Duration) -> String {
    let after = chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX);
    (utc_now() + after).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_after_now_is_in_whole_seconds_and_later() {
        let later = rfc3339_after(std::time::Duration::from_secs(90));
        let parsed = chrono::DateTime::parse_from_rfc3339(&later).unwrap();
        let secs = parsed.timestamp() - now_ms() / 1000;
        assert!((89..=91).contains(&secs), "{later}");
        assert!(later.ends_with('Z') && !later.contains('.'), "{later}");
    }
}
