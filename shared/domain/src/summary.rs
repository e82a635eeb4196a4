//! The agent's final message as the job's `summary`: what the agent wrote to
//! [`SUMMARY_FILE`] (codex's `-o` file; `$AGENTQ_SUMMARY_FILE` for every
//! agent), read back by the worker after the run from the run's output
//! directory on the host ([`crate::workspace::Workspace::agent_out_dir`]).
//!
//! The file is the agent's, so it is read as data
//! (`agentq_shared::summary::read_summary` reads it): never through a
//! symlink, never from a FIFO, socket, device or directory (no summary, and a
//! note saying why), never blocking, at most [`SUMMARY_CAP`] bytes (a longer
//! one is cut at a character boundary, with a marker saying so), invalid UTF-8
//! decoded lossily, control characters made visible as for a terminal
//! ([`crate::text::visible`]). Reading it never fails the job.

use crate::{
    text,
    untrusted::{UntrustedFileError, UntrustedText},
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

impl Summary {
    /// The summary from what reading the summary file (at most
    /// [`SUMMARY_CAP`] bytes) gave: none for no file, the text made safe, or
    /// none and a note saying why the file was refused.
    pub fn from_read(read: Result<Option<UntrustedText>, UntrustedFileError>) -> Self {
        match read {
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

    /// Each ^A is two bytes when visible: 16 KiB of them is 32 KiB, cut
    /// again at 16 KiB + 256 with the marker saying how much went (the cap to
    /// the byte, not only relative to the constant).
    #[test]
    fn made_visible_text_is_cut_again_at_the_cap_plus_256() {
        let t = UntrustedText {
            text: "\u{1}".repeat(16 * 1024),
            truncated: false,
        };
        assert_eq!(
            Summary::from_read(Ok(Some(t))).text,
            format!(
                "{}{}",
                "^A".repeat((16 * 1024 + 256) / 2),
                text::cut_marker(32 * 1024 - (16 * 1024 + 256))
            )
        );
    }

    /// What reading gave, as the summary: none, the text made safe, or none
    /// and a note.
    #[test]
    fn a_read_becomes_the_summary_made_safe_or_a_note() {
        assert_eq!(Summary::from_read(Ok(None)), Summary::default());
        let t = UntrustedText {
            text: " Done.\r\nFixed \x1b[2J it \n".into(),
            truncated: false,
        };
        assert_eq!(
            Summary::from_read(Ok(Some(t))),
            Summary {
                text: "Done.\nFixed \\e[2J it".into(),
                note: String::new()
            }
        );
        let e = UntrustedFileError::Symlink("summary.md".into());
        assert_eq!(
            Summary::from_read(Err(e)),
            Summary {
                text: String::new(),
                note: "no summary: summary.md is a symlink; refusing to read it".into()
            }
        );
    }
}
