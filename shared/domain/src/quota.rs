//! Provider quotas: whether an agent's run ended on a usage limit of its
//! provider (not a failure of the job), and when that limit says it resets.
//!
//! A pool's `limit_patterns` are matched case-insensitively in the tail of
//! the agent's output; the built-in agents have defaults, taken from the
//! messages their CLIs print (cited per agent in [`builtin_patterns`]). The
//! reset time is read from the text around the match when it names one:
//!
//! - a Unix time: `Claude AI usage limit reached|1749924000`, `"resets_at":1775317531`;
//! - a delay: `try again in 5 days 22 hours 11 minutes`, `retry in 56.1s`,
//!   `"resets_in_seconds":602705`, `Retry-After: 120`;
//! - a time of day, with a date or a zone or neither: `resets 12:50am
//!   (America/Los_Angeles)`, `reset at 9am`, `try again at Jul 5th, 2026 8:19 PM`,
//!   `Retry-After: Sun, 06 Nov 1994 08:49:37 GMT`.
//!
//! A time of day without a zone is UTC: that is the clock of agentq's agent
//! containers, which set no `TZ`. A time of day without a date is its next
//! occurrence after now. A parsed time in the past, or more than
//! [`MAX_WAIT`] ahead (a misread), counts as no time named.

use std::sync::LazyLock;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use regex::Regex;

/// The longest wait a parsed reset may ask for (codex names weekly limits:
/// "try again in 5 days 22 hours").
pub const MAX_WAIT: Duration = Duration::days(8);

/// How many bytes of the output's tail are searched.
pub const TAIL_BYTES: usize = 16 * 1024;

/// A run that hit its provider's usage limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitHit {
    /// The pattern that matched, as configured.
    pub pattern: String,
    /// The output line it matched in (trimmed, at most 300 bytes).
    pub line: String,
    /// When the limit resets, when the output says.
    pub resume_at: Option<DateTime<Utc>>,
}

/// The default `limit_patterns` of a built-in agent (empty for others), from
/// the messages each CLI prints on a usage limit:
///
/// - codex: "You've hit your usage limit. ... try again in 5 days 22 hours 11
///   minutes." (openai/codex#3899), the API's `usage_limit_reached`
///   (`resets_at`, `resets_in_seconds`);
/// - claude: "You've hit your session limit · resets 12:50am
///   (America/Los_Angeles)" (anthropics/claude-code#74079), "Claude usage
///   limit reached. Your limit will reset at 9am" (#15064), "Claude AI usage
///   limit reached|1749924000" (#2087), the API's `rate_limit_error`;
/// - gemini: "Quota exceeded for quota metric ..." (google-gemini/gemini-cli#10925),
///   "Resource has been exhausted (e.g. check quota)." with
///   `RESOURCE_EXHAUSTED` (#1848), "You exceeded your current quota";
/// - coderabbit: "Rate limit exceeded".
///
/// The local pool (an Ollama model on the host) has no provider quota.
pub fn builtin_patterns(agent: &str) -> &'static [&'static str] {
    match agent {
        "codex" => &[
            "you've hit your usage limit",
            "usage_limit_reached",
            "usage limit has been reached",
        ],
        "claude" => &[
            "you've hit your session limit",
            "you've hit your weekly limit",
            "usage limit reached",
            "rate_limit_error",
            "would exceed your account's rate limit",
        ],
        "gemini" => &[
            "resource_exhausted",
            "quota exceeded",
            "exceeded your current quota",
            "resource has been exhausted",
        ],
        "coderabbit" => &["rate limit exceeded"],
        _ => &[],
    }
}

/// The first of `patterns` found (case-insensitively) in the last
/// [`TAIL_BYTES`] of `output`, with the reset time the text names from the
/// matching line on.
pub fn find(patterns: &[String], output: &str, now: DateTime<Utc>) -> Option<LimitHit> {
    let mut start = output.len().saturating_sub(TAIL_BYTES);
    while !output.is_char_boundary(start) {
        start += 1;
    }
    let tail = &output[start..];
    let lower = tail.to_lowercase();
    // Lower-casing may change byte lengths: search line by line, where a
    // position found in a lowered line is mapped back through that line.
    let lines: Vec<&str> = tail.lines().collect();
    let lowered: Vec<String> = lower.lines().map(str::to_string).collect();
    for pat in patterns {
        let p = pat.to_lowercase();
        if p.trim().is_empty() {
            continue;
        }
        if let Some(i) = lowered.iter().position(|l| l.contains(&p)) {
            let from_here = lines[i..].join("\n");
            let line = lines.get(i).map(|l| l.trim()).unwrap_or_default();
            return Some(LimitHit {
                pattern: pat.clone(),
                line: crate::text::cut(line, 300),
                resume_at: parse_reset(&from_here, now),
            });
        }
    }
    None
}

/// When `text` says a limit resets (see the module docs), if it says, and
/// the time is after `now` and within [`MAX_WAIT`].
pub fn parse_reset(text: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let at = epoch(text)
        .or_else(|| delay(text).map(|d| now + d))
        .or_else(|| http_date(text))
        .or_else(|| dated_time(text))
        .or_else(|| time_of_day(text, now))?;
    (at > now && at - now <= MAX_WAIT).then_some(at)
}

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("a valid built-in pattern")
}

/// `…reached|1749924000`, `"resets_at":1775317531`.
fn epoch(text: &str) -> Option<DateTime<Utc>> {
    static RE: LazyLock<Regex> =
        LazyLock::new(|| re(r#"(?i)(?:\||"?resets?_at"?\s*[:=]\s*)(\d{10})\b"#));
    let secs: i64 = RE.captures(text)?[1].parse().ok()?;
    Utc.timestamp_opt(secs, 0).single()
}

/// `try again in 4h12m`, `retry in 56.1s`, `resets in 2 hours`,
/// `"resets_in_seconds":602705`, `Retry-After: 120`.
fn delay(text: &str) -> Option<Duration> {
    static SECS: LazyLock<Regex> = LazyLock::new(|| {
        re(r#"(?i)(?:"?resets_in_seconds"?\s*[:=]\s*|retry-after:\s*)(\d+)(?:\s|$|[,}])"#)
    });
    if let Some(c) = SECS.captures(text) {
        return c[1].parse().ok().map(Duration::seconds);
    }
    static LEAD: LazyLock<Regex> = LazyLock::new(|| {
        re(r"(?i)\b(?:try again|retry|resets?|available again)\s+(?:in|after)\s+")
    });
    static PART: LazyLock<Regex> = LazyLock::new(|| {
        re(
            r"(?i)^\s*(?:and\s+|,\s*)?(\d+(?:\.\d+)?)\s*(days?|d|hours?|hrs?|h|minutes?|mins?|ms|m|seconds?|secs?|s)",
        )
    });
    let lead = LEAD.find(text)?;
    let mut rest = &text[lead.end()..];
    let mut total = Duration::zero();
    let mut any = false;
    while let Some(c) = PART.captures(rest) {
        // A unit ends at a non-letter ("4h12m", "2 hours."), never inside a
        // word ("2 months").
        let end = c.get(0)?.end();
        if rest[end..].starts_with(|ch: char| ch.is_alphabetic()) {
            break;
        }
        let n: f64 = c[1].parse().ok()?;
        let unit = c[2].to_lowercase();
        let secs = match unit.as_str() {
            "ms" => n / 1000.0,
            u if u.starts_with('d') => n * 86_400.0,
            u if u.starts_with('h') => n * 3_600.0,
            u if u.starts_with('m') => n * 60.0,
            _ => n,
        };
        total += Duration::milliseconds((secs * 1000.0).ceil() as i64);
        any = true;
        rest = &rest[end..];
    }
    any.then_some(total)
}

/// `Retry-After: Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110's HTTP-date).
fn http_date(text: &str) -> Option<DateTime<Utc>> {
    static RE: LazyLock<Regex> = LazyLock::new(|| {
        re(r"(?i)retry-after:\s*([A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT)")
    });
    let c = RE.captures(text)?;
    DateTime::parse_from_rfc2822(&c[1])
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// A clock time: `3pm`, `12:50am`, `8:19 PM`, `15:00`.
const CLOCK: &str = r"(\d{1,2})(?::(\d{2}))?\s*([ap]\.?m\.?)?";

/// An IANA zone in parentheses, or UTC/GMT, after a time.
const ZONE: &str = r"(?:\s*\(([A-Za-z_]+(?:/[A-Za-z_+\-0-9]+)*)\)|\s+(UTC|GMT|Z)\b)?";

fn clock(h: &str, m: Option<&str>, ampm: Option<&str>) -> Option<NaiveTime> {
    let mut hour: u32 = h.parse().ok()?;
    let min: u32 = m.map_or(Some(0), |m| m.parse().ok())?;
    match ampm.map(|s| s.to_lowercase().replace('.', "")) {
        Some(p) if p == "am" && hour == 12 => hour = 0,
        Some(p) if p == "pm" && hour < 12 => hour += 12,
        Some(_) if hour > 12 => return None,
        None if m.is_none() => return None, // a bare number is no time
        _ => {}
    }
    NaiveTime::from_hms_opt(hour, min, 0)
}

fn zone(name: Option<&str>) -> Option<chrono_tz::Tz> {
    match name {
        None => Some(chrono_tz::UTC),
        Some(n) if matches!(n.to_uppercase().as_str(), "UTC" | "GMT" | "Z") => Some(chrono_tz::UTC),
        Some(n) => n.parse().ok(),
    }
}

/// `try again at Jul 5th, 2026 8:19 PM`: a month name, a day, a year, a time.
fn dated_time(text: &str) -> Option<DateTime<Utc>> {
    static RE: LazyLock<Regex> = LazyLock::new(|| {
        re(&format!(
            r"(?i)\b(?:at|on|until)\s+([A-Za-z]{{3}})[a-z]*\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}}),?\s+(?:at\s+)?{CLOCK}{ZONE}"
        ))
    });
    let c = RE.captures(text)?;
    let month = match c[1].to_lowercase().as_str() {
        "jan" => 1,
        "feb" => 2,
        "mar" => 3,
        "apr" => 4,
        "may" => 5,
        "jun" => 6,
        "jul" => 7,
        "aug" => 8,
        "sep" => 9,
        "oct" => 10,
        "nov" => 11,
        "dec" => 12,
        _ => return None,
    };
    let date = NaiveDate::from_ymd_opt(c[3].parse().ok()?, month, c[2].parse().ok()?)?;
    let time = clock(
        &c[4],
        c.get(5).map(|m| m.as_str()),
        c.get(6).map(|m| m.as_str()),
    )?;
    let tz = zone(c.get(7).or(c.get(8)).map(|m| m.as_str()))?;
    let local = tz.from_local_datetime(&date.and_time(time)).earliest()?;
    Some(local.with_timezone(&Utc))
}

/// `resets 12:50am (America/Los_Angeles)`, `reset at 9am`, `try again at
/// 15:00 UTC`: the next such time after `now`.
fn time_of_day(text: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    static RE: LazyLock<Regex> = LazyLock::new(|| {
        re(&format!(
            r"(?i)\b(?:resets?|try again|available again)(?:\s+at)?\s+{CLOCK}{ZONE}"
        ))
    });
    let c = RE.captures(text)?;
    let time = clock(
        &c[1],
        c.get(2).map(|m| m.as_str()),
        c.get(3).map(|m| m.as_str()),
    )?;
    let tz = zone(c.get(4).or(c.get(5)).map(|m| m.as_str()))?;
    let today = now.with_timezone(&tz).date_naive();
    (0..=1)
        .filter_map(|d| {
            let date = today.checked_add_days(chrono::Days::new(d))?;
            tz.from_local_datetime(&date.and_time(time)).earliest()
        })
        .map(|t| t.with_timezone(&Utc))
        .find(|t| *t > now)
        .filter(|t| t.year() >= now.year())
}

/// How long a pool paused for a limit that named no reset time waits: until
/// the pool's next `reset_utc` when it has pacing (`[pacing.POOL]`, the
/// provider's day as upstream's RateConfig models it), else `backoff` (the
/// pool's fast-failure pause).
pub fn unnamed_wait(
    reset_utc: Option<NaiveTime>,
    backoff: Duration,
    now: DateTime<Utc>,
) -> Duration {
    match reset_utc {
        Some(reset) => next_utc(reset, now) - now,
        None => backoff,
    }
}

/// Most characters of the matched line that events and `agentq inspect` show.
pub const SHOWN_LINE_CHARS: usize = 200;

/// When a pool paused for `hit` resumes: the reset time the output named,
/// else `fallback` after `now` (the pool's backoff pause); never less than a
/// second ahead, never more than [`MAX_WAIT`].
pub fn resume_at(hit: &LimitHit, fallback: Duration, now: DateTime<Utc>) -> DateTime<Utc> {
    let at = hit.resume_at.unwrap_or(now + fallback);
    at.clamp(now + Duration::seconds(1), now + MAX_WAIT)
}

/// The matched line as people see it (it is the agent's output: untrusted):
/// control characters made visible, at most [`SHOWN_LINE_CHARS`] characters.
pub fn shown_line(line: &str) -> String {
    let visible = crate::text::visible(line.trim());
    if visible.chars().count() <= SHOWN_LINE_CHARS {
        return visible;
    }
    let mut out: String = visible.chars().take(SHOWN_LINE_CHARS - 1).collect();
    out.push('…');
    out
}

/// Why a pool is paused, as its pause key's value says (`until|cause`; a
/// value without a cause is a fast-failure backoff or a pause by hand).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseCause {
    /// The provider's usage limit (a run's output matched `limit_patterns`).
    Quota,
}

impl PauseCause {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quota => "quota",
        }
    }

    /// The pause key's value for a pause until `until` (RFC 3339).
    pub fn pause_value(self, until: &str) -> String {
        format!("{until}|{}", self.as_str())
    }

    /// The cause in a pause key's value, if it names one this version knows.
    pub fn of_pause_value(value: &str) -> Option<Self> {
        match value.rsplit_once('|')?.1 {
            "quota" => Some(Self::Quota),
            _ => None,
        }
    }
}

/// `resumes 15:00 UTC (in 2h14m)` (with the date when it is not today's).
pub fn describe_resume(until: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let when = if until.date_naive() == now.date_naive() {
        until.format("%H:%M UTC").to_string()
    } else {
        until.format("%b %-d %H:%M UTC").to_string()
    };
    format!("resumes {when} (in {})", short_duration(until - now))
}

/// `2h14m`, `3d4h`, `45s`: the two largest units.
pub fn short_duration(d: Duration) -> String {
    let secs = d.num_seconds().max(0);
    let (days, hours, mins, s) = (
        secs / 86_400,
        secs % 86_400 / 3_600,
        secs % 3_600 / 60,
        secs % 60,
    );
    match (days, hours, mins) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m{s:02}s"),
        (0, h, m) => format!("{h}h{m:02}m"),
        (d, h, _) => format!("{d}d{h}h"),
    }
}

/// The next `HH:MM` UTC after `now` (a pool's `reset_utc`).
pub fn next_utc(hh_mm: NaiveTime, now: DateTime<Utc>) -> DateTime<Utc> {
    let today = now.date_naive().and_time(hh_mm).and_utc();
    if today > now {
        today
    } else {
        today + Duration::days(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn pats(agent: &str) -> Vec<String> {
        builtin_patterns(agent)
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    const NOW: &str = "2026-12-06T22:00:00Z";

    #[test]
    fn codex_weekly_limit_in_days_hours_minutes() {
        let out = "working...\n■ You've hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing) or try again in 5 days 22 hours 11\nminutes.\n";
        let hit = find(&pats("codex"), out, at(NOW)).unwrap();
        assert_eq!(hit.pattern, "you've hit your usage limit");
        assert!(hit.line.starts_with("■ You've hit"), "{}", hit.line);
        assert_eq!(
            hit.resume_at,
            Some(at(NOW) + Duration::days(5) + Duration::hours(22) + Duration::minutes(11))
        );
    }

    #[test]
    fn codex_try_again_at_a_date() {
        let out = "You've hit your usage limit. Upgrade to Plus to continue using Codex, or try again at Dec 7th, 2026 8:19 PM.";
        let hit = find(&pats("codex"), out, at(NOW)).unwrap();
        assert_eq!(hit.resume_at, Some(at("2026-12-07T20:19:00Z")));
    }

    #[test]
    fn codex_api_error_with_resets_at() {
        let out = r#"{"error":{"type":"usage_limit_reached","message":"The usage limit has been reached","resets_at":1796680800,"resets_in_seconds":80000}}"#;
        let hit = find(&pats("codex"), out, at(NOW)).unwrap();
        assert_eq!(hit.resume_at, Utc.timestamp_opt(1_796_680_800, 0).single());
    }

    #[test]
    fn claude_session_limit_in_a_named_zone() {
        let out = "You've hit your session limit · resets 12:50am (America/Los_Angeles)\n/login to switch to an API usage-billed account.";
        let hit = find(&pats("claude"), out, at(NOW)).unwrap();
        // 22:00Z is 14:00 in Los Angeles (PST, UTC-8): the next 00:50 there is 08:50Z.
        assert_eq!(hit.resume_at, Some(at("2026-12-07T08:50:00Z")));
    }

    #[test]
    fn claude_reset_at_a_time_without_zone_is_utc_and_next() {
        let out = "Claude usage limit reached. Your limit will reset at 9am.";
        let hit = find(&pats("claude"), out, at(NOW)).unwrap();
        assert_eq!(hit.pattern, "usage limit reached");
        assert_eq!(hit.resume_at, Some(at("2026-12-07T09:00:00Z")));
        let later_today = find(&pats("claude"), "usage limit reached; resets 11pm", at(NOW));
        assert_eq!(
            later_today.unwrap().resume_at,
            Some(at("2026-12-06T23:00:00Z"))
        );
    }

    #[test]
    fn claude_epoch_after_a_bar() {
        let out = "Claude AI usage limit reached|1796623200";
        let hit = find(&pats("claude"), out, at(NOW)).unwrap();
        assert_eq!(hit.resume_at, Utc.timestamp_opt(1_796_623_200, 0).single());
    }

    #[test]
    fn gemini_quota_with_and_without_a_delay() {
        let out = "✕ [API Error: {\"code\": 429, \"message\": \"Quota exceeded for quota metric 'Gemini 2.5 Pro Requests'\", \"status\": \"RESOURCE_EXHAUSTED\"}]";
        let hit = find(&pats("gemini"), out, at(NOW)).unwrap();
        assert_eq!(hit.pattern, "resource_exhausted");
        assert_eq!(hit.resume_at, None);
        let out = "Resource has been exhausted (e.g. check quota). Please retry in 56.1s.";
        let hit = find(&pats("gemini"), out, at(NOW)).unwrap();
        assert_eq!(
            hit.resume_at,
            Some(at(NOW) + Duration::milliseconds(56_100))
        );
    }

    #[test]
    fn retry_after_seconds_and_http_date() {
        let now = at(NOW);
        assert_eq!(
            parse_reset("HTTP/1.1 429\nRetry-After: 120\n", now),
            Some(now + Duration::seconds(120))
        );
        assert_eq!(
            parse_reset("Retry-After: Mon, 07 Dec 2026 01:00:00 GMT", now),
            Some(at("2026-12-07T01:00:00Z"))
        );
    }

    #[test]
    fn compact_and_mixed_delays() {
        let now = at(NOW);
        assert_eq!(
            parse_reset("try again in 4h12m", now),
            Some(now + Duration::minutes(4 * 60 + 12))
        );
        assert_eq!(
            parse_reset("Rate limit exceeded, retry after 30 seconds", now),
            Some(now + Duration::seconds(30))
        );
        assert_eq!(
            parse_reset("try again in 2 hours and 5 minutes", now),
            Some(now + Duration::minutes(125))
        );
    }

    #[test]
    fn a_time_in_the_past_or_too_far_is_no_time() {
        let now = at(NOW);
        assert_eq!(parse_reset("resets_at\":1000000000", now), None);
        assert_eq!(parse_reset("try again in 30 days", now), None);
        assert_eq!(parse_reset("try again later", now), None);
        assert_eq!(parse_reset("try again in 2 months", now), None);
        assert_eq!(parse_reset("reset at 7", now), None, "a bare number");
        assert_eq!(parse_reset("resets 3pm (Not/AZone)", now), None);
    }

    #[test]
    fn matching_is_case_insensitive_and_only_in_the_tail() {
        let upper = vec!["RATE LIMIT".to_string()];
        assert!(find(&upper, "error: Rate limit hit", at(NOW)).is_some());
        let old = format!("rate limit long ago\n{}", "x".repeat(TAIL_BYTES + 10));
        assert_eq!(find(&upper, &old, at(NOW)), None);
        assert_eq!(find(&[" ".to_string()], "anything", at(NOW)), None);
        assert_eq!(find(&pats("local"), "rate limit", at(NOW)), None);
    }

    #[test]
    fn a_tail_cut_inside_a_character_is_still_searched() {
        let out = format!("{}usage limit reached", "é".repeat(TAIL_BYTES));
        assert!(find(&pats("claude"), &out, at(NOW)).is_some());
    }

    #[test]
    fn next_utc_is_today_or_tomorrow() {
        let t = NaiveTime::from_hms_opt(6, 0, 0).unwrap();
        assert_eq!(next_utc(t, at(NOW)), at("2026-12-07T06:00:00Z"));
        assert_eq!(
            next_utc(t, at("2026-12-06T05:59:00Z")),
            at("2026-12-06T06:00:00Z")
        );
    }
    #[test]
    fn a_limit_naming_no_time_waits_for_the_pools_reset_utc_else_the_backoff() {
        let now = Utc.with_ymd_and_hms(2026, 12, 7, 4, 0, 0).unwrap();
        let six = NaiveTime::from_hms_opt(6, 0, 0).unwrap();
        assert_eq!(
            unnamed_wait(Some(six), Duration::minutes(30), now),
            Duration::hours(2)
        );
        let three = NaiveTime::from_hms_opt(3, 0, 0).unwrap();
        assert_eq!(
            unnamed_wait(Some(three), Duration::minutes(30), now),
            Duration::hours(23),
            "past today's reset: tomorrow's"
        );
        assert_eq!(
            unnamed_wait(None, Duration::minutes(30), now),
            Duration::minutes(30)
        );
    }

    #[test]
    fn resume_at_is_the_named_time_else_the_fallback_within_bounds() {
        let now = at(NOW);
        let hit = |resume_at| LimitHit {
            pattern: "p".into(),
            line: "l".into(),
            resume_at,
        };
        let named = now + Duration::minutes(90);
        assert_eq!(
            resume_at(&hit(Some(named)), Duration::minutes(30), now),
            named
        );
        assert_eq!(
            resume_at(&hit(None), Duration::minutes(30), now),
            now + Duration::minutes(30)
        );
        assert_eq!(
            resume_at(&hit(None), Duration::days(30), now),
            now + MAX_WAIT,
            "a fallback longer than MAX_WAIT is clamped"
        );
        assert_eq!(
            resume_at(&hit(None), Duration::zero(), now),
            now + Duration::seconds(1)
        );
    }

    #[test]
    fn the_shown_line_is_visible_and_cut() {
        assert_eq!(
            shown_line("  limit \u{1b}[31mhit\r more "),
            "limit \\e[31mhit^M more"
        );
        let long = shown_line(&"é".repeat(500));
        assert_eq!(long.chars().count(), SHOWN_LINE_CHARS);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn the_pause_value_names_its_cause() {
        let v = PauseCause::Quota.pause_value("2026-12-07T15:00:00Z");
        assert_eq!(v, "2026-12-07T15:00:00Z|quota");
        assert_eq!(PauseCause::of_pause_value(&v), Some(PauseCause::Quota));
        assert_eq!(PauseCause::of_pause_value("2026-12-07T15:00:00Z"), None);
        assert_eq!(PauseCause::of_pause_value("x|other"), None);
    }

    #[test]
    fn resume_is_described_with_the_time_left() {
        let now = at(NOW);
        assert_eq!(
            describe_resume(now + Duration::minutes(134), now),
            "resumes Dec 7 00:14 UTC (in 2h14m)"
        );
        assert_eq!(
            describe_resume(at("2026-12-06T23:00:00Z"), now),
            "resumes 23:00 UTC (in 1h00m)"
        );
        assert_eq!(short_duration(Duration::seconds(75)), "1m15s");
        assert_eq!(short_duration(Duration::seconds(4)), "4s");
        assert_eq!(short_duration(Duration::hours(50)), "2d2h");
        assert_eq!(short_duration(Duration::seconds(-3)), "0s");
    }
}
