//! An agent's output made readable for people, as a stream (`agentq logs`, the
//! console's log view). Real agent CLIs write for a terminal: progress bars
//! redrawn with carriage returns, colours, cursor moves and window titles,
//! and now and then bytes that are not UTF-8. Shown as they are they are
//! noise at best (`^M` between every step of a progress bar) and at worst
//! commands to the reader's terminal. So:
//!
//! - colours and text styles (SGR: `ESC [ params m`) are dropped;
//! - a carriage return that ends a line (CR LF) is a plain line break;
//! - one that does not (a progress bar redrawn in place) shows as `^M` and a
//!   line break: every state of the bar on its own line, none hidden by a
//!   later one;
//! - every other control character is made visible as [`visible`](crate::text::visible)
//!   shows it (`\e[2K`, `\e]0;title^G`, `\u{9b}`), never sent raw;
//! - bytes that are not UTF-8 show as `\xNN` (a terminal) or U+FFFD (a page).
//!
//! A character, escape sequence or carriage return cut between two chunks
//! waits, at most [`PENDING_MAX`] bytes, for the rest in the next chunk.

use crate::text::push_visible;

/// Most bytes held back at the end of a chunk (an escape sequence longer than
/// this is shown, made visible, as it is).
pub const PENDING_MAX: usize = 32;

/// How bytes that are not UTF-8 are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// `\xNN` per byte (a terminal: says which bytes they were).
    Hex,
    /// U+FFFD per bad sequence, as [`String::from_utf8_lossy`] (a page).
    Replacement,
}

/// The stream's renderer (see the module docs).
#[derive(Debug, Clone)]
pub struct Readable {
    invalid: Invalid,
    pending: Vec<u8>,
}

/// What the bytes at the start of a slice are.
enum Item {
    /// Not complete yet: wait for more.
    Incomplete,
    /// Shown as this text, taking this many bytes.
    Text(String, usize),
}

impl Readable {
    /// A renderer at the start of a stream.
    pub fn new(invalid: Invalid) -> Self {
        Self::resume(invalid, Vec::new())
    }

    /// A renderer going on from `pending` (what [`Readable::pending`] held
    /// back, e.g. before a page handed its stream over).
    pub fn resume(invalid: Invalid, mut pending: Vec<u8>) -> Self {
        pending.truncate(PENDING_MAX);
        Self { invalid, pending }
    }

    /// The bytes held back for the next chunk (at most [`PENDING_MAX`]).
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Renders `bytes` after what was held back; holds back an incomplete end.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.render(bytes, false)
    }

    /// Ends the stream: renders whatever was held back.
    pub fn finish(&mut self) -> String {
        self.render(&[], true)
    }

    /// All of `bytes` as one whole stream.
    pub fn all(invalid: Invalid, bytes: &[u8]) -> String {
        let mut r = Self::new(invalid);
        let mut out = r.push(bytes);
        out.push_str(&r.finish());
        out
    }

    fn render(&mut self, bytes: &[u8], end: bool) -> String {
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(bytes);
        let mut out = String::with_capacity(buf.len());
        let mut i = 0;
        while i < buf.len() {
            match self.item(&buf[i..], end) {
                Item::Text(text, n) => {
                    out.push_str(&text);
                    i += n;
                }
                Item::Incomplete => {
                    self.pending = buf[i..].to_vec();
                    break;
                }
            }
        }
        out
    }

    /// The item at the start of `b` (not empty); `end`: nothing follows.
    fn item(&self, b: &[u8], end: bool) -> Item {
        let wait = |n: usize| {
            if end || n >= PENDING_MAX {
                None
            } else {
                Some(Item::Incomplete)
            }
        };
        match b[0] {
            b'\r' => match b.get(1) {
                Some(b'\n') => Item::Text("\n".into(), 2),
                Some(_) => Item::Text("^M\n".into(), 1),
                None => wait(1).unwrap_or_else(|| Item::Text("^M".into(), 1)),
            },
            0x1b => {
                // SGR: ESC [ digits ; : ... m
                if b.len() == 1 {
                    return wait(1).unwrap_or_else(|| Item::Text("\\e".into(), 1));
                }
                if b[1] == b'[' {
                    let params = b[2..]
                        .iter()
                        .take_while(|c| c.is_ascii_digit() || **c == b';' || **c == b':')
                        .count();
                    match b.get(2 + params) {
                        Some(b'm') => return Item::Text(String::new(), 3 + params),
                        Some(_) => {}
                        None => {
                            if let Some(w) = wait(b.len()) {
                                return w;
                            }
                        }
                    }
                }
                Item::Text("\\e".into(), 1)
            }
            _ => self.char_at(b, end),
        }
    }

    fn char_at(&self, b: &[u8], end: bool) -> Item {
        let head = &b[..b.len().min(4)];
        let valid = match std::str::from_utf8(head) {
            Ok(s) => s,
            Err(e) if e.valid_up_to() > 0 => {
                std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
            }
            Err(e) => {
                let n = match e.error_len() {
                    Some(n) => n,
                    // Cut at the end of what came so far.
                    None if !end => return Item::Incomplete,
                    None => head.len(),
                };
                return Item::Text(self.bad(&b[..n]), n);
            }
        };
        let c = valid.chars().next().unwrap_or_default();
        let mut s = String::new();
        push_visible(&mut s, c);
        Item::Text(s, c.len_utf8())
    }

    fn bad(&self, bytes: &[u8]) -> String {
        match self.invalid {
            Invalid::Hex => bytes.iter().map(|b| format!("\\x{b:02x}")).collect(),
            Invalid::Replacement => char::REPLACEMENT_CHARACTER.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every way of cutting `bytes` in two gives the same text.
    fn same_however_cut(bytes: &[u8], invalid: Invalid) -> String {
        let whole = Readable::all(invalid, bytes);
        for at in 0..=bytes.len() {
            let mut r = Readable::new(invalid);
            let mut out = r.push(&bytes[..at]);
            assert!(r.pending().len() <= PENDING_MAX);
            // Handed over as a page hands its stream over.
            let mut r = Readable::resume(invalid, r.pending().to_vec());
            out.push_str(&r.push(&bytes[at..]));
            out.push_str(&r.finish());
            assert_eq!(out, whole, "cut at {at}");
        }
        whole
    }

    #[test]
    fn progress_bars_are_shown_line_by_line_and_crlf_is_a_line_break() {
        let out = same_however_cut(b"get  0%\rget 50%\rget 100%\nok\r\nend\r", Invalid::Hex);
        assert_eq!(out, "get  0%^M\nget 50%^M\nget 100%\nok\nend^M");
    }

    #[test]
    fn colours_are_dropped_and_other_escapes_made_visible() {
        let out = same_however_cut(
            b"\x1b]0;title\x07\x1b[1;32mgreen\x1b[0m \x1b[38;5;196mred\x1b[m|\x1b[2K\x1b[1Gdone\x1b[3A \xc2\x9b2J\x1b",
            Invalid::Hex,
        );
        assert_eq!(
            out,
            "\\e]0;title^Ggreen red|\\e[2K\\e[1Gdone\\e[3A \\u{9b}2J\\e"
        );
        assert!(!out.chars().any(crate::text::is_hostile_control));
    }

    #[test]
    fn bytes_that_are_not_utf8_are_hex_or_replaced() {
        let bytes = b"bytes \xff\xfe here, cut \xe2\x82 char, caf\xc3\xa9 \xe2\x82\xac";
        assert_eq!(
            same_however_cut(bytes, Invalid::Hex),
            "bytes \\xff\\xfe here, cut \\xe2\\x82 char, caf\u{e9} \u{20ac}"
        );
        assert_eq!(
            same_however_cut(bytes, Invalid::Replacement),
            "bytes \u{fffd}\u{fffd} here, cut \u{fffd} char, caf\u{e9} \u{20ac}"
        );
    }

    /// A stream that ends inside a character or an escape: what was held
    /// back is shown at the end, not waited on for ever.
    #[test]
    fn a_stream_ending_inside_a_character_shows_its_bytes() {
        assert_eq!(
            same_however_cut(b"ab\xe2\x82", Invalid::Hex),
            "ab\\xe2\\x82"
        );
        assert_eq!(
            same_however_cut(b"ab\xe2\x82", Invalid::Replacement),
            "ab\u{fffd}"
        );
        assert_eq!(same_however_cut(b"ab\x1b[1;3", Invalid::Hex), "ab\\e[1;3");
    }

    #[test]
    fn a_long_escape_is_not_held_back_for_ever() {
        let mut r = Readable::new(Invalid::Hex);
        let long = format!("\x1b[{}", "1;".repeat(40));
        let out = r.push(long.as_bytes());
        assert!(out.starts_with("\\e["), "{out}");
        assert!(r.pending().len() <= PENDING_MAX);
    }
}
