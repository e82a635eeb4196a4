//! What happened: a job's state history and the events stream.

use std::{collections::HashMap, time::Duration};

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::store::{JobStore, StoreError};

/// One entry of a job's state history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// New state.
    pub state: String,
    /// Previous state.
    #[serde(default)]
    pub from: String,
    /// When (RFC 3339).
    pub at: String,
    /// Attempt at the time.
    #[serde(default)]
    pub attempt: u32,
    /// Host of the worker.
    #[serde(default)]
    pub host: String,
    /// Worker id.
    #[serde(default)]
    pub worker: String,
    /// Waiting reason.
    #[serde(default)]
    pub reason: String,
    /// Error text, for waiting/failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Question, for failed/blocked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
}

/// One event from the events stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Stream entry id.
    pub id: String,
    /// The entry's fields (`job`, `state`, `from`, `attempt`, `host`, `at`, or
    /// `event`, `pool`, … for pool events).
    pub fields: HashMap<String, String>,
}

impl From<redis::streams::StreamId> for Event {
    fn from(e: redis::streams::StreamId) -> Self {
        let fields = e
            .map
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    redis::from_redis_value::<String>(v.clone()).unwrap_or_default(),
                )
            })
            .collect();
        Self { id: e.id, fields }
    }
}

impl JobStore {
    /// A job's state history, oldest first.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn history(&self, id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let raw: Vec<String> = self.conn().lrange(self.keys().history(id), 0, -1).await?;
        Ok(raw
            .iter()
            .filter_map(|s| serde_json::from_str(s).ok())
            .collect())
    }

    /// Events after stream id `after` (`0` for all, `$` for only new ones), at most
    /// `count`, waiting up to `block` when there are none.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn events(
        &self,
        after: &str,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<Event>, StoreError> {
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(count.max(1));
        if let Some(b) = block {
            cmd.arg("BLOCK").arg(b.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(self.keys().events()).arg(after);
        let reply: Option<redis::streams::StreamReadReply> =
            cmd.query_async(&mut self.conn()).await?;
        Ok(reply
            .map(|r| r.keys)
            .unwrap_or_default()
            .into_iter()
            .flat_map(|k| k.ids)
            .map(Event::from)
            .collect())
    }

    /// The last `count` events, oldest first.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn recent_events(&self, count: usize) -> Result<Vec<Event>, StoreError> {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(self.keys().events())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(count.max(1))
            .query_async(&mut self.conn())
            .await?;
        let mut out: Vec<Event> = reply.ids.into_iter().map(Event::from).collect();
        out.reverse();
        Ok(out)
    }
}
