//! This machine's name, as workers record it (`host` in a record) and as
//! `agentq logs --full` compares it.

/// This machine's host name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`,
/// else `unknown-host`).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}
