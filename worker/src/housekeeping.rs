//! Workspace lifecycle on this host: a workspace is a cache of what the shared
//! remote and Redis hold, kept while it is useful.
//!
//! Every `workspace_sweep_secs` each host looks at its own workspaces:
//! - one whose last job was purged (`agentq purge`) is removed;
//! - one whose last job is blocked (waiting for an answer) or not finished is kept;
//! - any other is removed once unused for `workspace_keep_secs`;
//! - over `workspace_budget_gb`, the least recently used removable ones go first.
//!
//! A workspace is removed only under its workspace lease, taken only when no
//! job runs in it or waits for it, so housekeeping never races a job. A Redis
//! error skips the round: nothing is removed on "unknown".

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use agentq_shared::record::RecordView;

use crate::context::WorkerCtx;

/// One workspace found on this host.
#[derive(Debug, Clone)]
pub struct Found {
    /// Its directory.
    pub dir: PathBuf,
    /// `{org}/{repo}/{name}`.
    pub key: String,
    /// When a job last wrote its status.
    pub last_used: SystemTime,
    /// Bytes on disk.
    pub bytes: u64,
}

/// What to do with a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep, whatever the budget (a job runs, waits or is blocked in it).
    Pinned,
    /// Keep unless the budget needs the room.
    Keep,
    /// Remove.
    Remove,
}

/// The workspaces under `root` (`{org}/{repo}/{name}`; hidden directories such
/// as `.agentq-run` and symlinks are not workspaces).
pub fn find(root: &Path) -> Vec<Found> {
    let mut out = Vec::new();
    let dirs = |p: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .collect()
    };
    for org in dirs(root) {
        for repo in dirs(&org) {
            for ws in dirs(&repo) {
                let name = |p: &Path| {
                    p.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned()
                };
                let key = format!("{}/{}/{}", name(&org), name(&repo), name(&ws));
                let meta = |p: &Path| std::fs::symlink_metadata(p).and_then(|m| m.modified());
                let last_used = meta(&agentq_shared::workspace::status_file_in(&ws))
                    .or_else(|_| meta(&ws))
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                let bytes = agentq_shared::fsutil::tree_size(&ws);
                out.push(Found {
                    dir: ws,
                    key,
                    last_used,
                    bytes,
                });
            }
        }
    }
    out
}

/// The workspaces to remove: those judged [`Verdict::Remove`], then, while the
/// rest is over `budget` bytes, the least recently used [`Verdict::Keep`] ones.
pub fn choose(found: &[(Found, Verdict)], budget: Option<u64>) -> Vec<usize> {
    let mut remove: Vec<usize> = (0..found.len())
        .filter(|&i| found[i].1 == Verdict::Remove)
        .collect();
    if let Some(budget) = budget {
        let mut total: u64 = found
            .iter()
            .enumerate()
            .filter(|(i, _)| !remove.contains(i))
            .map(|(_, (f, _))| f.bytes)
            .sum();
        let mut keep: Vec<usize> = (0..found.len())
            .filter(|&i| found[i].1 == Verdict::Keep)
            .collect();
        keep.sort_by_key(|&i| found[i].0.last_used);
        for i in keep {
            if total <= budget {
                break;
            }
            total -= found[i].0.bytes;
            remove.push(i);
        }
    }
    remove
}

/// One round of housekeeping; returns the bytes this host's workspaces and
/// mirrors use afterwards, or `None` if Redis could not be asked.
pub async fn sweep(ctx: &Arc<WorkerCtx>) -> Option<u64> {
    let root = ctx.cfg.workspace_root.clone();
    let found = tokio::task::spawn_blocking(move || find(&root))
        .await
        .ok()?;
    let keep_for = Duration::from_secs(ctx.cfg.workspace_keep_secs);
    let now = SystemTime::now();
    let mut judged = Vec::new();
    for f in found {
        let verdict = match ctx.store.workspace_job(&f.key).await.ok()? {
            Some(id) => match ctx.store.view(&id).await.ok()? {
                None => Verdict::Remove,
                Some(RecordView::Unreadable { problem, .. }) => {
                    // Its job's record is kept for inspection, and so is its
                    // workspace; the round goes on.
                    tracing::warn!(job = %id, workspace = %f.key, error = %problem, "job record unreadable; its workspace is kept");
                    Verdict::Pinned
                }
                Some(RecordView::Ok(rec)) if !rec.state.is_final() => Verdict::Pinned,
                Some(RecordView::Ok(rec))
                    if rec.state == agentq_shared::status::JobState::Blocked =>
                {
                    Verdict::Pinned
                }
                Some(RecordView::Ok(_)) => age_verdict(&f, now, keep_for),
            },
            None => age_verdict(&f, now, keep_for),
        };
        judged.push((f, verdict));
    }
    let budget = (ctx.cfg.workspace_budget_gb > 0.0)
        .then(|| (ctx.cfg.workspace_budget_gb * 1024.0 * 1024.0 * 1024.0) as u64);
    let janitor = format!("janitor:{}", ctx.worker_id);
    for i in choose(&judged, budget) {
        let f = &judged[i].0;
        match ctx
            .store
            .try_take_workspace(&f.key, &janitor, ctx.cfg.lease_ttl())
            .await
        {
            Ok(true) => {}
            _ => continue,
        }
        let dir = f.dir.clone();
        let removed =
            tokio::task::spawn_blocking(move || agentq_shared::fsutil::remove_tree(&dir)).await;
        match removed {
            Ok(Ok(())) => {
                tracing::info!(workspace = %f.key, bytes = f.bytes, "workspace removed")
            }
            Ok(Err(e)) => tracing::warn!(workspace = %f.key, error = %e, "cannot remove workspace"),
            Err(e) => tracing::warn!(workspace = %f.key, error = %e, "cannot remove workspace"),
        }
        let _ = ctx.store.give_back_workspace(&f.key, &janitor).await;
    }
    let pinned = judged.iter().filter(|(_, v)| *v == Verdict::Pinned).count();
    tracing::debug!(workspaces = judged.len(), pinned, "housekeeping round done");
    let root = ctx.cfg.workspace_root.clone();
    tokio::task::spawn_blocking(move || agentq_shared::fsutil::tree_size(&root))
        .await
        .ok()
}

fn age_verdict(f: &Found, now: SystemTime, keep_for: Duration) -> Verdict {
    let unused = now.duration_since(f.last_used).unwrap_or_default();
    if unused > keep_for {
        Verdict::Remove
    } else {
        Verdict::Keep
    }
}

/// Looks after this host's workspaces every `workspace_sweep_secs` (see
/// [`sweep`]), and measures their disk use for `agentq workers`.
pub fn spawn(ctx: Arc<WorkerCtx>) {
    ctx.services
        .clone()
        .spawn_loop("housekeeping", |stop| async move {
            let mut tick = tokio::time::interval(ctx.cfg.workspace_sweep_every());
            while crate::services::tick(&mut tick, &stop).await {
                if let Some(bytes) = sweep(&ctx).await {
                    ctx.workspace_bytes
                        .store(bytes, std::sync::atomic::Ordering::Relaxed);
                }
                crate::memory::give_back();
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(key: &str, age_secs: u64, bytes: u64) -> Found {
        Found {
            dir: PathBuf::from(key),
            key: key.into(),
            last_used: SystemTime::now() - Duration::from_secs(age_secs),
            bytes,
        }
    }

    #[test]
    fn the_budget_removes_least_recently_used_first_and_never_pinned_ones() {
        let found = vec![
            (ws("a", 10, 100), Verdict::Keep),
            (ws("b", 50, 100), Verdict::Pinned),
            (ws("c", 30, 100), Verdict::Keep),
            (ws("d", 5, 100), Verdict::Remove),
        ];
        // 300 bytes after removing d; budget 150: c (older) goes, then a.
        assert_eq!(choose(&found, Some(150)), vec![3, 2, 0]);
        assert_eq!(choose(&found, Some(250)), vec![3, 2]);
        assert_eq!(choose(&found, None), vec![3]);
        // Pinned ones stay even when the budget cannot be met.
        assert_eq!(choose(&found, Some(0)), vec![3, 2, 0]);
    }

    #[test]
    fn finds_three_level_workspaces_and_skips_hidden_ones() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("core/demo/task-1/.meta")).unwrap();
        let status = root.path().join("core/demo/task-1/status.json");
        std::fs::write(&status, "{}").unwrap();
        let used = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        let file = std::fs::File::options().write(true).open(&status).unwrap();
        file.set_modified(used).unwrap();
        std::fs::create_dir_all(root.path().join(".agentq-run/mirrors/core/demo.git")).unwrap();
        let found = find(root.path());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].key, "core/demo/task-1");
        // Last used: when the workspace's status file was last written.
        assert_eq!(found[0].last_used, used);
        assert!(found[0].bytes > 0);
    }

    #[test]
    fn age_decides_for_finished_workspaces() {
        let now = SystemTime::now();
        assert_eq!(
            age_verdict(&ws("a", 10, 1), now, Duration::from_secs(5)),
            Verdict::Remove
        );
        assert_eq!(
            age_verdict(&ws("a", 1, 1), now, Duration::from_secs(5)),
            Verdict::Keep
        );
    }
}
