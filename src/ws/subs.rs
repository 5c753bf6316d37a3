//! Subscription patterns and the registry that matches entity ids against them.
//!
//! A pattern is an exact id, `*` (every id) or a prefix ending in `*` (`host-*`). The
//! same [`Registry`] serves both ends of a subscription:
//! - on the shard a WebSocket lives on, pattern → the local connections subscribed
//!   ([`Registry<Vec<ConnId>>`]);
//! - on the shard that owns the matching entities, pattern → the set of shards that
//!   have at least one subscriber ([`Registry<ShardMask>`]).
//!
//! Matching an id costs one hash lookup for the exact pattern plus one per distinct
//! prefix *length* registered (`*` is the prefix of length 0), however many
//! subscriptions there are; an empty registry costs one branch.

use std::collections::BTreeMap;

use hashbrown::HashMap;

use crate::limits::SHARDS_MAX;
use crate::shard::ShardId;

/// A WebSocket connection, unique within its shard for the life of the process.
pub type ConnId = u64;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pattern {
    Exact(Box<[u8]>),
    /// Every id that starts with these bytes (empty: every id).
    Prefix(Box<[u8]>),
}

impl Pattern {
    /// `*` and `prefix*` are prefix patterns; anything else is an exact id (so an id
    /// that itself ends in `*` is reached by the prefix pattern of the same text).
    pub fn parse(text: &[u8]) -> Pattern {
        match text.split_last() {
            Some((b'*', prefix)) => Pattern::Prefix(prefix.into()),
            _ => Pattern::Exact(text.into()),
        }
    }

    /// The pattern confined to ids starting with `scope` (a namespace token's
    /// `name/`): `*` and prefixes that `scope` extends become `scope*`; `None` when
    /// the pattern lies outside it.
    pub fn confine(self, scope: &[u8]) -> Option<Pattern> {
        match self {
            Pattern::Exact(id) => {
                (id.len() > scope.len() && id.starts_with(scope)).then_some(Pattern::Exact(id))
            }
            Pattern::Prefix(p) if p.starts_with(scope) => Some(Pattern::Prefix(p)),
            Pattern::Prefix(p) if scope.starts_with(&p) => Some(Pattern::Prefix(scope.into())),
            Pattern::Prefix(_) => None,
        }
    }

    pub fn matches(&self, id: &[u8]) -> bool {
        match self {
            Pattern::Exact(e) => &e[..] == id,
            Pattern::Prefix(p) => id.starts_with(p),
        }
    }

    /// The id or prefix bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Pattern::Exact(b) | Pattern::Prefix(b) => b,
        }
    }

    /// Memory one connection's subscription to this pattern accounts for on a server
    /// of `shards` shards: two copies on the home shard (the connection's set and the
    /// shard's registry) and one interest registration on each owner it reaches (the
    /// owning shard of an exact id; every shard for a prefix). Counted per connection
    /// even when another connection shares the registrations: an upper bound.
    pub fn cost_bytes(&self, shards: usize) -> usize {
        let owners = match self {
            Pattern::Exact(_) => 1,
            Pattern::Prefix(_) => shards,
        };
        (self.bytes().len() + PATTERN_COPY_OVERHEAD_BYTES) * (2 + owners)
    }
}

/// What one copy of a pattern costs beyond its bytes: the hash-table slot (key and
/// value, control byte, load-factor slack), the key's heap block rounding and
/// header, and for the home registry the connection list's block. Measured with
/// `ws_subscription_memory` in tests/ws_slow.rs (RSS growth of a server while one
/// connection subscribes to thousands of patterns; see ARCHITECTURE.md).
pub const PATTERN_COPY_OVERHEAD_BYTES: usize = 256;

/// `Pattern::cost_bytes` of an exact id of `len` bytes.
pub const fn exact_cost_bytes(len: usize) -> usize {
    (len + PATTERN_COPY_OVERHEAD_BYTES) * 3
}

/// A set of shards (at most `SHARDS_MAX`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardMask([u64; SHARDS_MAX / 64]);

const _: () = assert!(SHARDS_MAX % 64 == 0);

impl ShardMask {
    pub fn insert(&mut self, s: ShardId) -> bool {
        let (w, b) = (s.index() / 64, s.index() % 64);
        let fresh = self.0[w] & (1 << b) == 0;
        self.0[w] |= 1 << b;
        fresh
    }

    pub fn remove(&mut self, s: ShardId) -> bool {
        let (w, b) = (s.index() / 64, s.index() % 64);
        let present = self.0[w] & (1 << b) != 0;
        self.0[w] &= !(1 << b);
        present
    }

    pub fn contains(&self, s: ShardId) -> bool {
        self.0[s.index() / 64] & (1 << (s.index() % 64)) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    pub fn union(&mut self, other: &ShardMask) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a |= b;
        }
    }

    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The shards in the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = ShardId> + '_ {
        self.0.iter().enumerate().flat_map(|(w, &word)| {
            let mut bits = word;
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                Some(ShardId((w * 64 + b) as u16))
            })
        })
    }
}

/// Pattern → `V`, matched against entity ids.
#[derive(Debug)]
pub struct Registry<V> {
    exact: HashMap<Box<[u8]>, V>,
    prefix: HashMap<Box<[u8]>, V>,
    /// Length of each registered prefix → how many prefixes have it. Matching looks up
    /// the id's prefix of each of these lengths.
    prefix_lens: BTreeMap<usize, usize>,
}

impl<V> Default for Registry<V> {
    fn default() -> Self {
        Registry {
            exact: HashMap::new(),
            prefix: HashMap::new(),
            prefix_lens: BTreeMap::new(),
        }
    }
}

impl<V: Default> Registry<V> {
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefix.is_empty()
    }

    /// Number of patterns.
    pub fn len(&self) -> usize {
        self.exact.len() + self.prefix.len()
    }

    /// The value of `p`, created empty if absent.
    pub fn entry(&mut self, p: &Pattern) -> &mut V {
        match p {
            Pattern::Exact(id) => self.exact.entry(id.clone()).or_default(),
            Pattern::Prefix(pre) => {
                if !self.prefix.contains_key(&pre[..]) {
                    *self.prefix_lens.entry(pre.len()).or_default() += 1;
                }
                self.prefix.entry(pre.clone()).or_default()
            }
        }
    }

    pub fn get(&self, p: &Pattern) -> Option<&V> {
        match p {
            Pattern::Exact(id) => self.exact.get(&id[..]),
            Pattern::Prefix(pre) => self.prefix.get(&pre[..]),
        }
    }

    pub fn get_mut(&mut self, p: &Pattern) -> Option<&mut V> {
        match p {
            Pattern::Exact(id) => self.exact.get_mut(&id[..]),
            Pattern::Prefix(pre) => self.prefix.get_mut(&pre[..]),
        }
    }

    pub fn remove(&mut self, p: &Pattern) -> Option<V> {
        match p {
            Pattern::Exact(id) => self.exact.remove(&id[..]),
            Pattern::Prefix(pre) => {
                let v = self.prefix.remove(&pre[..])?;
                let n = self
                    .prefix_lens
                    .get_mut(&pre.len())
                    .expect("every registered prefix has its length counted");
                *n -= 1;
                if *n == 0 {
                    self.prefix_lens.remove(&pre.len());
                }
                Some(v)
            }
        }
    }

    /// Calls `f` with the value of every pattern that matches `id`; returns how many.
    #[inline]
    pub fn for_each_match(&self, id: &[u8], mut f: impl FnMut(&V)) -> usize {
        let mut n = 0;
        if !self.exact.is_empty() {
            if let Some(v) = self.exact.get(id) {
                f(v);
                n += 1;
            }
        }
        for &len in self.prefix_lens.keys() {
            if len > id.len() {
                break;
            }
            if let Some(v) = self.prefix.get(&id[..len]) {
                f(v);
                n += 1;
            }
        }
        n
    }

    /// Every (pattern, value).
    pub fn iter(&self) -> impl Iterator<Item = (Pattern, &V)> {
        let exact = self
            .exact
            .iter()
            .map(|(k, v)| (Pattern::Exact(k.clone()), v));
        let prefix = self
            .prefix
            .iter()
            .map(|(k, v)| (Pattern::Prefix(k.clone()), v));
        exact.chain(prefix)
    }
}

/// Connections of this shard subscribed to a pattern (no duplicates).
pub type LocalSubs = Registry<Vec<ConnId>>;

impl LocalSubs {
    /// Adds `conn` to `p`; true when `p` had no subscriber before (the owning shards
    /// must then learn that this shard is interested).
    pub fn subscribe(&mut self, p: &Pattern, conn: ConnId) -> bool {
        let conns = self.entry(p);
        let first = conns.is_empty();
        if !conns.contains(&conn) {
            conns.push(conn);
        }
        first
    }

    /// Removes `conn` from `p`; true when that was the last subscriber of `p` (the
    /// owning shards must then forget this shard's interest).
    pub fn unsubscribe(&mut self, p: &Pattern, conn: ConnId) -> bool {
        let Some(conns) = self.get_mut(p) else {
            return false;
        };
        let Some(i) = conns.iter().position(|c| *c == conn) else {
            return false;
        };
        conns.swap_remove(i);
        if conns.is_empty() {
            self.remove(p);
            return true;
        }
        false
    }

    /// The connections subscribed to `id` by any pattern, each once, into `out`.
    pub fn matching_conns(&self, id: &[u8], out: &mut Vec<ConnId>) {
        out.clear();
        let lists = self.for_each_match(id, |conns| out.extend_from_slice(conns));
        if lists > 1 {
            out.sort_unstable();
            out.dedup();
        }
    }
}

/// Shards with at least one subscriber to a pattern, kept by the shard owning the ids
/// the pattern can match.
pub type Interests = Registry<ShardMask>;

impl Interests {
    /// Records or forgets that shard `from` has subscribers to `p`. Returns the change
    /// in registrations (+1, -1 or 0: changes are idempotent).
    pub fn set(&mut self, p: &Pattern, from: ShardId, present: bool) -> i64 {
        if present {
            i64::from(self.entry(p).insert(from))
        } else {
            let Some(mask) = self.get_mut(p) else {
                return 0;
            };
            let removed = mask.remove(from);
            if mask.is_empty() {
                self.remove(p);
            }
            -i64::from(removed)
        }
    }

    /// The shards interested in `id`.
    #[inline]
    pub fn shards_for(&self, id: &[u8]) -> ShardMask {
        let mut mask = ShardMask::default();
        self.for_each_match(id, |m| mask.union(m));
        mask
    }

    /// Number of (pattern, shard) registrations.
    pub fn registrations(&self) -> usize {
        self.iter().map(|(_, m)| m.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s.as_bytes())
    }

    #[test]
    fn confined_patterns() {
        let c = |s: &str| p(s).confine(b"alpha/");
        assert_eq!(c("*"), Some(Pattern::Prefix((*b"alpha/").into())));
        assert_eq!(c("al*"), Some(Pattern::Prefix((*b"alpha/").into())));
        assert_eq!(c("alpha/x*"), Some(Pattern::Prefix((*b"alpha/x").into())));
        assert_eq!(c("alpha/x"), Some(Pattern::Exact((*b"alpha/x").into())));
        assert_eq!(c("bravo/x"), None);
        assert_eq!(c("bravo/*"), None);
        assert_eq!(c("alphabet*"), None);
        assert_eq!(c("alpha/"), None);
    }

    #[test]
    fn subscription_costs() {
        assert_eq!(p("abc").cost_bytes(4), exact_cost_bytes(3));
        assert_eq!(
            p("abc*").cost_bytes(4),
            (3 + PATTERN_COPY_OVERHEAD_BYTES) * 6
        );
        assert_eq!(p("*").cost_bytes(1), PATTERN_COPY_OVERHEAD_BYTES * 3);
    }

    #[test]
    fn parse_patterns() {
        assert_eq!(p("a"), Pattern::Exact((*b"a").into()));
        assert_eq!(p("*"), Pattern::Prefix((*b"").into()));
        assert_eq!(p("host-*"), Pattern::Prefix((*b"host-").into()));
        assert_eq!(p("a*b"), Pattern::Exact((*b"a*b").into()));
        assert!(p("host-*").matches(b"host-1"));
        assert!(p("host-*").matches(b"host-"));
        assert!(!p("host-*").matches(b"host"));
        assert!(p("*").matches(b""));
        assert!(p("x").matches(b"x") && !p("x").matches(b"xy"));
    }

    #[test]
    fn local_matching_dedups_connections_across_patterns() {
        let mut s = LocalSubs::default();
        assert!(s.subscribe(&p("sensor-1"), 7));
        assert!(!s.subscribe(&p("sensor-1"), 7), "idempotent");
        assert!(!s.subscribe(&p("sensor-1"), 8));
        assert!(s.subscribe(&p("sensor-*"), 7));
        assert!(s.subscribe(&p("*"), 9));
        assert!(s.subscribe(&p("other*"), 10));
        let mut out = Vec::new();
        s.matching_conns(b"sensor-1", &mut out);
        assert_eq!(out, vec![7, 8, 9]);
        s.matching_conns(b"sensor-2", &mut out);
        assert_eq!(out, vec![7, 9]);
        s.matching_conns(b"sens", &mut out);
        assert_eq!(out, vec![9]);
        s.matching_conns(b"other", &mut out);
        assert_eq!(out, vec![9, 10]);
        assert!(!s.unsubscribe(&p("sensor-1"), 7));
        assert!(s.unsubscribe(&p("sensor-1"), 8), "last subscriber");
        assert!(!s.unsubscribe(&p("sensor-1"), 8), "already gone");
        s.matching_conns(b"sensor-1", &mut out);
        assert_eq!(out, vec![7, 9]);
        assert!(s.unsubscribe(&p("sensor-*"), 7));
        assert!(s.unsubscribe(&p("*"), 9));
        assert!(s.unsubscribe(&p("other*"), 10));
        assert!(s.is_empty());
        assert!(s.prefix_lens.is_empty(), "prefix lengths are forgotten");
    }

    #[test]
    fn prefix_lengths_longer_than_the_id_are_skipped() {
        let mut s = LocalSubs::default();
        s.subscribe(&p("abcdef*"), 1);
        s.subscribe(&p("ab*"), 2);
        let mut out = Vec::new();
        s.matching_conns(b"abc", &mut out);
        assert_eq!(out, vec![2]);
        s.matching_conns(b"abcdefg", &mut out);
        assert_eq!(out, vec![1, 2]);
    }

    #[test]
    fn interests_are_shard_sets() {
        let mut i = Interests::default();
        assert!(i.is_empty());
        assert_eq!(i.set(&p("a"), ShardId(1), true), 1);
        assert_eq!(i.set(&p("a"), ShardId(1), true), 0);
        assert_eq!(i.set(&p("*"), ShardId(0), true), 1);
        assert_eq!(i.set(&p("a*"), ShardId(200), true), 1);
        let ids = |m: ShardMask| m.iter().map(|s| s.0).collect::<Vec<_>>();
        assert_eq!(ids(i.shards_for(b"a")), vec![0, 1, 200]);
        assert_eq!(ids(i.shards_for(b"ab")), vec![0, 200]);
        assert_eq!(ids(i.shards_for(b"b")), vec![0]);
        assert_eq!(i.registrations(), 3);
        assert_eq!(i.set(&p("a"), ShardId(1), false), -1);
        assert_eq!(i.set(&p("a"), ShardId(1), false), 0);
        assert_eq!(i.set(&p("*"), ShardId(0), false), -1);
        assert_eq!(i.set(&p("a*"), ShardId(200), false), -1);
        assert!(i.is_empty());
        assert!(i.shards_for(b"a").is_empty());
    }

    #[test]
    fn shard_mask_ops() {
        let mut m = ShardMask::default();
        assert!(m.insert(ShardId(63)) && m.insert(ShardId(64)) && m.insert(ShardId(255)));
        assert!(!m.insert(ShardId(64)));
        assert_eq!(m.len(), 3);
        assert!(m.contains(ShardId(255)) && !m.contains(ShardId(0)));
        assert_eq!(m.iter().map(|s| s.0).collect::<Vec<_>>(), vec![63, 64, 255]);
        assert!(m.remove(ShardId(63)) && !m.remove(ShardId(63)));
    }
}
