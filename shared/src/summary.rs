//! The agent's final message as the job's `summary`
//! ([`agentq_domain::summary`], re-exported), read from the run's output
//! directory ([`read_summary`]).

use std::path::Path;

pub use agentq_domain::summary::*;

use crate::fsutil::read_untrusted;

/// Reads the summary the agent left in `out_dir` (the host side of
/// [`AGENT_OUT_DIR`](crate::workspace::AGENT_OUT_DIR), a directory the worker
/// made and the agent could only write inside): never through a link, never
/// from a FIFO, at most [`SUMMARY_CAP`] bytes (see [`Summary::from_read`]).
pub fn read_summary(out_dir: &Path) -> Summary {
    let name = summary_file_name();
    Summary::from_read(read_untrusted(&out_dir.join(name), name, SUMMARY_CAP))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text;

    #[test]
    fn a_summary_is_read_made_safe_and_cut_at_a_character_boundary() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_summary(dir.path()), Summary::default());
        let file = dir.path().join("summary.md");
        std::fs::write(&file, b"Done.\r\nFixed \x1b[2J the \xc2\x9btests \xff\n").unwrap();
        let s = read_summary(dir.path());
        assert_eq!(s.text, "Done.\nFixed \\e[2J the \\u{9b}tests \u{fffd}");
        assert_eq!(s.note, "");
        // 16 KiB of 'x' and a character of two bytes across the cap.
        let mut long = vec![b'x'; SUMMARY_CAP - 1];
        long.extend_from_slice("é and more".as_bytes());
        std::fs::write(&file, &long).unwrap();
        let s = read_summary(dir.path());
        assert!(
            s.text.starts_with(&"x".repeat(SUMMARY_CAP - 1)),
            "{}",
            &s.text[..10]
        );
        assert!(!s.text.contains('\u{fffd}'), "cut inside a character");
        assert!(
            s.text.ends_with(&format!(
                "[… summary.md is {} bytes; cut at {SUMMARY_CAP}]",
                long.len()
            )),
            "{}",
            &s.text[SUMMARY_CAP - 10..]
        );
    }

    /// The cap is 16 KiB to the byte (not only relative to the constant),
    /// and a summary that grows when made visible is cut again at the cap
    /// plus 256 bytes, with the marker saying how much went.
    #[test]
    fn sixteen_kib_are_read_whole_and_made_visible_text_is_cut_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("summary.md");
        std::fs::write(&file, vec![b'x'; 16 * 1024]).unwrap();
        assert_eq!(read_summary(dir.path()).text, "x".repeat(16 * 1024));
        // Each ^A is two bytes when visible: 32 KiB, cut at 16 KiB + 256.
        std::fs::write(&file, vec![1u8; 16 * 1024]).unwrap();
        let s = read_summary(dir.path());
        assert_eq!(
            s.text,
            format!(
                "{}{}",
                "^A".repeat((16 * 1024 + 256) / 2),
                text::cut_marker(32 * 1024 - (16 * 1024 + 256))
            )
        );
    }

    /// What is refused is [`read_untrusted`]'s to say (links, FIFOs,
    /// devices: see its tests); the summary is empty and the note says why.
    #[test]
    fn a_link_or_a_directory_gives_no_summary_and_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("summary.md");
        std::fs::create_dir(&file).unwrap();
        let s = read_summary(dir.path());
        assert_eq!(
            (s.text.as_str(), s.note.as_str()),
            (
                "",
                "no summary: summary.md is not a regular file (a directory); refusing to read it"
            )
        );
        std::fs::remove_dir(&file).unwrap();
        std::os::unix::fs::symlink(dir.path(), &file).unwrap();
        let s = read_summary(dir.path());
        assert!(
            s.text.is_empty() && s.note.contains("is a symlink"),
            "{s:?}"
        );
    }
}
