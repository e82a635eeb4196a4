//! Sending one notification: the URL checked again after DNS resolution
//! (SSRF: a public name may resolve to a private address), the connection
//! pinned to the addresses checked (no second lookup to rebind), no
//! redirects, a time limit on the whole request, and at most
//! [`ANSWER_MAX`] bytes of the answer read.

use std::{net::SocketAddr, time::Duration};

use crate::{
    notify::{check_url, is_private, url_host, AddressRefused, NotifyConfig},
    store::outbox::Notification,
};

/// Most bytes of a receiver's answer read (the rest is not read).
pub const ANSWER_MAX: usize = 2048;

/// What a receiver answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The start of the body (at most [`ANSWER_MAX`] bytes, lossy UTF-8).
    pub body: String,
}

impl Answer {
    /// Whether the receiver took the event (2xx).
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why a send did not reach a receiver's answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The address is refused (scheme, private target).
    #[error("refused: {0}")]
    Refused(#[from] AddressRefused),
    /// The name did not resolve.
    #[error("DNS: {0}")]
    Dns(String),
    /// The signing secret's variable is not set.
    #[error("secret_env {0} is not set")]
    NoSecret(String),
    /// Connect, send or read failed, or the time ran out.
    #[error("request: {0}")]
    Http(String),
}

/// The addresses `url`'s host resolves to, each checked unless
/// `allow_private`.
///
/// # Errors
/// A refused address or scheme, or DNS failure.
pub async fn resolve(url: &str, allow_private: bool) -> Result<Vec<SocketAddr>, SendError> {
    resolve_with(url, allow_private, |host, port| async move {
        tokio::net::lookup_host((host.as_str(), port))
            .await
            .map(|a| a.collect())
    })
    .await
}

/// [`resolve`] with `lookup` for DNS (a seam for tests).
async fn resolve_with<F, Fut>(
    url: &str,
    allow_private: bool,
    lookup: F,
) -> Result<Vec<SocketAddr>, SendError>
where
    F: FnOnce(String, u16) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<Vec<SocketAddr>>>,
{
    check_url(url, allow_private)?;
    let (_, host, port) = url_host(url)?;
    let addrs: Vec<SocketAddr> = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => lookup(host.to_string(), port)
            .await
            .map_err(|e| SendError::Dns(format!("{host}: {e}")))?,
    };
    if addrs.is_empty() {
        return Err(SendError::Dns(format!("{host}: no address")));
    }
    if !allow_private {
        refuse_private(&addrs)?;
    }
    Ok(addrs)
}

/// Refuses resolved addresses of which any is private, loopback or
/// link-local (a name with one such address could be steered to it).
///
/// # Errors
/// The first such address.
pub fn refuse_private(addrs: &[SocketAddr]) -> Result<(), AddressRefused> {
    match addrs.iter().find(|a| is_private(a.ip())) {
        Some(bad) => Err(AddressRefused::Private(bad.ip())),
        None => Ok(()),
    }
}

/// Sends `n` to receiver `to`: its body in `to.format`, signed when
/// `to.secret_env` is set (the secret read from the environment now),
/// within `timeout`.
///
/// # Errors
/// See [`SendError`]; an answer that is not 2xx is an `Ok` [`Answer`].
pub async fn deliver(
    n: &Notification,
    to: &NotifyConfig,
    web_url: &str,
    timeout: Duration,
) -> Result<Answer, SendError> {
    let body = super::body(n, to.format, web_url);
    let mut headers = vec![
        (super::EVENT_HEADER, n.event.clone()),
        (super::EVENT_ID_HEADER, n.id.clone()),
    ];
    if let Some(var) = &to.secret_env {
        let secret = std::env::var(var).map_err(|_| SendError::NoSecret(var.clone()))?;
        let ts = chrono::Utc::now().timestamp();
        headers.push((super::TIMESTAMP_HEADER, ts.to_string()));
        headers.push((
            super::SIGNATURE_HEADER,
            super::sign(secret.as_bytes(), ts, &body),
        ));
    }
    post(&to.url, to.allow_private, timeout, &headers, body).await
}

/// POSTs `body` (JSON) to `url` with `headers`, within `timeout` (DNS
/// included), after the address checks.
///
/// # Errors
/// See [`SendError`].
pub async fn post(
    url: &str,
    allow_private: bool,
    timeout: Duration,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<Answer, SendError> {
    tokio::time::timeout(timeout, async {
        let addrs = resolve(url, allow_private).await?;
        let (_, host, _) = url_host(url)?;
        let mut client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("agentq/", env!("CARGO_PKG_VERSION")));
        if host.parse::<std::net::IpAddr>().is_err() {
            client = client.resolve_to_addrs(host, &addrs);
        }
        let client = client.build().map_err(|e| SendError::Http(e.to_string()))?;
        let mut req = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let mut resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| SendError::Http(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        let mut got = Vec::new();
        while got.len() < ANSWER_MAX {
            match resp.chunk().await {
                Ok(Some(c)) => got.extend_from_slice(&c),
                Ok(None) => break,
                // The status is the answer; a body cut short is still one.
                Err(_) => break,
            }
        }
        got.truncate(ANSWER_MAX);
        Ok(Answer {
            status,
            body: String::from_utf8_lossy(&got).into_owned(),
        })
    })
    .await
    .unwrap_or_else(|_| Err(SendError::Http(format!("no answer within {timeout:?}"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolved_private_addresses_are_refused() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(refuse_private(&[a("93.184.216.34:443")]).is_ok());
        for bad in [
            "127.0.0.1:80",
            "10.0.0.5:80",
            "169.254.169.254:80",
            "[::1]:80",
            "[fd12::1]:80",
        ] {
            // One bad address among good ones is enough to refuse.
            let err = refuse_private(&[a("93.184.216.34:443"), a(bad)]).unwrap_err();
            assert_eq!(err, AddressRefused::Private(a(bad).ip()));
        }
    }

    #[tokio::test]
    async fn a_public_name_that_resolves_to_a_private_address_is_refused_after_dns() {
        let to = |ip: &'static str| {
            move |_h: String, port: u16| async move {
                Ok(vec![SocketAddr::new(ip.parse().unwrap(), port)])
            }
        };
        let url = "https://hooks.example/x";
        let err = resolve_with(url, false, to("169.254.169.254"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, SendError::Refused(AddressRefused::Private(_))),
            "{err}"
        );
        let err = resolve_with(url, false, to("10.0.0.7")).await.unwrap_err();
        assert!(
            matches!(err, SendError::Refused(AddressRefused::Private(_))),
            "{err}"
        );
        assert!(resolve_with(url, true, to("10.0.0.7")).await.is_ok());
        let ok = resolve_with(url, false, to("93.184.216.34")).await.unwrap();
        assert_eq!(ok, vec!["93.184.216.34:443".parse().unwrap()]);
    }

    #[tokio::test]
    async fn a_loopback_target_is_refused_at_send_unless_allowed() {
        let err = resolve("http://127.0.0.1:9/", false).await.unwrap_err();
        assert!(
            matches!(err, SendError::Refused(AddressRefused::Private(_))),
            "{err}"
        );
        assert!(!resolve("http://127.0.0.1:9/", true)
            .await
            .unwrap()
            .is_empty());
        let err = post(
            "http://localhost:9/",
            false,
            Duration::from_secs(5),
            &[],
            vec![],
        )
        .await
        .unwrap_err();
        assert!(matches!(err, SendError::Refused(_)), "{err}");
    }
}
