//! What a node's own log can rebuild of each group, so that a restarted node serves
//! its groups again from its disk and reads from JetStream only what came after.
//!
//! Every message a group applies here is logged with its stream sequence (a
//! `FRAME_STREAM` frame: `Shard::apply_streamed`). What the log alone cannot replay
//! is noted in it (`FRAME_NOTE`, opaque to the shard):
//!
//! | note | written when | at recovery |
//! |---|---|---|
//! | `TABLE` | at each shard snapshot's cut, first in its replay (`cut_note`) | every group it lists is rebuilt, at its sequence, with its intents; every other is not |
//! | `DROP g` | the shard drops group `g`'s state (released, or a parked group another node took) | `g` is not rebuilt |
//! | `LOAD g` | group `g` was loaded from a group snapshot (not in the log) | `g` is not rebuilt |
//!
//! A `FRAME_STREAM` of a rebuilt group moves it to the message's sequence (a sequence
//! that does not move forward means the group was started over unnoted: not rebuilt).
//! So the store recovery builds (the shard snapshot, then the log after its cut)
//! holds, for each group still rebuilt at the end ([`fold`]), exactly that group's
//! state at that sequence: the snapshot captured its entities as `TABLE` describes
//! them, and every change since is a frame of the replay. A group taken here becomes
//! rebuildable at the next shard snapshot, which is asked for once it serves
//! (`Shard::snapshot_wanted`; at most one per 10 s).
//!
//! After recovery ([`park`]) the rebuilt groups are moved out of the store into
//! [`Parked`] (the store holds only groups this node serves; listings read it), the
//! rest is dropped. Taking a group, `owner::acquire` uses the parked state unless a
//! group snapshot beyond it exists, then reads the stream after it. A parked group
//! that another node serves is dropped (`sweep`).

use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::Duration;

use super::{local, shard_of_group, Route};
use crate::shard::recovery::Trace;
use crate::shard::Shard;
use crate::state::Store;

const NOTE_TABLE: u8 = 1;
const NOTE_DROP: u8 = 2;
const NOTE_LOAD: u8 = 3;

/// A group's state as the log rebuilds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    /// The group stream's creation time (`Cluster::stream_created`).
    pub created: u64,
    /// The last stream sequence the state reflects.
    pub seq: u64,
    /// Intents whose part for the group the state holds (`owner::Group::txns`).
    pub txns: HashSet<u64>,
}

/// A rebuilt group kept out of the store until this node takes it.
pub struct Parked {
    pub chain: Chain,
    pub store: Store,
}

/// `TABLE`: `[1][count u16]`, then per group
/// `[g u16][created u64][seq u64][txns u32][txn u64 × txns]`.
pub fn table_note<'a>(groups: impl Iterator<Item = (u16, &'a Chain)>) -> Vec<u8> {
    let mut out = vec![NOTE_TABLE, 0, 0];
    let mut n = 0u16;
    for (g, c) in groups {
        out.extend_from_slice(&g.to_le_bytes());
        out.extend_from_slice(&c.created.to_le_bytes());
        out.extend_from_slice(&c.seq.to_le_bytes());
        out.extend_from_slice(&(c.txns.len() as u32).to_le_bytes());
        for t in &c.txns {
            out.extend_from_slice(&t.to_le_bytes());
        }
        n += 1;
    }
    out[1..3].copy_from_slice(&n.to_le_bytes());
    out
}

fn group_note(kind: u8, g: u16) -> [u8; 3] {
    let [a, b] = g.to_le_bytes();
    [kind, a, b]
}

/// Reads a `TABLE` note; `None` if malformed.
fn parse_table(b: &[u8]) -> Option<HashMap<u16, Chain>> {
    let mut r = Reader(b);
    let n = r.u16()?;
    let mut out = HashMap::new();
    for _ in 0..n {
        let g = r.u16()?;
        let created = r.u64()?;
        let seq = r.u64()?;
        let k = r.u32()? as usize;
        if k > r.0.len() / 8 {
            return None;
        }
        let mut txns = HashSet::with_capacity(k);
        for _ in 0..k {
            txns.insert(r.u64()?);
        }
        out.insert(g, Chain { created, seq, txns });
    }
    r.0.is_empty().then_some(out)
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (h, t) = self.0.split_first_chunk::<N>()?;
        self.0 = t;
        Some(*h)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
}

/// The groups the replayed log rebuilds (see the module doc), from what recovery met.
/// Nothing is rebuilt before the first `TABLE`.
pub fn fold(traces: &[Trace]) -> HashMap<u16, Chain> {
    let mut chains = HashMap::new();
    for t in traces {
        match t {
            Trace::Stream { key, seq, txn } => {
                if let Some(c) = chains.get_mut(key) {
                    let c: &mut Chain = c;
                    if *seq > c.seq {
                        c.seq = *seq;
                        if *txn != 0 {
                            c.txns.insert(*txn);
                        }
                    } else {
                        chains.remove(key);
                    }
                }
            }
            Trace::Note(b) => match b.split_first() {
                Some((&NOTE_TABLE, rest)) => chains = parse_table(rest).unwrap_or_default(),
                Some((&(NOTE_DROP | NOTE_LOAD), &[a, b])) => {
                    chains.remove(&u16::from_le_bytes([a, b]));
                }
                // Not ours or damaged: nothing is known to be whole.
                _ => chains.clear(),
            },
        }
    }
    chains
}

/// Logs that group `g`'s state here is no longer what the log rebuilds (`DROP`), or
/// that it came from a group snapshot (`LOAD`). A note that cannot be logged (the log
/// failed or is full) is reported: the group's writes fail the same way, and the
/// stream check in [`fold`] still refuses a group started over.
fn note(shard: &Shard, kind: u8, g: u16) {
    if let Err(e) = shard.append_note(&group_note(kind, g)) {
        eprintln!(
            "flux: cluster: shard {}: cannot log a note for group {g}: {}",
            shard.id.0,
            crate::shard::describe(&e)
        );
    }
}

pub fn note_drop(shard: &Shard, g: u16) {
    note(shard, NOTE_DROP, g);
}

pub fn note_load(shard: &Shard, g: u16) {
    note(shard, NOTE_LOAD, g);
    // Rebuildable from the log again once a shard snapshot holds it.
    shard.snapshot_wanted.set(true);
}

/// The note at a shard snapshot's cut: every group whose state the store holds
/// (`Shard::cut_note`).
pub fn cut_note(shard: &Shard) -> Option<Vec<u8>> {
    let l = local(shard)?;
    let chains: Vec<(u16, Chain)> = l
        .groups
        .borrow()
        .values()
        .filter(|g| g.state() != super::owner::State::Gone)
        .map(|g| {
            (
                g.id,
                Chain {
                    created: l.cluster.stream_created(g.id),
                    seq: g.applied(),
                    txns: g.txns_held(),
                },
            )
        })
        .collect();
    Some(table_note(chains.iter().map(|(g, c)| (*g, c))))
}

/// After recovery: moves the groups the log rebuilt out of the store into
/// `Local::parked`, and drops the rest of the store.
pub fn park(shard: &Shard) {
    let Some(l) = local(shard) else { return };
    let traces = std::mem::take(&mut *shard.traces.borrow_mut());
    let cluster = &l.cluster;
    let (groups, shards) = (cluster.groups, cluster.shards);
    let mut chains: Vec<(u16, Chain)> = fold(&traces)
        .into_iter()
        .filter(|(g, _)| (*g as usize) < groups && shard_of_group(*g, groups, shards) == shard.id)
        .collect();
    chains.sort_by_key(|(g, _)| *g);
    let mut stores: Vec<Store> = chains.iter().map(|_| Store::default()).collect();
    let index: HashMap<u16, usize> = chains
        .iter()
        .enumerate()
        .map(|(i, (g, _))| (*g, i))
        .collect();
    shard.store.borrow_mut().split_into(&mut stores, |id| {
        index.get(&super::group_of(id, groups)).copied()
    });
    let mut parked = l.parked.borrow_mut();
    for ((g, chain), store) in chains.into_iter().zip(stores) {
        eprintln!(
            "flux: cluster: shard {}: the log rebuilt group {g}: {} entities, stream at {}",
            shard.id.0,
            store.len(),
            chain.seq
        );
        parked.insert(g, Parked { chain, store });
    }
}

/// Takes group `g`'s parked state, if any (dropping it from `parked`).
pub fn unpark(shard: &Shard, g: u16) -> Option<Parked> {
    local(shard)?.parked.borrow_mut().remove(&g)
}

/// Drops parked groups that another node serves, every second while any is left.
pub async fn sweep(shard: Rc<Shard>) {
    let Some(l) = local(&shard) else { return };
    while !shard.shutting_down() && !l.parked.borrow().is_empty() {
        glommio::timer::sleep(Duration::from_secs(1)).await;
        let gone: Vec<u16> = l
            .parked
            .borrow()
            .keys()
            .copied()
            .filter(|g| matches!(l.cluster.route(*g), Route::Node(_)))
            .collect();
        for g in gone {
            if let Some(p) = l.parked.borrow_mut().remove(&g) {
                note_drop(&shard, g);
                eprintln!(
                    "flux: cluster: shard {}: group {g} is served by another node; dropped \
                     the {} entities this node's log rebuilt",
                    shard.id.0,
                    p.store.len()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(created: u64, seq: u64, txns: &[u64]) -> Chain {
        Chain {
            created,
            seq,
            txns: txns.iter().copied().collect(),
        }
    }

    fn stream(key: u16, seq: u64, txn: u64) -> Trace {
        Trace::Stream { key, seq, txn }
    }

    #[test]
    fn nothing_is_rebuilt_before_a_table() {
        assert!(fold(&[stream(1, 5, 0), stream(1, 6, 0)]).is_empty());
    }

    #[test]
    fn a_table_then_frames_move_groups_on() {
        let t = table_note([(1, &chain(7, 10, &[3])), (2, &chain(7, 4, &[]))].into_iter());
        let got = fold(&[
            stream(1, 9, 0), // before the table: its effect is in the table
            Trace::Note(t),
            stream(1, 11, 0),
            stream(1, 14, 8),
            stream(3, 2, 0), // not in the table: not rebuilt
        ]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[&1], chain(7, 14, &[3, 8]));
        assert_eq!(got[&2], chain(7, 4, &[]));
    }

    #[test]
    fn drop_load_and_restarts_end_a_group() {
        let t = table_note([(1, &chain(7, 10, &[])), (2, &chain(7, 4, &[]))].into_iter());
        let got = fold(&[
            Trace::Note(t.clone()),
            Trace::Note(group_note(NOTE_DROP, 1).to_vec()),
            stream(1, 1, 0), // taken again, replayed from the start: not rebuilt
            Trace::Note(group_note(NOTE_LOAD, 2).to_vec()),
            stream(2, 5, 0),
        ]);
        assert!(got.is_empty());
        // A frame whose sequence does not move on: started over unnoted.
        assert!(!fold(&[Trace::Note(t.clone()), stream(1, 10, 0)]).contains_key(&1));
        // The next table rebuilds again.
        let got = fold(&[
            Trace::Note(t.clone()),
            Trace::Note(group_note(NOTE_DROP, 1).to_vec()),
            Trace::Note(t),
        ]);
        assert_eq!(got[&1].seq, 10);
    }

    #[test]
    fn damaged_notes_rebuild_nothing() {
        let t = table_note([(1, &chain(7, 10, &[1, 2]))].into_iter());
        for cut in 0..t.len() {
            let got = fold(&[Trace::Note(t[..cut].to_vec())]);
            assert!(got.is_empty(), "cut at {cut}");
        }
        let mut long = t.clone();
        long.push(0);
        assert!(fold(&[Trace::Note(long)]).is_empty());
        assert!(fold(&[Trace::Note(t.clone()), Trace::Note(vec![9, 1, 0])]).is_empty());
        // A txn count larger than the note is refused before any allocation.
        let mut huge = t;
        let at = 1 + 2 + 2 + 8 + 8;
        huge[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(fold(&[Trace::Note(huge)]).is_empty());
    }
}
