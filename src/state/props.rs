//! The properties of one entity, and the shallow merge of an update into them.
//!
//! Two layouts behind one type, 24 bytes inline either way (the size of a `Vec`, so
//! an `Entity` does not grow):
//!
//! - **Compact** (almost every entity): one buffer in the property-list format of
//!   `event.rs`, `[kl u16][vl u32][key][raw JSON value]`… in first-insertion order. A
//!   merge finds a key by scanning and rewrites its value in place (`splice` when the
//!   length changes). Cheap and small while the list is short, but a scan per key and
//!   a splice that moves the whole tail are linear in the entity, so merging wide
//!   updates into a wide entity would be quadratic (40,000 properties took seconds).
//! - **Wide** (more than [`COMPACT_PROPS_MAX`] properties or more than
//!   [`COMPACT_BYTES_MAX`] bytes): entries in an append-only arena, their order in a
//!   slot list, and a hash index from key to slot. A merge costs O(key + value) per
//!   property: a value of the same length or shorter is rewritten in place, a longer
//!   one is appended (with its key) and the old bytes become dead; the arena is
//!   compacted when dead bytes exceed the live ones, so the amortised cost stays
//!   linear and the arena at most twice the live bytes.
//!
//! An entity turns wide in the middle of the merge that crosses a bound and stays wide
//! (properties are never removed; a tombstone drops the whole entity). Both layouts
//! keep the same semantics: first-insertion order, an existing key keeps its position,
//! values are the raw JSON text byte for byte, the last of duplicate keys wins.

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

use crate::event::{push_property, Properties};

/// A compact list with more properties than this turns wide. A compact merge scans at
/// most this many entries per key.
pub const COMPACT_PROPS_MAX: usize = 16;
/// A compact list longer than this (bytes) turns wide. A compact merge moves at most
/// this many bytes per property whose length changes.
pub const COMPACT_BYTES_MAX: usize = 2048;
/// The arena of a wide list is compacted once its dead bytes exceed both its live
/// bytes and this (so small lists do not compact over and over).
const WIDE_DEAD_BYTES_MIN: usize = 4096;

/// Bytes of an entry header in the property-list format (`kl u16`, `vl u32`).
const ENTRY_HEADER_BYTES: usize = 6;

/// An entity's properties (see the module doc).
#[derive(Clone, Default)]
pub struct Props(Repr);

#[derive(Clone)]
enum Repr {
    Compact(Vec<u8>),
    Wide(Box<Wide>),
}

impl Default for Repr {
    fn default() -> Self {
        Repr::Compact(Vec::new())
    }
}

/// Where an entry lives in the arena: its key at `at`, its value right after it.
#[derive(Clone, Copy, Debug)]
struct Slot {
    at: usize,
    kl: u16,
    vl: u32,
}

#[derive(Clone)]
struct Wide {
    /// Entries `[key][value]` back to back, in the order they were last moved; some
    /// bytes are dead (overwritten or shortened values).
    arena: Vec<u8>,
    /// One slot per property, in first-insertion order.
    slots: Vec<Slot>,
    /// Key → index into `slots`.
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    /// Dead bytes in `arena`.
    dead_bytes: usize,
    /// Length of the same list in the property-list format (snapshots, sizing).
    flat_bytes: usize,
}

impl Slot {
    #[inline]
    fn key<'a>(&self, arena: &'a [u8]) -> &'a [u8] {
        &arena[self.at..self.at + self.kl as usize]
    }

    #[inline]
    fn value_range(&self) -> std::ops::Range<usize> {
        let v = self.at + self.kl as usize;
        v..v + self.vl as usize
    }
}

impl Wide {
    fn with_capacity(props: usize, bytes: usize) -> Self {
        Wide {
            arena: Vec::with_capacity(bytes),
            slots: Vec::with_capacity(props),
            index: HashTable::with_capacity(props),
            hasher: DefaultHashBuilder::default(),
            dead_bytes: 0,
            flat_bytes: 0,
        }
    }

    /// A wide list holding the property list `flat` (no duplicate keys, as a store's
    /// lists never have).
    fn from_flat(flat: &[u8]) -> Self {
        let count = Properties(flat).count();
        let mut w = Wide::with_capacity(count, flat.len() - count * ENTRY_HEADER_BYTES);
        for (k, v) in Properties(flat) {
            w.set(k, v);
        }
        w
    }

    /// Sets `key` to `value`: in place, or appended as a new property.
    fn set(&mut self, key: &[u8], value: &[u8]) {
        let hash = self.hasher.hash_one(key);
        let (arena, slots) = (&self.arena, &self.slots);
        let found = self
            .index
            .find(hash, |&i| slots[i as usize].key(arena) == key)
            .copied();
        match found {
            Some(i) => self.overwrite(i as usize, value),
            None => {
                let i = u32::try_from(self.slots.len()).expect("fewer than 2^32 properties");
                let at = self.arena.len();
                self.arena.extend_from_slice(key);
                self.arena.extend_from_slice(value);
                self.slots.push(Slot {
                    at,
                    kl: key.len() as u16,
                    vl: value.len() as u32,
                });
                self.flat_bytes += ENTRY_HEADER_BYTES + key.len() + value.len();
                let (arena, slots, hasher) = (&self.arena, &self.slots, &self.hasher);
                self.index
                    .insert_unique(hash, i, |&j| hasher.hash_one(slots[j as usize].key(arena)));
            }
        }
    }

    fn overwrite(&mut self, i: usize, value: &[u8]) {
        let slot = self.slots[i];
        let old = slot.vl as usize;
        self.flat_bytes = self.flat_bytes - old + value.len();
        if value.len() <= old {
            let r = slot.value_range();
            self.arena[r.start..r.start + value.len()].copy_from_slice(value);
            self.slots[i].vl = value.len() as u32;
            self.dead_bytes += old - value.len();
        } else {
            // Key and value move together to the end; their old bytes are dead.
            let at = self.arena.len();
            self.arena
                .extend_from_within(slot.at..slot.at + slot.kl as usize);
            self.arena.extend_from_slice(value);
            self.slots[i] = Slot {
                at,
                kl: slot.kl,
                vl: value.len() as u32,
            };
            self.dead_bytes += slot.kl as usize + old;
        }
        if self.dead_bytes > WIDE_DEAD_BYTES_MIN && self.dead_bytes > self.live_bytes() {
            self.compact();
        }
    }

    fn live_bytes(&self) -> usize {
        self.arena.len() - self.dead_bytes
    }

    /// Rewrites the arena without dead bytes, entries in slot order.
    fn compact(&mut self) {
        let mut arena = Vec::with_capacity(self.live_bytes());
        for s in &mut self.slots {
            let end = s.at + s.kl as usize + s.vl as usize;
            let at = arena.len();
            arena.extend_from_slice(&self.arena[s.at..end]);
            s.at = at;
        }
        self.arena = arena;
        self.dead_bytes = 0;
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.slots
            .iter()
            .map(|s| (s.key(&self.arena), &self.arena[s.value_range()]))
    }
}

/// Where one property sits inside a compact list.
struct CompactSlot {
    /// Offset of the entry's `vl` field.
    vlen_at: usize,
    value: std::ops::Range<usize>,
}

/// The entry of `key` in a compact list, or the number of entries (all scanned).
#[inline]
fn find_compact(props: &[u8], key: &[u8]) -> Result<CompactSlot, usize> {
    let mut off = 0;
    let mut count = 0;
    while off + ENTRY_HEADER_BYTES <= props.len() {
        let kl = u16::from_le_bytes([props[off], props[off + 1]]) as usize;
        let vl = u32::from_le_bytes([
            props[off + 2],
            props[off + 3],
            props[off + 4],
            props[off + 5],
        ]) as usize;
        let k = off + ENTRY_HEADER_BYTES;
        let v = k + kl;
        if crate::bytes::eq(&props[k..v], key) {
            return Ok(CompactSlot {
                vlen_at: off + 2,
                value: v..v + vl,
            });
        }
        off = v + vl;
        count += 1;
    }
    Err(count)
}

impl Props {
    /// A list in the property-list format (a snapshot's, or built by tests) with no
    /// duplicate keys; wide from the start if it is over the compact bounds.
    pub fn from_flat(flat: Vec<u8>) -> Props {
        let wide =
            flat.len() > COMPACT_BYTES_MAX || Properties(&flat).nth(COMPACT_PROPS_MAX).is_some();
        if wide {
            Props(Repr::Wide(Box::new(Wide::from_flat(&flat))))
        } else {
            Props(Repr::Compact(flat))
        }
    }

    /// An empty list with room for `bytes` of property list.
    pub fn with_capacity(bytes: usize) -> Props {
        Props(Repr::Compact(Vec::with_capacity(
            bytes.min(COMPACT_BYTES_MAX),
        )))
    }

    /// Asks the CPU to bring the first bytes of the properties into cache (a hint, no
    /// effect on the value): the store calls it for the records of a batch ahead of
    /// merging them, so that their cache misses overlap.
    #[inline]
    pub fn prefetch(&self) {
        let p = match &self.0 {
            Repr::Compact(v) => v.as_ptr(),
            Repr::Wide(w) => w.arena.as_ptr(),
        };
        prefetch_read(p);
    }

    /// Shallow merge: each key in `updates` (a property list) replaces that property,
    /// keeping its position, or is appended. `null` is stored like any other value;
    /// of duplicate keys in `updates`, the last wins.
    pub fn merge(&mut self, updates: &[u8]) {
        let mut it = Properties(updates);
        if let Repr::Compact(flat) = &mut self.0 {
            loop {
                let Some((k, v)) = it.next() else { return };
                match find_compact(flat, k) {
                    Ok(slot) => {
                        if slot.value.len() == v.len() {
                            flat[slot.value].copy_from_slice(v);
                            continue;
                        }
                        flat.splice(slot.value, v.iter().copied());
                        flat[slot.vlen_at..slot.vlen_at + 4]
                            .copy_from_slice(&(v.len() as u32).to_le_bytes());
                        if flat.len() <= COMPACT_BYTES_MAX {
                            continue;
                        }
                        let wide = Wide::from_flat(flat);
                        self.0 = Repr::Wide(Box::new(wide));
                        break;
                    }
                    Err(count) => {
                        let grown = flat.len() + ENTRY_HEADER_BYTES + k.len() + v.len();
                        if count < COMPACT_PROPS_MAX && grown <= COMPACT_BYTES_MAX {
                            push_property(flat, k, v);
                            continue;
                        }
                        let mut wide = Wide::from_flat(flat);
                        wide.set(k, v);
                        self.0 = Repr::Wide(Box::new(wide));
                        break;
                    }
                }
            }
        }
        let Repr::Wide(w) = &mut self.0 else {
            unreachable!("a compact list returns above")
        };
        for (k, v) in it {
            w.set(k, v);
        }
    }

    /// `(key, raw value)` pairs in first-insertion order.
    pub fn iter(&self) -> PropsIter<'_> {
        PropsIter(match &self.0 {
            Repr::Compact(flat) => IterRepr::Compact(Properties(flat)),
            Repr::Wide(w) => IterRepr::Wide(w.slots.iter(), &w.arena),
        })
    }

    /// Calls `f(key, raw value)` for every property in first-insertion order; the
    /// layout is matched once, not per property (rendering an entity is a hot path).
    #[inline]
    pub fn for_each(&self, mut f: impl FnMut(&[u8], &[u8])) {
        match &self.0 {
            Repr::Compact(flat) => Properties(flat).for_each(|(k, v)| f(k, v)),
            Repr::Wide(w) => w.iter().for_each(|(k, v)| f(k, v)),
        }
    }

    /// Length of the list in the property-list format (what `write_flat` appends).
    pub fn flat_len(&self) -> usize {
        match &self.0 {
            Repr::Compact(flat) => flat.len(),
            Repr::Wide(w) => w.flat_bytes,
        }
    }

    /// Appends the list in the property-list format.
    pub fn write_flat(&self, out: &mut Vec<u8>) {
        match &self.0 {
            Repr::Compact(flat) => out.extend_from_slice(flat),
            Repr::Wide(w) => {
                out.reserve(w.flat_bytes);
                for (k, v) in w.iter() {
                    push_property(out, k, v);
                }
            }
        }
    }

    /// Number of properties.
    pub fn count(&self) -> usize {
        match &self.0 {
            Repr::Compact(flat) => Properties(flat).count(),
            Repr::Wide(w) => w.slots.len(),
        }
    }

    /// Whether the list has the wide layout (tests, metrics).
    pub fn is_wide(&self) -> bool {
        matches!(self.0, Repr::Wide(_))
    }
}

/// Iterator of [`Props::iter`].
pub struct PropsIter<'a>(IterRepr<'a>);

enum IterRepr<'a> {
    Compact(Properties<'a>),
    Wide(std::slice::Iter<'a, Slot>, &'a [u8]),
}

impl<'a> Iterator for PropsIter<'a> {
    type Item = (&'a [u8], &'a [u8]);
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            IterRepr::Compact(p) => p.next(),
            IterRepr::Wide(slots, arena) => {
                let s = slots.next()?;
                Some((s.key(arena), &arena[s.value_range()]))
            }
        }
    }
}

impl PartialEq for Props {
    /// Same properties in the same order, whatever the layouts.
    fn eq(&self, other: &Props) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Props {}

impl std::fmt::Debug for Props {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lossy = String::from_utf8_lossy;
        f.debug_map()
            .entries(self.iter().map(|(k, v)| (lossy(k), lossy(v))))
            .finish()
    }
}

/// A read prefetch of the cache line at `p` into all levels (a hint: never faults,
/// whatever `p` is).
#[inline(always)]
fn prefetch_read<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint that never dereferences `p` architecturally, so
    // any address is sound; x86_64 always has SSE.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p.cast::<i8>(), std::arch::x86_64::_MM_HINT_T0)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specification: a list of pairs, a linear search, overwrite or append.
    #[derive(Default)]
    struct Model(Vec<(Vec<u8>, Vec<u8>)>);

    impl Model {
        fn merge(&mut self, updates: &[(Vec<u8>, Vec<u8>)]) {
            for (k, v) in updates {
                match self.0.iter_mut().find(|(mk, _)| mk == k) {
                    Some(e) => e.1 = v.clone(),
                    None => self.0.push((k.clone(), v.clone())),
                }
            }
        }
    }

    fn flat(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in pairs {
            push_property(&mut out, k, v);
        }
        out
    }

    fn pairs(p: &Props) -> Vec<(Vec<u8>, Vec<u8>)> {
        p.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
    }

    fn check(p: &Props, m: &Model) {
        assert_eq!(pairs(p), m.0);
        assert_eq!(p.count(), m.0.len());
        let mut out = Vec::new();
        p.write_flat(&mut out);
        assert_eq!(out, flat(&m.0), "property-list form");
        assert_eq!(p.flat_len(), out.len());
        assert_eq!(Props::from_flat(out), *p, "a snapshot round trip");
    }

    /// xorshift64*: deterministic, no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> usize {
            (self.next() % n) as usize
        }
    }

    fn update(rng: &mut Rng, keys: usize, max_value: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let n = match rng.below(10) {
            0 => rng.below(200),
            _ => rng.below(6),
        };
        (0..n)
            .map(|_| {
                let k = format!("k{}", rng.below(keys as u64)).into_bytes();
                let len = match rng.below(20) {
                    0 => rng.below(max_value as u64 * 40),
                    _ => rng.below(max_value as u64),
                } + 1;
                let v = vec![b'0' + rng.below(10) as u8; len];
                (k, v)
            })
            .collect()
    }

    #[test]
    fn merge_matches_the_model_across_layouts() {
        for seed in 1..=40u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            // Some runs stay small and compact, some grow wide by count or by bytes.
            let keys = [4, 12, 40, 400][seed as usize % 4];
            let max_value = [3, 20, 200][seed as usize % 3];
            let (mut p, mut m) = (Props::default(), Model::default());
            for _ in 0..300 {
                let u = update(&mut rng, keys, max_value);
                p.merge(&flat(&u));
                m.merge(&u);
                check(&p, &m);
            }
        }
    }

    #[test]
    fn small_lists_stay_compact_and_wide_ones_turn_wide() {
        let kv = |i: usize, len: usize| (format!("key{i}").into_bytes(), vec![b'1'; len]);
        let mut p = Props::default();
        let u: Vec<_> = (0..COMPACT_PROPS_MAX).map(|i| kv(i, 5)).collect();
        p.merge(&flat(&u));
        assert!(
            !p.is_wide(),
            "{COMPACT_PROPS_MAX} short properties are compact"
        );
        p.merge(&flat(&[kv(COMPACT_PROPS_MAX, 5)]));
        assert!(p.is_wide(), "one more turns it wide");

        let mut p = Props::default();
        p.merge(&flat(&[kv(0, 1), kv(1, 1)]));
        assert!(!p.is_wide());
        // Growing a value past the byte bound turns it wide, order kept.
        p.merge(&flat(&[kv(0, COMPACT_BYTES_MAX)]));
        assert!(p.is_wide());
        let got = pairs(&p);
        assert_eq!(
            (got[0].0.as_slice(), got[0].1.len()),
            (&b"key0"[..], COMPACT_BYTES_MAX)
        );
        assert_eq!(got[1].0, b"key1");
    }

    #[test]
    fn wide_overwrites_in_place_append_and_compact() {
        let n = 100;
        let mut m = Model::default();
        let mut p = Props::default();
        let u: Vec<_> = (0..n)
            .map(|i| (format!("p{i}").into_bytes(), b"12".to_vec()))
            .collect();
        p.merge(&flat(&u));
        m.merge(&u);
        assert!(p.is_wide());
        // Shorter, same length, longer: order never changes.
        for (i, len) in [(0, 1), (1, 2), (2, 3), (n - 1, 50), (0, 40)] {
            let u = vec![(format!("p{i}").into_bytes(), vec![b'7'; len])];
            p.merge(&flat(&u));
            m.merge(&u);
            check(&p, &m);
        }
        // Grow one value over and over: the arena stays within twice the live bytes.
        for round in 0..2000 {
            let u = vec![(b"p5".to_vec(), vec![b'9'; 10 + round % 300])];
            p.merge(&flat(&u));
            m.merge(&u);
            let Repr::Wide(w) = &p.0 else { unreachable!() };
            assert!(
                w.arena.len() <= 2 * w.live_bytes() + WIDE_DEAD_BYTES_MIN + 400,
                "arena {} for {} live bytes",
                w.arena.len(),
                w.live_bytes()
            );
        }
        check(&p, &m);
    }

    #[test]
    fn duplicate_keys_in_one_update_last_wins_in_both_layouts() {
        let mut p = Props::default();
        p.merge(&flat(&[
            (b"k".to_vec(), b"1".to_vec()),
            (b"k".to_vec(), b"2".to_vec()),
        ]));
        assert_eq!(pairs(&p), vec![(b"k".to_vec(), b"2".to_vec())]);
        let mut many: Vec<_> = (0..50)
            .map(|i| (b"d".to_vec(), format!("{i}").into_bytes()))
            .collect();
        many.extend((0..50).map(|i| (format!("w{i}").into_bytes(), b"0".to_vec())));
        many.push((b"d".to_vec(), b"\"last\"".to_vec()));
        p.merge(&flat(&many));
        assert!(p.is_wide());
        let got = pairs(&p);
        assert_eq!(got.len(), 52);
        assert_eq!(got[1], (b"d".to_vec(), b"\"last\"".to_vec()));
    }

    #[test]
    fn raw_values_are_kept_byte_for_byte() {
        let values: [&[u8]; 5] = [
            b"22.50",
            b"\"\\u00e9\"",
            b"{\"b\":1, \"a\":[1 ,2]}",
            b"null",
            b"-0.0e+00",
        ];
        let mut p = Props::default();
        let u: Vec<_> = (0..40)
            .map(|i| (format!("v{i}").into_bytes(), values[i % 5].to_vec()))
            .collect();
        p.merge(&flat(&u));
        assert!(p.is_wide());
        for (i, (_, v)) in p.iter().enumerate() {
            assert_eq!(v, values[i % 5]);
        }
    }

    #[test]
    fn the_inline_size_is_that_of_a_vec() {
        assert_eq!(std::mem::size_of::<Props>(), std::mem::size_of::<Vec<u8>>());
    }
}
