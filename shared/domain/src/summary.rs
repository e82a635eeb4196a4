//! The agent's final message as the job's `summary`: what the agent wrote to
//! [`SUMMARY_FILE`] (codex's `-o` file; `$AGENTQ_SUMMARY_FILE` for every
//! agent), read back by the worker after the run from the run's output
//! directory on the host ([`crate::workspace::Workspace::agent_out_dir`]).
//!
//! The file is the agent's, so it is read as data: never through a symlink,
//! never from a FIFO, socket, device or directory (no summary, and a note
//! saying why), never blocking, at most [`SUMMARY_CAP`] bytes (a longer one is
//! cut at a character boundary, with a marker saying so), invalid UTF-8
//! decoded lossily, control characters made visible as for a terminal
//! ([`crate::text::visible`]). Reading it never fails the job.

use std::path::Path;

use crate::{
    fsutil::read_untrusted,
    text,
    workspace::{AGENT_OUT_DIR, SUMMARY_FILE},
};

/// Most bytes of the summary file read (and about the most the record keeps).
pub const SUMMARY_CAP: usize = 16 * 1024;

/// What reading the summary file gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The agent's final message, made safe; empty when there is none.
    pub text: String,
    /// Why there is no summary although the agent left something there (a
    /// symlink, a FIFO, a directory…); empty otherwise.
    pub note: String,
}

/// The summary file's name inside the output directory (`summary.md`).
pub fn summary_file_name() -> &'static str {
    SUMMARY_FILE
        .strip_prefix(AGENT_OUT_DIR)
        .map(|n| n.trim_start_matches('/'))
        .unwrap_or(SUMMARY_FILE)
}

/// Reads the summary the agent left in `out_dir` (the host side of
/// [`AGENT_OUT_DIR`], a directory the worker made and the agent could only
/// write inside): see the module's documentation.
pub fn read_summary(out_dir: &Path) -> Summary {
    let name = summary_file_name();
    match read_untrusted(&out_dir.join(name), name, SUMMARY_CAP) {
        Ok(None) => Summary::default(),
        Ok(Some(t)) => Summary {
            text: made_safe(&t.text),
            note: String::new(),
        },
        Err(e) => Summary {
            text: String::new(),
            note: format!("no summary: {e}"),
        },
    }
}

/// Agent text for the record: line ends as `\n`, every other control
/// character but tab made visible, trimmed, and within [`SUMMARY_CAP`] (plus
/// a marker) however much making it visible added.
fn made_safe(text: &str) -> String {
    let visible = text::visible(&text.replace("\r\n", "\n"));
    text::cut(visible.trim(), SUMMARY_CAP + 256)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_file_is_one_plain_name_in_the_output_directory() {
        assert_eq!(summary_file_name(), "summary.md");
        assert_eq!(
            format!("{AGENT_OUT_DIR}/{}", summary_file_name()),
            SUMMARY_FILE
        );
    }

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
