//! The wall clock, in the two forms agentq stores: Unix milliseconds (scores,
//! leases, heartbeats) and RFC 3339 with milliseconds (record timestamps).

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Now, as RFC 3339 UTC with milliseconds (`2026-11-28T17:00:00.123Z`).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `after` from now, as RFC 3339 UTC in whole seconds (a pause's end).
pub fn rfc3339_after(after: std::time::Duration) -> String {
    let after = chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX);
    (chrono::Utc::now() + after).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
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
