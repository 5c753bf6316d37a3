//! Byte-string helpers for the hot paths.

/// `a == b`, without a call into libc's `memcmp`/`bcmp` for strings of up to 16
/// bytes (property names, streams, sources): the ingest path compares a few of them
/// per event, and for such lengths the call costs more than the comparison.
#[inline]
pub fn eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0 => true,
        1..=3 => {
            // First, middle and last byte cover every position of 1 to 3 bytes.
            a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1]
        }
        4..=7 => word32(a, 0) == word32(b, 0) && word32(a, n - 4) == word32(b, n - 4),
        8..=16 => word64(a, 0) == word64(b, 0) && word64(a, n - 8) == word64(b, n - 8),
        _ => a == b,
    }
}

#[inline]
fn word32(s: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(s[at..at + 4].try_into().expect("4 bytes"))
}

#[inline]
fn word64(s: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_exactly_when_the_bytes_are() {
        let base: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37)).collect();
        for n in 0..40 {
            let a = &base[..n];
            let copy = a.to_vec();
            assert!(eq(a, a));
            assert!(eq(a, &copy), "a copy, elsewhere in memory");
            for i in 0..n {
                let mut b = a.to_vec();
                b[i] ^= 1;
                assert!(!eq(a, &b), "len {n}, byte {i}");
            }
            assert!(!eq(a, &base[..n + 1]));
        }
    }
}
