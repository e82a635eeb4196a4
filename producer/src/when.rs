//! Times as the command line and the web console take them: `7d`, `12h`, `30m`,
//! `45s` ago, or an RFC 3339 instant.

/// Parses `7d` / `12h` / `30m` / `45s` into seconds.
pub fn parse_age(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not an age like 7d, 12h, 30m or 45s"))?;
    let mult = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" | "" => 1,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (use d, h, m or s)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too long ago"))
}

/// Parses a duration: `10m`, `2h`, `45s`, `45`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let secs = parse_age(s)?;
    if secs <= 0 {
        return Err(format!("`{s}`: must be more than 0"));
    }
    Ok(std::time::Duration::from_secs(secs as u64))
}

/// Parses an RFC 3339 time or an age (`2h` = two hours ago) into ms since the epoch.
pub fn parse_since(s: &str) -> Result<i64, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    let secs = parse_age(s)
        .map_err(|_| format!("`{s}` is neither an RFC 3339 time nor an age like 2h"))?;
    secs.checked_mul(1000)
        .and_then(|ms| agentq_shared::clock::now_ms().checked_sub(ms))
        .ok_or_else(|| format!("`{s}` is too long ago"))
}

/// A short age for people: `5s`, `3m`, `2h`, `4d`.
pub fn short_age(rfc3339: &str) -> String {
    match rfc3339.parse() {
        Ok(t) => age(t),
        Err(_) => "-".into(),
    }
}

/// How long ago `t` was, as [`short_age`] writes it.
pub fn age(t: agentq_shared::stamp::Stamp) -> String {
    let secs = (agentq_shared::clock::now_ms() - t.ms()).max(0) / 1000;
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(parse_age("7d"), Ok(604_800));
        assert_eq!(parse_age("30m"), Ok(1_800));
        assert_eq!(parse_age("5"), Ok(5));
        assert!(parse_age("x").is_err());
        assert!(parse_age("3w").is_err());
        assert!(parse_since("2026-01-01T00:00:00Z").is_ok());
        assert!(parse_since("1h").unwrap() < agentq_shared::clock::now_ms());
        // Too long ago to count is an error, not an overflow.
        assert!(parse_age("999999999999999999d").is_err());
        assert!(parse_since("9223372036854776s").is_err());
    }
}
