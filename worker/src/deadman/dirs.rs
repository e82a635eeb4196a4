//! The switch's directories on the host: the worker's own, mode 0755, never
//! a symlink.

use std::{
    fs, io,
    os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

use super::RUN_DIR;

const DIR_MODE: u32 = 0o755;

/// The worker's effective uid.
pub(super) fn euid() -> u32 {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// Makes `dir` (whose parent exists) a directory of the worker's with mode 0755,
/// or checks that it already is one: a real directory (not a symlink), owned by
/// the worker's uid. Fixes its mode whatever the umask.
pub(super) fn own_dir(dir: &Path) -> io::Result<()> {
    match fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    if meta.uid() != euid() {
        return Err(io::Error::other(format!(
            "{} is owned by uid {}, not by the worker (uid {})",
            dir.display(),
            meta.uid(),
            euid()
        )));
    }
    if meta.mode() & 0o7777 != DIR_MODE {
        fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))?;
    }
    Ok(())
}

/// `{root}/.agentq-run`, made if missing (and `root` too).
pub(super) fn run_dir(root: &Path) -> io::Result<PathBuf> {
    fs::create_dir_all(root)?;
    let run = root.join(RUN_DIR);
    own_dir(&run)?;
    Ok(run)
}
