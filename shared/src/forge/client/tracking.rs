//! Time tracking on issues: tracked times, added once even when a request fails
//! half-way, and the stopwatch. The client remembers which repositories do not
//! track time.

use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::{Method, StatusCode};

use super::{ForgeClient, MAX_PAGES};
use crate::forge::{
    transport::Reply, AddTime, ForgeError, StopwatchOutcome, TimeOutcome, TrackedTime,
    TrackingUnavailable, TRACKING_RECHECK,
};

fn rfc3339_secs(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl ForgeClient {
    fn untracked_key(owner: &str, repo: &str) -> String {
        format!("{owner}/{repo}").to_lowercase()
    }

    /// Why time tracking is known to be unavailable on `owner/repo`, if the forge
    /// said so within [`TRACKING_RECHECK`].
    fn known_untracked(&self, owner: &str, repo: &str) -> Option<TrackingUnavailable> {
        let map = self.untracked.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&Self::untracked_key(owner, repo))
            .filter(|(_, when)| when.elapsed() < TRACKING_RECHECK)
            .map(|(reason, _)| *reason)
    }

    /// Remembers that the forge refused time tracking; true if it was not known.
    fn mark_untracked(&self, owner: &str, repo: &str, reason: TrackingUnavailable) -> bool {
        let mut map = self.untracked.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(Self::untracked_key(owner, repo), (reason, Instant::now()))
            .is_none()
    }

    fn mark_tracked(&self, owner: &str, repo: &str) {
        let mut map = self.untracked.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&Self::untracked_key(owner, repo));
    }

    /// Adds `time` to issue `index` as the token's user: once, even when a request
    /// fails after the forge stored it. Before retrying a failed attempt the client
    /// lists the user's tracked times on the issue created at `time.created` and
    /// stops if one with the same seconds is there.
    ///
    /// A repository whose time tracking is off (`400 time tracking disabled`) or that
    /// refuses the user (403) is [`TimeOutcome::Unavailable`], not an error; the
    /// client remembers it for [`TRACKING_RECHECK`] and does not ask again meanwhile.
    ///
    /// # Errors
    ///
    /// [`ForgeError::InvalidArgument`] for zero seconds; [`ForgeError::Client`] (404
    /// no such issue), [`ForgeError::Server`], [`ForgeError::Transport`],
    /// [`ForgeError::Decode`].
    pub async fn add_time(
        &self,
        owner: &str,
        repo: &str,
        index: u64,
        time: &AddTime,
    ) -> Result<TimeOutcome, ForgeError> {
        if time.seconds == 0 {
            return Err(ForgeError::InvalidArgument(
                "a tracked time needs at least one second".into(),
            ));
        }
        if let Some(reason) = self.known_untracked(owner, repo) {
            return Ok(TimeOutcome::Unavailable {
                reason,
                first: false,
            });
        }
        let index_s = index.to_string();
        let segs = ["repos", owner, repo, "issues", index_s.as_str(), "times"];
        let created = rfc3339_secs(time.created);
        let payload = serde_json::json!({ "time": time.seconds, "created": created });
        self.write_looking_first("POST tracked time", |retry| {
            let (segs, payload) = (&segs, &payload);
            async move {
                let result = self.post_once(segs, Some(payload)).await;
                match result {
                    Ok(reply) if reply.status.is_success() => {
                        self.mark_tracked(owner, repo);
                        let t: TrackedTime = self.t.decode(&Method::POST, segs, &reply)?;
                        Ok(Ok(TimeOutcome::Added(t)))
                    }
                    Ok(reply) => {
                        if let Some(reason) = refusal(&reply, &self.t.message_of(&reply.body)) {
                            let first = self.mark_untracked(owner, repo, reason);
                            return Ok(Ok(TimeOutcome::Unavailable { reason, first }));
                        }
                        Err(self.t.client_error(&Method::POST, segs, &reply))
                    }
                    Err(e) if e.is_transient() && retry < self.retry.max_retries => {
                        // The forge may have stored it before failing: look first.
                        match self.find_tracked_time(owner, repo, index, time).await? {
                            Some(t) => Ok(Ok(TimeOutcome::AlreadyAdded(t))),
                            None => Ok(Err(e)),
                        }
                    }
                    Err(e) => Err(e),
                }
            }
        })
        .await
    }

    /// The token user's tracked time on issue `index` matching `time` (created in
    /// the same second, same seconds), if the forge has it.
    async fn find_tracked_time(
        &self,
        owner: &str,
        repo: &str,
        index: u64,
        time: &AddTime,
    ) -> Result<Option<TrackedTime>, ForgeError> {
        let me = self.current_user().await?;
        let created = time.created.timestamp();
        let times = self
            .list_tracked_times(
                owner,
                repo,
                index,
                Some(&me.login),
                Some(time.created),
                Some(time.created),
            )
            .await?;
        Ok(times.into_iter().find(|t| {
            t.user_id == me.id
                && t.created.timestamp() == created
                && u64::try_from(t.time).ok() == Some(time.seconds)
        }))
    }

    /// Tracked times on issue `index`, optionally only `user`'s and only those
    /// created between `since` and `before` (both inclusive, to the second).
    ///
    /// # Errors
    ///
    /// [`ForgeError::Client`] (404 no such issue, or time tracking is disabled),
    /// [`ForgeError::Server`], [`ForgeError::Transport`], [`ForgeError::Decode`].
    pub async fn list_tracked_times(
        &self,
        owner: &str,
        repo: &str,
        index: u64,
        user: Option<&str>,
        since: Option<DateTime<Utc>>,
        before: Option<DateTime<Utc>>,
    ) -> Result<Vec<TrackedTime>, ForgeError> {
        let index = index.to_string();
        let segs = ["repos", owner, repo, "issues", index.as_str(), "times"];
        let mut query = Vec::new();
        if let Some(u) = user {
            query.push(("user", u.to_string()));
        }
        if let Some(s) = since {
            query.push(("since", rfc3339_secs(s)));
        }
        if let Some(b) = before {
            query.push(("before", rfc3339_secs(b)));
        }
        let limit = self.page_size.to_string();
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let mut q = query.clone();
            q.push(("page", page.to_string()));
            q.push(("limit", limit.clone()));
            let reply = self
                .t
                .execute(Method::GET, &segs, &q, None, self.retry)
                .await?;
            let total = reply.total_count;
            let batch: Vec<TrackedTime> = self.t.decode_ok(&Method::GET, &segs, reply)?;
            let n = batch.len();
            all.extend(batch);
            if n == 0 || total.is_some_and(|t| all.len() as u64 >= t) {
                break;
            }
        }
        Ok(all)
    }

    /// Starts the token owner's stopwatch on issue `index`. The forge keeps one
    /// running stopwatch per user (`models/issues/stopwatch.go`): one running on
    /// another issue is stopped, and its time recorded there.
    ///
    /// # Errors
    ///
    /// A stopwatch already running and time tracking being unavailable are
    /// outcomes, not errors. Otherwise [`ForgeError::Client`] (404 if there is no
    /// such issue), [`ForgeError::Server`], [`ForgeError::Transport`].
    pub async fn start_stopwatch(
        &self,
        owner: &str,
        repo: &str,
        index: u64,
    ) -> Result<StopwatchOutcome, ForgeError> {
        self.stopwatch(owner, repo, index, true).await
    }

    /// Stops the token owner's stopwatch on issue `index` (the time is recorded).
    ///
    /// # Errors
    ///
    /// A stopwatch not running ([`StopwatchOutcome::NotRunning`]) is an outcome, not
    /// an error. Otherwise as [`ForgeClient::start_stopwatch`].
    pub async fn stop_stopwatch(
        &self,
        owner: &str,
        repo: &str,
        index: u64,
    ) -> Result<StopwatchOutcome, ForgeError> {
        self.stopwatch(owner, repo, index, false).await
    }

    async fn stopwatch(
        &self,
        owner: &str,
        repo: &str,
        index: u64,
        start: bool,
    ) -> Result<StopwatchOutcome, ForgeError> {
        if let Some(reason) = self.known_untracked(owner, repo) {
            return Ok(StopwatchOutcome::Unavailable {
                reason,
                first: false,
            });
        }
        let index = index.to_string();
        let action = if start { "start" } else { "stop" };
        let segs = [
            "repos",
            owner,
            repo,
            "issues",
            index.as_str(),
            "stopwatch",
            action,
        ];
        self.write_looking_first("POST stopwatch", |retry| {
            let segs = &segs;
            async move {
                let reply = match self.post_once(segs, None).await {
                    Ok(reply) => reply,
                    Err(e) => return Ok(Err(e)),
                };
                Ok(match reply.status {
                    s if s.is_success() => {
                        self.mark_tracked(owner, repo);
                        Ok(if start {
                            StopwatchOutcome::Started
                        } else {
                            StopwatchOutcome::Stopped
                        })
                    }
                    StatusCode::CONFLICT if start => Ok(StopwatchOutcome::AlreadyRunning),
                    // After a failed attempt, "not running" most likely means that
                    // attempt stopped it.
                    StatusCode::CONFLICT if retry > 0 => Ok(StopwatchOutcome::Stopped),
                    StatusCode::CONFLICT => Ok(StopwatchOutcome::NotRunning),
                    _ => match refusal(&reply, &self.t.message_of(&reply.body)) {
                        Some(reason) => {
                            let first = self.mark_untracked(owner, repo, reason);
                            Ok(StopwatchOutcome::Unavailable { reason, first })
                        }
                        None => return Err(self.t.client_error(&Method::POST, segs, &reply)),
                    },
                })
            }
        })
        .await
    }
}

/// Whether an answer means the forge will not track time here: 400 with "time
/// tracking disabled" (`AddTime`), or 403 (`AddTime` and the stopwatch, from
/// `CanUseTimetracker`).
fn refusal(reply: &Reply, message: &str) -> Option<TrackingUnavailable> {
    match reply.status {
        // A token without the issue scope is not a repository without time
        // tracking: that refusal names the scope, and is the token's to fix.
        StatusCode::FORBIDDEN if message.contains("required scope") => None,
        StatusCode::FORBIDDEN => Some(TrackingUnavailable::Forbidden),
        StatusCode::BAD_REQUEST if message.to_lowercase().contains("time tracking disabled") => {
            Some(TrackingUnavailable::Disabled)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forge::RetryPolicy;

    #[test]
    fn a_scope_refusal_is_not_time_tracking_refused() {
        let reply = |status: u16| Reply {
            status: StatusCode::from_u16(status).unwrap(),
            body: Vec::new(),
            total_count: None,
        };
        assert_eq!(
            refusal(&reply(403), ""),
            Some(TrackingUnavailable::Forbidden)
        );
        assert_eq!(
            refusal(
                &reply(403),
                "token does not have at least one of required scope(s): [write:issue]"
            ),
            None
        );
    }

    #[test]
    fn time_tracking_refusals_are_remembered_per_repository() {
        let c = ForgeClient::new("http://127.0.0.1:3000", None, RetryPolicy::default()).unwrap();
        assert_eq!(c.known_untracked("Acme", "W"), None);
        assert!(c.mark_untracked("Acme", "W", TrackingUnavailable::Disabled));
        assert!(!c.mark_untracked("acme", "w", TrackingUnavailable::Disabled));
        assert_eq!(
            c.clone().known_untracked("acme", "w"),
            Some(TrackingUnavailable::Disabled)
        );
        assert_eq!(c.known_untracked("acme", "other"), None);
        c.mark_tracked("ACME", "w");
        assert_eq!(c.known_untracked("acme", "w"), None);
    }

    #[test]
    fn created_is_sent_to_the_second_in_utc() {
        let t = DateTime::parse_from_rfc3339("2025-03-01T10:00:05.734+01:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(rfc3339_secs(t), "2025-03-01T09:00:05Z");
    }
}
