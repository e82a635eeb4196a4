//! The host copy of an agent's output, bounded: the first [`HEAD_BYTES`] go to
//! the file as they come, the last [`TAIL_BYTES`] are kept in memory, and when
//! the run ends the file gets a marker saying how much was cut, then the tail.
//! A flood of output therefore costs at most head + tail on disk and keeps both
//! how the run started and how it ended.

use std::{collections::VecDeque, fs::File, io::Write, path::Path};

/// Bytes kept from the start of the output.
pub const HEAD_BYTES: usize = 1024 * 1024;
/// Bytes kept from the end of the output.
pub const TAIL_BYTES: usize = 4 * 1024 * 1024;

/// A log file with a bounded size.
#[derive(Debug)]
pub struct CappedLog {
    file: File,
    head: usize,
    head_cap: usize,
    tail: VecDeque<u8>,
    tail_cap: usize,
    /// Bytes past the head that did not fit in the tail.
    dropped: u64,
}

impl CappedLog {
    /// Creates (truncates) `path` without following a symlink there.
    ///
    /// # Errors
    /// I/O errors.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        Self::with_caps(path, HEAD_BYTES, TAIL_BYTES)
    }

    /// [`CappedLog::create`] with other caps.
    ///
    /// # Errors
    /// I/O errors.
    pub fn with_caps(path: &Path, head_cap: usize, tail_cap: usize) -> std::io::Result<Self> {
        Ok(Self {
            file: agentq_shared::fsutil::create_nofollow(path)?,
            head: 0,
            head_cap,
            tail: VecDeque::new(),
            tail_cap,
            dropped: 0,
        })
    }

    /// Adds output.
    ///
    /// # Errors
    /// I/O errors writing the head.
    pub fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        if self.head < self.head_cap {
            let n = bytes.len().min(self.head_cap - self.head);
            self.file.write_all(&bytes[..n])?;
            self.head += n;
            bytes = &bytes[n..];
        }
        self.tail.extend(bytes);
        if self.tail.len() > self.tail_cap {
            let extra = self.tail.len() - self.tail_cap;
            self.tail.drain(..extra);
            self.dropped += extra as u64;
        }
        Ok(())
    }

    /// Writes the marker (if anything was cut) and the tail.
    ///
    /// # Errors
    /// I/O errors.
    pub fn finish(mut self) -> std::io::Result<()> {
        if self.dropped > 0 {
            writeln!(
                self.file,
                "\n[agentq: {} bytes cut here; the first {} and the last {} bytes are kept]",
                self.dropped,
                self.head,
                self.tail.len()
            )?;
        }
        let (a, b) = self.tail.as_slices();
        self.file.write_all(a)?;
        self.file.write_all(b)?;
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_output_is_kept_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let mut l = CappedLog::with_caps(&p, 10, 10).unwrap();
        l.write(b"hello ").unwrap();
        l.write(b"world").unwrap();
        l.finish().unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "hello world");
    }

    #[test]
    fn a_flood_keeps_head_and_tail_with_a_marker() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let mut l = CappedLog::with_caps(&p, 5, 5).unwrap();
        l.write(b"START").unwrap();
        for _ in 0..100 {
            l.write(b"xxxxxxxxxx").unwrap();
        }
        l.write(b"--END").unwrap();
        l.finish().unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.starts_with("START\n[agentq: 1000 bytes cut here"),
            "{text}"
        );
        assert!(text.ends_with("--END"), "{text}");
    }

    #[test]
    fn a_planted_symlink_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "ORIGINAL").unwrap();
        let p = dir.path().join("log");
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        assert!(CappedLog::create(&p).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "ORIGINAL");
    }
}
