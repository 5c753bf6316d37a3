//! A group's state as one object of the JetStream object store `flux-snapshots`
//! (object `g<n>`, replicated like the streams): what a node taking the group over
//! loads before it replays the group's stream after the snapshot's sequence, so that a
//! takeover does not replay all history.
//!
//! ```text
//! | "FLUXGS1\n" | seq u64 | txns u32 | txns × u64 | entities u64 |
//! | entities × ( idl u16 | id | last_updated_ms u64 | propl u32 | properties (flat list) ) |
//! | crc32 u32 of everything before |
//! ```
//!
//! `txns`: the intents (their `FLUX_TXN` sequence) whose part for this group the
//! stream holds, still within the intents' retention: the redo of intents must not
//! add them again. Entities loaded from a snapshot have no local history (their
//! `last_lsn` is 0): `GET /api/events` on the new owner starts after the snapshot.

use crate::event::valid_property_list;
use crate::state::{Entity, Props, Store};

const MAGIC: &[u8; 8] = b"FLUXGS1\n";

/// Encodes group `g`'s entities of `store` (entities of other groups skipped), in one
/// go (see [`Encoder`] for the incremental form the owner uses).
pub fn encode(store: &Store, g: u16, groups: usize, seq: u64, txns: &[u64]) -> Vec<u8> {
    let mut enc = Encoder::new(g, groups, seq, txns, store.len() / groups.max(1));
    let mut after = None;
    while !enc.feed(store, &mut after, usize::MAX) {}
    enc.finish()
}

/// A group snapshot encoded a slice of the store at a time, so that the shard serves
/// between slices. The store may change between them: the snapshot is then *fuzzy*
/// (each entity as it was when its slice was encoded, at or after `seq`), which is
/// exact after the stream from `seq + 1` is replayed over it, for the reason a shard
/// snapshot is (`log::snapshot`): replaying a suffix of an entity's events over a
/// state that already holds a prefix of that suffix gives the final state.
pub struct Encoder {
    out: Vec<u8>,
    count_at: usize,
    n: u64,
    g: u16,
    groups: usize,
}

impl Encoder {
    /// Starts a snapshot of group `g` reflecting at least stream sequence `seq`, with
    /// the intents `txns`; `entities` sizes the buffer.
    pub fn new(g: u16, groups: usize, seq: u64, txns: &[u64], entities: usize) -> Self {
        let mut out = Vec::with_capacity(64 + entities * 96);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&(txns.len() as u32).to_le_bytes());
        for t in txns {
            out.extend_from_slice(&t.to_le_bytes());
        }
        let count_at = out.len();
        out.extend_from_slice(&0u64.to_le_bytes());
        Encoder {
            out,
            count_at,
            n: 0,
            g,
            groups,
        }
    }

    /// Encodes the group's entities among the next `visit` entities of `store` after
    /// the id `after` (then moved on); returns whether the store's end was reached.
    pub fn feed(&mut self, store: &Store, after: &mut Option<Vec<u8>>, visit: usize) -> bool {
        let mut seen = 0;
        let mut last: Option<&[u8]> = None;
        for (id, e) in store.range(b"", after.as_deref()) {
            if seen == visit {
                break;
            }
            seen += 1;
            last = Some(id);
            if super::group_of(id, self.groups) != self.g {
                continue;
            }
            let out = &mut self.out;
            out.extend_from_slice(&(id.len() as u16).to_le_bytes());
            out.extend_from_slice(id);
            out.extend_from_slice(&e.last_updated_ms.to_le_bytes());
            let len_at = out.len();
            out.extend_from_slice(&0u32.to_le_bytes());
            e.props.write_flat(out);
            let len = (out.len() - len_at - 4) as u32;
            out[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
            self.n += 1;
        }
        if let Some(id) = last {
            *after = Some(id.to_vec());
        }
        seen < visit
    }

    /// The snapshot's bytes.
    pub fn finish(mut self) -> Vec<u8> {
        let at = self.count_at;
        self.out[at..at + 8].copy_from_slice(&self.n.to_le_bytes());
        let crc = crc32fast::hash(&self.out);
        self.out.extend_from_slice(&crc.to_le_bytes());
        self.out
    }
}

/// The stream sequence a snapshot reflects, from its header alone (not checked: `load`
/// checks everything).
pub fn seq_of(b: &[u8]) -> Option<u64> {
    if b.len() < MAGIC.len() + 8 || &b[..8] != MAGIC {
        return None;
    }
    Some(u64::from_le_bytes(b[8..16].try_into().ok()?))
}

/// What a snapshot holds.
pub struct Loaded {
    pub seq: u64,
    pub txns: Vec<u64>,
    pub entities: u64,
}

/// Checks `b` whole (checksum, every length, every property list, every id in group
/// `g`), then inserts its entities into `store`. Nothing is inserted when it fails.
pub fn load(b: &[u8], g: u16, groups: usize, store: &mut Store) -> Result<Loaded, String> {
    let bad = |what: &str| format!("group snapshot: {what}");
    if b.len() < MAGIC.len() + 8 + 4 + 8 + 4 || &b[..8] != MAGIC {
        return Err(bad("not a group snapshot"));
    }
    let (body, crc) = b.split_at(b.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err(bad("checksum mismatch"));
    }
    let mut r = Reader { b: body, at: 8 };
    let seq = r.u64().ok_or_else(|| bad("truncated"))?;
    let nt = r.u32().ok_or_else(|| bad("truncated"))? as usize;
    let mut txns = Vec::with_capacity(nt.min(body.len() / 8));
    for _ in 0..nt {
        txns.push(r.u64().ok_or_else(|| bad("truncated intents"))?);
    }
    let n = r.u64().ok_or_else(|| bad("truncated"))?;
    let start = r.at;
    // First pass: validate everything, so that a bad snapshot inserts nothing.
    for _ in 0..n {
        let (id, _, props) = r.entity().ok_or_else(|| bad("truncated entity"))?;
        if super::group_of(id, groups) != g {
            return Err(bad("an entity of another group"));
        }
        if !valid_property_list(props) {
            return Err(bad("a malformed property list"));
        }
    }
    if r.at != body.len() {
        return Err(bad("trailing bytes"));
    }
    r.at = start;
    for _ in 0..n {
        let (id, last_updated_ms, props) = r.entity().expect("validated");
        store.insert(
            id,
            Entity {
                last_updated_ms,
                last_lsn: 0,
                props: Props::from_flat(props.to_vec()),
            },
        );
    }
    Ok(Loaded {
        seq,
        txns,
        entities: n,
    })
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|x| u16::from_le_bytes([x[0], x[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|x| {
            let mut a = [0u8; 8];
            a.copy_from_slice(x);
            u64::from_le_bytes(a)
        })
    }
    fn entity(&mut self) -> Option<(&'a [u8], u64, &'a [u8])> {
        let idl = self.u16()? as usize;
        let id = self.take(idl)?;
        let t = self.u64()?;
        let pl = self.u32()? as usize;
        let props = self.take(pl)?;
        Some((id, t, props))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(n: usize) -> Store {
        let mut s = Store::default();
        for i in 0..n {
            let mut props = Vec::new();
            crate::event::push_property(&mut props, b"v", format!("{i}").as_bytes());
            crate::event::push_property(&mut props, b"s", b"\"x\"");
            s.insert(
                format!("e{i}").as_bytes(),
                Entity {
                    last_updated_ms: 1000 + i as u64,
                    last_lsn: 7,
                    props: Props::from_flat(props),
                },
            );
        }
        s
    }

    #[test]
    fn a_group_round_trips_and_damage_is_refused() {
        let s = store_with(500);
        let groups = 4;
        for g in 0..groups as u16 {
            let b = encode(&s, g, groups, 42, &[3, 9]);
            let mut t = Store::default();
            let l = load(&b, g, groups, &mut t).unwrap();
            assert_eq!((l.seq, l.txns.clone()), (42, vec![3, 9]));
            assert_eq!(l.entities as usize, t.len());
            for (id, e) in t.range(b"", None) {
                assert_eq!(super::super::group_of(id, groups), g);
                let orig = s.get(id).unwrap();
                assert_eq!(e.last_updated_ms, orig.last_updated_ms);
                let (mut a, mut o) = (Vec::new(), Vec::new());
                e.props.write_flat(&mut a);
                orig.props.write_flat(&mut o);
                assert_eq!(a, o);
            }
            // Every byte flipped or cut is refused and inserts nothing.
            for i in (0..b.len()).step_by(7) {
                let mut bad = b.clone();
                bad[i] ^= 0x41;
                let mut t = Store::default();
                assert!(load(&bad, g, groups, &mut t).is_err());
                assert!(t.is_empty());
            }
            let mut t = Store::default();
            assert!(load(&b[..b.len() - 1], g, groups, &mut t).is_err());
        }
        // A snapshot of group 0 (500 entities over 4 groups: some in it) does not load
        // as group 1.
        let b = encode(&s, 0, groups, 1, &[]);
        assert!(load(&b, 1, groups, &mut Store::default()).is_err());
    }

    fn flat(s: &Store, groups: usize, g: u16) -> Vec<(Vec<u8>, u64, Vec<u8>)> {
        s.range(b"", None)
            .filter(|(id, _)| super::super::group_of(id, groups) == g)
            .map(|(id, e)| {
                let mut p = Vec::new();
                e.props.write_flat(&mut p);
                (id.to_vec(), e.last_updated_ms, p)
            })
            .collect()
    }

    #[test]
    fn a_fuzzy_snapshot_with_the_changes_after_it_replayed_is_exact() {
        let groups = 4;
        for g in 0..groups as u16 {
            let mut s = store_with(500);
            let mut enc = Encoder::new(g, groups, 42, &[], 0);
            let mut after = None;
            // Writes between slices (each a whole entity, as a write that sets every
            // key): updates, creations and deletions, some behind the cursor and
            // some ahead of it; then replayed over the loaded snapshot in order.
            let mut changes: Vec<(Vec<u8>, Option<Entity>)> = Vec::new();
            let mut turn = 0u64;
            while !enc.feed(&s, &mut after, 37) {
                turn += 1;
                for k in [turn * 7 % 500, turn * 13 % 500 + 1000] {
                    let id = format!("e{k}").into_bytes();
                    let e = store_with(1).get(b"e0").unwrap().clone();
                    let e = Entity {
                        last_updated_ms: 5000 + turn,
                        ..e
                    };
                    s.insert(&id, e.clone());
                    changes.push((id, Some(e)));
                }
                let gone = format!("e{}", turn * 11 % 500).into_bytes();
                s.remove_where(|id| id == gone.as_slice());
                changes.push((gone, None));
            }
            assert!(turn > 10, "the store was read in slices");
            let b = enc.finish();
            let mut t = Store::default();
            load(&b, g, groups, &mut t).unwrap();
            for (id, e) in changes {
                if super::super::group_of(&id, groups) != g {
                    continue;
                }
                match e {
                    Some(e) => t.insert(&id, e),
                    None => {
                        t.remove_where(|x| x == id.as_slice());
                    }
                }
            }
            assert_eq!(flat(&t, groups, g), flat(&s, groups, g), "group {g}");
            // Read in one go, unchanged, it is what `encode` writes.
            let mut enc = Encoder::new(g, groups, 42, &[1], 0);
            let mut after = None;
            while !enc.feed(&s, &mut after, 5) {}
            assert_eq!(enc.finish(), encode(&s, g, groups, 42, &[1]));
        }
    }
}
