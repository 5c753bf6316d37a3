//! Bearer tokens: generation from the operating system's random source, SHA-256
//! hashing (only hashes are stored), constant-time comparison, and parsing of the
//! `Authorization` header.
//!
//! A token is `flux_` and 64 hex digits: 256 bits from `getrandom(2)`. With that much
//! entropy an unsalted SHA-256 is the right storage (as for API keys elsewhere): a
//! slow password hash would buy nothing against guessing and cost every request.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const TOKEN_PREFIX: &str = "flux_";
/// Random bytes per token.
pub const TOKEN_RANDOM_BYTES: usize = 32;

pub type TokenHash = [u8; 32];

/// A fresh token. Fails only when the OS random source does.
pub fn generate() -> Result<String, getrandom::Error> {
    let mut raw = [0u8; TOKEN_RANDOM_BYTES];
    getrandom::fill(&mut raw)?;
    let mut s = String::with_capacity(TOKEN_PREFIX.len() + 2 * TOKEN_RANDOM_BYTES);
    s.push_str(TOKEN_PREFIX);
    push_hex(&mut s, &raw);
    Ok(s)
}

pub fn hash(token: &[u8]) -> TokenHash {
    Sha256::digest(token).into()
}

/// Equality of two hashes in time independent of where they differ.
#[inline]
pub fn same(a: &TokenHash, b: &TokenHash) -> bool {
    a.ct_eq(b).into()
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive,
/// RFC 6750 §2.1); `None` for any other scheme, a missing token, or a token with
/// characters outside `b64token`.
pub fn bearer(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    if value.len() <= SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let token = trim_spaces(&value[SCHEME.len()..]);
    crate::http::is_b64token(token).then_some(token)
}

fn trim_spaces(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

pub fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
}

pub fn parse_hex32(s: &str) -> Option<TokenHash> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_distinct() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 64);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert!(a[TOKEN_PREFIX.len()..]
            .bytes()
            .all(|c| c.is_ascii_hexdigit()));
        // 256 random bits: no two of 1,000 tokens share even their first 64 bits.
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            assert!(seen.insert(generate().unwrap()[..TOKEN_PREFIX.len() + 16].to_string()));
        }
    }

    #[test]
    fn hashes_round_trip_through_hex_and_compare() {
        let h = hash(b"flux_abc");
        let mut s = String::new();
        push_hex(&mut s, &h);
        // From `printf flux_abc | sha256sum`.
        assert_eq!(
            s,
            "042383dc13f361c5be12ff373f3eb71ef9f75cf59aee021f9746ea9dacb5f392"
        );
        assert_eq!(parse_hex32(&s), Some(h));
        assert!(same(&h, &hash(b"flux_abc")));
        assert!(!same(&h, &hash(b"flux_abd")));
        assert_eq!(parse_hex32("xyz"), None);
        assert_eq!(parse_hex32(&"g".repeat(64)), None);
    }

    #[test]
    fn bearer_header_forms() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(
            bearer(b"BEARER a-b_c.d~e+f/g="),
            Some(&b"a-b_c.d~e+f/g="[..])
        );
        for bad in [
            &b"Basic dXNlcjpwYXNz"[..],
            b"Bearer",
            b"Bearer ",
            b"Bearer   ",
            b"token",
            b"Bearer a b",
            b"Bearer a\"b",
            b"",
        ] {
            assert_eq!(bearer(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
