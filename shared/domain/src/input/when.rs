//! When a delayed job is due: `at` (an instant) or `in` (a delay from now),
//! from `agentq enqueue --at/--in` or an NDJSON line's `at` / `in`.

use super::InvalidInput;
use crate::stamp::Stamp;

/// Longest delay a job may be scheduled for (about 10 years).
const MAX_DELAY_SECS: i64 = 10 * 366 * 86_400;

/// Parses an instant: RFC 3339 (`2026-12-07T06:00:00Z`, an offset instead of
/// `Z` allowed) or the same without seconds (`2026-12-07T06:00Z`). Returns ms
/// since the epoch.
///
/// # Errors
/// Anything else, naming the field `at`.
pub fn parse_at(text: &str) -> Result<i64, InvalidInput> {
    let t = text.trim();
    let parsed = chrono::DateTime::parse_from_rfc3339(t).or_else(|e| {
        // `2026-12-07T06:00Z` / `2026-12-07T06:00+01:00`: seconds left out.
        match t.get(..16).zip(t.get(16..)) {
            Some((day_hm, zone)) if !zone.is_empty() && !zone.starts_with(':') => {
                chrono::DateTime::parse_from_rfc3339(&format!("{day_hm}:00{zone}"))
            }
            _ => Err(e),
        }
    });
    parsed.map(|d| d.timestamp_millis()).map_err(|_| {
        InvalidInput::new(
            "at",
            format!("`{text}` is not a time like 2026-12-07T06:00Z (RFC 3339, with a zone)"),
        )
    })
}

/// Parses a delay: a sum of whole numbers with units `d`, `h`, `m`, `s`
/// (`2h`, `90s`, `1h30m`). Returns seconds (more than 0).
///
/// # Errors
/// Anything else, naming the field `in`.
pub fn parse_in(text: &str) -> Result<i64, InvalidInput> {
    let bad = |why: &str| InvalidInput::new("in", format!("`{text}` {why}"));
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad("is not a delay like 2h, 30m, 90s or 1h30m"));
    }
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad("is not a delay like 2h, 30m, 90s or 1h30m"));
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad("is too long"))?;
        rest = &rest[digits..];
        let unit = rest.chars().next();
        let mult = match unit {
            Some('d') => 86_400,
            Some('h') => 3_600,
            Some('m') => 60,
            Some('s') => 1,
            _ => return Err(bad("needs a unit after each number (d, h, m or s)")),
        };
        rest = &rest[1..];
        total = n
            .checked_mul(mult)
            .and_then(|s| total.checked_add(s))
            .filter(|&s| s <= MAX_DELAY_SECS)
            .ok_or_else(|| bad("is too long (at most about 10 years)"))?;
    }
    if total == 0 {
        return Err(bad("must be more than 0"));
    }
    Ok(total)
}

/// The due time of an `at` text (see [`parse_at`]).
///
/// # Errors
/// As [`parse_at`].
pub fn at(text: &str) -> Result<Stamp, InvalidInput> {
    parse_at(text).map(Stamp::from_ms)
}

/// The due time of `in` seconds from now.
pub fn in_to_at(secs: i64) -> Stamp {
    Stamp::from_ms(crate::clock::now_ms() + secs * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_with_or_without_seconds() {
        let full = parse_at("2026-12-07T06:00:00Z").unwrap();
        assert_eq!(parse_at("2026-12-07T06:00Z").unwrap(), full);
        assert_eq!(parse_at("2026-12-07T07:00+01:00").unwrap(), full);
        assert_eq!(parse_at("2026-12-07T01:00-05:00").unwrap(), full);
        assert_eq!(
            at("2026-12-07T06:00Z").unwrap().to_string(),
            "2026-12-07T06:00:00.000Z"
        );
        for bad in ["", "tomorrow", "2026-12-07", "2026-12-07T06:00", "2h"] {
            assert_eq!(parse_at(bad).unwrap_err().field, "at", "{bad}");
        }
    }

    #[test]
    fn delays_add_up_and_name_the_field() {
        assert_eq!(parse_in("2h").unwrap(), 7200);
        assert_eq!(parse_in("1h30m").unwrap(), 5400);
        assert_eq!(parse_in("90s").unwrap(), 90);
        assert_eq!(parse_in("1d").unwrap(), 86_400);
        for bad in ["", "0s", "2", "h", "2x", "-2h", "99999999999d"] {
            assert_eq!(parse_in(bad).unwrap_err().field, "in", "{bad}");
        }
    }
}
