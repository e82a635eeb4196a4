//! Small helpers: query strings, ids, clocks, paging.

use super::*;

pub(super) fn key(o: &str, r: &str) -> (String, String) {
    (o.to_string(), r.to_string())
}

pub(super) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// `utils.GetListOptions`: `page` below 1 (or not a number) is 1, `limit` 0 (or not a
/// number) is the default, and at most `MAX_RESPONSE_ITEMS`.
pub(super) fn page_and_limit(query: &HashMap<String, String>) -> (usize, usize) {
    let page = query
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let limit = match query.get("limit").and_then(|l| l.parse::<usize>().ok()) {
        None | Some(0) => DEFAULT_PAGE_SIZE,
        Some(l) => l.min(MAX_PAGE_SIZE),
    };
    (page, limit)
}

/// `%XX` escapes decoded (`+` is left alone); a malformed escape stays as it is.
pub(super) fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// A query string (`application/x-www-form-urlencoded`) as a map; the last of a
/// repeated name counts.
pub(super) fn parse_query(q: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(q.as_bytes())
        .into_owned()
        .collect()
}

/// Standard base64 with padding, as Go's `base64.StdEncoding` reads basic auth.
pub(super) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// Now as RFC 3339 in UTC, to the second.
pub(super) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
