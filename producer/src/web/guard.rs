//! What every request passes: the Host check (against DNS rebinding) and the
//! security headers every answer carries.

use std::net::SocketAddr;

use axum::{
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};

use super::{error::ApiError, state::AppState, views};

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
pub async fn guard(
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
        resp = (status, views::message_page(status, &msg)).into_response();
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

#[cfg(test)]
mod tests {
    use super::*;

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
