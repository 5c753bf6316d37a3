//! The entity store of one shard: entity id → properties (insertion ordered) and
//! `lastUpdated`. It is derived state: everything in it comes from applying records
//! (`event.rs`) in the order the shard receives them.
//!
//! Layout, chosen for millions of entities per shard:
//! - a hash map (hashbrown, foldhash) from id to entity serves every write and point
//!   read in O(1); a B-tree *set* of the same ids keeps them in order for listings,
//!   which stream without sorting or buffering. An id ([`Id`]) of up to 22 bytes is
//!   stored inside the key (24 bytes), so the map compares it without a cache miss of
//!   its own; a longer one is a shared `Arc<[u8]>`, stored once for both (`Arc` so
//!   that a store can be built on the recovery thread). Updates of existing entities, the common case of a telemetry firehose,
//!   touch only the hash map; the ordered set changes only when an entity is created or
//!   deleted. (A single `BTreeMap` spent ~25% of the single-event path in key
//!   comparisons at 100k entities; see tuning.md.)
//! - an entity is 40 bytes inline (timestamps, history head, and a `Props` the size of
//!   one `Vec<u8>`): its properties live in one contiguous buffer in the property-list
//!   format of `event.rs` (`[kl u16][vl u32][key][raw JSON value]`…), so a 3-property
//!   entity costs one heap block, not one per key and value. A merge rewrites values
//!   in place. Wide entities (many properties or many bytes) switch to an indexed
//!   layout so that a merge stays linear in the update (`props`).
//!
//! Ids sort by their UTF-8 bytes, which is the same order as by Unicode code points.

pub mod id;
pub mod page;
pub mod props;

use std::collections::BTreeSet;

use hashbrown::HashMap;

use crate::event::compact::Update;
use crate::event::{Record, KIND_EVENT, KIND_TOMBSTONE};
use crate::json;
use crate::time;

pub use id::Id;
pub use page::{Page, PageQuery};
pub use props::Props;

#[derive(Debug, Default, Clone)]
pub struct Entity {
    pub last_updated_ms: u64,
    /// Log position of the entity's newest event (head of its history chain; 0 = none).
    pub last_lsn: u64,
    /// Properties in first-insertion order (see `props`).
    pub props: Props,
}

#[derive(Default)]
pub struct Store {
    by_id: HashMap<Id, Entity>,
    /// The keys of `by_id`, in order.
    order: BTreeSet<Id>,
    /// Records applied since start (events and tombstones).
    pub records_applied: u64,
}

impl Store {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Inserts or replaces an entity as is (tests and benches).
    pub fn insert(&mut self, id: &[u8], e: Entity) {
        match self.by_id.get_mut(&Key(id)) {
            Some(old) => *old = e,
            None => {
                let key = Id::from(id);
                self.order.insert(key.clone());
                self.by_id.insert(key, e);
            }
        }
    }

    /// Starts bringing `id`'s entity into cache: its hash slot and key now, its
    /// properties as a prefetch. A batch looks up the entities of the records ahead of
    /// the one it applies, so that their cache misses (several per entity once the
    /// store outgrows the CPU's caches) overlap instead of coming one after another.
    #[inline]
    pub fn prefetch(&self, id: &[u8]) {
        if let Some(e) = self.by_id.get(&Key(id)) {
            e.props.prefetch();
        }
    }

    /// Applies one record found at log position `lsn`. Returns whether it changed
    /// anything (a tombstone of an unknown entity does not).
    pub fn apply(&mut self, r: &Record<'_>, lsn: u64) -> bool {
        self.apply_chained(r, lsn).0
    }

    /// [`Store::apply`] that also returns the entity's previous history head (its
    /// `last_lsn` before this record, 0 if none): the record's `prev_lsn`. One hash
    /// lookup serves both (the ingest path's hottest lookup).
    pub fn apply_chained(&mut self, r: &Record<'_>, lsn: u64) -> (bool, u64) {
        self.apply_update(
            &Update {
                kind: r.kind,
                entity_id: r.entity_id,
                ingest_ms: r.ingest_ms,
                properties: r.properties,
            },
            lsn,
        )
    }

    /// [`Store::apply_chained`] of what the store reads of a record (recovery decodes
    /// no more than this from the log: `event::compact::Section::replay`).
    pub fn apply_update(&mut self, r: &Update<'_>, lsn: u64) -> (bool, u64) {
        self.records_applied += 1;
        match r.kind {
            KIND_EVENT => {
                if let Some(e) = self.by_id.get_mut(&Key(r.entity_id)) {
                    let prev = e.last_lsn;
                    e.props.merge(r.properties);
                    e.last_updated_ms = r.ingest_ms;
                    e.last_lsn = lsn;
                    (true, prev)
                } else {
                    let mut props = Props::with_capacity(r.properties.len());
                    props.merge(r.properties);
                    let key = Id::from(r.entity_id);
                    self.order.insert(key.clone());
                    self.by_id.insert(
                        key,
                        Entity {
                            last_updated_ms: r.ingest_ms,
                            last_lsn: lsn,
                            props,
                        },
                    );
                    (true, 0)
                }
            }
            KIND_TOMBSTONE => match self.by_id.remove_entry(&Key(r.entity_id)) {
                Some((key, e)) => {
                    self.order.remove(&key);
                    (true, e.last_lsn)
                }
                None => (false, 0),
            },
            other => {
                debug_assert!(false, "unknown record kind {other}");
                (false, 0)
            }
        }
    }

    /// Removes every entity whose id `drop` selects (a cluster node giving a group
    /// up); returns how many.
    pub fn remove_where(&mut self, mut drop: impl FnMut(&[u8]) -> bool) -> usize {
        let before = self.by_id.len();
        self.by_id.retain(|id, _| !drop(id));
        self.order.retain(|id| !drop(id));
        before - self.by_id.len()
    }

    /// Moves every entity whose id `to` maps to `Some(i)` into `into[i]` (others are
    /// dropped), leaving this store empty: splits a store in one pass.
    pub fn split_into(&mut self, into: &mut [Store], mut to: impl FnMut(&[u8]) -> Option<usize>) {
        self.order.clear();
        for (id, e) in std::mem::take(&mut self.by_id) {
            if let Some(i) = to(&id) {
                let target = &mut into[i];
                target.order.insert(id.clone());
                target.by_id.insert(id, e);
            }
        }
    }

    /// Moves every entity of `other` into this store (replacing any with the same id).
    pub fn absorb(&mut self, other: Store) {
        for (id, e) in other.by_id {
            if self.by_id.insert(id.clone(), e).is_none() {
                self.order.insert(id);
            }
        }
    }

    pub fn get(&self, id: &[u8]) -> Option<&Entity> {
        self.by_id.get(&Key(id))
    }

    pub fn contains(&self, id: &[u8]) -> bool {
        self.by_id.contains_key(&Key(id))
    }

    /// Entities with ids starting with `prefix` and strictly greater than `after`, in
    /// id order.
    pub fn range<'a>(
        &'a self,
        prefix: &'a [u8],
        after: Option<&'a [u8]>,
    ) -> impl Iterator<Item = (&'a [u8], &'a Entity)> + 'a {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let lower = match after {
            Some(a) if a >= prefix => Excluded(a),
            _ => Included(prefix),
        };
        self.order
            .range::<[u8], _>((lower, Unbounded))
            .take_while(move |k| k.starts_with(prefix))
            .map(|k| (&k[..], &self.by_id[&k[..]]))
    }

    /// Counts the entities whose id starts with `prefix` and is greater than `after`,
    /// stopping at `max`. Returns the count and, when it stopped at `max`, the last id
    /// counted (to go on after it). Walks the ordered set between two bounds without
    /// reading an id: a few ns per entity.
    pub fn count_prefix(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        max: usize,
    ) -> (usize, Option<Id>) {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let lower = match after {
            Some(a) if a >= prefix => Excluded(a),
            _ => Included(prefix),
        };
        let end = prefix_end(prefix);
        let upper = match &end {
            Some(e) => Excluded(&e[..]),
            None => Unbounded,
        };
        let mut n = 0;
        for k in self.order.range::<[u8], _>((lower, upper)) {
            n += 1;
            if n == max {
                return (n, Some(k.clone()));
            }
        }
        (n, None)
    }
}

/// The smallest byte string above every string that starts with `prefix` (`None`:
/// there is none, every string from `prefix` on starts with it).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Appends `{"id":…,"properties":{…},"lastUpdated":"…"}`.
pub fn write_entity_json(out: &mut Vec<u8>, id: &[u8], e: &Entity) {
    out.extend_from_slice(b"{\"id\":");
    json::write_str(out, id);
    out.extend_from_slice(b",\"properties\":{");
    let mut first = true;
    e.props.for_each(|k, v| {
        if !first {
            out.push(b',');
        }
        first = false;
        json::write_str(out, k);
        out.push(b':');
        out.extend_from_slice(v);
    });
    out.extend_from_slice(b"},\"lastUpdated\":\"");
    time::write_rfc3339_ms(out, e.last_updated_ms);
    out.extend_from_slice(b"\"}");
}

/// An entity id to look up: hashed as [`Id`] hashes, compared with `bytes::eq` (ids
/// are mostly short; the default comparison of byte slices is a call into libc).
struct Key<'a>(&'a [u8]);

impl std::hash::Hash for Key<'_> {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.hash(h)
    }
}

impl hashbrown::Equivalent<Id> for Key<'_> {
    #[inline]
    fn equivalent(&self, key: &Id) -> bool {
        crate::bytes::eq(self.0, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{push_property, EventBatch};

    fn props(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut v = Vec::new();
        for (k, val) in pairs {
            push_property(&mut v, k.as_bytes(), val.as_bytes());
        }
        v
    }

    fn pairs(p: &Props) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| {
                (
                    String::from_utf8(k.to_vec()).unwrap(),
                    String::from_utf8(v.to_vec()).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn merge_replaces_in_place_and_appends_new_keys_in_order() {
        let mut p = Props::from_flat(props(&[("a", "1"), ("b", "\"x\""), ("c", "true")]));
        p.merge(&props(&[
            ("b", "{\"deep\":[1,2]}"),
            ("d", "null"),
            ("a", "2"),
        ]));
        assert_eq!(
            pairs(&p),
            vec![
                ("a".into(), "2".into()),
                ("b".into(), "{\"deep\":[1,2]}".into()),
                ("c".into(), "true".into()),
                ("d".into(), "null".into()),
            ]
        );
        p.merge(&props(&[("b", "3")]));
        assert_eq!(pairs(&p)[1], ("b".into(), "3".into()));
        p.merge(&props(&[]));
        assert_eq!(pairs(&p).len(), 4);
    }

    #[test]
    fn duplicate_keys_in_one_update_last_wins() {
        let mut p = Props::default();
        p.merge(&props(&[("k", "1"), ("k", "2")]));
        assert_eq!(pairs(&p), vec![("k".into(), "2".into())]);
    }

    fn apply_batch(store: &mut Store, b: &EventBatch) {
        for r in b.records() {
            store.apply(&r, 0);
        }
    }

    #[test]
    fn apply_event_then_tombstone_then_recreate_starts_fresh() {
        use crate::ingest::decode::{EventRef, Property};
        let mut s = Store::default();
        let ps = [
            Property {
                key: "t",
                value: b"1",
            },
            Property {
                key: "u",
                value: b"2",
            },
        ];
        let ev = |ps| EventRef {
            event_id: None,
            stream: "s",
            source: "x",
            timestamp_ms: None,
            key: None,
            schema: None,
            entity_id: "e",
            properties: ps,
        };
        let mut b = EventBatch::default();
        b.push_event(&ev(&ps), b"id", 1);
        b.stamp_ingest(10);
        apply_batch(&mut s, &b);
        assert_eq!(s.get(b"e").unwrap().last_updated_ms, 10);
        let mut t = EventBatch::default();
        t.push_tombstone(b"e", b"id2", 2);
        apply_batch(&mut s, &t);
        assert!(s.get(b"e").is_none());
        let ps2 = [Property {
            key: "v",
            value: b"3",
        }];
        let mut b2 = EventBatch::default();
        b2.push_event(&ev(&ps2), b"id3", 3);
        apply_batch(&mut s, &b2);
        assert_eq!(
            pairs(&s.get(b"e").unwrap().props),
            vec![("v".into(), "3".into())]
        );
    }

    #[test]
    fn range_respects_prefix_and_after() {
        let mut s = Store::default();
        for id in ["a1", "a2", "a3", "b1", "ab"] {
            s.insert(id.as_bytes(), Entity::default());
        }
        let ids = |p: &str, a: Option<&str>| -> Vec<String> {
            s.range(p.as_bytes(), a.map(str::as_bytes))
                .map(|(k, _)| String::from_utf8(k.to_vec()).unwrap())
                .collect()
        };
        assert_eq!(ids("a", None), ["a1", "a2", "a3", "ab"]);
        assert_eq!(ids("a", Some("a2")), ["a3", "ab"]);
        assert_eq!(ids("", Some("a3")), ["ab", "b1"]);
        assert_eq!(ids("b", Some("a")), ["b1"]);
        assert_eq!(ids("c", None), Vec::<String>::new());
        assert_eq!(ids("a", Some("zz")), Vec::<String>::new());
    }

    #[test]
    fn entity_json_is_valid_and_values_are_byte_exact() {
        let e = Entity {
            last_updated_ms: 1_707_912_000_000,
            last_lsn: 0,
            props: Props::from_flat(props(&[("t", "22.50"), ("q\"", "\"\\u00e9\"")])),
        };
        let mut out = Vec::new();
        write_entity_json(&mut out, b"id/\"x", &e);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.contains("\"t\":22.50"), "{text}");
        assert!(text.contains("\"\\u00e9\""), "{text}");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["id"], "id/\"x");
        assert_eq!(v["lastUpdated"], "2024-02-14T12:00:00.000Z");
        assert_eq!(v["properties"]["q\""], "é");
    }

    #[test]
    fn prefix_counts_in_steps() {
        let mut s = Store::default();
        for id in [
            &b"alph"[..],
            b"alpha",
            b"alpha/",
            b"alpha/a",
            b"alpha/b",
            b"alpha/c\xff",
            b"alpha0",
            b"alpha\xff",
            b"alpha\xff\xff/x",
            b"beta/a",
        ] {
            s.insert(id, Entity::default());
        }
        assert_eq!(s.count_prefix(b"alpha/", None, usize::MAX), (4, None));
        assert_eq!(s.count_prefix(b"alpha", None, usize::MAX).0, 8);
        assert_eq!(s.count_prefix(b"alpha\xff", None, usize::MAX).0, 2);
        assert_eq!(s.count_prefix(b"\xff", None, usize::MAX).0, 0);
        assert_eq!(s.count_prefix(b"", None, usize::MAX).0, 10);
        assert_eq!(s.count_prefix(b"gamma/", None, usize::MAX), (0, None));
        // In steps of 3: each resumes after the last id counted.
        let (n, last) = s.count_prefix(b"alpha", None, 3);
        assert_eq!((n, last.as_deref()), (3, Some(&b"alpha/a"[..])));
        let (n, last) = s.count_prefix(b"alpha", last.as_deref(), 3);
        assert_eq!((n, last.as_deref()), (3, Some(&b"alpha0"[..])));
        assert_eq!(s.count_prefix(b"alpha", last.as_deref(), 3), (2, None));
        assert_eq!(prefix_end(b"ab\xff\xff"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"\xff"), None);
    }
}
