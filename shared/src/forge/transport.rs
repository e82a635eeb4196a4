//! One HTTP request to the forge's API: authentication, timeouts, retries of
//! transient failures, and error messages with the token scrubbed out.

use std::fmt;

use reqwest::{
    header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER},
    Method, StatusCode, Url,
};
use serde::de::DeserializeOwned;

use super::{
    retry::{parse_retry_after, RetryPolicy},
    ForgeError, CONNECT_TIMEOUT, REQUEST_TIMEOUT, USER_AGENT,
};

/// Most bytes of an error body quoted in an error message.
pub(crate) const MAX_MESSAGE_CHARS: usize = 300;

/// One answer read in full.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Vec<u8>,
    pub total_count: Option<u64>,
}

/// The HTTP side of a client: base URL, token, connection pool.
#[derive(Clone)]
pub(crate) struct Transport {
    http: reqwest::Client,
    /// `{base}/api/v1`.
    api: Url,
    base_url: String,
    token: Option<String>,
    /// When the calls' budget runs out (see [`super::ForgeClient::with_deadline`]):
    /// no request outlives it, and no retry is begun that could not end before it.
    deadline: Option<tokio::time::Instant>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("base_url", &self.base_url)
            .field(
                "token",
                &if self.token.is_some() {
                    "<redacted>"
                } else {
                    "<none>"
                },
            )
            .finish()
    }
}

impl Transport {
    /// See [`super::ForgeClient::new`].
    pub fn new(base_url: &str, token: Option<String>) -> Result<Self, ForgeError> {
        let base = Url::parse(base_url.trim())
            .map_err(|e| ForgeError::InvalidBaseUrl(format!("not an absolute URL ({e})")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ForgeError::InvalidBaseUrl(format!(
                "scheme `{}` is not http or https",
                base.scheme()
            )));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(ForgeError::InvalidBaseUrl(
                "it embeds credentials; pass the token separately".into(),
            ));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(ForgeError::InvalidBaseUrl(
                "it has a query or a fragment".into(),
            ));
        }
        if base.cannot_be_a_base() || base.host_str().is_none() {
            return Err(ForgeError::InvalidBaseUrl("it has no host".into()));
        }
        let mut api = base.clone();
        api.path_segments_mut()
            .map_err(|()| ForgeError::InvalidBaseUrl("it cannot have a path".into()))?
            .pop_if_empty()
            .extend(["api", "v1"]);
        let base_url = base.as_str().trim_end_matches('/').to_string();

        let mut headers = HeaderMap::new();
        let token = match token {
            None => None,
            Some(t) => {
                let t = t.trim().to_string();
                if t.is_empty() {
                    return Err(ForgeError::InvalidArgument("the token is empty".into()));
                }
                let mut value = HeaderValue::from_str(&format!("token {t}")).map_err(|_| {
                    ForgeError::InvalidArgument(
                        "the token has characters not allowed in an HTTP header".into(),
                    )
                })?;
                value.set_sensitive(true);
                headers.insert(AUTHORIZATION, value);
                Some(t)
            }
        };
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| ForgeError::Transport(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            api,
            base_url,
            token,
            deadline: None,
        })
    }

    /// This transport with every request ending by `at`.
    pub fn with_deadline(&self, at: tokio::time::Instant) -> Self {
        Self {
            deadline: Some(at),
            ..self.clone()
        }
    }

    /// Time left before the deadline (`None`: no deadline).
    fn left(&self) -> Option<std::time::Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(tokio::time::Instant::now()))
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// `{base}/api/v1/{segs…}?{query}`, each segment percent-encoded (a `/` inside
    /// a segment included).
    pub fn endpoint(&self, segs: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.api.clone();
        url.path_segments_mut()
            .expect("checked in Transport::new")
            .extend(segs);
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }

    /// Sends one API request, retrying per `retry`. Returns the final answer, whatever
    /// its status, unless it is retryable (429, 5xx) and retries ran out, or the
    /// request could not be made.
    pub async fn execute(
        &self,
        method: Method,
        segs: &[&str],
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
        retry: RetryPolicy,
    ) -> Result<Reply, ForgeError> {
        let url = self.endpoint(segs, query);
        let path = display_path(segs);
        // Only requests that cannot have taken effect twice are retried after a
        // transport failure mid-request; a refused connection never reached the forge.
        let idempotent = matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE
        );
        let mut attempt: u32 = 0;
        loop {
            let mut request = self.http.request(method.clone(), url.clone());
            if let Some(left) = self.left() {
                if left.is_zero() {
                    return Err(ForgeError::Transport(format!(
                        "{method} {path}: the forge calls' time budget is spent ({attempt} attempts)"
                    )));
                }
                request = request.timeout(left.min(REQUEST_TIMEOUT));
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            // Either return, or name the failure to retry, any wait the forge
            // asked for, and the error to give if there is no time to retry.
            let (what, retry_after, give_up) = match request.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = resp
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after);
                    let total_count = resp
                        .headers()
                        .get("x-total-count")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse().ok());
                    match resp.bytes().await {
                        Ok(bytes) => {
                            let reply = Reply {
                                status,
                                body: bytes.to_vec(),
                                total_count,
                            };
                            if !is_retryable_status(status) {
                                return Ok(reply);
                            }
                            let message = self.message_of(&reply.body);
                            if attempt >= retry.max_retries {
                                return Err(ForgeError::Server {
                                    status: status.as_u16(),
                                    method: method.to_string(),
                                    path,
                                    message,
                                    attempts: attempt + 1,
                                });
                            }
                            let give_up = ForgeError::Server {
                                status: status.as_u16(),
                                method: method.to_string(),
                                path: path.clone(),
                                message: message.clone(),
                                attempts: attempt + 1,
                            };
                            (format!("{status}: {message}"), retry_after, give_up)
                        }
                        Err(e) if idempotent && attempt < retry.max_retries => (
                            describe(&e),
                            None,
                            self.transport(&method, &path, &e, attempt + 1),
                        ),
                        Err(e) => return Err(self.transport(&method, &path, &e, attempt + 1)),
                    }
                }
                Err(e)
                    if (e.is_connect() || (idempotent && (e.is_timeout() || e.is_request())))
                        && attempt < retry.max_retries =>
                {
                    (
                        describe(&e),
                        None,
                        self.transport(&method, &path, &e, attempt + 1),
                    )
                }
                Err(e) => return Err(self.transport(&method, &path, &e, attempt + 1)),
            };
            let delay = retry.wait(attempt, retry_after);
            // A retry that could not end within the budget is not begun.
            if self.left().is_some_and(|left| delay >= left) {
                return Err(give_up);
            }
            tracing::warn!(
                method = %method,
                path = %path,
                attempt = attempt + 1,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                reason = %self.scrub(what),
                "forge request failed; retrying"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    fn transport(
        &self,
        method: &Method,
        path: &str,
        e: &reqwest::Error,
        attempts: u32,
    ) -> ForgeError {
        let plural = if attempts == 1 { "" } else { "s" };
        ForgeError::Transport(self.scrub(format!(
            "{method} {path}: {} ({attempts} attempt{plural})",
            describe(e)
        )))
    }

    /// The answer as a [`ForgeError::Client`].
    pub fn client_error(&self, method: &Method, segs: &[&str], reply: &Reply) -> ForgeError {
        ForgeError::Client {
            status: reply.status.as_u16(),
            method: method.to_string(),
            path: display_path(segs),
            message: self.message_of(&reply.body),
        }
    }

    pub fn check_success(
        &self,
        method: &Method,
        segs: &[&str],
        reply: &Reply,
    ) -> Result<(), ForgeError> {
        if reply.status.is_success() {
            Ok(())
        } else {
            Err(self.client_error(method, segs, reply))
        }
    }

    pub fn decode_ok<T: DeserializeOwned>(
        &self,
        method: &Method,
        segs: &[&str],
        reply: Reply,
    ) -> Result<T, ForgeError> {
        self.check_success(method, segs, &reply)?;
        self.decode(method, segs, &reply)
    }

    pub fn decode<T: DeserializeOwned>(
        &self,
        method: &Method,
        segs: &[&str],
        reply: &Reply,
    ) -> Result<T, ForgeError> {
        serde_json::from_slice(&reply.body).map_err(|e| {
            ForgeError::Decode(self.scrub(format!(
                "{method} {} answered {}: {e}",
                display_path(segs),
                reply.status.as_u16()
            )))
        })
    }

    /// The forge's `message` (`APIError`), else the start of the body, token removed.
    pub fn message_of(&self, body: &[u8]) -> String {
        self.scrub(error_message(body))
    }

    pub fn scrub(&self, text: String) -> String {
        match &self.token {
            Some(token) if text.contains(token.as_str()) => {
                text.replace(token.as_str(), "<redacted>")
            }
            _ => text,
        }
    }
}

fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// `/a/b/c` for error messages (unencoded).
pub(crate) fn display_path(segs: &[&str]) -> String {
    let mut path = String::new();
    for seg in segs {
        path.push('/');
        path.push_str(seg);
    }
    path
}

/// A reqwest error and its causes, without the URL.
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The `message` of an `APIError`-shaped body (with `errors` if any), else the start
/// of the body as text.
pub(crate) fn error_message(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        let message = value
            .get("message")
            .and_then(|m| m.as_str())
            .unwrap_or_default()
            .trim()
            .to_string();
        let errors: Vec<&str> = value
            .get("errors")
            .and_then(|e| e.as_array())
            .map(|a| a.iter().filter_map(|e| e.as_str()).collect())
            .unwrap_or_default();
        let joined = match (message.is_empty(), errors.is_empty()) {
            (false, true) => message,
            (false, false) => format!("{message} ({})", errors.join("; ")),
            (true, false) => errors.join("; "),
            (true, true) => String::new(),
        };
        if !joined.is_empty() {
            return truncate(&joined);
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(empty answer)".to_string()
    } else {
        truncate(text)
    }
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_message_prefers_the_api_message() {
        assert_eq!(
            error_message(br#"{"message":"issue does not exist","url":"x"}"#),
            "issue does not exist"
        );
        assert_eq!(
            error_message(br#"{"message":"not found","errors":["a","b"]}"#),
            "not found (a; b)"
        );
        assert_eq!(
            error_message(b"<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
        assert_eq!(error_message(b""), "(empty answer)");
        let long = "x".repeat(1000);
        assert_eq!(
            error_message(long.as_bytes()).chars().count(),
            MAX_MESSAGE_CHARS + 1
        );
    }

    #[test]
    fn base_url_is_checked() {
        assert!(Transport::new("http://127.0.0.1:3000", None).is_ok());
        assert!(Transport::new("https://forge.example.org/sub/", None).is_ok());
        for bad in [
            "127.0.0.1:3000",
            "ftp://forge.example.org",
            "http://user:secret@forge.example.org",
            "http://forge.example.org/?a=b",
            "not a url",
        ] {
            let err = Transport::new(bad, None).unwrap_err();
            assert!(
                matches!(err, ForgeError::InvalidBaseUrl(_)),
                "{bad}: {err:?}"
            );
            assert!(!err.to_string().contains("secret"), "{err}");
        }
    }

    #[test]
    fn endpoints_live_under_api_v1_with_encoded_segments() {
        let t = Transport::new("https://forge.example.org/sub/", None).unwrap();
        assert_eq!(t.base_url(), "https://forge.example.org/sub");
        let url = t.endpoint(
            &["repos", "acme", "we ird", "statuses", "abc"],
            &[("page", "2".into())],
        );
        assert_eq!(
            url.as_str(),
            "https://forge.example.org/sub/api/v1/repos/acme/we%20ird/statuses/abc?page=2"
        );
        let t = Transport::new("http://127.0.0.1:3000", None).unwrap();
        assert_eq!(
            t.endpoint(&["repos", "a", "b"], &[]).as_str(),
            "http://127.0.0.1:3000/api/v1/repos/a/b"
        );
        // A slash inside one segment stays inside it.
        assert_eq!(
            t.endpoint(&["x", "a/b"], &[]).as_str(),
            "http://127.0.0.1:3000/api/v1/x/a%2Fb"
        );
    }

    #[test]
    fn token_is_never_printed() {
        let token = "s3cr3t-t0ken-value";
        let t = Transport::new("http://127.0.0.1:3000", Some(token.into())).unwrap();
        let debug = format!("{t:?}");
        assert!(!debug.contains(token), "{debug}");
        assert!(debug.contains("<redacted>"));
        assert_eq!(t.scrub(format!("echo {token}!")), "echo <redacted>!");
        assert!(matches!(
            Transport::new("http://h", Some("  ".into())),
            Err(ForgeError::InvalidArgument(_))
        ));
        let err = Transport::new("http://h", Some("bad\ntoken".into())).unwrap_err();
        assert!(!err.to_string().contains("bad\ntoken"));
    }
}
