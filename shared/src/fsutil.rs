//! File-system helpers shared by the stages, written for a hostile workspace:
//! after an agent has run, every entry in its repository may be a symlink to a
//! host file, a FIFO, a device or a directory. Nothing here follows a symlink
//! planted there, blocks on a special file, or reads without a bound.
//!
//! The domain's types for what these find are re-exported here
//! ([`UntrustedText`], [`UntrustedFileError`], [`TreeBounds`], [`TreeOver`]).

pub use agentq_domain::{
    tree_bounds::{TreeBounds, TreeOver},
    untrusted::{UntrustedFileError, UntrustedText},
};
use std::{
    fs::{File, OpenOptions},
    io::{self, Read, Write},
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::Path,
};

/// Writes `bytes` to `path` through a temp file in the same directory and a rename.
/// The temp file is created exclusively and without following symlinks, so a
/// link planted under its name cannot redirect the write.
///
/// # Errors
/// I/O errors.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        ulid::Ulid::new()
    ));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o644)
        .open(&tmp)?;
    let written = f.write_all(bytes).and_then(|()| f.flush());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)
}

/// Creates (or truncates) `path` for writing without following a symlink at its
/// last component: a link there makes this fail with `ELOOP` instead of
/// writing to its target.
///
/// # Errors
/// I/O errors, `ELOOP` for a symlink.
pub fn create_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o644)
        .open(path)
}

/// Opens `path` for appending, without following a symlink at its last component.
///
/// # Errors
/// I/O errors, `ELOOP` for a symlink.
pub fn append_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o644)
        .open(path)
}

fn kind(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_block_device() || ft.is_char_device() {
        "a device"
    } else {
        "not a file"
    }
}

/// Reads a file the agent may have planted: never follows a symlink, never
/// blocks (FIFOs are opened non-blocking and refused), only regular files, and
/// at most `cap` bytes. `Ok(None)` when there is no such entry. `name` is how
/// errors call the file (e.g. `BLOCKED.md`).
///
/// # Errors
/// [`UntrustedFileError`] saying what was wrong.
pub fn read_untrusted(
    path: &Path,
    name: &str,
    cap: usize,
) -> Result<Option<UntrustedText>, UntrustedFileError> {
    let io_err = |e: io::Error| UntrustedFileError::Io(name.to_string(), e.to_string());
    let Some(file) = open_untrusted(path, name)? else {
        return Ok(None);
    };
    let len = file.metadata().map_err(io_err)?.len();
    let mut buf = Vec::with_capacity(cap.min(len as usize) + 1);
    file.take(cap as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(io_err)?;
    Ok(Some(UntrustedText::from_bytes(buf, len, name, cap)))
}

/// Opens, for reading, a file the agent may have planted or swapped: never
/// follows a symlink, never blocks (a FIFO is opened non-blocking and
/// refused), only a regular file. `Ok(None)` when there is no such entry.
/// `name` is how errors call the file.
///
/// # Errors
/// [`UntrustedFileError`] saying what was wrong.
pub fn open_untrusted(path: &Path, name: &str) -> Result<Option<File>, UntrustedFileError> {
    let io_err = |e: io::Error| UntrustedFileError::Io(name.to_string(), e.to_string());
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    if meta.file_type().is_symlink() {
        return Err(UntrustedFileError::Symlink(name.to_string()));
    }
    if !meta.file_type().is_file() {
        return Err(UntrustedFileError::NotRegular(
            name.to_string(),
            kind(meta.file_type()),
        ));
    }
    // The entry may be swapped between the look and the open: open it without
    // following links and without blocking, and check what was opened.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                UntrustedFileError::Symlink(name.to_string())
            } else {
                io_err(e)
            }
        })?;
    let meta = file.metadata().map_err(io_err)?;
    if !meta.file_type().is_file() {
        return Err(UntrustedFileError::NotRegular(
            name.to_string(),
            kind(meta.file_type()),
        ));
    }
    Ok(Some(file))
}

/// Reads `rel` (a relative path of plain names) under the trusted directory
/// `dir` from a tree the agent controls: every component is opened without
/// following a symlink (`openat` with `O_NOFOLLOW`, directories with
/// `O_DIRECTORY`), the last without blocking and only if it is a regular file,
/// and at most `cap` bytes are read. `None` when any of that does not hold: a
/// missing entry, a link anywhere on the way, a FIFO, a file over `cap`, or a
/// name that is not plain (`..`, an empty or absolute component).
pub fn read_beneath(dir: &Path, rel: &str, cap: usize) -> Option<Vec<u8>> {
    use std::{ffi::CString, os::fd::FromRawFd};
    let parts: Vec<&str> = rel.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return None;
    }
    let open = |at: libc::c_int, name: &str, flags: libc::c_int| -> Option<File> {
        let name = CString::new(name).ok()?;
        let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY;
        // SAFETY: `name` is a valid C string; a non-negative return is a new
        // descriptor that only the `File` made here owns.
        let fd = unsafe { libc::openat(at, name.as_ptr(), flags) };
        (fd >= 0).then(|| unsafe { File::from_raw_fd(fd) })
    };
    let dir = File::open(dir).ok()?;
    let (last, walk) = parts.split_last()?;
    let mut at = dir;
    for part in walk {
        at = open(
            std::os::fd::AsRawFd::as_raw_fd(&at),
            part,
            libc::O_RDONLY | libc::O_DIRECTORY,
        )?;
    }
    let file = open(
        std::os::fd::AsRawFd::as_raw_fd(&at),
        last,
        libc::O_RDONLY | libc::O_NONBLOCK,
    )?;
    if !file.metadata().ok()?.file_type().is_file() {
        return None;
    }
    let mut buf = Vec::new();
    file.take(cap as u64 + 1).read_to_end(&mut buf).ok()?;
    (buf.len() <= cap).then_some(buf)
}

/// Bytes used by regular files under `dir`, counting each inode once and never
/// following a symlink. Entries that vanish or cannot be read are skipped.
/// Unbounded: for trees the worker made (housekeeping's reports); a tree an
/// agent made is measured with [`tree_over`].
pub fn tree_size(dir: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() && seen.insert((meta.dev(), meta.ino())) {
                total += meta.blocks() * 512;
            }
        }
    }
    total
}

/// Walks a tree the agent made within `bounds`: never follows a symlink,
/// counts every entry and the bytes of regular files (each inode once), and
/// stops as soon as it is over a bound, so its cost is bounded by the limits,
/// not by the tree. `None`: within the bounds. A directory that cannot be read
/// (other than one that vanished) is over: permissions must not hide bytes.
pub fn tree_over(dir: &Path, bounds: &TreeBounds) -> Option<TreeOver> {
    trees_over(&[dir], bounds)
}

/// [`tree_over`] of several trees the agent made (its working tree and its
/// output directory), counted together against one set of bounds: what the
/// agent writes anywhere it can write counts once against the same limit.
/// An unreadable directory is named relative to the tree it is in.
pub fn trees_over(dirs: &[&Path], bounds: &TreeBounds) -> Option<TreeOver> {
    let began = std::time::Instant::now();
    let mut seen = std::collections::HashSet::new();
    let (mut bytes, mut entries) = (0u64, 0u64);
    let mut stack: Vec<std::path::PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    let rel = |p: &Path| {
        dirs.iter()
            .find_map(|d| p.strip_prefix(d).ok())
            .map(|r| r.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let unreadable = |e: &io::Error| e.kind() != io::ErrorKind::NotFound;
    while let Some(d) = stack.pop() {
        let rd = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if unreadable(&e) => return Some(TreeOver::Unreadable(rel(&d))),
            Err(_) => continue,
        };
        for e in rd {
            let e = match e {
                Ok(e) => e,
                Err(e) if unreadable(&e) => return Some(TreeOver::Unreadable(rel(&d))),
                Err(_) => continue,
            };
            entries += 1;
            if let Some(limit) = bounds.max_entries.filter(|l| entries > *l) {
                return Some(TreeOver::Entries {
                    at_least: entries,
                    limit,
                });
            }
            if entries % 1024 == 0 && began.elapsed() > bounds.budget {
                return Some(TreeOver::TooSlow {
                    budget: bounds.budget,
                    entries,
                });
            }
            let meta = match std::fs::symlink_metadata(e.path()) {
                Ok(m) => m,
                Err(err) if unreadable(&err) => return Some(TreeOver::Unreadable(rel(&d))),
                Err(_) => continue,
            };
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() && seen.insert((meta.dev(), meta.ino())) {
                bytes += meta.blocks() * 512;
                if let Some(limit) = bounds.max_bytes.filter(|l| bytes > *l) {
                    return Some(TreeOver::Bytes {
                        at_least: bytes,
                        limit,
                    });
                }
            }
        }
    }
    None
}

/// Gives the owner back read, write and search permission on every directory
/// under `dir` (and `dir`) that the agent closed (`chmod 000`, no write bit),
/// so that the worker can empty or remove the tree: a worker that is not root
/// cannot otherwise list or unlink what is inside. Never follows a symlink
/// (each directory is looked at with `lstat` first; the agent's containers are
/// gone when this runs, so nothing swaps it meanwhile). Directories the worker
/// does not own are left as they are (`chmod` is refused): best effort, the
/// removal that follows says what is left.
pub fn open_up_tree(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&d) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o700 != 0o700 {
            let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode | 0o700));
        }
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
}

/// Removes the tree at `dir` whatever permissions the agent left in it (see
/// [`open_up_tree`]), never following a symlink. A missing `dir` is no error.
///
/// # Errors
/// The first I/O error of the removal.
pub fn remove_tree(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            open_up_tree(dir);
            std::fs::remove_dir_all(dir)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// `lchown -R`: gives `dir` and everything under it to `uid:gid`, changing
/// symlinks themselves, never their targets.
///
/// # Errors
/// The first I/O error.
pub fn chown_tree(dir: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            std::os::unix::fs::lchown(e.path(), Some(uid), Some(gid))?;
            if e.file_type()?.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok(())
}

/// The effective user and group of this process.
pub fn current_ids() -> (u32, u32) {
    // SAFETY: geteuid/getegid cannot fail and touch no memory.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn read_beneath_reads_plain_files_and_nothing_else() {
        use std::os::unix::fs::symlink;
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        std::fs::write(d.join("a/b/f"), "hello").unwrap();
        assert_eq!(read_beneath(d, "a/b/f", 5).as_deref(), Some(&b"hello"[..]));
        // Over the cap, missing, not plain names.
        assert_eq!(read_beneath(d, "a/b/f", 4), None);
        assert_eq!(read_beneath(d, "a/b/g", 5), None);
        for bad in ["a/../a/b/f", "/a/b/f", "a//b/f", "./a/b/f", ""] {
            assert_eq!(read_beneath(d, bad, 5), None, "{bad}");
        }
        // A link as the file, or anywhere on the way.
        symlink(d.join("a/b/f"), d.join("a/b/l")).unwrap();
        assert_eq!(read_beneath(d, "a/b/l", 5), None);
        symlink(d.join("a/b"), d.join("a/c")).unwrap();
        assert_eq!(read_beneath(d, "a/c/f", 5), None);
        symlink(d.join("a"), d.join("x")).unwrap();
        assert_eq!(read_beneath(d, "x/b/f", 5), None);
        // A FIFO: refused at once, never waited on; a directory is no file.
        let fifo = std::ffi::CString::new(d.join("a/p").to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert_eq!(read_beneath(d, "a/p", 5), None);
        assert_eq!(read_beneath(d, "a/b", 5), None);
    }
    use super::*;

    #[test]
    fn reads_regular_files_with_a_cap() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("BLOCKED.md");
        assert_eq!(read_untrusted(&p, "BLOCKED.md", 10).unwrap(), None);
        std::fs::write(&p, "short").unwrap();
        let t = read_untrusted(&p, "BLOCKED.md", 10).unwrap().unwrap();
        assert_eq!((t.text.as_str(), t.truncated), ("short", false));
        std::fs::write(&p, "0123456789abcdef").unwrap();
        let t = read_untrusted(&p, "BLOCKED.md", 10).unwrap().unwrap();
        assert!(t.truncated);
        assert!(t.text.starts_with("0123456789\n[…"), "{}", t.text);
    }

    #[test]
    fn refuses_symlinks_fifos_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "SECRET").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        assert_eq!(
            read_untrusted(&link, "BLOCKED.md", 100).unwrap_err(),
            UntrustedFileError::Symlink("BLOCKED.md".into())
        );
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let e = read_untrusted(&fifo, "BLOCKED.md", 100).unwrap_err();
        assert_eq!(
            e.to_string(),
            "BLOCKED.md is not a regular file (a FIFO); refusing to read it"
        );
        let e = read_untrusted(dir.path(), "BLOCKED.md", 100).unwrap_err();
        assert!(matches!(
            e,
            UntrustedFileError::NotRegular(_, "a directory")
        ));
    }

    #[test]
    fn writes_never_follow_planted_links() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "ORIGINAL").unwrap();
        let log = dir.path().join("agent.log");
        std::os::unix::fs::symlink(&victim, &log).unwrap();
        assert!(create_nofollow(&log).is_err());
        assert!(append_nofollow(&log).is_err());
        // An atomic write replaces the link itself, never the target.
        write_atomic(&log, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "ORIGINAL");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "new");
    }

    fn bounds(bytes: Option<u64>, entries: Option<u64>) -> TreeBounds {
        TreeBounds {
            max_bytes: bytes,
            max_entries: entries,
            budget: std::time::Duration::from_secs(60),
        }
    }

    #[test]
    fn tree_over_counts_bytes_once_per_inode_and_never_link_targets() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![1u8; 100_000]).unwrap();
        std::fs::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("big"), vec![1u8; 1_000_000]).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        assert_eq!(tree_over(dir.path(), &bounds(Some(200_000), None)), None);
        assert!(matches!(
            tree_over(dir.path(), &bounds(Some(50_000), None)),
            Some(TreeOver::Bytes { limit: 50_000, .. })
        ));
    }

    /// The working tree and the output directory count together: each alone
    /// is within the limit, both are over it.
    #[test]
    fn trees_over_counts_every_tree_against_one_limit() {
        let repo = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        std::fs::write(repo.path().join("a"), vec![1u8; 100_000]).unwrap();
        std::fs::write(out.path().join("b"), vec![1u8; 100_000]).unwrap();
        let b = bounds(Some(150_000), None);
        assert_eq!(tree_over(repo.path(), &b), None);
        assert_eq!(tree_over(out.path(), &b), None);
        assert!(matches!(
            trees_over(&[repo.path(), out.path()], &b),
            Some(TreeOver::Bytes { limit: 150_000, .. })
        ));
        // A missing output directory (not made, or removed) is nothing.
        let gone = out.path().join("gone");
        assert_eq!(trees_over(&[repo.path(), &gone], &b), None);
    }

    /// Inode exhaustion: a tree of empty files is 0 bytes, yet over a count limit;
    /// the walk stops at the limit.
    #[test]
    fn empty_files_count_against_the_entry_limit() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        for i in 0..300 {
            std::fs::write(dir.path().join("d").join(i.to_string()), "").unwrap();
        }
        assert_eq!(tree_over(dir.path(), &bounds(Some(1), Some(301))), None);
        assert_eq!(
            tree_over(dir.path(), &bounds(Some(1), Some(100))),
            Some(TreeOver::Entries {
                at_least: 101,
                limit: 100
            })
        );
        let msg = tree_over(dir.path(), &bounds(None, Some(100)))
            .unwrap()
            .to_string();
        assert!(msg.contains("over the limit of 100 files"), "{msg}");
    }

    #[test]
    fn a_walk_past_its_budget_is_over() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..2048 {
            std::fs::write(dir.path().join(i.to_string()), "").unwrap();
        }
        let b = TreeBounds {
            budget: std::time::Duration::ZERO,
            ..bounds(None, Some(1_000_000))
        };
        assert!(matches!(
            tree_over(dir.path(), &b),
            Some(TreeOver::TooSlow { .. })
        ));
    }

    /// A directory the walker cannot read is over, never 0 bytes. Needs a
    /// process without `CAP_DAC_READ_SEARCH`: the check runs in a child that
    /// drops to another uid when the tests run as root.
    #[test]
    fn an_unreadable_directory_is_over() {
        let dir = tempfile::tempdir().unwrap();
        let hidden = dir.path().join("hidden");
        std::fs::create_dir(&hidden).unwrap();
        std::fs::write(hidden.join("big"), vec![1u8; 100_000]).unwrap();
        std::fs::set_permissions(&hidden, std::fs::Permissions::from_mode(0o000)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        // SAFETY: the child drops its ids, walks and `_exit`s; glibc's fork
        // leaves malloc usable in it.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = unsafe {
                if libc::geteuid() == 0 && (libc::setgid(65534) != 0 || libc::setuid(65534) != 0) {
                    3
                } else {
                    match tree_over(dir.path(), &bounds(Some(1 << 30), None)) {
                        Some(TreeOver::Unreadable(d)) if d == "hidden" => 0,
                        _ => 1,
                    }
                }
            };
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        unsafe { libc::waitpid(pid, &mut status, 0) };
        std::fs::set_permissions(&hidden, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(libc::WIFEXITED(status), "{status}");
        assert_eq!(libc::WEXITSTATUS(status), 0, "not reported as unreadable");
    }

    /// A worker that is not root keeps ownership: a directory its agent made
    /// mode 000 (with a file inside) and a read-only directory are removed.
    /// Runs in a child that drops to another uid when the tests run as root.
    #[test]
    fn a_tree_the_agent_closed_is_removed_by_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        std::fs::create_dir(&ws).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::lchown(&ws, Some(65534), Some(65534)).unwrap();
        // SAFETY: the child drops its ids, works on its own tree and `_exit`s.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = (|| {
                // SAFETY: plain calls; a failure is a code.
                if unsafe { libc::setgid(65534) != 0 || libc::setuid(65534) != 0 } {
                    return 3;
                }
                let locked = ws.join("repo/locked");
                let ro = ws.join("repo/ro");
                if std::fs::create_dir_all(locked.join("deep")).is_err()
                    || std::fs::write(locked.join("deep/f"), "x").is_err()
                    || std::fs::create_dir_all(&ro).is_err()
                    || std::fs::write(ro.join("g"), "y").is_err()
                {
                    return 4;
                }
                let _ = std::fs::set_permissions(
                    locked.join("deep"),
                    std::fs::Permissions::from_mode(0o000),
                );
                let _ = std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000));
                let _ = std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o500));
                match remove_tree(&ws.join("repo")) {
                    Ok(()) if !ws.join("repo").exists() => 0,
                    _ => 1,
                }
            })();
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status), "{status}");
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "the closed tree was not removed"
        );
    }

    #[test]
    fn tree_size_counts_files_not_link_targets() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![1u8; 100_000]).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("big"), vec![1u8; 1_000_000]).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        let size = tree_size(dir.path());
        assert!((100_000..200_000).contains(&size), "{size}");
    }
}
