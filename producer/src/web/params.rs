//! The parameters of a request: a POST's form or JSON fields, numbers, stream
//! ids, the job filter, and where a form goes back to.

use std::collections::HashMap;

use agentq_shared::{status::JobState, store::ops::ListFilter};
use axum::{
    http::{header, HeaderMap},
    response::{IntoResponse, Redirect, Response},
    Json,
};

use super::error::ApiError;

/// Parameters of a POST: a form (`application/x-www-form-urlencoded`) or a
/// JSON object whose values are all strings (any other value, `null`
/// included, is a 400 naming the field: the spec types every field a string).
pub fn parse_params(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, ApiError> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if body.is_empty() {
        return Ok(HashMap::new());
    }
    if ctype.starts_with("application/json") {
        let v: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("body: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| ApiError::bad("body: a JSON object is expected"))?;
        return obj
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(ApiError::bad(format!(
                    "{k}: a string is expected, not {}",
                    json_type(other)
                ))),
            })
            .collect();
    }
    Ok(url::form_urlencoded::parse(body).into_owned().collect())
}

/// Refuses a POST with a field other than `fields`, `csrf` and `next`
/// (a misspelt `anwser` is a 400 naming it, never silently ignored).
///
/// # Errors
/// A 400 naming the first unknown field.
pub fn only_fields(params: &HashMap<String, String>, fields: &[&str]) -> Result<(), ApiError> {
    let mut unknown: Vec<&String> = params
        .keys()
        .filter(|k| !["csrf", "next"].contains(&k.as_str()) && !fields.contains(&k.as_str()))
        .collect();
    unknown.sort();
    match unknown.first() {
        None => Ok(()),
        Some(k) => Err(ApiError::bad(format!(
            "{k}: no such field (this request takes {})",
            ["csrf", "next"]
                .iter()
                .chain(fields)
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The JSON type of `v`, as an error message names it.
fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Parameter `key` (trimmed) as a whole number in `range`; `default` when
/// absent or empty.
///
/// # Errors
/// A 400 naming `key` for anything else.
pub fn number_param(
    params: &HashMap<String, String>,
    key: &str,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, ApiError> {
    match params.get(key).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(default),
        Some(n) => n
            .parse::<usize>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                ApiError::bad(format!(
                    "{key}: a number from {} to {}",
                    range.start(),
                    range.end()
                ))
            }),
    }
}

/// Parameter `key` as a Redis stream id (`MS` or `MS-SEQ`, each at most 19
/// digits), as the `last`/`id` of an earlier answer gives it; `None` when
/// absent. Checked here, so that a malformed id is the caller's 400 naming
/// `key`, not Redis refusing the command (which would read as an outage).
///
/// # Errors
/// A 400 naming `key` for anything else, the empty string included.
pub fn stream_id_param(
    params: &HashMap<String, String>,
    key: &str,
) -> Result<Option<String>, ApiError> {
    let Some(id) = params.get(key) else {
        return Ok(None);
    };
    let part = |p: &str| (1..=19).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    let ok = match id.split_once('-') {
        None => part(id),
        Some((ms, seq)) => part(ms) && part(seq),
    };
    if ok {
        Ok(Some(id.clone()))
    } else {
        Err(ApiError::bad(format!(
            "{key}: `{id}` is not a stream id like 1700000000000-0"
        )))
    }
}

/// The answer to a successful POST: JSON, or for a form with a `next` page
/// (a path on this server), a redirect there.
pub fn done(params: &HashMap<String, String>, body: serde_json::Value) -> Response {
    match params.get("next").filter(|n| local_path(n)) {
        Some(next) => Redirect::to(next).into_response(),
        None => Json(body).into_response(),
    }
}

/// Whether `p` is a path on this server (no open redirects): it starts with
/// one `/` (so no scheme and no other host), has no `\\` (which browsers
/// read as `/`) and only visible ASCII (no spaces or control characters;
/// a browser sends a page's address percent-encoded).
pub fn local_path(p: &str) -> bool {
    p.starts_with('/')
        && !p.starts_with("//")
        && !p.contains('\\')
        && p.bytes().all(|b| b.is_ascii_graphic())
}

/// A filter's `since`: an RFC 3339 time, or an age of up to 9 digits with
/// an optional unit (s, m, h, d) — the spec's pattern.
fn since_param(s: &str) -> Result<i64, ApiError> {
    let digits = s.strip_suffix(['s', 'm', 'h', 'd']).unwrap_or(s);
    let age = (1..=9).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    if !age && chrono::DateTime::parse_from_rfc3339(s).is_err() {
        return Err(ApiError::bad(format!(
            "since: `{s}` is neither an RFC 3339 time nor an age like 2h (up to 9 digits)"
        )));
    }
    crate::when::parse_since(s).map_err(|e| ApiError::bad(format!("since: {e}")))
}

/// The job filter of a query or form: `state`, `agent`, `repo`, `q`, `since`
/// (an age like 2h), `limit`.
pub fn filter_from(params: &HashMap<String, String>) -> Result<ListFilter, ApiError> {
    let text = |k: &str| {
        params
            .get(k)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let state = match text("state") {
        None => None,
        Some(s) => Some(
            s.parse::<JobState>()
                .map_err(|_| ApiError::bad(format!("state: `{s}` is not a job state")))?,
        ),
    };
    let since_ms = match text("since") {
        None => None,
        Some(s) => Some(since_param(&s)?),
    };
    let limit = number_param(params, "limit", 50, 1..=500)?;
    Ok(ListFilter {
        state,
        agent: text("agent"),
        repo: text("repo"),
        since_ms,
        limit,
        search: text("q"),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    #[test]
    fn redirects_stay_on_the_server() {
        assert!(local_path("/jobs/01J"));
        assert!(!local_path("//evil.example/"));
        assert!(!local_path("https://evil.example/"));
        assert!(!local_path("/\\evil.example"));
        assert!(local_path("/jobs?state=failed&agent=claude"));
        for bad in [
            "",
            "jobs",
            "http://evil.example/",
            "javascript:alert(1)",
            "/a\nb",
            "/a b",
        ] {
            assert!(!local_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn filters_read_from_a_query() {
        let q: HashMap<String, String> = [
            ("state", "failed"),
            ("agent", " claude "),
            ("q", ""),
            ("limit", "7"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let f = filter_from(&q).unwrap();
        assert_eq!(f.state, Some(JobState::Failed));
        assert_eq!(f.agent.as_deref(), Some("claude"));
        assert_eq!((f.search, f.limit), (None, 7));
        for bad in [
            ("state", "nope"),
            ("limit", "0"),
            ("limit", "501"),
            ("since", "3w"),
        ] {
            let q = HashMap::from([(bad.0.to_string(), bad.1.to_string())]);
            assert_eq!(
                filter_from(&q).unwrap_err().status,
                StatusCode::BAD_REQUEST,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn stream_ids_and_numbers_are_checked_naming_the_parameter() {
        let q = |k: &str, v: &str| HashMap::from([(k.to_string(), v.to_string())]);
        for ok in [
            "0",
            "0-0",
            "1700000000000-12",
            "9999999999999999999-9999999999999999999",
        ] {
            assert_eq!(
                stream_id_param(&q("after", ok), "after")
                    .unwrap()
                    .as_deref(),
                Some(ok)
            );
        }
        assert_eq!(stream_id_param(&HashMap::new(), "after").unwrap(), None);
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "1-2-3",
            "x",
            " 1",
            "+",
            "(1",
            "99999999999999999999",
        ] {
            let e = stream_id_param(&q("after", bad), "after").unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad:?}");
            assert!(e.message.starts_with("after: "), "{}", e.message);
        }
        assert_eq!(
            number_param(&q("count", "1000"), "count", 100, 1..=1000).unwrap(),
            1000
        );
        assert_eq!(
            number_param(&HashMap::new(), "count", 100, 1..=1000).unwrap(),
            100
        );
        for bad in ["0", "1001", "-1", "x", "1.5"] {
            let e = number_param(&q("count", bad), "count", 100, 1..=1000).unwrap_err();
            assert_eq!(e.message, "count: a number from 1 to 1000", "{bad:?}");
        }
    }

    #[test]
    fn posts_take_forms_and_json() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        let p = parse_params(&h, br#"{"answer": "a <b>", "n": "3"}"#).unwrap();
        assert_eq!((p["answer"].as_str(), p["n"].as_str()), ("a <b>", "3"));
        assert!(parse_params(&h, b"[1]").is_err());
        // Every field is a string: anything else is refused, naming it.
        for (body, field) in [
            (&br#"{"next": {}}"#[..], "next"),
            (br#"{"for": null}"#, "for"),
            (br#"{"for": 600}"#, "for"),
            (br#"{"answer": ["x"]}"#, "answer"),
        ] {
            let e = parse_params(&h, body).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(
                e.message.starts_with(&format!("{field}: ")),
                "{}",
                e.message
            );
        }
        h.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        let p = parse_params(&h, b"answer=x+y%26z&csrf=1").unwrap();
        assert_eq!(p["answer"], "x y&z");
        assert!(parse_params(&h, b"").unwrap().is_empty());
    }
}
