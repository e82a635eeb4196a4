//! Puts the embedded watchdog on the host, once, for containers to mount.

use std::{
    fs, io,
    io::Write,
    os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use agentq_shared::container::WATCHDOG_EXE;

use super::{
    dirs::{euid, own_dir, run_dir},
    WATCHDOG,
};

const EXE_MODE: u32 = 0o755;

/// Writes the watchdog to `{root}/.agentq-run/bin/agentq-watchdog` (mode 0755)
/// and returns that directory, for [`agentq_shared::container::Watchdog::bin_dir`].
///
/// Does nothing when the file is already there with the same content and mode.
/// Otherwise the new file is written beside it and renamed over it, so containers
/// running the old one keep it and others never see half a file. Safe to call
/// from several tasks and workers at once.
///
/// # Errors
/// Files that cannot be written, or a directory on the path that is a symlink,
/// not a directory or not owned by the worker's uid.
pub fn install(root: &Path) -> io::Result<PathBuf> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let bin = run_dir(root)?.join("bin");
    own_dir(&bin)?;
    let exe = bin.join(WATCHDOG_EXE);
    if let Ok(meta) = fs::symlink_metadata(&exe) {
        if meta.is_file()
            && meta.uid() == euid()
            && meta.mode() & 0o7777 == EXE_MODE
            && meta.len() == WATCHDOG.len() as u64
            && fs::read(&exe)? == WATCHDOG
        {
            return Ok(bin);
        }
    }
    let tmp = bin.join(format!(
        ".{WATCHDOG_EXE}.{}.{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(EXE_MODE)
            .open(&tmp)?;
        file.write_all(WATCHDOG)?;
        file.set_permissions(fs::Permissions::from_mode(EXE_MODE))?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, &exe)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map(|()| bin)
}
