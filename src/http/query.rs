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
