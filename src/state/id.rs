//! Entity ids as the store keeps them: up to [`INLINE`] bytes inside the key itself,
//! longer ones in a shared heap block.
//!
//! The hash map compares the id it is looking for with the key in each candidate slot.
//! With the id behind a pointer (`Arc<[u8]>`) that compare is a cache miss of its own
//! once the store outgrows the CPU's caches (8.7 % of a batch's time at 100,000
//! entities, tuning.md); an id stored in the slot is compared from the line the probe
//! already loaded. Typical telemetry ids (`sensor-000123`, `host-17.cpu`) are short.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

/// Ids of at most this many bytes are stored inline (the key is 24 bytes either way).
pub const INLINE: usize = 22;

/// An entity id: its bytes, inline or shared. Compares, orders and hashes exactly as
/// the `[u8]` it holds, so maps keyed by it are looked up by `&[u8]`.
#[derive(Clone)]
pub enum Id {
    Inline { len: u8, bytes: [u8; INLINE] },
    Shared(Arc<[u8]>),
}

impl Id {
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Id::Inline { len, bytes } => &bytes[..*len as usize],
            Id::Shared(a) => a,
        }
    }
}

impl From<&[u8]> for Id {
    #[inline]
    fn from(b: &[u8]) -> Id {
        if b.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..b.len()].copy_from_slice(b);
            Id::Inline {
                len: b.len() as u8,
                bytes,
            }
        } else {
            Id::Shared(b.into())
        }
    }
}

impl Deref for Id {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Borrow<[u8]> for Id {
    #[inline]
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Hash for Id {
    #[inline]
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.as_bytes().hash(h)
    }
}

impl PartialEq for Id {
    #[inline]
    fn eq(&self, other: &Id) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Id {}

impl PartialOrd for Id {
    fn partial_cmp(&self, other: &Id) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Id {
    fn cmp(&self, other: &Id) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl std::fmt::Debug for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Id({:?})", String::from_utf8_lossy(self.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::RandomState;
    use std::hash::BuildHasher;

    #[test]
    fn an_id_is_its_bytes_inline_or_shared() {
        assert_eq!(std::mem::size_of::<Id>(), 24);
        for len in [0, 1, INLINE - 1, INLINE, INLINE + 1, 300] {
            let bytes: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let id = Id::from(&bytes[..]);
            assert_eq!(matches!(id, Id::Inline { .. }), len <= INLINE, "len {len}");
            assert_eq!(&*id, &bytes[..]);
            let s = RandomState::new();
            assert_eq!(s.hash_one(&id), s.hash_one(&bytes[..]), "hash as [u8]");
        }
    }

    #[test]
    fn ids_order_as_their_bytes_across_both_forms() {
        let long = vec![b'b'; INLINE + 5];
        let ids = [&b""[..], b"a", b"ab", &long[..INLINE], &long, b"c"];
        for x in ids {
            for y in ids {
                assert_eq!(Id::from(x).cmp(&Id::from(y)), x.cmp(y), "{x:?} {y:?}");
                assert_eq!(Id::from(x) == Id::from(y), x == y);
            }
        }
    }
}
