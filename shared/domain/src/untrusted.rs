//! Text from a file the agent may have planted, as data: what was read, cut
//! at a cap, and why a file was refused. Reading the file is
//! `agentq_shared::fsutil::read_untrusted`'s; this module holds the types and
//! the cut.

/// Why a file from the workspace was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UntrustedFileError {
    /// The entry is a symbolic link.
    #[error("{0} is a symlink; refusing to read it")]
    Symlink(String),
    /// The entry is a FIFO, socket, device or directory.
    #[error("{0} is not a regular file ({1}); refusing to read it")]
    NotRegular(String, &'static str),
    /// Reading failed.
    #[error("cannot read {0}: {1}")]
    Io(String, String),
}

/// Text read from the workspace: at most the cap, the rest cut and said so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UntrustedText {
    /// The text (lossy UTF-8), with a note at the end when it was cut.
    pub text: String,
    /// Whether the file was longer than the cap.
    pub truncated: bool,
}

impl UntrustedText {
    /// The text of `bytes`, read from the file `name` of `file_len` bytes with
    /// at most `cap + 1` bytes read: more than `cap` means the file was cut.
    /// A cut text ends at a character boundary (a character split by the cap
    /// is left out whole), followed by a note saying how long the file is.
    /// Invalid UTF-8 is decoded lossily.
    pub fn from_bytes(mut bytes: Vec<u8>, file_len: u64, name: &str, cap: usize) -> Self {
        let truncated = bytes.len() > cap;
        bytes.truncate(cap);
        if truncated {
            bytes.truncate(utf8_boundary(&bytes));
        }
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        if truncated {
            text.push_str(&format!("\n[… {name} is {file_len} bytes; cut at {cap}]"));
        }
        Self { text, truncated }
    }
}

/// The length of `bytes` without a UTF-8 character cut short at its end (a
/// lead byte whose continuation bytes are missing); bytes that are not UTF-8
/// at all are left for a lossy decoding to show.
fn utf8_boundary(bytes: &[u8]) -> usize {
    let len = bytes.len();
    // The last byte that is not a continuation byte, within a character's reach.
    let Some(lead) = (len.saturating_sub(4)..len)
        .rev()
        .find(|&i| bytes[i] & 0xC0 != 0x80)
    else {
        return len;
    };
    let need = match bytes[lead] {
        b if b >= 0xF0 => 4,
        b if b >= 0xE0 => 3,
        b if b >= 0xC0 => 2,
        _ => 1,
    };
    if lead + need > len {
        lead
    } else {
        len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_within_the_cap_is_whole_and_longer_text_is_cut_and_said_so() {
        let t = UntrustedText::from_bytes(b"short".to_vec(), 5, "BLOCKED.md", 10);
        assert_eq!((t.text.as_str(), t.truncated), ("short", false));
        let t = UntrustedText::from_bytes(b"0123456789a".to_vec(), 16, "BLOCKED.md", 10);
        assert!(t.truncated);
        assert_eq!(t.text, "0123456789\n[… BLOCKED.md is 16 bytes; cut at 10]");
    }

    /// A character split by the cap is left out whole; a broken byte that is
    /// not at the cut stays for the lossy decoding.
    #[test]
    fn a_cut_ends_at_a_character_boundary() {
        for (c, at) in [("é", 1), ("€", 1), ("€", 2), ("😀", 1), ("😀", 3)] {
            let mut b = b"ab".to_vec();
            b.extend_from_slice(&c.as_bytes()[..at]);
            b.push(b'z');
            let t = UntrustedText::from_bytes(b, 9, "f", 2 + at);
            assert!(t.text.starts_with("ab\n[…"), "{c} {at}: {}", t.text);
        }
        let t = UntrustedText::from_bytes(b"a\xffbcd".to_vec(), 5, "f", 3);
        assert!(t.text.starts_with("a\u{fffd}b\n"), "{}", t.text);
        let t = UntrustedText::from_bytes("aé".as_bytes().to_vec(), 3, "f", 3);
        assert_eq!((t.text.as_str(), t.truncated), ("aé", false));
    }
}
