//! The notification outbox: events handed over by the scripts that record
//! them, sent by whichever worker holds the notify lease.
//!
//! # Why a hand-off in the scripts, not a consumer group on the stream
//! The events stream is trimmed (`MAXLEN ~`) by every script that adds to
//! it, and Redis 7 trims entries a consumer group has not read as well: a
//! fleet with no notifier running (or a slow one) would lose events. So
//! each script that records a notifiable event (`move`, `pool_outcome`,
//! `quota_pause`, `pool_event`) also writes one outbox item per receiver
//! that asked for it, in the same call (`lua/notify_hand.lua`): an event is
//! in the outbox exactly when it is recorded, whoever runs. Which receivers
//! want which event is `{ns}:notify:routes`, written by every worker at start
//! from `[[notify]]` (receivers by [`receiver_id`], never by URL: a webhook
//! URL may hold a token).
//!
//! # Keys
//! - `{ns}:notify:routes` hash: event name → receiver ids (space separated),
//!   and `#max`, the outbox's bound.
//! - `{ns}:notify:items` hash: item id (`{stream id}/{receiver}`) → JSON.
//! - `{ns}:notify:due` zset: item → when to try it next (ms).
//! - `{ns}:notify:age` zset: item → when it was handed over (ms), for the bound.
//! - `{ns}:notify:sent`, `{ns}:notify:dead` lists: the last 200 sent, the
//!   last 1000 dead letters; `sent_total`, `dead_total`, `overflowed`
//!   counters.
//! - `{ns}:notify:lease`: the sender's lease (worker id, TTL, renewed).

use std::{sync::LazyLock, time::Duration};

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::{
    notify::NotifyConfig,
    store::{lua, now_rfc3339, JobStore, StoreError, EVENTS_MAX_LEN},
};

static LEASE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| lua::script("notify_lease"));
static SETTLE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| lua::script("notify_settle"));
static POOL_EVENT_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| lua::script("pool_event"));

/// How many sent items and dead letters are kept for `agentq notify list`.
pub const SENT_KEEP: usize = 200;
/// See [`SENT_KEEP`].
pub const DEAD_KEEP: usize = 1000;
/// Most jobs of one state [`JobStore::pools_with_work`] reads.
pub const WORK_SCAN: usize = 2000;

/// A receiver's id in Redis: the first 16 hex digits of SHA-256 of its URL
/// (the URL itself may hold a token, and stays out of Redis).
pub fn receiver_id(url: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(url.as_bytes());
    hex::encode(&d[..8])
}

/// One notification: an event for one receiver, as the outbox holds it.
/// Every field but `id`, `event`, `receiver` may be empty (pool events have
/// no job).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Notification {
    /// The event's id, unique in the namespace; every receiver of the same
    /// event gets the same id (receivers drop duplicates by it).
    pub id: String,
    /// The event's name ([`crate::notify::NotifyEvent`]).
    pub event: String,
    /// The receiver's id ([`receiver_id`]).
    pub receiver: String,
    /// When it was handed over (Redis's clock, ms).
    pub created_ms: i64,
    /// Sends tried.
    pub tries: u32,
    /// The job (job events).
    pub job: String,
    /// The job's new state.
    pub state: String,
    /// Its state before.
    pub from: String,
    /// When (RFC 3339).
    pub at: String,
    /// The pool.
    pub pool: String,
    /// The agent (`claude:opus`).
    pub agent: String,
    /// The repository's organisation and name.
    pub org: String,
    /// See `org`.
    pub repo: String,
    /// The issue number (0: none).
    #[serde(deserialize_with = "num_or_str")]
    pub issue: String,
    /// The PR number the job was for (0: none).
    #[serde(deserialize_with = "num_or_str")]
    pub pr: String,
    /// The PR the job opened.
    pub pr_url: String,
    /// The host that ran it.
    pub host: String,
    /// The agent's question (blocked).
    pub question: String,
    /// Why (wait reason, verify's reason).
    pub reason: String,
    /// The error (failed, timed out).
    pub error: String,
    /// The attempt.
    #[serde(deserialize_with = "num_or_str")]
    pub attempt: String,
    /// The agent's exit code.
    #[serde(deserialize_with = "num_or_str")]
    pub exit_code: String,
    /// The branch.
    pub branch: String,
    /// Until when (pool pauses).
    #[serde(rename = "until")]
    pub until: String,
    /// The agent's output line that said so (quota).
    pub line: String,
    /// The last send's error or answer.
    pub last_error: String,
    /// The last send's HTTP status.
    pub last_status: String,
    /// When it was sent (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_ms: Option<i64>,
    /// Why it was dead-lettered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_reason: Option<String>,
    /// When it was dead-lettered (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_ms: Option<i64>,
    /// The batch (`batch_done`).
    pub batch: String,
    /// The batch's jobs (`batch_done`).
    #[serde(deserialize_with = "num_or_str")]
    pub jobs: String,
    /// Of those, completed or merged (`batch_done`).
    #[serde(deserialize_with = "num_or_str")]
    pub completed: String,
    /// Of those, ended otherwise (`batch_done`).
    #[serde(deserialize_with = "num_or_str")]
    pub failed: String,
}

/// Lua's cjson writes numbers as numbers, empty tables as `{}`: both read as
/// text here.
fn num_or_str<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s,
        serde_json::Value::Number(n) => n.to_string(),
        _ => String::new(),
    })
}

/// What one send gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// The receiver took it (2xx).
    Sent,
    /// Try again at this time (Redis ms).
    Retry(i64),
    /// Give up: dead-lettered.
    Dead,
}

/// The outbox's numbers and items, for `agentq notify list` and the console.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OutboxView {
    /// Items waiting to be sent (or retried), soonest first.
    pub pending: Vec<Notification>,
    /// The last sent items, newest first.
    pub sent: Vec<Notification>,
    /// The last dead letters, newest first.
    pub dead: Vec<Notification>,
    /// Items sent since the namespace began.
    pub sent_total: u64,
    /// Items dead-lettered (retries used up or the outbox full).
    pub dead_total: u64,
    /// Of those, items dead-lettered because the outbox was full.
    pub overflowed: u64,
}

impl JobStore {
    fn notify_key(&self, what: &str) -> String {
        self.keys().notify(what)
    }

    /// Writes which receivers get which event (`[[notify]]`) and the outbox's
    /// bound, replacing what was there: from then on every recorded event a
    /// receiver asked for is handed to the outbox. No entries: nothing is.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn publish_notify_routes(
        &self,
        entries: &[NotifyConfig],
        max: u64,
    ) -> Result<(), StoreError> {
        let mut routes: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        for n in entries {
            let rid = receiver_id(&n.url);
            for e in &n.events {
                let list = routes.entry(e.as_str()).or_default();
                if !list.contains(&rid) {
                    list.push(rid.clone());
                }
            }
        }
        let key = self.notify_key("routes");
        let mut pipe = redis::pipe();
        pipe.atomic().del(&key).ignore();
        if !routes.is_empty() {
            pipe.hset(&key, "#max", max.max(1)).ignore();
            for (event, rids) in &routes {
                pipe.hset(&key, *event, rids.join(" ")).ignore();
            }
        }
        let _: () = pipe.query_async(&mut self.conn()).await?;
        Ok(())
    }

    /// Takes or renews the notify lease for `worker`; whether it holds it.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn notify_lease(&self, worker: &str, ttl: Duration) -> Result<bool, StoreError> {
        let n: i64 = LEASE_SCRIPT
            .key(self.notify_key("lease"))
            .arg(worker)
            .arg(ttl.as_millis().max(1) as u64)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(n == 1)
    }

    /// Up to `n` items due by Redis's clock now, with their ids, soonest first.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn due_notifications(
        &self,
        n: usize,
    ) -> Result<Vec<(String, Notification)>, StoreError> {
        let now = self.redis_now_ms().await?;
        let ids: Vec<String> = self
            .conn()
            .zrangebyscore_limit(self.notify_key("due"), "-inf", now, 0, n as isize)
            .await?;
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let raws: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.notify_key("items"))
            .arg(&ids)
            .query_async(&mut self.conn())
            .await?;
        Ok(ids
            .into_iter()
            .zip(raws)
            .filter_map(|(id, raw)| Some((id, parse(&raw?))))
            .collect())
    }

    /// Records what sending item `item` gave, if `worker` still holds the
    /// notify lease; returns whether it did. `note` is the error or the
    /// receiver's answer (cut to 512 bytes).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn settle_notification(
        &self,
        worker: &str,
        item: &str,
        outcome: &Settle,
        note: &str,
        status: Option<u16>,
    ) -> Result<bool, StoreError> {
        let (what, next) = match outcome {
            Settle::Sent => ("sent", 0),
            Settle::Retry(at) => ("retry", *at),
            Settle::Dead => ("dead", 0),
        };
        let n: i64 = SETTLE_SCRIPT
            .key(self.notify_key("lease"))
            .arg(self.keys().namespace())
            .arg(worker)
            .arg(item)
            .arg(what)
            .arg(next)
            .arg(crate::text::cut(note, 512))
            .arg(status.map(|s| s.to_string()).unwrap_or_default())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(n == 1)
    }

    /// Adds pool event `event` (`pool_paused`, `pool_resumed`,
    /// `queue_drained`) to the events stream with `fields`, and hands it to
    /// the outbox in the same call.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn pool_event(
        &self,
        event: &str,
        pool: &str,
        fields: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        let mut inv = POOL_EVENT_SCRIPT.key(self.keys().events());
        inv.arg(EVENTS_MAX_LEN)
            .arg(event)
            .arg(pool)
            .arg(now_rfc3339());
        for (k, v) in fields {
            inv.arg(*k).arg(*v);
        }
        let _: String = inv.invoke_async(&mut self.conn()).await?;
        Ok(())
    }

    /// The pools that have work now: a job queued, waiting or running (not
    /// blocked, not final). `None` when that cannot be told: jobs enqueued and
    /// not opened yet (their pool is not indexed), or more than
    /// [`WORK_SCAN`] jobs in one state.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn pools_with_work(
        &self,
    ) -> Result<Option<std::collections::HashSet<String>>, StoreError> {
        use crate::status::{JobState, ACTIVE_STATES};
        let mut conn = self.conn();
        let fresh: u64 = conn.hlen(self.keys().fresh()).await?;
        if fresh > 0 {
            return Ok(None);
        }
        let mut ids = Vec::new();
        for st in [JobState::Queued, JobState::Waiting]
            .iter()
            .chain(ACTIVE_STATES)
        {
            let some: Vec<String> = conn
                .zrange(self.keys().state(st.as_str()), 0, WORK_SCAN as isize)
                .await?;
            if some.len() > WORK_SCAN {
                return Ok(None);
            }
            ids.extend(some);
        }
        if ids.is_empty() {
            return Ok(Some(Default::default()));
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hget(self.keys().job(id), "pool");
        }
        let pools: Vec<Option<String>> = pipe.query_async(&mut conn).await?;
        Ok(Some(pools.into_iter().flatten().collect()))
    }

    /// The outbox: up to `n` pending items, the last sent and dead ones, and
    /// the counters.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn outbox(&self, n: usize) -> Result<OutboxView, StoreError> {
        let mut conn = self.conn();
        let ids: Vec<String> = conn
            .zrange(self.notify_key("due"), 0, n as isize - 1)
            .await?;
        let mut pending = Vec::new();
        for id in &ids {
            let raw: Option<String> = conn.hget(self.notify_key("items"), id).await?;
            if let Some(raw) = raw {
                pending.push(parse(&raw));
            }
        }
        let list = |raws: Vec<String>| raws.iter().map(|r| parse(r)).collect::<Vec<_>>();
        let sent: Vec<String> = conn
            .lrange(self.notify_key("sent"), 0, n as isize - 1)
            .await?;
        let dead: Vec<String> = conn
            .lrange(self.notify_key("dead"), 0, n as isize - 1)
            .await?;
        let count = |v: Option<u64>| v.unwrap_or(0);
        let (sent_total, dead_total, overflowed): (Option<u64>, Option<u64>, Option<u64>) =
            redis::pipe()
                .get(self.notify_key("sent_total"))
                .get(self.notify_key("dead_total"))
                .get(self.notify_key("overflowed"))
                .query_async(&mut conn)
                .await?;
        Ok(OutboxView {
            pending,
            sent: list(sent),
            dead: list(dead),
            sent_total: count(sent_total),
            dead_total: count(dead_total),
            overflowed: count(overflowed),
        })
    }
}

/// An item's JSON; one that does not parse is shown with its text as the
/// error, never dropped.
fn parse(raw: &str) -> Notification {
    serde_json::from_str(raw).unwrap_or_else(|e| Notification {
        last_error: format!(
            "unreadable outbox item ({e}): {}",
            crate::text::cut(raw, 200)
        ),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_ids_are_short_stable_and_hide_the_url() {
        let a = receiver_id("https://hooks.slack.com/services/T/B/secret");
        assert_eq!(a.len(), 16);
        assert_eq!(
            a,
            receiver_id("https://hooks.slack.com/services/T/B/secret")
        );
        assert_ne!(a, receiver_id("https://hooks.slack.com/services/T/B/other"));
        assert!(!a.contains("secret"));
    }

    #[test]
    fn items_written_by_lua_parse_with_numbers_and_empty_tables() {
        let n = parse(
            r#"{"id":"ns:1-0","event":"blocked","issue":7,"attempt":"1","pr":{},"question":"why?"}"#,
        );
        assert_eq!(
            (n.issue.as_str(), n.attempt.as_str(), n.pr.as_str()),
            ("7", "1", "")
        );
        assert_eq!(n.question, "why?");
        assert!(parse("not json")
            .last_error
            .starts_with("unreadable outbox item"));
    }
}
