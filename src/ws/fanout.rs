//! From applied records to subscribers' queues.
//!
//! **Owner side** (`Shard::fanout`, called by `Shard::log_and_apply` right after the
//! records are applied, synchronously, never awaiting): counts events and deletions
//! for the metrics, then matches each record's entity id against the shard's
//! interests. Matching records are rendered once into one shared buffer
//! (`state_update` per property written, in record order; `entity_deleted` per
//! tombstone). The buffer collects the records of every batch applied until the
//! shard's flush task runs (`Shard::flush_fanout`; it sits in ingestion's task queue,
//! behind the ingestion tasks already runnable), and each interested home shard then
//! gets ONE delivery listing the records it wants: never one message per update or
//! per subscriber, and under load one delivery for many batches, so that a home shard
//! copies a long run of records to each connection at once (with a delivery per
//! batch, that per-connection step dominated: 1-event requests × 100 subscribers).
//!
//! **Bounds and overload.** A home shard's inbox is bounded (`WS_INBOX_BYTES_MAX`,
//! `WS_INBOX_ITEMS_MAX`, counted in atomics since several owners feed it). Deliveries
//! are queued without waiting (`unbounded_send` after the bound check; local ones go
//! to an in-shard queue), so ingestion never depends on a home shard's speed. A
//! delivery that does not fit is dropped and a *gap marker* is queued in its place
//! (one per run of drops; markers are tiny and bypass the bound). When the home shard
//! reaches the marker it closes, as slow consumers (1008), its connections that may
//! have missed updates from that owner: those with a prefix subscription or an exact
//! subscription to an id of that owner. Updates are therefore never lost silently:
//! a connection either receives every update it subscribed to, in apply order, or is
//! closed. The inbox only fills when a shard cannot even move updates into its
//! connections' queues (CPU saturation); slow clients are caught earlier, by their
//! own queue bound (`outbox`).
//!
//! **Home side** (`Hub::receive`): for each record, the local connections matching
//! its id (exact, prefix and `*`, each connection once) get its messages, in order.
//! Per entity, order is preserved end to end: one owner applies in order, each
//! owner → home path is FIFO, and each connection's queue is FIFO.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use super::outbox::{self, OP_TEXT};
use super::protocol;
use super::subs::ConnId;
use super::Hub;
use crate::event::{Properties, Record, KIND_EVENT, KIND_TOMBSTONE};
use crate::metrics::{hll, ShardCounters};
use crate::shard::{Shard, ShardId};

/// Bytes of deliveries waiting in one shard's inbox; past it deliveries are dropped
/// and the affected subscribers closed (see the module doc).
pub const WS_INBOX_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Deliveries waiting in one shard's inbox.
pub const WS_INBOX_ITEMS_MAX: u64 = 16_384;

/// The messages of one applied batch, shared (read-only) by every home shard.
pub struct Rendered {
    /// Every message as a complete WebSocket text frame (header and UTF-8 JSON),
    /// concatenated: a record's messages are one byte range, queued to each matching
    /// connection with one copy.
    text: Vec<u8>,
    /// Entity ids of the records, concatenated.
    ids: Vec<u8>,
    records: Vec<RenderedRecord>,
    /// When the owner applied the batch (for the fan-out latency).
    applied: Instant,
}

struct RenderedRecord {
    id: (u32, u32),
    /// Range of this record's messages in the scratch `msgs` (its length: how many).
    msgs: (u32, u32),
    /// Range of this record's frames in `text`.
    frames: (u32, u32),
}

/// What arrives in a home shard's inbox.
pub enum Inbound {
    Delivery {
        rendered: Arc<Rendered>,
        /// The records this shard is interested in; `None`: all of them.
        records: Option<Vec<u32>>,
        /// Accounted against the inbox bound.
        bytes: u64,
    },
    /// Deliveries from `from` were dropped here (inbox full).
    Gap { from: ShardId },
}

/// Reused buffers of the owner side.
#[derive(Default)]
pub struct FanoutScratch {
    text: Vec<u8>,
    ids: Vec<u8>,
    records: Vec<RenderedRecord>,
    msgs: Vec<(u32, u32)>,
    /// Per home shard, the indexes of the records it wants.
    per_shard: Vec<Vec<u32>>,
    /// Connections matching one record (home side).
    matched: Vec<ConnId>,
    /// Connections matching the current run of records (home side).
    run: Vec<ConnId>,
    /// When the oldest record not yet flushed was applied.
    first_applied: Option<Instant>,
}

impl Shard {
    /// The hook after records are applied (see the module doc). `records` are encoded
    /// records (`event.rs`), stamped with their ingest time.
    pub fn fanout(&self, records: &[u8]) {
        self.fanout_counted(records, true)
    }

    /// Records another cluster node applied (`cluster`): to this node's subscribers,
    /// not counted again in this node's event counters.
    pub fn fanout_from_peer(&self, records: &[u8]) {
        self.fanout_counted(records, false)
    }

    fn fanout_counted(&self, records: &[u8], count: bool) {
        let counters = crate::metrics::registry(self).shard(self.id);
        let hub = crate::ws::hub(self);
        let interests = hub.interests.borrow();
        let watched = !interests.is_empty();
        let mut sc = hub.scratch.borrow_mut();
        let sc = &mut *sc;
        if sc.per_shard.len() != self.count {
            sc.per_shard = vec![Vec::new(); self.count];
        }
        let rendered_before = sc.records.len();
        let (mut events, mut deletions) = (0u64, 0u64);
        let mut off = 0;
        while off < records.len() {
            let Some((r, len)) = Record::parse(&records[off..]) else {
                debug_assert!(false, "malformed record after apply");
                break;
            };
            off += len;
            match r.kind {
                KIND_EVENT if count => {
                    events += 1;
                    counters
                        .publishers
                        .add(hll::hash(r.source), r.ingest_ms / 1000);
                }
                KIND_TOMBSTONE => deletions += 1,
                _ => {}
            }
            if !watched {
                continue;
            }
            let shards = interests.shards_for(r.entity_id);
            if shards.is_empty() {
                continue;
            }
            let index = sc.records.len() as u32;
            render(sc, &r);
            for s in shards.iter() {
                sc.per_shard[s.index()].push(index);
            }
        }
        if count {
            ShardCounters::bump(&counters.events, events);
            ShardCounters::bump(&counters.deletions, deletions);
        }
        if rendered_before == 0 && !sc.records.is_empty() {
            // The first records since the last flush: the flush task ships them once
            // the tasks already runnable (more ingestion, usually) have had their turn.
            sc.first_applied = Some(Instant::now());
            if let Some(w) = hub.flush_waker.borrow_mut().take() {
                w.wake();
            }
        }
    }

    /// Ships the records rendered since the last flush: one delivery per interested
    /// home shard (see the module doc). Run by the flush task (`ws::start`), so that
    /// the records of many applied batches travel together: a home shard then copies
    /// them to each connection at once instead of once per batch.
    pub(super) fn flush_fanout(&self) {
        let hub = crate::ws::hub(self);
        let mut sc = hub.scratch.borrow_mut();
        let sc = &mut *sc;
        if sc.records.is_empty() {
            return;
        }
        let total = sc.records.len();
        sc.msgs.clear();
        // The buffers move into the delivery; the next batch starts with room for as
        // much (one allocation each instead of a series of reallocations).
        let take = |v: &mut Vec<u8>| std::mem::replace(v, Vec::with_capacity(v.len()));
        let rendered = Arc::new(Rendered {
            text: take(&mut sc.text),
            ids: take(&mut sc.ids),
            records: std::mem::replace(&mut sc.records, Vec::with_capacity(total)),
            applied: sc.first_applied.take().unwrap_or_else(Instant::now),
        });
        let bytes = rendered.text.len() as u64 + 64;
        for (i, wanted) in sc.per_shard.iter_mut().enumerate() {
            if wanted.is_empty() {
                continue;
            }
            let records = if wanted.len() == total {
                wanted.clear();
                None
            } else {
                Some(std::mem::take(wanted))
            };
            let delivery = Inbound::Delivery {
                rendered: rendered.clone(),
                records,
                bytes,
            };
            hub.send(self, ShardId(i as u16), delivery, bytes);
        }
    }
}

impl FanoutScratch {
    /// Records rendered and not yet flushed.
    pub(super) fn has_pending(&self) -> bool {
        !self.records.is_empty()
    }
}

/// Renders one record's messages, framed, into the scratch buffers.
fn render(sc: &mut FanoutScratch, r: &Record<'_>) {
    let id_start = sc.ids.len() as u32;
    sc.ids.extend_from_slice(r.entity_id);
    let first_msg = sc.msgs.len() as u32;
    let first_byte = sc.text.len() as u32;
    if r.kind == KIND_TOMBSTONE {
        let start = sc.text.len();
        sc.text.extend_from_slice(&[0, 0]);
        protocol::write_entity_deleted(&mut sc.text, r.entity_id, r.ingest_ms);
        frame(sc, start);
    } else {
        for (k, v) in Properties(r.properties) {
            let start = sc.text.len();
            sc.text.extend_from_slice(&[0, 0]);
            protocol::write_state_update(&mut sc.text, r.entity_id, k, v, r.ingest_ms);
            frame(sc, start);
        }
    }
    sc.records.push(RenderedRecord {
        id: (id_start, sc.ids.len() as u32),
        msgs: (first_msg, sc.msgs.len() as u32),
        frames: (first_byte, sc.text.len() as u32),
    });
}

/// Fills in the header of the message rendered at `start + 2` (two bytes were
/// reserved; longer headers move the payload), and records its payload range.
fn frame(sc: &mut FanoutScratch, start: usize) {
    let len = sc.text.len() - start - 2;
    if len < 126 {
        sc.text[start] = 0x80 | OP_TEXT;
        sc.text[start + 1] = len as u8;
    } else {
        let mut head = Vec::with_capacity(10);
        outbox::put_header(&mut head, OP_TEXT, len);
        sc.text.splice(start..start + 2, head);
    }
    let end = sc.text.len() as u32;
    sc.msgs.push((end - len as u32, end));
}

impl Hub {
    /// Queues an inbound item for home shard `to` if its inbox has room; otherwise
    /// drops it and queues a gap marker (once per run of drops).
    fn send(&self, shard: &Shard, to: ShardId, item: Inbound, bytes: u64) {
        let inbox = crate::metrics::registry(shard).shard(to);
        let full = inbox.ws_inbox_bytes.load(Relaxed) + bytes > WS_INBOX_BYTES_MAX
            || inbox.ws_inbox_items.load(Relaxed) >= WS_INBOX_ITEMS_MAX
            || (self.inboxes_full && to != shard.id);
        let mut gap_open = self.gap_open.borrow_mut();
        let item = if full {
            ShardCounters::bump(
                &crate::metrics::registry(shard)
                    .shard(shard.id)
                    .ws_delivery_gaps,
                1,
            );
            if gap_open[to.index()] {
                return;
            }
            gap_open[to.index()] = true;
            Inbound::Gap { from: shard.id }
        } else {
            gap_open[to.index()] = false;
            // Several owners add concurrently: a real read-modify-write here.
            inbox.ws_inbox_bytes.fetch_add(bytes, Relaxed);
            inbox.ws_inbox_items.fetch_add(1, Relaxed);
            item
        };
        drop(gap_open);
        if to == shard.id {
            self.local_inbox.borrow_mut().push_back(item);
            if let Some(w) = self.inbox_waker.borrow_mut().take() {
                w.wake();
            }
        } else if let Some(tx) = crate::ws::hub(shard).switchboard.sender(to) {
            // Fails only when the home shard has stopped.
            let _ = tx.unbounded_send(item);
        }
    }

    /// Home side: one inbound item.
    pub(super) fn receive(&self, shard: &Shard, item: Inbound) {
        match item {
            Inbound::Delivery {
                rendered,
                records,
                bytes,
            } => {
                self.deliver(shard, &rendered, records.as_deref());
                let c = crate::metrics::registry(shard).shard(shard.id);
                c.ws_inbox_bytes.fetch_sub(bytes, Relaxed);
                c.ws_inbox_items.fetch_sub(1, Relaxed);
                let us = rendered.applied.elapsed().as_micros() as u64;
                crate::metrics::local(shard)
                    .hist
                    .borrow_mut()
                    .fanout_us
                    .record(us);
            }
            Inbound::Gap { from } => self.gap(shard, from),
        }
    }

    /// Queues the wanted records' messages to their matching connections. Consecutive
    /// records with the same connections (always, for `*` subscribers) form a run,
    /// queued to each connection with one copy.
    fn deliver(&self, shard: &Shard, r: &Rendered, wanted: Option<&[u32]>) {
        let local = self.local.borrow();
        let conns = self.conns.borrow();
        let mut sc = self.scratch.borrow_mut();
        let FanoutScratch { matched, run, .. } = &mut *sc;
        let mut sent = 0u64;
        // The current run: records `first..=last`, with `run` as connections.
        let mut current: Option<(u32, u32)> = None;
        let mut flush = |run: &[ConnId], (first, last): (u32, u32)| {
            let a = r.records[first as usize].frames.0 as usize;
            let b = r.records[last as usize].frames.1 as usize;
            let m = r.records[first as usize].msgs.0;
            let n = (r.records[last as usize].msgs.1 - m) as usize;
            let frames = &r.text[a..b];
            for c in run {
                let Some(o) = conns.get(c) else { continue };
                if o.refuses() {
                    continue;
                }
                match o.push_frames(frames, n) {
                    Ok(()) => sent += n as u64,
                    Err(outbox::Overflow) => self.close_slow(shard, o),
                }
            }
        };
        let mut one = |i: u32| {
            let rec = &r.records[i as usize];
            let id = &r.ids[rec.id.0 as usize..rec.id.1 as usize];
            local.matching_conns(id, matched);
            if let Some((first, last)) = current {
                if last + 1 == i && matched == run {
                    current = Some((first, i));
                    return;
                }
                flush(run, (first, last));
                current = None;
            }
            if !matched.is_empty() {
                std::mem::swap(matched, run);
                current = Some((i, i));
            }
        };
        match wanted {
            Some(list) => list.iter().for_each(|&i| one(i)),
            None => (0..r.records.len() as u32).for_each(&mut one),
        }
        if let Some(span) = current {
            flush(run, span);
        }
        ShardCounters::bump(
            &crate::metrics::registry(shard).shard(shard.id).ws_updates,
            sent,
        );
    }

    /// Deliveries from `from` were lost: close the connections that may have wanted
    /// them.
    fn gap(&self, shard: &Shard, from: ShardId) {
        let conns = self.conns.borrow();
        for o in conns.values() {
            let affected = o.subs.borrow().iter().any(|p| match p {
                super::subs::Pattern::Prefix(_) => true,
                super::subs::Pattern::Exact(id) => shard.owner(id) == from,
            });
            if affected {
                self.close_slow(shard, o);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventBatch;
    use crate::ingest::decode::{EventRef, Property};

    #[test]
    fn renders_one_message_per_property_and_one_per_tombstone() {
        let props = [
            Property {
                key: "a",
                value: b"1",
            },
            Property {
                key: "b",
                value: b"\"two\"",
            },
        ];
        let ev = EventRef {
            event_id: None,
            stream: "s",
            source: "x",
            timestamp_ms: None,
            key: None,
            schema: None,
            entity_id: "e-1",
            properties: &props,
        };
        let mut batch = EventBatch::default();
        batch.push_event(&ev, b"id", 1);
        batch.push_tombstone(b"e-2", b"id2", 1);
        batch.stamp_ingest(1_707_912_000_000);
        let mut sc = FanoutScratch::default();
        for r in batch.records() {
            render(&mut sc, &r);
        }
        assert_eq!(sc.records.len(), 2);
        assert_eq!(sc.msgs.len(), 3);
        let msg = |i: usize| {
            let (a, b) = sc.msgs[i];
            serde_json::from_slice::<serde_json::Value>(&sc.text[a as usize..b as usize]).unwrap()
        };
        assert_eq!(msg(0)["property"], "a");
        assert_eq!(msg(0)["value"], 1);
        assert_eq!(msg(1)["property"], "b");
        assert_eq!(msg(1)["value"], "two");
        assert_eq!(msg(1)["timestamp"], "2024-02-14T12:00:00.000Z");
        assert_eq!(msg(2)["type"], "entity_deleted");
        assert_eq!(msg(2)["entity_id"], "e-2");
        let r1 = &sc.records[1];
        assert_eq!(&sc.ids[r1.id.0 as usize..r1.id.1 as usize], b"e-2");
        assert_eq!(r1.msgs, (2, 3));
    }
}
