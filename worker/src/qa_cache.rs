//! The host's build caches, shared by QA runs (and agent runs with
//! `cache_for_agents = true`): Go's build and module caches, npm's cache,
//! cargo's home (registry) and a target directory per repository, pip's
//! cache.
//!
//! Each tool's cache is a Docker named volume (`agentq-cache-{tool}-{id}`,
//! `id` from the cache directory's path, so two workers with different
//! workspace roots never share one by accident) backed by a directory of
//! the worker's, `{workspace_root}/.agentq-cache/{tool}` (hidden, so never
//! taken for a workspace), owned by the agents' uid and mounted at
//! `/agentq-cache/{tool}`; the tools find it through their environment
//! (`GOCACHE`, `GOMODCACHE`, `npm_config_cache`, `CARGO_HOME`,
//! `CARGO_TARGET_DIR`, `PIP_CACHE_DIR`).
//!
//! Bounded by `qa_cache_gb`: after each QA run the worker adds up the
//! caches and, over the bound, empties the least recently used ones first
//! (a cache's last use is when a run last mounted it, kept as the
//! modification time of `{root}/.used/{slot}`), whole caches at a time (a
//! tool's cache, or one repository's cargo target directory): never one a
//! run of this worker has mounted at the moment (counted in [`IN_USE`]).
//!
//! Concurrent runs share the caches: Go's build cache is safe for
//! concurrent use and its module cache takes file locks; cargo locks its
//! package cache and each build directory; npm's cache (cacache) writes
//! content-addressed entries through a temporary file and an atomic rename.
//! pip's is not safe for concurrent pips (pypa/pip#12361), so one run of
//! this worker at a time mounts it; a run meanwhile gets none (pip's default
//! in its scratch `HOME`). What one job's run writes, the
//! next job's reads: the caches are shared by every job of the host (see
//! the README on what that trusts).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{LazyLock, Mutex},
    time::SystemTime,
};

use bollard::{
    models::{Mount, MountTypeEnum, VolumeCreateOptions},
    Docker,
};

use crate::context::WorkerCtx;

/// Where the caches are mounted in a container.
const MOUNT_ROOT: &str = "/agentq-cache";
/// The tools, each a volume.
const TOOLS: [&str; 4] = ["go", "npm", "cargo", "pip"];

/// Runs of this worker that have each slot mounted now.
static IN_USE: LazyLock<Mutex<HashMap<String, usize>>> = LazyLock::new(Default::default);
/// Volumes made by this process (made once).
static MADE: LazyLock<tokio::sync::Mutex<Option<PathBuf>>> = LazyLock::new(Default::default);

/// The caches mounted into one run; released (no longer in use) on drop.
#[derive(Debug)]
pub struct CacheUse {
    /// The volumes' mounts.
    pub mounts: Vec<Mount>,
    /// The tools' environment (`KEY=value`), replacing the body's own.
    pub env: Vec<String>,
    slots: Vec<String>,
}

impl Drop for CacheUse {
    fn drop(&mut self) {
        if let Ok(mut m) = IN_USE.lock() {
            for s in &self.slots {
                if let Some(n) = m.get_mut(s) {
                    *n = n.saturating_sub(1);
                }
            }
        }
    }
}

impl CacheUse {
    /// Adds the mounts and environment to a container body (replacing
    /// `GOCACHE` and any other variable of the same name).
    pub fn apply(&self, body: &mut bollard::models::ContainerCreateBody) {
        if let Some(hc) = body.host_config.as_mut() {
            hc.mounts
                .get_or_insert_with(Vec::new)
                .extend(self.mounts.iter().cloned());
        }
        let env = body.env.get_or_insert_with(Vec::new);
        for kv in &self.env {
            let key = kv.split('=').next().unwrap_or_default();
            env.retain(|e| e.split('=').next() != Some(key));
            env.push(kv.clone());
        }
    }
}

/// The caches' directory on the host.
pub fn root(ctx: &WorkerCtx) -> PathBuf {
    ctx.cfg.workspace_root.join(".agentq-cache")
}

/// A repository's key for its cargo target directory: its workspace's
/// `{org}-{repo}`, made of `[a-z0-9._-]` only.
pub fn repo_key(ws_dir: &Path) -> String {
    let parts: Vec<String> = ws_dir
        .iter()
        .rev()
        .skip(1)
        .take(2)
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let key: String = format!(
        "{}-{}",
        parts.get(1).cloned().unwrap_or_default(),
        parts.first().cloned().unwrap_or_default()
    )
    .chars()
    .map(|c| {
        if c.is_ascii_alphanumeric() || "._-".contains(c) {
            c.to_ascii_lowercase()
        } else {
            '_'
        }
    })
    .collect();
    key.trim_start_matches('.').to_string()
}

fn volume_name(root: &Path, tool: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    root.hash(&mut h);
    format!("agentq-cache-{tool}-{:012x}", h.finish() & 0xffff_ffff_ffff)
}

/// The caches for one run of a repository whose workspace is `ws_dir`:
/// `None` when `qa_cache_gb` is 0 or the volumes cannot be made (the run
/// then goes without, as before).
pub async fn acquire(ctx: &WorkerCtx, ws_dir: &Path) -> Option<CacheUse> {
    if ctx.cfg.qa_cache_gb <= 0.0 {
        return None;
    }
    let root = root(ctx);
    if let Err(e) = make(&ctx.docker, &root, ctx.agent_ids()).await {
        tracing::warn!(error = %e, "cannot make the build caches; this run goes without");
        return None;
    }
    let key = repo_key(ws_dir);
    let target = format!("cargo/target/{key}");
    let mut slots: Vec<String> = ["go", "npm", "cargo/home", &target]
        .iter()
        .map(|s| s.to_string())
        .collect();
    {
        let mut m = IN_USE.lock().ok()?;
        // pip's cache is not safe for concurrent pips (pypa/pip#12361: its
        // HTTP cache's body and metadata are two files): one run at a time
        // has it; another meanwhile gets pip's default, its own scratch HOME.
        if m.get("pip").copied().unwrap_or(0) == 0 {
            slots.push("pip".to_string());
        }
        for s in &slots {
            *m.entry(s.clone()).or_default() += 1;
        }
    }
    let with_pip = slots.iter().any(|s| s == "pip");
    let (uid, gid) = ctx.agent_ids();
    for s in &slots {
        let dir = root.join(s);
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::os::unix::fs::chown(&dir, Some(uid), Some(gid));
        let used = root.join(".used").join(s.replace('/', "%"));
        let _ = std::fs::write(&used, b"");
    }
    let mounts = TOOLS
        .iter()
        .filter(|tool| with_pip || **tool != "pip")
        .map(|tool| Mount {
            target: Some(format!("{MOUNT_ROOT}/{tool}")),
            source: Some(volume_name(&root, tool)),
            typ: Some(MountTypeEnum::VOLUME),
            read_only: Some(false),
            ..Default::default()
        })
        .collect();
    let mut env = vec![
        format!("GOCACHE={MOUNT_ROOT}/go/build"),
        format!("GOMODCACHE={MOUNT_ROOT}/go/mod"),
        format!("npm_config_cache={MOUNT_ROOT}/npm"),
        format!("CARGO_HOME={MOUNT_ROOT}/cargo/home"),
        format!("CARGO_TARGET_DIR={MOUNT_ROOT}/{target}"),
    ];
    if with_pip {
        env.push(format!("PIP_CACHE_DIR={MOUNT_ROOT}/pip"));
    }
    Some(CacheUse { mounts, env, slots })
}

/// The directories (owned by the agents' uid) and their volumes, once per
/// process and root.
async fn make(docker: &Docker, root: &Path, (uid, gid): (u32, u32)) -> anyhow::Result<()> {
    let mut made = MADE.lock().await;
    if made.as_deref() == Some(root) {
        return Ok(());
    }
    std::fs::create_dir_all(root.join(".used"))?;
    for tool in TOOLS {
        let dir = root.join(tool);
        std::fs::create_dir_all(&dir)?;
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
        let req = VolumeCreateOptions {
            name: Some(volume_name(root, tool)),
            driver: Some("local".into()),
            driver_opts: Some(HashMap::from([
                ("type".to_string(), "none".to_string()),
                ("o".to_string(), "bind".to_string()),
                ("device".to_string(), dir.to_string_lossy().into_owned()),
            ])),
            labels: Some(HashMap::from([
                ("agentq.cache".to_string(), tool.to_string()),
                (
                    "agentq.cache.root".to_string(),
                    root.to_string_lossy().into_owned(),
                ),
            ])),
            ..Default::default()
        };
        docker.create_volume(req).await?;
    }
    *made = Some(root.to_path_buf());
    Ok(())
}

/// Keeps the caches under `qa_cache_gb`: see the module docs. Runs on a
/// blocking thread; returns the slots emptied.
pub fn evict(root: &Path, bound_bytes: u64) -> Vec<String> {
    let used = root.join(".used");
    let mut slots: Vec<(SystemTime, String, u64)> = std::fs::read_dir(&used)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let slot = e.file_name().to_string_lossy().replace('%', "/");
            let when = e.metadata().and_then(|m| m.modified()).ok()?;
            let size = size_of(&root.join(&slot));
            Some((when, slot, size))
        })
        .collect();
    let mut total: u64 = slots.iter().map(|s| s.2).sum();
    slots.sort();
    let mut emptied = Vec::new();
    for (_, slot, size) in slots {
        if total <= bound_bytes {
            break;
        }
        let Ok(m) = IN_USE.lock() else { break };
        if m.get(&slot).copied().unwrap_or(0) > 0 {
            continue;
        }
        // Held while it is emptied: no run of this worker mounts it meanwhile.
        empty_dir(&root.join(&slot));
        drop(m);
        total = total.saturating_sub(size);
        emptied.push(slot);
    }
    emptied
}

fn size_of(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else if let Ok(m) = e.metadata() {
                use std::os::unix::fs::MetadataExt;
                total += m.blocks() * 512;
            }
        }
    }
    total
}

/// Removes what `dir` holds (Go makes its module cache read-only: made
/// writable first where removal is refused); `dir` itself stays.
fn empty_dir(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        let removed = if is_dir {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        if removed.is_err() && is_dir {
            make_writable(&p);
            let _ = std::fs::remove_dir_all(&p);
        }
    }
}

fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700));
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repositorys_key_is_its_org_and_repo_made_safe() {
        assert_eq!(repo_key(Path::new("/w/core/demo/task-1")), "core-demo");
        assert_eq!(repo_key(Path::new("/w/Core/a b/main")), "core-a_b");
    }

    /// Over the bound, the least recently used caches are emptied first,
    /// never one in use, until the rest fits.
    #[test]
    fn the_least_recently_used_caches_go_first_never_one_in_use() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::create_dir_all(root.join(".used")).unwrap();
        let at = |s: u64| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 + s);
        for (slot, when) in [("go", 1), ("npm", 2), ("pip", 3), ("cargo/target/x", 4)] {
            let dir = root.join(slot);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("blob"), vec![1u8; 64 * 1024]).unwrap();
            let used = root.join(".used").join(slot.replace('/', "%"));
            std::fs::write(&used, b"").unwrap();
            std::fs::File::options()
                .write(true)
                .open(&used)
                .unwrap()
                .set_modified(at(when))
                .unwrap();
        }
        IN_USE.lock().unwrap().insert("go".into(), 1);
        let one = size_of(&root.join("npm"));
        let emptied = evict(root, 2 * one);
        IN_USE.lock().unwrap().remove("go");
        assert_eq!(
            emptied,
            ["npm", "pip"],
            "go is in use; npm and pip are the oldest others"
        );
        assert!(root.join("go/blob").exists() && root.join("cargo/target/x/blob").exists());
        assert!(!root.join("npm/blob").exists() && root.join("npm").is_dir());
    }
}
