//! The intent of a batch that spans groups (a message of `FLUX_TXN`): every group's
//! part, so that the owners can add a part its coordinator did not deliver.
//!
//! ```text
//! | parts u16 | then per part: | group u16 | len u32 | records (event.rs) len B |
//! ```

/// Encodes `parts` (group, records).
pub fn encode(parts: &[(u16, &[u8])]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + parts.iter().map(|(_, r)| 6 + r.len()).sum::<usize>());
    out.extend_from_slice(&(parts.len() as u16).to_le_bytes());
    for (g, r) in parts {
        out.extend_from_slice(&g.to_le_bytes());
        out.extend_from_slice(&(r.len() as u32).to_le_bytes());
        out.extend_from_slice(r);
    }
    out
}

/// The parts of an intent; stops at the first malformed one (an intent is written by
/// a node of this cluster; a malformed one yields what precedes the damage).
pub fn parts(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let Some(n) = b.get(..2).map(|h| u16::from_le_bytes([h[0], h[1]])) else {
        return out;
    };
    b = &b[2..];
    for _ in 0..n {
        let Some(h) = b.get(..6) else { break };
        let g = u16::from_le_bytes([h[0], h[1]]);
        let len = u32::from_le_bytes([h[2], h[3], h[4], h[5]]) as usize;
        let Some(r) = b.get(6..6 + len) else { break };
        out.push((g, r));
        b = &b[6 + len..];
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip_and_truncation() {
        let a = b"abc".as_slice();
        let b = b"".as_slice();
        let enc = super::encode(&[(3, a), (7, b)]);
        assert_eq!(super::parts(&enc), vec![(3, a), (7, b)]);
        assert_eq!(super::parts(&enc[..enc.len() - 7]), vec![]);
        assert_eq!(super::parts(&enc[..8]), vec![]);
        assert_eq!(super::parts(&enc[..11]), vec![(3, a)]);
    }
}
