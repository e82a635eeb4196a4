//! Agent-made text for people: control bytes made visible for a terminal
//! ([`visible`]), stripped for a forge comment ([`strip_controls`]), escaped
//! for JSON ([`json_safe`]); text cut to a size with a marker ([`cut`]), and
//! a stream cut line by line ([`LineCutter`]). Every control character is C0
//! (U+0000–U+001F), DEL (U+007F) or C1 (U+0080–U+009F); only newline and tab
//! are kept as they are.

/// Lines of agent output longer than this are cut (the rest of the line is
/// replaced by a marker).
pub const LINE_MAX_BYTES: usize = 16 * 1024;

/// Whether `c` is a control character other than newline and tab.
pub fn is_hostile_control(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

/// `text` with every control character but newline and tab made visible:
/// ESC as `\e`, other C0 as `^X` (`^M` for a carriage return), DEL as `^?`, C1
/// as `\u{9b}`.
pub fn visible(text: &str) -> String {
    // A look at the bytes first (issue 34: a batch prints 50 000 lines): a
    // control character is a byte below 0x20, 0x7f, or C1 (0xc2 0x80-0x9f);
    // only a text with such a byte (or another 0xc2 character) is read
    // character by character.
    let suspect = |b: &u8| (*b < 0x20 && *b != b'\n' && *b != b'\t') || *b == 0x7f || *b == 0xc2;
    if !text.as_bytes().iter().any(suspect) || !text.chars().any(is_hostile_control) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        push_visible(&mut out, c);
    }
    out
}

/// Appends `c` to `out` as [`visible`] shows it.
pub(crate) fn push_visible(out: &mut String, c: char) {
    match c {
        '\u{1b}' => out.push_str("\\e"),
        '\u{7f}' => out.push_str("^?"),
        c if is_hostile_control(c) && (c as u32) < 0x20 => {
            out.push('^');
            out.push(char::from(b'@' + c as u8));
        }
        c if is_hostile_control(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        c => out.push(c),
    }
}

/// Bytes (an agent's output) as [`visible`] text; bytes that are not UTF-8
/// are shown as `\xNN`.
pub fn visible_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_visible(&mut out, c);
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// `text` without control characters (newline and tab kept): for a forge
/// comment or pull request, where a visible form would only be noise.
pub fn strip_controls(text: &str) -> String {
    text.chars().filter(|c| !is_hostile_control(*c)).collect()
}

/// A JSON document with DEL and C1 characters escaped (`\u009b`): serde_json
/// escapes C0 but writes those raw, and a terminal reads U+009B as CSI. The
/// document means the same (they can only be inside strings).
pub fn json_safe(json: &str) -> String {
    if !json.chars().any(|c| ('\u{7f}'..='\u{9f}').contains(&c)) {
        return json.to_string();
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if ('\u{7f}'..='\u{9f}').contains(&c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// The marker that ends text cut by [`cut`] and [`LineCutter`].
pub fn cut_marker(cut_bytes: usize) -> String {
    format!("… [cut {cut_bytes} bytes]")
}

/// `text` cut to at most `max` bytes (at a character boundary), followed by
/// the [`cut_marker`] when anything was cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{}", &text[..end], cut_marker(text.len() - end))
}

/// `text` with each line cut to at most `max` bytes by [`cut`].
pub fn cut_lines(text: &str, max: usize) -> String {
    text.split('\n')
        .map(|l| cut(l, max))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Cuts the lines of a byte stream (an agent's output) longer than `max`
/// bytes: the first `max` bytes go on, then the [`cut_marker`] when the line
/// ends (or the stream does). Keeps its place across chunks.
#[derive(Debug)]
pub struct LineCutter {
    max: usize,
    /// Bytes of the current line passed on.
    line: usize,
    /// Bytes of the current line dropped.
    dropped: usize,
}

impl LineCutter {
    /// A cutter for lines over `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            line: 0,
            dropped: 0,
        }
    }

    /// Adds `input`, appending what goes on to `out`.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            let (part, newline) = match input.iter().position(|b| *b == b'\n') {
                Some(i) => (&input[..i], true),
                None => (input, false),
            };
            let room = self.max - self.line;
            let take = part.len().min(room);
            out.extend_from_slice(&part[..take]);
            self.line += take;
            self.dropped += part.len() - take;
            if newline {
                self.end_line(out);
                out.push(b'\n');
                input = &input[part.len() + 1..];
            } else {
                input = &[];
            }
        }
    }

    /// Ends the stream: the marker of a cut last line without a newline.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.end_line(out);
    }

    fn end_line(&mut self, out: &mut Vec<u8>) {
        if self.dropped > 0 {
            out.extend_from_slice(cut_marker(self.dropped).as_bytes());
        }
        self.line = 0;
        self.dropped = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_made_visible_and_newlines_and_tabs_kept() {
        let hostile = "a\u{1b}]52;c;eA==\u{7}\u{1b}[2J blocked\rcompleted \u{9b}2J\u{7f}\n\tz";
        let v = visible(hostile);
        assert_eq!(
            v,
            "a\\e]52;c;eA==^G\\e[2J blocked^Mcompleted \\u{9b}2J^?\n\tz"
        );
        assert!(!v.chars().any(is_hostile_control));
        assert_eq!(visible("plain é\n"), "plain é\n");
        assert_eq!(visible("\0"), "^@");
    }

    #[test]
    fn every_control_character_is_found_whatever_its_bytes() {
        // Each character alone and between others: what `visible` gives is
        // what showing it character by character gives.
        for c in (0u32..0x300)
            .chain([0x2028, 0xfeff, 0x1f600])
            .filter_map(char::from_u32)
        {
            for text in [c.to_string(), format!("ab{c}é\n")] {
                let mut one_by_one = String::new();
                text.chars().for_each(|c| push_visible(&mut one_by_one, c));
                assert_eq!(visible(&text), one_by_one, "{:x}", c as u32);
            }
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_shown_as_hex() {
        assert_eq!(
            visible_bytes(b"ok \x9b[2J \xc2\x9b \x1b"),
            "ok \\x9b[2J \\u{9b} \\e"
        );
    }

    #[test]
    fn stripping_keeps_newlines_and_tabs_only() {
        assert_eq!(
            strip_controls("a\u{1b}[2Jb\r\n\tc\u{9b}d\u{7f}\0"),
            "a[2Jb\n\tcd"
        );
    }

    #[test]
    fn json_keeps_its_meaning_without_raw_c1() {
        let s = serde_json::to_string(&"x\u{9b}y\u{1b}z\u{7f}").unwrap();
        let safe = json_safe(&s);
        assert!(
            !safe.contains('\u{9b}') && !safe.contains('\u{1b}'),
            "{safe}"
        );
        let back: String = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, "x\u{9b}y\u{1b}z\u{7f}");
    }

    #[test]
    fn cut_keeps_characters_whole_and_says_how_much() {
        assert_eq!(cut("short", 10), "short");
        assert_eq!(cut("ééé", 3), "é… [cut 4 bytes]");
        assert_eq!(cut_lines("aaaa\nbb", 2), "aa… [cut 2 bytes]\nbb");
    }

    #[test]
    fn long_lines_of_a_stream_are_cut_across_chunks() {
        let mut c = LineCutter::new(4);
        let mut out = Vec::new();
        c.push(b"abc", &mut out);
        c.push(b"defgh\nok\n", &mut out);
        c.push(b"xxxxxx", &mut out);
        c.push(b"xx", &mut out);
        c.finish(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "abcd… [cut 4 bytes]\nok\nxxxx… [cut 4 bytes]"
        );
    }
}
