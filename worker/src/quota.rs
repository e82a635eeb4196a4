//! Provider quotas: a run whose agent stopped on its provider's usage limit
//! (its output's tail matches the pool's `limit_patterns`, see
//! [`agentq_shared::quota`]) is waiting, not failure. The pool pauses on
//! every host until the limit resets (the time the output names, else the
//! pool's backoff pause), and the job goes back to its lane at its first
//! place in line, reason `quota`, having spent no attempt; the pause's end
//! wakes the pool and the job runs again.

use std::{io::Read, path::Path};

use agentq_shared::{
    agent::AgentSpec,
    quota::{self, LimitHit},
    transition::Transition,
};

use crate::{context::WorkerCtx, hold::Fenced, run::Run};

/// Whether the agent's output (the tail of its host log, the worker's own
/// file) says it hit its provider's limit: the first of the pool's
/// `limit_patterns` found there. Called only for a run that exited non-zero.
pub(crate) fn limit_hit(ctx: &WorkerCtx, agent: &AgentSpec, log: &Path) -> Option<LimitHit> {
    let patterns = &ctx.cfg.agent_table().get(agent.pool())?.limit_patterns;
    if patterns.is_empty() {
        return None;
    }
    let tail = read_tail(log, quota::TAIL_BYTES as u64).ok()?;
    quota::find(
        patterns,
        &String::from_utf8_lossy(&tail),
        chrono::Utc::now(),
    )
}

/// The last `max` bytes of the file at `path`. The log lies in the run's
/// `.meta/`, next to what the agent writes: a symlink or a FIFO planted in its
/// place is refused, never followed nor blocked on (an error, so no limit is
/// read from it).
fn read_tail(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Seek, SeekFrom};
    let mut f = agentq_shared::fsutil::open_untrusted(path, "the agent's log")
        .map_err(std::io::Error::other)?
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut out = Vec::new();
    f.take(max).read_to_end(&mut out)?;
    Ok(out)
}

/// The run hit its provider's limit: pauses the pool on every host until the
/// reset, then hands the job back to wait for it (`attempt` and `tries`
/// given back). The pause comes first, so that the job's wake-up finds the
/// pool paused.
pub(crate) async fn wait_for_reset(
    run: &Run<'_>,
    agent: &AgentSpec,
    tries: u32,
    hit: &LimitHit,
) -> Result<(), Fenced> {
    let (ctx, rec) = (run.ctx, run.rec);
    let now = chrono::Utc::now();
    let backoff =
        chrono::Duration::from_std(ctx.cfg.admission.backoff.pause()).unwrap_or(quota::MAX_WAIT);
    let reset_utc = ctx.cfg.admission.pacing(agent.pool()).map(|p| p.reset());
    let fallback = quota::unnamed_wait(reset_utc, backoff, now);
    let at = quota::resume_at(hit, fallback, now);
    let until = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let line = quota::shown_line(&hit.line);
    tracing::warn!(
        job = %rec.id,
        pool = agent.pool(),
        resume_at = %until,
        named = hit.resume_at.is_some(),
        "provider usage limit: pool paused on every host until it resets; job waits, spending no attempt"
    );
    let paused = crate::hold::until_redis_answers("pause the pool for its quota", &rec.id, || {
        ctx.store
            .pause_for_quota(agent.pool(), at, &hit.line, &rec.id)
    })
    .await;
    tracing::debug!(pool = agent.pool(), ?paused, "quota pause");
    let error = format!("provider usage limit ({until}): {line}");
    run.hold
        .go(Transition::quota_wait(
            at.into(),
            &error,
            run.attempt,
            tries,
        ))
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_is_the_last_bytes_of_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("agent.log");
        std::fs::write(&log, b"0123456789").unwrap();
        assert_eq!(read_tail(&log, 4).unwrap(), b"6789");
        assert_eq!(read_tail(&log, 100).unwrap(), b"0123456789");
    }

    #[test]
    fn a_symlink_in_the_logs_place_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, b"usage limit reached").unwrap();
        let log = dir.path().join("agent.log");
        std::os::unix::fs::symlink(&target, &log).unwrap();
        assert!(read_tail(&log, 100).is_err());
    }

    /// Would block for ever on a plain open (no writer).
    #[test]
    fn a_fifo_in_the_logs_place_is_not_blocked_on() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("agent.log");
        let c = std::ffi::CString::new(log.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(read_tail(&log, 100).is_err());
    }
}
