//! Free space on the workspace root's file system (`min_free_gb`): measured
//! before a job's prep (under the floor the host degrades rather than start a
//! job it cannot finish) and after the agent's run (under it, the run was the
//! host's failure: see [`agentq_shared::outcome::disk_full`]).

use std::path::Path;

use agentq_shared::config::Config;

/// Free bytes on the file system of `path` (for an unprivileged user).
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a valid out-pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

/// Why this host must not start a job now: the workspace root has less free
/// space than `min_free_gb`. `None` when there is room (or no floor, or the
/// root cannot be measured).
pub fn too_little(cfg: &Config) -> Option<String> {
    let floor = cfg.min_free_bytes();
    if floor == 0 {
        return None;
    }
    let free = free_bytes(&cfg.workspace_root)?;
    (free < floor).then(|| {
        format!(
            "the workspace root {} has {} MiB free, under min_free_gb = {} ({} MiB): free some space or lower min_free_gb",
            cfg.workspace_root.display(),
            free >> 20,
            cfg.min_free_gb,
            floor >> 20
        )
    })
}

/// Degrades the host (see [`crate::breaker::Breaker::degrade`]) when its
/// workspace root is under `min_free_gb`, saying why once; true if it is.
pub fn degrade_if_full(ctx: &crate::context::WorkerCtx) -> bool {
    let Some(why) = too_little(&ctx.cfg) else {
        return false;
    };
    if ctx.breaker.degrade(&why) {
        tracing::error!(reason = %why, cooldown_secs = ctx.cfg.host_cooldown_secs, "host degraded: too little disk space to start jobs");
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_floor_above_the_free_space_is_too_little() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config {
            workspace_root: dir.path().to_path_buf(),
            min_free_gb: 0.0,
            ..Config::default()
        };
        assert!(free_bytes(dir.path()).unwrap() > 0);
        assert_eq!(too_little(&cfg), None, "no floor");
        cfg.min_free_gb = 1e9;
        let why = too_little(&cfg).unwrap();
        assert!(why.contains("min_free_gb"), "{why}");
    }
}
