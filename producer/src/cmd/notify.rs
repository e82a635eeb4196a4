//! `agentq notify list [--failed] [--json]`: the notification outbox (what
//! waits, what was sent, what was dead-lettered); `agentq notify test URL`:
//! one signed test event sent now, and the receiver's answer.

use std::time::Duration;

use agentq_shared::{
    config::Config,
    notify::{NotifyConfig, NotifyEvent, NotifyFormat},
    store::outbox::{receiver_id, Notification},
    webhook::{receiver_of, send::deliver},
};
use serde_json::json;

use crate::{output, Failure};

/// Notifications: the outbox, and a test send.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: NotifyCommand,
}

/// Notify subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum NotifyCommand {
    /// The outbox: notifications waiting or retried, the last sent, and the
    /// dead-lettered ones with why.
    List {
        /// Only the dead-lettered (failed) notifications.
        #[arg(long)]
        failed: bool,
        /// Most of each kind shown.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send one test event (`event: "test"`) to URL now, signed as the
    /// `[[notify]]` entry with that URL says (or as the flags say), and print
    /// the receiver's answer. Exit 0 on a 2xx answer, 1 otherwise.
    Test {
        /// The receiver's URL.
        url: String,
        /// Sign with the secret in this environment variable (default: the
        /// matching entry's `secret_env`).
        #[arg(long)]
        secret_env: Option<String>,
        /// Send Slack-compatible text instead of agentq's JSON.
        #[arg(long)]
        slack: bool,
        /// Allow a loopback, private-range or link-local URL.
        #[arg(long)]
        allow_private: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the command.
pub async fn run(cfg: &Config, args: Args) -> Result<u8, Failure> {
    match args.command {
        NotifyCommand::List {
            failed,
            limit,
            json,
        } => list(cfg, failed, limit.max(1), json).await,
        NotifyCommand::Test {
            url,
            secret_env,
            slack,
            allow_private,
            json,
        } => {
            let configured = cfg.notify.iter().find(|n| n.url == url);
            let to = NotifyConfig {
                url: url.clone(),
                events: vec![NotifyEvent::Blocked],
                secret_env: secret_env.or_else(|| configured.and_then(|c| c.secret_env.clone())),
                format: if slack {
                    NotifyFormat::Slack
                } else {
                    configured.map_or(NotifyFormat::Json, |c| c.format)
                },
                allow_private: allow_private || configured.is_some_and(|c| c.allow_private),
            };
            agentq_shared::notify::check_url(&to.url, to.allow_private)
                .map_err(|e| Failure::refused(e.to_string()))?;
            let n = Notification {
                id: format!("{}:test-{}", cfg.namespace, ulid::Ulid::new()),
                event: "test".into(),
                receiver: receiver_id(&url),
                at: agentq_shared::store::now_rfc3339(),
                question: "This is a test event from `agentq notify test`.".into(),
                ..Default::default()
            };
            let timeout = Duration::from_secs(cfg.notify_timeout_secs.max(1));
            let answer = deliver(&n, &to, &cfg.web_url, timeout)
                .await
                .map_err(|e| Failure::refused(format!("not sent: {e}")))?;
            if json {
                output::print_json(&json!({
                    "id": n.id, "status": answer.status, "body": answer.body,
                    "signed": to.secret_env.is_some(),
                }));
            } else {
                outln!(
                    "HTTP {} (event {}{})",
                    answer.status,
                    n.id,
                    if to.secret_env.is_some() {
                        ", signed"
                    } else {
                        ", not signed"
                    }
                );
                if !answer.body.is_empty() {
                    outln!("{}", output::brief(&answer.body));
                }
            }
            Ok(if answer.ok() { 0 } else { 1 })
        }
    }
}

async fn list(cfg: &Config, failed: bool, limit: usize, json: bool) -> Result<u8, Failure> {
    let store = crate::connect(cfg).await?;
    let mut view = store.outbox(limit).await?;
    if failed {
        view.pending.clear();
        view.sent.clear();
    }
    if json {
        output::print_json(&view);
        return Ok(0);
    }
    let host_of = |rid: &str| receiver_of(&cfg.notify, rid);
    let line = |n: &Notification, extra: &str| {
        let job = if n.job.is_empty() { &n.pool } else { &n.job };
        outln!(
            "  {:<26} {:<13} {:<28} {:<24} tries {}{}",
            n.id,
            n.event,
            job,
            host_of(&n.receiver),
            n.tries,
            extra
        );
    };
    if !failed {
        outln!("pending ({}):", view.pending.len());
        for n in &view.pending {
            let why = if n.last_error.is_empty() {
                String::new()
            } else {
                format!("  last: {}", output::brief(&n.last_error))
            };
            line(n, &why);
        }
        outln!(
            "sent (last {}, {} in all):",
            view.sent.len(),
            view.sent_total
        );
        for n in &view.sent {
            line(n, "");
        }
    }
    outln!(
        "failed (last {}, {} in all, {} for a full outbox):",
        view.dead.len(),
        view.dead_total,
        view.overflowed
    );
    for n in &view.dead {
        let why = n.dead_reason.clone().unwrap_or_default();
        line(n, &format!("  {}", output::brief(&why)));
    }
    Ok(0)
}
