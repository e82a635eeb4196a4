//! JSON text written straight into a byte buffer, byte for byte what
//! `serde_json` writes, without going through its serializer for the common
//! case (issue 34: a batch enqueue writes some fifty strings per job).

/// Appends `s` as a JSON string literal, quotes included, exactly as
/// `serde_json::to_writer` writes it: a string with nothing to escape (no
/// `"`, `\` or control character below U+0020) is copied as it is; any other
/// goes through `serde_json`.
pub fn push_str(out: &mut Vec<u8>, s: &str) {
    // Every byte looked at (no early exit: the loop is vectorized).
    let plain = !s.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if plain {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("a string into memory");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        let mut all = String::new();
        for c in (0u32..0x250).chain([0x7f, 0x80, 0x9b, 0x2028, 0x2029, 0xfeff, 0x1f600]) {
            all.push(char::from_u32(c).unwrap());
        }
        for s in [
            "",
            "plain text / with slash",
            "a \"quoted\" \\ word",
            "tab\there\nnewline\r\u{8}\u{c}\u{0}\u{1f}",
            "é ü 日本 😀 \u{7f} \u{9b}",
            "\"",
            "\\",
            "</script>",
            all.as_str(),
        ] {
            let mut ours = b"x".to_vec();
            push_str(&mut ours, s);
            let mut theirs = b"x".to_vec();
            serde_json::to_writer(&mut theirs, s).unwrap();
            assert_eq!(ours, theirs, "{s:?}");
        }
    }
}
