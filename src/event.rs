//! The binary form of an event on its way from the routing shard to the owning shard.
//!
//! A request's events are encoded once, by the shard that parsed them, into one
//! [`EventBatch`] per owning shard: a single `Vec<u8>` that crosses the channel mesh
//! whole (never one message per event) and that the owning shard applies without
//! re-parsing JSON. The log holds records in a compact form (`compact`), into which the
//! owning shard transcodes them as it applies them.
//!
//! Record layout (all integers little endian):
//!
//! ```text
//! +--------+------+-----------+--------------+----------+-----+----------+-----+--------+
//! | len u32| kind | ingest_ms | timestamp_ms | prev_lsn | idl | event_id | stl | stream |
//! |        | u8   | u64       | u64          | u64      | u8  | idl B    | u8  | stl B  |
//! +--------+------+-----------+--------------+----------+-----+----------+-----+--------+
//! | sol u8 | source sol B |
//! +--------+--------------+
//! | keyl u32 | key (raw JSON) | schl u32 | schema (raw JSON) | entl u16 | entity_id |
//! | propl u32 | properties: repeated [kl u16][vl u32][key kl B][value vl B]           |
//! +-------------------------------------------------------------------------------------+
//! ```
//!
//! `len` counts the whole record including itself. `kind` is 1 for an event, 2 for a
//! tombstone (which has no properties). A length of 0 for key/schema means absent (raw
//! JSON text is never empty). `ingest_ms` is 0 until the owning shard stamps it when it
//! applies the record. `prev_lsn` is the log position of the previous record of the same
//! entity (0 = none), filled in when a record is read back from the log (in memory it
//! stays 0; the log's compact form holds the link; segments of format 1 hold records
//! in this very layout, the link stamped in place): it chains an entity's history
//! through the log so that reading it costs time proportional to the answer. Property
//! values are the raw JSON text the client sent.

use crate::ingest::decode::EventRef;

pub mod compact;

pub const KIND_EVENT: u8 = 1;
pub const KIND_TOMBSTONE: u8 = 2;

const OFF_KIND: usize = 4;
const OFF_INGEST: usize = 5;
const OFF_TIMESTAMP: usize = 13;
const OFF_PREV: usize = 21;
const OFF_VAR: usize = 29;

/// Encoded records bound for one shard.
#[derive(Debug, Default)]
pub struct EventBatch {
    pub buf: Vec<u8>,
    pub count: u32,
    /// Properties over all records (bounds the size of the compact form).
    pub props: u32,
    /// Set when this is one shard's part of a batch that spans shards: the id of the
    /// coordinator's intent (see `log::txn`).
    pub txn: Option<u64>,
    /// Some event carries the client's own `eventId`. Cluster mode appends such a part
    /// as a message of its own, with that id as its message id, so JetStream's
    /// deduplication catches the client's retry; other parts are group-committed (a
    /// fresh id is never sent twice).
    pub client_ids: bool,
}

/// Appends one property entry in the property-list format shared with the state store.
#[inline]
pub fn push_property(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    debug_assert!(key.len() <= u16::MAX as usize);
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
}

/// Whether `list` is a well-formed property list: whole entries that end exactly at its
/// end. [`Properties`] and the store trust the lists they are given, so a list read
/// from disk (a snapshot) is checked with this first.
pub fn valid_property_list(mut list: &[u8]) -> bool {
    // Bound: every turn drops at least one 6-byte entry header.
    while !list.is_empty() {
        let Some(head) = list.get(..6) else {
            return false;
        };
        let kl = u16::from_le_bytes([head[0], head[1]]) as usize;
        let vl = u32::from_le_bytes([head[2], head[3], head[4], head[5]]) as usize;
        let Some(rest) = list.get(6 + kl + vl..) else {
            return false;
        };
        list = rest;
    }
    true
}

/// Iterates `(key, raw value)` pairs of a property list. The list is produced by this
/// process (never read from a client), so a malformed one is a bug: iteration stops.
pub struct Properties<'a>(pub &'a [u8]);

impl<'a> Iterator for Properties<'a> {
    type Item = (&'a [u8], &'a [u8]);
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let b = self.0;
        if b.len() < 6 {
            debug_assert!(b.is_empty(), "truncated property list");
            return None;
        }
        let kl = u16::from_le_bytes([b[0], b[1]]) as usize;
        let vl = u32::from_le_bytes([b[2], b[3], b[4], b[5]]) as usize;
        let end = 6 + kl + vl;
        if b.len() < end {
            debug_assert!(false, "truncated property list");
            self.0 = &[];
            return None;
        }
        self.0 = &b[end..];
        Some((&b[6..6 + kl], &b[6 + kl..end]))
    }
}

impl EventBatch {
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends a validated event. `event_id` is the id the response will report.
    pub fn push_event(&mut self, ev: &EventRef<'_>, event_id: &[u8], timestamp_ms: u64) {
        let b = &mut self.buf;
        let start = b.len();
        b.extend_from_slice(&[0; 4]);
        b.push(KIND_EVENT);
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&timestamp_ms.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        push_u8_str(b, event_id);
        push_u8_str(b, ev.stream.as_bytes());
        push_u8_str(b, ev.source.as_bytes());
        push_u32_bytes(b, ev.key.unwrap_or(b""));
        push_u32_bytes(b, ev.schema.unwrap_or(b""));
        b.extend_from_slice(&(ev.entity_id.len() as u16).to_le_bytes());
        b.extend_from_slice(ev.entity_id.as_bytes());
        let props_at = b.len();
        b.extend_from_slice(&[0; 4]);
        for p in ev.properties {
            push_property(b, p.key.as_bytes(), p.value);
        }
        let props_len = (b.len() - props_at - 4) as u32;
        b[props_at..props_at + 4].copy_from_slice(&props_len.to_le_bytes());
        let len = (b.len() - start) as u32;
        b[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.count += 1;
        self.props += ev.properties.len() as u32;
    }

    /// Appends a tombstone for `entity_id`.
    pub fn push_tombstone(&mut self, entity_id: &[u8], event_id: &[u8], now_ms: u64) {
        let b = &mut self.buf;
        let start = b.len();
        b.extend_from_slice(&[0; 4]);
        b.push(KIND_TOMBSTONE);
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&now_ms.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        push_u8_str(b, event_id);
        push_u8_str(b, b"");
        push_u8_str(b, b"");
        push_u32_bytes(b, b"");
        push_u32_bytes(b, b"");
        b.extend_from_slice(&(entity_id.len() as u16).to_le_bytes());
        b.extend_from_slice(entity_id);
        b.extend_from_slice(&0u32.to_le_bytes());
        let len = (b.len() - start) as u32;
        b[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.count += 1;
    }

    /// Writes `ingest_ms` into every record; done by the owning shard as it applies.
    pub fn stamp_ingest(&mut self, ingest_ms: u64) {
        let mut off = 0;
        while off + OFF_VAR <= self.buf.len() {
            let len = read_u32(&self.buf, off) as usize;
            self.buf[off + OFF_INGEST..off + OFF_INGEST + 8]
                .copy_from_slice(&ingest_ms.to_le_bytes());
            off += len;
        }
    }

    pub fn records(&self) -> Records<'_> {
        Records(&self.buf)
    }
}

/// Sets `prev_lsn` of the record at the start of `record`.
pub fn set_prev_lsn(record: &mut [u8], lsn: u64) {
    record[OFF_PREV..OFF_PREV + 8].copy_from_slice(&lsn.to_le_bytes());
}

#[inline]
fn push_u8_str(b: &mut Vec<u8>, s: &[u8]) {
    debug_assert!(s.len() <= u8::MAX as usize);
    b.push(s.len() as u8);
    b.extend_from_slice(s);
}

#[inline]
fn push_u32_bytes(b: &mut Vec<u8>, s: &[u8]) {
    b.extend_from_slice(&(s.len() as u32).to_le_bytes());
    b.extend_from_slice(s);
}

#[inline]
fn read_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

#[inline]
fn read_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// A decoded view of one record.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub kind: u8,
    pub ingest_ms: u64,
    pub timestamp_ms: u64,
    pub prev_lsn: u64,
    pub event_id: &'a [u8],
    pub stream: &'a [u8],
    pub source: &'a [u8],
    pub key: Option<&'a [u8]>,
    pub schema: Option<&'a [u8]>,
    pub entity_id: &'a [u8],
    /// Property list (see [`Properties`]).
    pub properties: &'a [u8],
}

impl<'a> Record<'a> {
    /// Decodes the record at the start of `b`; `None` if it is malformed (bounds are
    /// checked on every field, so a corrupt buffer can never read out of range).
    pub fn parse(b: &'a [u8]) -> Option<(Record<'a>, usize)> {
        if b.len() < OFF_VAR {
            return None;
        }
        let len = read_u32(b, 0) as usize;
        if len < OFF_VAR || len > b.len() {
            return None;
        }
        let rec = &b[..len];
        let mut off = OFF_VAR;
        let mut take = |n: usize| -> Option<&'a [u8]> {
            let s = rec.get(off..off + n)?;
            off += n;
            Some(s)
        };
        let idl = take(1)?[0] as usize;
        let event_id = take(idl)?;
        let stl = take(1)?[0] as usize;
        let stream = take(stl)?;
        let sol = take(1)?[0] as usize;
        let source = take(sol)?;
        let kl = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
        let key = take(kl)?;
        let scl = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
        let schema = take(scl)?;
        let el = u16::from_le_bytes(take(2)?.try_into().ok()?) as usize;
        let entity_id = take(el)?;
        let pl = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
        let properties = take(pl)?;
        if off != len {
            return None;
        }
        Some((
            Record {
                kind: rec[OFF_KIND],
                ingest_ms: read_u64(rec, OFF_INGEST),
                timestamp_ms: read_u64(rec, OFF_TIMESTAMP),
                prev_lsn: read_u64(rec, OFF_PREV),
                event_id,
                stream,
                source,
                key: (!key.is_empty()).then_some(key),
                schema: (!schema.is_empty()).then_some(schema),
                entity_id,
                properties,
            },
            len,
        ))
    }
}

impl<'a> Record<'a> {
    /// [`Record::parse`] for bytes read back from the disk (log replay, history, a
    /// part re-applied from its intent): the frame's CRC only says the bytes are what
    /// was written, so the property list is checked too. The store and
    /// [`Properties`] trust the lists they are given (merging slices by the lengths a
    /// list holds); a record encoded in this process is well formed by construction and
    /// takes the cheaper [`Record::parse`]. A record of a kind this build does not know
    /// (a newer format, or bytes that are not a record) does not decode either.
    pub fn parse_stored(b: &'a [u8]) -> Option<(Record<'a>, usize)> {
        Record::parse(b).filter(|(r, _)| {
            matches!(r.kind, KIND_EVENT | KIND_TOMBSTONE) && valid_property_list(r.properties)
        })
    }
}

/// Whether every record in `records` (bytes read back from the disk) decodes.
pub fn valid_stored_records(mut records: &[u8]) -> bool {
    // Bound: every turn drops a whole record of at least the fixed header.
    while !records.is_empty() {
        match Record::parse_stored(records) {
            Some((_, len)) => records = &records[len..],
            None => return false,
        }
    }
    true
}

/// Iterates the records of a batch.
pub struct Records<'a>(&'a [u8]);

impl<'a> Records<'a> {
    /// The records of `buf`, which this process encoded (or checked with
    /// [`valid_stored_records`]).
    pub fn new(buf: &'a [u8]) -> Self {
        Records(buf)
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;
    #[inline]
    fn next(&mut self) -> Option<Record<'a>> {
        if self.0.is_empty() {
            return None;
        }
        match Record::parse(self.0) {
            Some((r, len)) => {
                self.0 = &self.0[len..];
                Some(r)
            }
            None => {
                debug_assert!(false, "malformed record in an in-memory batch");
                self.0 = &[];
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::decode::Property;

    #[test]
    fn valid_property_lists() {
        let mut two = Vec::new();
        push_property(&mut two, b"k", b"1");
        push_property(&mut two, b"", b"\"v\"");
        // The first entry is 6 + 1 + 1 = 8 bytes, the second 6 + 0 + 3.
        assert_eq!(two.len(), 17);
        for ok in [&b""[..], &two[..], &two[..8]] {
            assert!(valid_property_list(ok), "{ok:?}");
        }
        let mut trailing = two.clone();
        trailing.push(0);
        for bad in [
            &two[..3],                     // header cut short
            &two[..9],                     // second header cut short
            &two[..16],                    // value cut short
            &trailing[..],                 // a byte after the last entry
            &[5, 0, 0, 0, 0, 0, b'k'][..], // key longer than the list
            &[0, 0, 255, 255, 255, 255][..],
        ] {
            assert!(!valid_property_list(bad), "{bad:?}");
        }
    }

    #[test]
    fn event_round_trip() {
        let props = [
            Property {
                key: "temp",
                value: b"22.50",
            },
            Property {
                key: "unit",
                value: b"\"c\"",
            },
        ];
        let ev = EventRef {
            event_id: None,
            stream: "sensors",
            source: "agent",
            timestamp_ms: Some(5),
            key: Some(b"\"k\""),
            schema: None,
            entity_id: "e-1",
            properties: &props,
        };
        let mut batch = EventBatch::default();
        batch.push_event(&ev, b"id-1", 5);
        batch.push_tombstone(b"e-2", b"id-2", 9);
        batch.stamp_ingest(77);
        let recs: Vec<Record> = batch.records().collect();
        assert_eq!(recs.len(), 2);
        let r = recs[0];
        assert_eq!(r.kind, KIND_EVENT);
        assert_eq!((r.ingest_ms, r.timestamp_ms), (77, 5));
        assert_eq!(
            (r.event_id, r.stream, r.source),
            (&b"id-1"[..], &b"sensors"[..], &b"agent"[..])
        );
        assert_eq!((r.key, r.schema), (Some(&b"\"k\""[..]), None));
        assert_eq!(r.entity_id, b"e-1");
        let p: Vec<_> = Properties(r.properties).collect();
        assert_eq!(
            p,
            vec![(&b"temp"[..], &b"22.50"[..]), (&b"unit"[..], &b"\"c\""[..])]
        );
        assert_eq!(recs[1].kind, KIND_TOMBSTONE);
        assert_eq!(recs[1].entity_id, b"e-2");
        assert_eq!(recs[1].ingest_ms, 77);
    }

    /// A batch of one event (entity `e`) with the property `"a": 1`.
    fn one_event_batch() -> EventBatch {
        let mut batch = EventBatch::default();
        let props = [Property {
            key: "a",
            value: b"1",
        }];
        let ev = EventRef {
            event_id: None,
            stream: "s",
            source: "x",
            timestamp_ms: None,
            key: None,
            schema: None,
            entity_id: "e",
            properties: &props,
        };
        batch.push_event(&ev, b"id", 1);
        batch
    }

    #[test]
    fn truncated_records_are_rejected_not_read_out_of_bounds() {
        let batch = one_event_batch();
        for cut in 0..batch.buf.len() {
            assert!(Record::parse(&batch.buf[..cut]).is_none(), "cut at {cut}");
        }
        assert!(Record::parse(&batch.buf).is_some());
    }

    /// Found by the fuzz target `log_scan` (its input is kept in
    /// fuzz/regressions/log_scan/): a logged record whose CRC matched but whose property
    /// entry claims more bytes than the list holds was replayed as is, and the store's
    /// property iterator then hit its "truncated property list" assertion (a silently
    /// cut entity in a release build). Bytes read back from the disk now go through
    /// `parse_stored`, which refuses such a record (recovery stops with "cannot be
    /// decoded", history ends there).
    #[test]
    fn a_stored_record_with_a_malformed_property_list_is_refused() {
        let mut batch = one_event_batch();
        assert!(Record::parse_stored(&batch.buf).is_some());
        assert!(valid_stored_records(&batch.buf));
        // The list is the record's last 8 bytes: [kl u16 = 1][vl u32 = 1]["a"]["1"].
        // Claim a 100-byte value: the record's own lengths still add up.
        let n = batch.buf.len();
        batch.buf[n - 6..n - 2].copy_from_slice(&100u32.to_le_bytes());
        assert!(
            Record::parse(&batch.buf).is_some(),
            "the record frame is intact"
        );
        assert!(Record::parse_stored(&batch.buf).is_none());
        assert!(!valid_stored_records(&batch.buf));
    }

    /// Found by the fuzz target `log_scan` (fuzz/regressions/log_scan/): a frame whose
    /// CRC matched held a record of kind 0, which the store met as "unknown record
    /// kind" (an assertion in a debug build, a silently skipped record in a release
    /// one). A stored record of a kind this build does not know does not decode.
    #[test]
    fn a_stored_record_of_an_unknown_kind_is_refused() {
        let mut batch = one_event_batch();
        for kind in [KIND_EVENT, KIND_TOMBSTONE] {
            batch.buf[OFF_KIND] = kind;
            assert!(Record::parse_stored(&batch.buf).is_some(), "kind {kind}");
        }
        for kind in [0, 3, 255] {
            batch.buf[OFF_KIND] = kind;
            assert!(Record::parse(&batch.buf).is_some(), "the frame is intact");
            assert!(Record::parse_stored(&batch.buf).is_none(), "kind {kind}");
            assert!(!valid_stored_records(&batch.buf));
        }
    }
}
