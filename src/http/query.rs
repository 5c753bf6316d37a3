//! Request-target helpers: percent-decoding of paths and query values, and iteration over
//! `key=value` query pairs. Raw ranges come from [`super::parse::Head`].

use super::parse::{bad, HttpError};

pub(crate) fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `raw` into `out` (cleared first). '+' is kept as '+' when `plus_as_space`
/// is false (paths) and becomes ' ' when true (query values). Err on a bad escape (`%G1`,
/// truncated `%4`) or if the decoded bytes are not valid UTF-8; `out` is unspecified then.
/// `%2F` decodes to '/' and `%00` to NUL: callers that map paths to files must check for those.
pub fn percent_decode(raw: &[u8], plus_as_space: bool, out: &mut Vec<u8>) -> Result<(), HttpError> {
    out.clear();
    // Decoding never grows the input, so one reservation suffices, and none at all once the
    // caller's reused Vec has grown to its working size.
    out.reserve(raw.len());
    let mut rest = raw;
    // Copy runs of plain bytes in bulk; only '%' (and '+') need per-byte work.
    while let Some(i) = rest
        .iter()
        .position(|&b| b == b'%' || (plus_as_space && b == b'+'))
    {
        out.extend_from_slice(&rest[..i]);
        if rest[i] == b'+' {
            out.push(b' ');
            rest = &rest[i + 1..];
            continue;
        }
        let hi = rest.get(i + 1).copied().and_then(hex_val);
        let lo = rest.get(i + 2).copied().and_then(hex_val);
        let (Some(hi), Some(lo)) = (hi, lo) else {
            return Err(bad("invalid percent-encoding"));
        };
        out.push((hi << 4) | lo);
        rest = &rest[i + 3..];
    }
    out.extend_from_slice(rest);
    if std::str::from_utf8(out).is_err() {
        return Err(bad(if plus_as_space {
            "query is not UTF-8"
        } else {
            "path is not UTF-8"
        }));
    }
    Ok(())
}

/// Iterates `a=1&b=&c` → ("a","1"), ("b",""), ("c","") raw (not decoded) pairs, skipping
/// empty segments. Only the first '=' splits, so `a=b=c` is ("a", "b=c").
pub fn query_pairs(raw: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    raw.split(|&b| b == b'&')
        .filter(|seg| !seg.is_empty())
        .map(|seg| match seg.iter().position(|&b| b == b'=') {
            Some(eq) => (&seg[..eq], &seg[eq + 1..]),
            None => (seg, &seg[seg.len()..]),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(raw: &str, plus_as_space: bool) -> Result<String, HttpError> {
        let mut out = Vec::new();
        percent_decode(raw.as_bytes(), plus_as_space, &mut out)?;
        Ok(String::from_utf8(out).expect("Ok means UTF-8"))
    }

    #[test]
    fn percent_decode_valid() {
        let cases = [
            ("", false, ""),
            ("/plain/path", false, "/plain/path"),
            ("/a%2Fb", false, "/a/b"),
            ("/a%2fb", false, "/a/b"),
            ("%41%42%43", false, "ABC"),
            ("%7e%7E", false, "~~"),
            ("/a+b", false, "/a+b"),
            ("a+b", true, "a b"),
            ("%2B", true, "+"),
            ("%2B+%20", true, "+  "),
            ("caf%C3%A9+au+lait", true, "caf\u{e9} au lait"),
            ("caf\u{e9}", false, "caf\u{e9}"),
            ("%F0%9F%A6%80", false, "\u{1f980}"),
            ("100%25", false, "100%"),
            ("%00", false, "\0"),
        ];
        for (raw, plus, want) in cases {
            assert_eq!(
                decode(raw, plus).as_deref(),
                Ok(want),
                "{raw:?} plus={plus}"
            );
        }
    }

    #[test]
    fn percent_decode_bad_escapes() {
        for raw in [
            "%G1", "%1G", "%4", "%", "abc%", "abc%4", "%%41", "%+1", "% 1", "%\u{e9}",
        ] {
            for plus in [false, true] {
                assert_eq!(
                    decode(raw, plus),
                    Err(HttpError::BadRequest("invalid percent-encoding")),
                    "{raw:?}"
                );
            }
        }
    }

    #[test]
    fn percent_decode_rejects_invalid_utf8() {
        for raw in [
            "%e9",
            "caf%E9",
            "%C3",
            "%C3%28",
            "%ED%A0%80",
            "%FF",
            "%C0%AF",
        ] {
            assert_eq!(
                decode(raw, false),
                Err(HttpError::BadRequest("path is not UTF-8")),
                "{raw:?}"
            );
            assert_eq!(
                decode(raw, true),
                Err(HttpError::BadRequest("query is not UTF-8")),
                "{raw:?}"
            );
        }
        let mut out = Vec::new();
        assert_eq!(
            percent_decode(b"/\xff", false, &mut out),
            Err(HttpError::BadRequest("path is not UTF-8"))
        );
    }

    #[test]
    fn percent_decode_clears_output_first() {
        let mut out = b"stale contents".to_vec();
        percent_decode(b"x%20y", false, &mut out).unwrap();
        assert_eq!(out, b"x y");
        percent_decode(b"", false, &mut out).unwrap();
        assert!(out.is_empty());
    }

    /// The pairs as text; they borrow from `raw` (splitting at ASCII keeps them UTF-8).
    fn pairs(raw: &str) -> Vec<(&str, &str)> {
        let text = |b| std::str::from_utf8(b).unwrap();
        query_pairs(raw.as_bytes())
            .map(|(k, v)| (text(k), text(v)))
            .collect()
    }

    #[test]
    fn query_pairs_cases() {
        assert_eq!(pairs("a=1&b=&c"), [("a", "1"), ("b", ""), ("c", "")]);
        assert_eq!(pairs(""), []);
        assert_eq!(pairs("&"), []);
        assert_eq!(pairs("&&a=1&&"), [("a", "1")]);
        assert_eq!(pairs("=x"), [("", "x")]);
        assert_eq!(pairs("="), [("", "")]);
        assert_eq!(pairs("a=b=c"), [("a", "b=c")]);
        assert_eq!(pairs("a=1&a=2"), [("a", "1"), ("a", "2")]);
        // Raw: nothing is decoded, and ';' is not a separator.
        assert_eq!(pairs("k%3D=v+1%26;x=y"), [("k%3D", "v+1%26;x=y")]);
    }

    #[test]
    fn query_pairs_are_subslices_of_the_input() {
        let raw = b"key=value&flag";
        let got: Vec<_> = query_pairs(raw).collect();
        assert_eq!(
            got,
            [(&b"key"[..], &b"value"[..]), (&b"flag"[..], &b""[..])]
        );
        let base = raw.as_ptr() as usize;
        assert_eq!(got[0].1.as_ptr() as usize - base, 4);
        assert_eq!(got[1].0.as_ptr() as usize - base, 10);
    }
}
