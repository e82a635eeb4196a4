//! `agentq-watchdog --open-root GID`: the container's root directory loses its
//! group permission bits, so that a path lookup by a user who neither owns it
//! nor is in its group costs no round trip to a FUSE storage daemon.
//!
//! Why (issue 34, measured in BENCHMARKS.md): on Docker's `fuse-overlayfs`
//! storage driver the root directory `/` of every container is owned by root,
//! mode 0755, on a FUSE file system that has POSIX ACLs. The kernel checks a
//! non-owner's search permission on `/` at every lookup of an absolute path,
//! and with group bits set that check asks the daemon for `/`'s ACL
//! (`getxattr system.posix_acl_access`) every time: 9 500 requests for one
//! `go vet`, which runs twice as long as root's. With the group bits off the
//! kernel reads the "other" bits and asks nothing.
//!
//! The worker runs this as `docker exec --user 0` in a held container before
//! anything else runs in it (`src/fuse_root.rs`). It changes only the group
//! bits of `/`, and only when `/` is owned by the caller (root in the
//! container: an owner may chmod without any capability, and the container has
//! none) and its group is not `GID`, the agent's group, whose members would
//! lose access. Exit 0 when done or not needed, 1 when it could not, 125 on
//! bad usage; one line on stderr otherwise.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

/// What to do with a directory of this owner, group and mode, for a caller of
/// uid `caller` whose agents run with group `agent_gid`: the new mode, or
/// `None` to leave it.
pub(crate) fn new_mode(
    owner: u32,
    group: u32,
    mode: u32,
    caller: u32,
    agent_gid: u32,
) -> Option<u32> {
    let perms = mode & 0o7777;
    if owner != caller || group == agent_gid || perms & 0o070 == 0 {
        return None;
    }
    Some(perms & !0o070)
}

/// Runs `--open-root GID` (the arguments after it); the process's exit code.
pub(crate) fn run(args: &[std::ffi::OsString]) -> i32 {
    let gid = match args {
        [g] => g.to_str().and_then(|g| g.parse::<u32>().ok()),
        _ => None,
    };
    let Some(gid) = gid else {
        eprintln!("agentq-watchdog: --open-root needs the agents' group id");
        return 125;
    };
    let meta = match std::fs::metadata("/") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("agentq-watchdog: cannot read /: {e}");
            return 1;
        }
    };
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    let caller = unsafe { geteuid() };
    let Some(mode) = new_mode(meta.uid(), meta.gid(), meta.mode(), caller, gid) else {
        return 0;
    };
    match std::fs::set_permissions("/", std::fs::Permissions::from_mode(mode)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("agentq-watchdog: cannot change /'s mode: {e}");
            1
        }
    }
}

extern "C" {
    fn geteuid() -> u32;
}

#[cfg(test)]
mod tests {
    use super::new_mode;

    #[test]
    fn the_group_bits_go_when_the_caller_owns_it_and_the_agents_are_not_its_group() {
        assert_eq!(new_mode(0, 0, 0o40755, 0, 1000), Some(0o705));
    }

    #[test]
    fn the_agents_group_keeps_its_access() {
        assert_eq!(new_mode(0, 0, 0o40755, 0, 0), None);
    }

    #[test]
    fn a_directory_the_caller_does_not_own_is_left() {
        assert_eq!(new_mode(0, 0, 0o40755, 1000, 1000), None);
    }

    #[test]
    fn a_directory_without_group_bits_is_left() {
        assert_eq!(new_mode(0, 0, 0o40705, 0, 1000), None);
    }
}
