//! Notification requests: the body a receiver gets ([`body`]: agentq's JSON
//! or Slack-compatible text), its signature ([`sign`]), and behind the
//! `webhook` feature the send itself ([`send`]: SSRF checks after DNS,
//! bounded time and answer).

#[cfg(feature = "webhook")]
pub mod send;

use hmac::{Hmac, Mac};
use serde_json::json;

use crate::{notify::NotifyFormat, store::outbox::Notification};

/// The header with the body's signature: `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Agentq-Signature";
/// The header with the send's Unix time (seconds), part of the signed text.
pub const TIMESTAMP_HEADER: &str = "X-Agentq-Timestamp";
/// The header with the event's id (the same for every retry of it).
pub const EVENT_ID_HEADER: &str = "X-Agentq-Event-Id";
/// The header with the event's name.
pub const EVENT_HEADER: &str = "X-Agentq-Event";

/// The signature header's value for `body` sent at `timestamp` (Unix
/// seconds): `sha256=` and the hex of HMAC-SHA256(secret, "{timestamp}.{body}").
/// The timestamp is signed with the body, so a receiver that refuses old
/// timestamps refuses replays.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The console's page of job `job` under `web_url`, if both are set.
pub fn console_link(web_url: &str, job: &str) -> Option<String> {
    (!web_url.is_empty() && !job.is_empty())
        .then(|| format!("{}/jobs/{job}", web_url.trim_end_matches('/')))
}

/// The request body for `n` in `format`.
pub fn body(n: &Notification, format: NotifyFormat, web_url: &str) -> Vec<u8> {
    let v = match format {
        NotifyFormat::Json => payload(n, web_url),
        NotifyFormat::Slack => json!({ "text": slack_text(n, web_url) }),
    };
    serde_json::to_vec(&v).expect("JSON")
}

/// agentq's JSON payload (README: Notifications).
pub fn payload(n: &Notification, web_url: &str) -> serde_json::Value {
    let num = |s: &str| s.parse::<i64>().unwrap_or(0);
    if !n.batch.is_empty() {
        // A batch's end (batch_done): no job.
        return json!({
            "id": n.id,
            "event": n.event,
            "at": n.at,
            "batch": n.batch,
            "jobs": num(&n.jobs),
            "completed": num(&n.completed),
            "failed": num(&n.failed),
        });
    }
    json!({
        "id": n.id,
        "event": n.event,
        "at": n.at,
        "job": n.job,
        "state": n.state,
        "from": n.from,
        "agent": n.agent,
        "pool": n.pool,
        "org": n.org,
        "repo": n.repo,
        "issue": num(&n.issue),
        "pr": num(&n.pr),
        "pr_url": n.pr_url,
        "host": n.host,
        "question": n.question,
        "reason": n.reason,
        "error": n.error,
        "attempt": num(&n.attempt),
        "until": n.until,
        "line": n.line,
        "console_url": console_link(web_url, &n.job),
    })
}

/// One line of text for chat: what happened, to which job, and the link.
pub fn slack_text(n: &Notification, web_url: &str) -> String {
    let mut t = if !n.batch.is_empty() {
        format!(
            "agentq: batch `{}` done: {} of {} completed",
            n.batch, n.completed, n.jobs
        )
    } else if n.job.is_empty() {
        format!("agentq: pool `{}` {}", n.pool, n.event.replace('_', " "))
    } else {
        let repo = if n.repo.is_empty() {
            String::new()
        } else {
            format!(" on {}/{}", n.org, n.repo)
        };
        let issue = match n.issue.as_str() {
            "" | "0" => String::new(),
            i => format!("#{i}"),
        };
        format!(
            "agentq: job `{}` ({}){repo}{issue} {}",
            n.job,
            n.agent,
            n.event.replace('_', " ")
        )
    };
    for (label, v) in [
        ("question", &n.question),
        ("error", &n.error),
        ("reason", &n.reason),
        ("until", &n.until),
        ("PR", &n.pr_url),
    ] {
        if !v.is_empty() {
            t.push_str(&format!("\n{label}: {}", crate::text::cut(v, 1000)));
        }
    }
    if let Some(link) = console_link(web_url, &n.job) {
        t.push_str(&format!("\n<{link}|open in the console>"));
    }
    t
}

/// The `[[notify]]` receiver with id `rid` as people see it
/// ([`receiver_shown`]), or its id when no entry has it.
pub fn receiver_of(entries: &[crate::notify::NotifyConfig], rid: &str) -> String {
    entries
        .iter()
        .find(|n| crate::store::outbox::receiver_id(&n.url) == rid)
        .map(|n| receiver_shown(&n.url))
        .unwrap_or_else(|| format!("receiver {rid}"))
}

/// A receiver's URL as shown: scheme, host and port, never its path or query
/// (a webhook URL's path may be its token).
pub fn receiver_shown(url: &str) -> String {
    match crate::notify::url_host(url) {
        Ok((scheme, host, port)) => format!("{scheme}://{host}:{port}"),
        Err(_) => "(invalid url)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_timestamp_and_body() {
        // Reference: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac s3cret
        assert_eq!(
            sign(b"s3cret", 1_700_000_000, br#"{"a":1}"#),
            "sha256=1698a50bc74d1ff1db85c4e0a5297c2ad9fdba245d5737cdb789e4cc6e098940"
        );
        let a = sign(b"k", 1, b"body");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64);
        assert_ne!(a, sign(b"k", 2, b"body"), "the timestamp is signed");
        assert_ne!(a, sign(b"k", 1, b"bodx"), "the body is signed");
        assert_ne!(a, sign(b"j", 1, b"body"), "the secret is used");
    }

    #[test]
    fn payload_carries_the_job_and_a_console_link() {
        let n = Notification {
            id: "agentq:1-0".into(),
            event: "blocked".into(),
            job: "01J".into(),
            question: "Which DB?".into(),
            issue: "7".into(),
            ..Default::default()
        };
        let v = payload(&n, "https://q.example/");
        assert_eq!(v["console_url"], "https://q.example/jobs/01J");
        assert_eq!(v["issue"], 7);
        assert_eq!(v["question"], "Which DB?");
        assert!(payload(&n, "")["console_url"].is_null());
        let slack: serde_json::Value =
            serde_json::from_slice(&body(&n, NotifyFormat::Slack, "")).unwrap();
        let text = slack["text"].as_str().unwrap();
        assert!(text.contains("01J") && text.contains("Which DB?"), "{text}");
    }
}
