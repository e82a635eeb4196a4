//! The web console of `agentq web`: server-rendered pages ([`pages`]), the
//! JSON API they and scripts use ([`api`], documented in `producer/openapi.yaml`),
//! live output and events over server-sent events ([`sse`]), and the operator
//! token with its CSRF tokens ([`auth`]). It calls the same store functions as
//! the CLI verbs; nothing here talks Redis directly.

pub mod api;
pub mod auth;
pub mod pages;
pub mod sse;

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use agentq_shared::{
    config::Config,
    status::JobState,
    store::ops::ListFilter,
    store::{JobStore, StoreError},
};
use axum::{
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
    Json, Router,
};

use crate::Failure;

/// The console's shared state.
pub struct App {
    /// The job store.
    pub store: JobStore,
    /// The configuration (pools, limits, forge URL).
    pub cfg: Config,
    /// The operator token; `None`: read-only.
    pub token: Option<String>,
    /// Logged-in sessions: session id → (CSRF token, when it logged in).
    pub sessions: std::sync::Mutex<HashMap<String, (String, std::time::Instant)>>,
    /// Bulk operations confirmed on a page, by confirmation token: the op,
    /// the ids the page counted, when. The form's POST acts on exactly these.
    pub bulk: std::sync::Mutex<HashMap<String, PendingBulk>>,
    /// Host names taken (`127.0.0.1`, `localhost`, `[::1]`, any port) when
    /// bound to loopback, against DNS rebinding; `None`: any.
    pub hosts: Option<Vec<String>>,
}

/// A bulk operation a confirmation page counted, waiting for its POST.
#[derive(Debug, Clone)]
pub struct PendingBulk {
    /// `retry` or `cancel`.
    pub op: String,
    /// The jobs counted.
    pub ids: Vec<String>,
    /// When the page was made.
    pub at: std::time::Instant,
}

/// How long a confirmation page's count stays good.
pub const BULK_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// Most confirmation pages kept at once (the oldest go first).
const BULK_MAX: usize = 20;

impl App {
    /// Keeps the ids a confirmation page counted for `op`; returns the token
    /// its form posts back (`confirm`).
    pub fn remember_bulk(&self, op: &str, ids: Vec<String>) -> String {
        let token = auth::random_hex();
        let mut pending = self.bulk.lock().unwrap_or_else(|e| e.into_inner());
        pending.retain(|_, p| p.at.elapsed() < BULK_TTL);
        while pending.len() >= BULK_MAX {
            let Some(oldest) = pending
                .iter()
                .min_by_key(|(_, p)| p.at)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            pending.remove(&oldest);
        }
        pending.insert(
            token.clone(),
            PendingBulk {
                op: op.to_string(),
                ids,
                at: std::time::Instant::now(),
            },
        );
        token
    }

    /// The ids confirmation `token` counted for `op`, taken (once only);
    /// `None` when unknown, expired or for another op.
    pub fn take_bulk(&self, token: &str, op: &str) -> Option<Vec<String>> {
        let mut pending = self.bulk.lock().unwrap_or_else(|e| e.into_inner());
        let found = pending
            .keys()
            .find(|k| auth::ct_eq(k.as_bytes(), token.as_bytes()))
            .cloned()?;
        let p = pending.remove(&found)?;
        (p.op == op && p.at.elapsed() < BULK_TTL).then_some(p.ids)
    }
}

/// The host names a console bound to `addr` answers: for a loopback address,
/// the loopback names (on any port: an SSH tunnel such as
/// `ssh -L 8000:127.0.0.1:9188` sends `Host: localhost:8000`); otherwise any.
pub fn loopback_hosts(addr: SocketAddr) -> Option<Vec<String>> {
    addr.ip().is_loopback().then(|| {
        ["127.0.0.1", "localhost", "[::1]"]
            .map(String::from)
            .to_vec()
    })
}

/// The host name of a Host header, without its port (`[::1]:80` → `[::1]`).
fn host_name(host: &str) -> &str {
    let host = host.trim();
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    name.strip_suffix('.').unwrap_or(name)
}

/// Whether a request with Host header `host` may be answered: its name (not
/// its port) is one of `hosts`.
pub fn host_allowed(hosts: &[String], host: &str) -> bool {
    let name = host_name(host);
    hosts.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Refuses a request whose Host is not the console's (a page of another site
/// reaching it by DNS rebinding), and adds headers every answer carries: no
/// framing, no inline scripts, no sniffing.
async fn guard(
    axum::extract::State(app): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(hosts) = &app.hosts {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !host_allowed(hosts, host) {
            return ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "unexpected Host `{host}`: this console answers {}",
                    hosts.join(", ")
                ),
            )
            .into_response();
        }
    }
    let form_post = req.method() == axum::http::Method::POST
        && req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let mut resp = next.run(req).await;
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if form_post && json && (resp.status().is_client_error() || resp.status().is_server_error()) {
        // A refused form post (a page's button): the reason as a page, not
        // JSON. (A page already, such as the login form again, stays as it is.)
        let status = resp.status();
        let body = axum::body::to_bytes(std::mem::take(resp.body_mut()), 64 * 1024)
            .await
            .unwrap_or_default();
        let msg = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        resp = (status, pages::message_page(status, &msg)).into_response();
    }
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("same-origin"),
    );
    resp
}

/// Shared state as handlers get it.
pub type AppState = Arc<App>;

/// The router: pages, assets, API.
pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/jobs", get(pages::jobs))
        .route("/jobs/bulk", get(pages::bulk_confirm))
        .route("/jobs/{id}", get(pages::job))
        .route("/events", get(pages::events))
        .route("/login", get(pages::login).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/assets/app.js", get(pages::app_js))
        .route("/assets/style.css", get(pages::style_css))
        .route("/api/openapi.yaml", get(api::openapi))
        .route("/api/overview", get(api::overview))
        .route("/api/jobs", get(api::jobs))
        .route("/api/jobs/{id}", get(api::job))
        .route("/api/jobs/{id}/log", get(api::log))
        .route("/api/jobs/{id}/log/stream", get(sse::log_stream))
        .route("/api/jobs/{id}/retry", post(api::retry))
        .route("/api/jobs/{id}/cancel", post(api::cancel))
        .route("/api/jobs/{id}/resume", post(api::resume))
        .route("/api/jobs/bulk/retry", post(api::bulk_retry))
        .route("/api/jobs/bulk/cancel", post(api::bulk_cancel))
        .route("/api/pools/{pool}/pause", post(api::pause_pool))
        .route("/api/pools/{pool}/resume", post(api::resume_pool))
        .route("/api/events", get(api::events))
        .route("/api/events/stream", get(sse::events_stream))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such page") })
        .layer(axum::middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

/// Serves the console on `addr` until the process is stopped.
pub async fn serve(
    cfg: Config,
    store: JobStore,
    token: Option<String>,
    addr: SocketAddr,
) -> Result<u8, Failure> {
    let read_only = token.is_none();
    let app = Arc::new(App {
        store,
        cfg,
        token,
        sessions: Default::default(),
        bulk: Default::default(),
        hosts: loopback_hosts(addr),
    });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::setup(format!("addr: cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr().unwrap_or(addr);
    outln!(
        "agentq web: listening on http://{local}/ ({})",
        if read_only {
            "read-only: no --token-env"
        } else {
            "changes need the operator token"
        }
    );
    axum::serve(listener, router(app))
        .await
        .map_err(|e| Failure::setup(format!("web server: {e}")))?;
    Ok(0)
}

/// An error answer: a status and a message, as `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong.
    pub message: String,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    /// 400.
    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, crate::redis_error(&e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({"error": self.message})),
        )
            .into_response()
    }
}

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
    crate::cmd::when::parse_since(s).map_err(|e| ApiError::bad(format!("since: {e}")))
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
    })
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn loopback_binds_answer_loopback_names_on_any_port() {
        let hosts = loopback_hosts("127.0.0.1:9188".parse().unwrap()).unwrap();
        for ok in [
            "localhost:9188",
            "localhost:8000", // ssh -L 8000:127.0.0.1:9188
            "LOCALHOST",
            "localhost.:8000",
            "127.0.0.1:9188",
            "127.0.0.1",
            "[::1]:8000",
            "[::1]",
        ] {
            assert!(host_allowed(&hosts, ok), "{ok}");
        }
        for bad in [
            "evil.example:9188",
            "evil.example",
            "localhost.evil.example:9188",
            "127.0.0.1.evil.example",
            "[::2]:9188",
            "",
        ] {
            assert!(!host_allowed(&hosts, bad), "{bad}");
        }
        assert!(loopback_hosts("0.0.0.0:9188".parse().unwrap()).is_none());
    }
}
