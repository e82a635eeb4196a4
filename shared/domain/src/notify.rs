//! Notifications: the `[[notify]]` receivers, the events they may ask for,
//! and the address rules (SSRF) every receiver's URL must pass.
//!
//! Sending is `agentq-shared`'s (`notify::send`); the outbox that makes it
//! at least once is the store's (`store::outbox`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Deserialize;

/// An event a receiver may ask for (`events = [...]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    /// A job stopped with a question for a person.
    Blocked,
    /// A job failed.
    Failed,
    /// A job ran out of time.
    TimedOut,
    /// A job's PR was merged (the verify stage).
    Merged,
    /// A job's PR was left for a person (the verify stage's `needs_review`).
    NeedsReview,
    /// A job completed.
    Completed,
    /// A pool was paused (fast failures, or by hand).
    PoolPaused,
    /// A pool's pause was lifted by hand.
    PoolResumed,
    /// A pool was paused until its provider's usage limit resets.
    Quota,
    /// A pool's queue became empty with nothing running.
    QueueDrained,
    /// Every job of a batch (`enqueue --batch NAME`) is final (once per batch).
    BatchDone,
}

/// Every event, in the order the README lists them.
pub const ALL_EVENTS: &[NotifyEvent] = &[
    NotifyEvent::Blocked,
    NotifyEvent::Failed,
    NotifyEvent::TimedOut,
    NotifyEvent::Merged,
    NotifyEvent::NeedsReview,
    NotifyEvent::Completed,
    NotifyEvent::PoolPaused,
    NotifyEvent::PoolResumed,
    NotifyEvent::Quota,
    NotifyEvent::QueueDrained,
    NotifyEvent::BatchDone,
];

impl NotifyEvent {
    /// The event's name: a job state's name for job events (the stored
    /// state), the events stream's `event` field for pool events.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Blocked => "blocked",
            NotifyEvent::Failed => "failed",
            NotifyEvent::TimedOut => "timed_out",
            NotifyEvent::Merged => "merged",
            NotifyEvent::NeedsReview => "needs_review",
            NotifyEvent::Completed => "completed",
            NotifyEvent::PoolPaused => "pool_paused",
            NotifyEvent::PoolResumed => "pool_resumed",
            NotifyEvent::Quota => "quota",
            NotifyEvent::QueueDrained => "queue_drained",
            NotifyEvent::BatchDone => "batch_done",
        }
    }

    /// The event named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        ALL_EVENTS.iter().copied().find(|e| e.as_str() == name)
    }
}

/// The body a receiver gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyFormat {
    /// agentq's JSON payload (README: Notifications).
    #[default]
    Json,
    /// A Slack-compatible incoming webhook body, `{"text": ...}` (Mattermost
    /// and Discord's `/slack` endpoint take it too).
    Slack,
}

/// One `[[notify]]` receiver.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Where events are POSTed: `http://` or `https://`.
    pub url: String,
    /// The events this receiver gets; unknown names are refused at load.
    pub events: Vec<NotifyEvent>,
    /// Name of the environment variable holding the signing secret (never
    /// the secret itself). Unset: requests are not signed.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// `json` (default) or `slack`.
    #[serde(default)]
    pub format: NotifyFormat,
    /// Allow loopback, private-range and link-local targets (default false).
    #[serde(default)]
    pub allow_private: bool,
}

/// Why a receiver's address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressRefused {
    /// Not `http://` or `https://` (the scheme given; the rest of the URL,
    /// which may hold a token, is never repeated).
    #[error("not an http(s) URL (scheme `{0}`)")]
    Scheme(String),
    /// No host (or a bad port) in the URL.
    #[error("the URL names no host (or a bad port)")]
    NoHost,
    /// A loopback, private-range, link-local or otherwise non-public address.
    #[error(
        "{0} is a private, loopback or link-local address (set allow_private = true to allow it)"
    )]
    Private(IpAddr),
}

/// The scheme, host and port of an http(s) URL (the host without brackets).
///
/// # Errors
/// Another scheme, or no host.
pub fn url_host(url: &str) -> Result<(&str, &str, u16), AddressRefused> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| AddressRefused::Scheme(String::new()))?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err(AddressRefused::Scheme(crate::text::cut(scheme, 16))),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or(AddressRefused::NoHost)?;
        (h, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(AddressRefused::NoHost);
    }
    let port = match port {
        Some(p) => p.parse().map_err(|_| AddressRefused::NoHost)?,
        None => default_port,
    };
    Ok((scheme, host, port))
}

/// Whether `ip` is an address a receiver may not have unless
/// `allow_private`: loopback, private ranges (RFC 1918, IPv6 ULA),
/// link-local (cloud metadata lives there), unspecified, CGNAT shared space,
/// broadcast/multicast/documentation/reserved, and IPv4 in IPv6 forms of
/// those.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private_v4(v4);
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64 (maps IPv4)
                || v6 == Ipv6Addr::from([0, 0, 0, 0, 0, 0, 0, 1])
        }
    }
}

fn is_private_v4(v4: Ipv4Addr) -> bool {
    let o = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || o[0] == 0 // "this network"
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // CGNAT 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || o[0] >= 240 // reserved
}

/// Checks a URL where it can be checked without DNS: http(s), a host, and,
/// when the host is a literal IP address, a public one unless
/// `allow_private`. `localhost` counts as loopback. (Names are checked again
/// after DNS resolution at every send.)
///
/// # Errors
/// Why the URL is refused.
pub fn check_url(url: &str, allow_private: bool) -> Result<(), AddressRefused> {
    let (_, host, _) = url_host(url)?;
    if allow_private {
        return Ok(());
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        if is_private(ip) {
            return Err(AddressRefused::Private(ip));
        }
    }
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    if h == "localhost" || h.ends_with(".localhost") {
        return Err(AddressRefused::Private(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }
    Ok(())
}

/// Checks every `[[notify]]` entry at load.
///
/// # Errors
/// The first invalid entry, naming its key (`notify[i].url`, ...).
pub fn validate(entries: &[NotifyConfig]) -> Result<(), String> {
    for (i, n) in entries.iter().enumerate() {
        check_url(&n.url, n.allow_private).map_err(|e| format!("notify[{i}].url: {e}"))?;
        if n.events.is_empty() {
            return Err(format!("notify[{i}].events: name at least one event"));
        }
        if let Some(name) = &n.secret_env {
            let ok =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(format!(
                    "notify[{i}].secret_env: `{name}` is not an environment variable name"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> bool {
        check_url(url, false).is_err()
    }

    #[test]
    fn private_loopback_and_link_local_literals_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]:9000/",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://0.0.0.0/",
            "http://100.64.0.1/",
            "http://localhost:3000/",
            "https://user:pw@127.0.0.1/",
        ] {
            assert!(refused(url), "{url} was accepted");
            assert!(
                check_url(url, true).is_ok(),
                "{url} refused with allow_private"
            );
        }
        for url in [
            "https://hooks.slack.com/services/T/B/X",
            "http://93.184.216.34/",
            "https://[2606:4700::1111]/",
            "https://chat.example:8443/hooks/abc",
        ] {
            assert!(!refused(url), "{url} was refused");
        }
    }

    #[test]
    fn only_http_and_https_urls_with_a_host_are_taken() {
        for url in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "example.com",
            "http:///x",
        ] {
            assert!(check_url(url, true).is_err(), "{url}");
        }
        assert_eq!(
            url_host("https://h.example/x").unwrap(),
            ("https", "h.example", 443)
        );
        assert_eq!(url_host("http://[::1]:81/").unwrap(), ("http", "::1", 81));
    }

    #[test]
    fn unknown_event_names_are_refused_at_parse_naming_the_key() {
        let err = toml::from_str::<NotifyConfig>(
            "url = \"https://x.example\"\nevents = [\"blocked\", \"exploded\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("exploded") && err.contains("events"), "{err}");
        for e in ALL_EVENTS {
            assert_eq!(NotifyEvent::parse(e.as_str()), Some(*e));
        }
    }

    #[test]
    fn validate_names_the_entry_and_key() {
        let bad = NotifyConfig {
            url: "http://10.0.0.1/".into(),
            events: vec![NotifyEvent::Blocked],
            secret_env: None,
            format: NotifyFormat::Json,
            allow_private: false,
        };
        let err = validate(std::slice::from_ref(&bad)).unwrap_err();
        assert!(err.starts_with("notify[0].url"), "{err}");
        let secret = NotifyConfig {
            allow_private: true,
            secret_env: Some("A B".into()),
            ..bad
        };
        assert!(validate(&[secret])
            .unwrap_err()
            .starts_with("notify[0].secret_env"));
    }
}
