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
