//! The heartbeat file of one container run.

use std::{
    fs, io,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    time::SystemTime,
};

use agentq_shared::container::BEAT_FILE;

use super::dirs::{own_dir, run_dir};

const BEAT_MODE: u32 = 0o644;

/// The heartbeat of one container run: `{root}/.agentq-run/beat/{name}/beat`.
///
/// The worker touches it while it owns the run; the container's watchdog stops
/// the agent once it is older than the limit or gone. Dropping the `Beat`
/// removes its directory, which stops a container still using it.
#[derive(Debug)]
pub struct Beat {
    dir: PathBuf,
    file: PathBuf,
}

impl Beat {
    /// Makes the run's heartbeat directory and file (touched now); `name` is
    /// `[A-Za-z0-9_-]+`, e.g. `{job_id}-{attempt}-{stage}`. A directory left by
    /// an earlier run of the same name is reused.
    ///
    /// # Errors
    /// `InvalidInput` for a bad name; files that cannot be made; a directory on
    /// the path that is a symlink, not a directory or not the worker's.
    pub fn create(root: &Path, name: &str) -> io::Result<Beat> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("heartbeat name {name:?} is not [A-Za-z0-9_-]+"),
            ));
        }
        let beats = run_dir(root)?.join("beat");
        own_dir(&beats)?;
        let dir = beats.join(name);
        own_dir(&dir)?;
        // From here on, dropping `beat` cleans up.
        let beat = Beat {
            file: dir.join(BEAT_FILE),
            dir,
        };
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(BEAT_MODE)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&beat.file)?;
        file.set_permissions(fs::Permissions::from_mode(BEAT_MODE))?;
        file.set_modified(SystemTime::now())?;
        Ok(beat)
    }

    /// The directory to mount: [`agentq_shared::container::Watchdog::beat_dir`].
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Sets the heartbeat's modification time to `at` (normally now).
    ///
    /// # Errors
    /// The file is gone or cannot be written.
    pub fn touch(&self, at: SystemTime) -> io::Result<()> {
        fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.file)?
            .set_modified(at)
    }
}

impl Drop for Beat {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}
