//! A JSON span walker: where values start and end in a server's answer, so that a
//! client copies them untouched (`22.50` stays `22.50`) without a JSON library's
//! round trip. Used by the load tester's WebSocket message reader and by the `flux`
//! binary's export/import. Never panics on bad bytes: `None` where a value does not
//! end.

/// The index of the first byte at or after `i` that is not JSON whitespace.
pub fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// `s[i]` is `"`: the index just past the closing quote.
pub fn string_end(s: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < s.len() {
        match s[j] {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

/// The index just past the JSON value starting at `i`.
pub fn value_end(s: &[u8], i: usize) -> Option<usize> {
    match *s.get(i)? {
        b'"' => string_end(s, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < s.len() {
                match s[j] {
                    b'"' => {
                        j = string_end(s, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < s.len() && !matches!(s[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_end_where_they_end() {
        let s = br#" {"a":[1,{"b":"}]\""}],"c":22.50} "#;
        assert_eq!(skip_ws(s, 0), 1);
        assert_eq!(value_end(s, 1), Some(s.len() - 1));
        assert_eq!(value_end(b"22.50,", 0), Some(5));
        assert_eq!(string_end(br#""a\"b" "#, 0), Some(6));
        for cut in [&b"{\"a\":[1"[..], b"\"open", b"[", b""] {
            assert_eq!(value_end(cut, 0), None, "{cut:?}");
        }
    }
}
