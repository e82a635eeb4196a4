//! Job states and the workspace's `status.json` ([`agentq_domain::status`],
//! re-exported), with the files: `status.json` read and written
//! ([`StatusFile`]) and `BLOCKED.md` read as the hostile file it may be
//! ([`read_blocked`]).

use std::{io, path::Path};

pub use agentq_domain::status::*;

use crate::fsutil;

/// Reads the working tree's `BLOCKED.md` as the hostile file it may be: no
/// links, no FIFOs, at most [`BLOCKED_CAP`] bytes.
pub fn read_blocked(repo_dir: &Path) -> BlockedFile {
    fsutil::read_untrusted(&repo_dir.join("BLOCKED.md"), "BLOCKED.md", BLOCKED_CAP)
}

/// `status.json` on disk.
pub trait StatusFile: Sized {
    /// Reads `status.json`.
    ///
    /// # Errors
    /// I/O errors, or a file that is not a status document.
    fn read(path: &Path) -> io::Result<Self>;

    /// Writes `status.json` atomically: a temp file beside it, then a rename, so a
    /// reader never sees half a document.
    ///
    /// # Errors
    /// I/O errors.
    fn write_atomic(&self, path: &Path) -> io::Result<()>;
}

impl StatusFile for WorkspaceStatus {
    fn read(path: &Path) -> io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        serde_json::from_str(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    fn write_atomic(&self, path: &Path) -> io::Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        fsutil::write_atomic(path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_status_rules() {
        let dir = tempfile::tempdir().unwrap();
        let decide = |code| detect_final_status(&read_blocked(dir.path()), code);
        assert_eq!(decide(0).state, JobState::Completed);
        let f = decide(3);
        assert_eq!(
            (f.state, f.message.as_str()),
            (JobState::Failed, "Agent exited with code 3")
        );
        std::fs::write(dir.path().join("BLOCKED.md"), "  \n").unwrap();
        assert_eq!(decide(0).state, JobState::Completed);
        std::fs::write(dir.path().join("BLOCKED.md"), "Which DB?\n").unwrap();
        let f = decide(1);
        assert_eq!(
            (f.state, f.message.as_str()),
            (JobState::Blocked, "Which DB?")
        );
    }

    #[test]
    fn a_hostile_blocked_md_fails_the_job_and_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "SECRET").unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        std::os::unix::fs::symlink(&secret, repo.join("BLOCKED.md")).unwrap();
        let f = detect_final_status(&read_blocked(&repo), 0);
        assert_eq!(f.state, JobState::Failed);
        assert_eq!(f.message, "BLOCKED.md is a symlink; refusing to read it");
        std::fs::remove_file(repo.join("BLOCKED.md")).unwrap();
        std::fs::write(repo.join("BLOCKED.md"), "q".repeat(BLOCKED_CAP + 10)).unwrap();
        let f = detect_final_status(&read_blocked(&repo), 0);
        assert_eq!(f.state, JobState::Blocked);
        assert!(f.message.len() < BLOCKED_CAP + 200 && f.message.contains("cut at"));
        // The README's "at most 64 KiB": that much is read whole.
        std::fs::write(repo.join("BLOCKED.md"), "q".repeat(64 * 1024)).unwrap();
        let f = detect_final_status(&read_blocked(&repo), 0);
        assert_eq!(f.message, "q".repeat(64 * 1024));
    }

    #[test]
    fn status_round_trips_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        let st = WorkspaceStatus {
            status: JobState::Running,
            runs: 1,
            ..Default::default()
        };
        st.write_atomic(&path).unwrap();
        assert_eq!(WorkspaceStatus::read(&path).unwrap(), st);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left behind"
        );
    }
}
