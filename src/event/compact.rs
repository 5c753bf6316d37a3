//! The compact form records take in the log (segment format 2): binary event ids,
//! varint times and lengths, a dictionary of names per section, typed property values.
//! A record in memory and on the mesh keeps the fixed layout of `event.rs`; it is
//! transcoded on its way into the log ([`SectionWriter`]) and back out of it
//! ([`Section::decode`], [`decode_at`]). Nothing is lost: every field of the in-memory
//! record comes back byte for byte.
//!
//! A **section** is the records of one request part for one shard (an `EventBatch`),
//! self-contained: the names it uses are in its own dictionary, so a section can be
//! decoded from its bytes alone (the frame, an intent part, a replica's message).
//!
//! ```text
//! section:  | 0xF2 | dict_at u32 | base_ms u64 | records ... | dictionary |
//!           0      1             5             13            dict_at
//! dictionary: count varint, then count × [len varint | bytes]
//! ```
//!
//! A record (varints are LEB128, `zz` is zigzag of the wrapping difference as i64):
//!
//! ```text
//! flags   u8      bits 0-1 kind (1 event, 2 tombstone), 2 key present, 3 schema
//!                 present, 4 event id is a binary UUID, 5 prev is absolute,
//!                 6 no ingest time (0), 7 zero
//! back    varint  the record's offset in its section: a reader at the record's LSN
//!                 finds the section (and its dictionary) from it
//! id      UUID:   varint zz(uuid_ms - base_ms), then the UUID's bytes 6..16
//!         else:   varint len, bytes
//! ingest  varint zz(ingest_ms - base_ms)      (absent when flag 6)
//! time    varint zz(timestamp_ms - base_ms)
//! prev    varint record_lsn - prev_lsn (0: none), or prev_lsn itself with flag 5
//! stream  name    source  name
//! key     varint len, bytes   (flag 2)        schema  varint len, bytes (flag 3)
//! entity  varint len, bytes
//! props   varint count, then count × [varint (name << 2 | type), value]
//! name:   varint n: 0 = inline (varint len, bytes follow), else dictionary entry n-1
//! value:  type 0 raw JSON text (varint len, bytes); 1 a JSON string "…" stored without
//!         its quotes (varint len, bytes); 2 an integer n ≥ 0 written in canonical
//!         decimal (varint n); 3 a negative one, -m (varint m, m ≥ 1)
//! ```
//!
//! `base_ms` is the section's first record's ingest time (or its timestamp when the
//! part is not stamped yet, as other shards' parts in an intent): times and the
//! timestamp in a UUIDv7 event id are then a byte or two. A record read by its LSN
//! (history) decodes with [`decode_at`].

use hashbrown::HashMap;

use super::{push_u32_bytes, push_u8_str, EventBatch, Record, Records, KIND_EVENT, KIND_TOMBSTONE};

/// First byte of every section.
pub const SECTION_MAGIC: u8 = 0xF2;
/// Bytes before a section's first record.
pub const SECTION_HEADER_BYTES: usize = 13;
/// Dictionary entries per section; further names are written inline. Below 4096 so
/// that a property header (entry + 1, shifted by 2) stays within two varint bytes.
pub const DICT_ENTRIES_MAX: usize = 4095;

const FLAG_KIND: u8 = 0b11;
const FLAG_KEY: u8 = 1 << 2;
const FLAG_SCHEMA: u8 = 1 << 3;
const FLAG_UUID: u8 = 1 << 4;
const FLAG_PREV_ABS: u8 = 1 << 5;
const FLAG_NO_INGEST: u8 = 1 << 6;
const FLAG_RESERVED: u8 = 1 << 7;

const VALUE_RAW: u64 = 0;
const VALUE_STRING: u64 = 1;
const VALUE_UINT: u64 = 2;
const VALUE_NEG: u64 = 3;

/// An upper bound of the bytes [`SectionWriter`] writes for `batch`, so that the log
/// can make room before the records are encoded. Against the fixed layout a compact
/// record can only grow where a field is tiny: at most 32 bytes per record (varint
/// times, back and prev, name references) and 8 per property (a two-byte header where
/// an empty name had none; an inline name's length; its dictionary entry).
pub fn section_bound(batch: &EventBatch) -> usize {
    SECTION_HEADER_BYTES
        + 5
        + batch.buf.len()
        + 32 * batch.count as usize
        + 8 * batch.props as usize
}

/// Writes one section: records in order, then the dictionary.
pub struct SectionWriter<'o, 'r> {
    out: &'o mut Vec<u8>,
    start: usize,
    lsn: u64,
    base_ms: u64,
    /// The dictionary: its first `SMALL_DICT` entries inline, searched linearly (a
    /// single event's six names cost no allocation and no hashing), the rest in
    /// `more` with a hash index built once it is needed.
    small: [&'r [u8]; SMALL_DICT],
    more: Vec<&'r [u8]>,
    index: Option<HashMap<&'r [u8], u32>>,
    entries: usize,
    /// The name references of the previous record, by position (stream, source, then
    /// properties): records of a batch mostly repeat them, and a byte comparison is
    /// cheaper than a hash lookup.
    last: [(&'r [u8], u32); LAST_SLOTS],
}

/// Dictionary entries kept inline and searched linearly.
const SMALL_DICT: usize = 16;
/// Name positions of the previous record remembered (stream, source, 6 properties).
const LAST_SLOTS: usize = 8;

impl<'o, 'r> SectionWriter<'o, 'r> {
    /// Starts a section at the end of `out`; its first byte will sit at log position
    /// `lsn` (which only the `prev` deltas depend on). `base_ms` is the time the
    /// records' times are written against.
    pub fn new(out: &'o mut Vec<u8>, lsn: u64, base_ms: u64) -> Self {
        let start = out.len();
        out.push(SECTION_MAGIC);
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&base_ms.to_le_bytes());
        SectionWriter {
            out,
            start,
            lsn,
            base_ms,
            small: [&[]; SMALL_DICT],
            more: Vec::new(),
            index: None,
            entries: 0,
            last: [(&[], u32::MAX); LAST_SLOTS],
        }
    }

    /// `base_ms` for a batch: its first record's ingest time, else its timestamp.
    pub fn base_ms_of(records: &[u8]) -> u64 {
        Records(records).next().map_or(0, |r| {
            if r.ingest_ms != 0 {
                r.ingest_ms
            } else {
                r.timestamp_ms
            }
        })
    }

    /// The LSN the next record will have.
    #[inline]
    pub fn next_lsn(&self) -> u64 {
        self.lsn + (self.out.len() - self.start) as u64
    }

    /// Appends `r` with `prev_lsn` (0: none) as its history link.
    pub fn push(&mut self, r: &Record<'r>, prev_lsn: u64) {
        let lsn = self.next_lsn();
        let back = (self.out.len() - self.start) as u64;
        let uuid = parse_uuid(r.event_id);
        let mut flags = r.kind & FLAG_KIND;
        debug_assert_eq!(flags, r.kind, "record kinds fit two bits");
        if r.key.is_some() {
            flags |= FLAG_KEY;
        }
        if r.schema.is_some() {
            flags |= FLAG_SCHEMA;
        }
        if uuid.is_some() {
            flags |= FLAG_UUID;
        }
        let prev_delta = if prev_lsn == 0 {
            0
        } else if prev_lsn < lsn {
            lsn - prev_lsn
        } else {
            flags |= FLAG_PREV_ABS;
            prev_lsn
        };
        if r.ingest_ms == 0 {
            flags |= FLAG_NO_INGEST;
        }
        self.out.push(flags);
        put_varint(self.out, back);
        match uuid {
            Some(u) => {
                let ms = u64::from_be_bytes([0, 0, u[0], u[1], u[2], u[3], u[4], u[5]]);
                put_varint(self.out, zz(ms, self.base_ms));
                self.out.extend_from_slice(&u[6..]);
            }
            None => put_bytes(self.out, r.event_id),
        }
        if r.ingest_ms != 0 {
            put_varint(self.out, zz(r.ingest_ms, self.base_ms));
        }
        put_varint(self.out, zz(r.timestamp_ms, self.base_ms));
        put_varint(self.out, prev_delta);
        let n = self.name(0, r.stream);
        self.put_name(n, 0, r.stream);
        let n = self.name(1, r.source);
        self.put_name(n, 0, r.source);
        if let Some(k) = r.key {
            put_bytes(self.out, k);
        }
        if let Some(s) = r.schema {
            put_bytes(self.out, s);
        }
        put_bytes(self.out, r.entity_id);
        let count = super::Properties(r.properties).count();
        put_varint(self.out, count as u64);
        for (i, (key, value)) in super::Properties(r.properties).enumerate() {
            let (ty, payload) = classify(value);
            let n = self.name(2 + i, key);
            self.put_name(n, ty, key);
            put_payload(self.out, payload);
        }
    }

    /// Writes the dictionary; returns the section's length.
    pub fn finish(self) -> usize {
        let dict_at = self.out.len() - self.start;
        put_varint(self.out, self.entries as u64);
        let small = &self.small[..self.entries.min(SMALL_DICT)];
        for e in small.iter().chain(&self.more) {
            put_bytes(self.out, e);
        }
        let dict_at = u32::try_from(dict_at).expect("a section is smaller than a segment");
        self.out[self.start + 1..self.start + 5].copy_from_slice(&dict_at.to_le_bytes());
        self.out.len() - self.start
    }

    /// The reference for `name` at position `slot` of a record: dictionary entry + 1,
    /// or 0 (inline) once the dictionary is full.
    #[inline]
    fn name(&mut self, slot: usize, name: &'r [u8]) -> u32 {
        if let Some(&(last, n)) = self.last.get(slot) {
            if n != u32::MAX && crate::bytes::eq(last, name) {
                return n;
            }
        }
        let n = self.lookup(name);
        if let Some(l) = self.last.get_mut(slot) {
            *l = (name, n);
        }
        n
    }

    /// `name`'s dictionary entry + 1, adding it if there is room; 0 (inline) if not.
    fn lookup(&mut self, name: &'r [u8]) -> u32 {
        let small = &self.small[..self.entries.min(SMALL_DICT)];
        if let Some(i) = small.iter().position(|e| crate::bytes::eq(e, name)) {
            return i as u32 + 1;
        }
        if self.entries > SMALL_DICT {
            let index = self.index.get_or_insert_with(|| {
                (SMALL_DICT..)
                    .zip(&self.more)
                    .map(|(i, e)| (*e, i as u32 + 1))
                    .collect()
            });
            if let Some(&n) = index.get(name) {
                return n;
            }
        }
        if self.entries == DICT_ENTRIES_MAX {
            return 0;
        }
        if self.entries < SMALL_DICT {
            self.small[self.entries] = name;
        } else {
            self.more.push(name);
            if let Some(index) = &mut self.index {
                index.insert(name, self.entries as u32 + 1);
            }
        }
        self.entries += 1;
        self.entries as u32
    }

    #[inline]
    fn put_name(&mut self, n: u32, ty: u64, name: &[u8]) {
        put_varint(self.out, (u64::from(n) << 2) | ty);
        if n == 0 {
            put_bytes(self.out, name);
        }
    }
}

/// A property value as stored: bytes (raw JSON, or a string without its quotes) or an
/// integer (see [`classify`]).
pub(crate) enum Payload<'a> {
    Bytes(&'a [u8]),
    Int(u64),
}

/// How a raw JSON value is stored: quotes dropped from a string, an integer as a
/// varint when its text is canonical (so it renders back to the same bytes).
#[inline]
pub(crate) fn classify(v: &[u8]) -> (u64, Payload<'_>) {
    match v {
        [b'"', inner @ .., b'"'] => (VALUE_STRING, Payload::Bytes(inner)),
        [b'-', digits @ ..] => match canonical_uint(digits) {
            Some(m) if m > 0 => (VALUE_NEG, Payload::Int(m)),
            _ => (VALUE_RAW, Payload::Bytes(v)),
        },
        _ => match canonical_uint(v) {
            Some(n) => (VALUE_UINT, Payload::Int(n)),
            None => (VALUE_RAW, Payload::Bytes(v)),
        },
    }
}

/// `digits` as a u64 if they are its canonical decimal form (no sign, no leading
/// zero, no overflow).
#[inline]
fn canonical_uint(digits: &[u8]) -> Option<u64> {
    match digits {
        [] => None,
        [b'0'] => Some(0),
        [b'0', ..] => None,
        _ if digits.len() > 20 => None,
        _ => {
            let mut n: u64 = 0;
            for &d in digits {
                if !d.is_ascii_digit() {
                    return None;
                }
                n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            }
            Some(n)
        }
    }
}

/// The 16 bytes of an event id in canonical lower-case hyphenated UUID form (the form
/// it renders back to), else `None`.
#[inline]
fn parse_uuid(s: &[u8]) -> Option<[u8; 16]> {
    if s.len() != 36 || s[8] != b'-' || s[13] != b'-' || s[18] != b'-' || s[23] != b'-' {
        return None;
    }
    let mut out = [0u8; 16];
    let mut i = 0;
    let mut o = 0;
    while o < 16 {
        if matches!(i, 8 | 13 | 18 | 23) {
            i += 1;
        }
        out[o] = (hex_lower(s[i])? << 4) | hex_lower(s[i + 1])?;
        i += 2;
        o += 1;
    }
    Some(out)
}

#[inline]
fn hex_lower(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[inline]
fn zz(v: u64, base: u64) -> u64 {
    let d = v.wrapping_sub(base) as i64;
    ((d << 1) ^ (d >> 63)) as u64
}

#[inline]
fn unzz(z: u64, base: u64) -> u64 {
    let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
    base.wrapping_add(d as u64)
}

#[inline]
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Writes the payload of a classified value (after its type went into a header).
#[inline]
pub(crate) fn put_payload(out: &mut Vec<u8>, p: Payload<'_>) {
    match p {
        Payload::Bytes(b) => put_bytes(out, b),
        Payload::Int(v) => put_varint(out, v),
    }
}

/// A bounds-checked reader: every read returns `None` past the end.
pub(crate) struct Cursor<'a> {
    pub(crate) b: &'a [u8],
    pub(crate) at: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    pub(crate) fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.at)?;
        self.at += 1;
        Some(v)
    }

    #[inline]
    pub(crate) fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return None;
            }
            v |= bits << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    #[inline]
    pub(crate) fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.varint()?).ok()?;
        self.take(n)
    }
}

/// What the store reads of a record (see `state::Store::apply_update`).
#[derive(Debug, Clone, Copy)]
pub struct Update<'a> {
    pub kind: u8,
    pub entity_id: &'a [u8],
    pub ingest_ms: u64,
    /// Property list (`event::Properties`).
    pub properties: &'a [u8],
}

/// One record as [`Section::replay`] found it: where its entity id lies in the
/// section and its property list in the caller's buffer.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub lsn: u64,
    pub kind: u8,
    pub ingest_ms: u64,
    pub entity: std::ops::Range<usize>,
    pub properties: std::ops::Range<usize>,
}

enum EventId<'a> {
    Uuid([u8; 16]),
    Text(&'a [u8]),
}

/// A record's fields before its properties.
struct Head<'a> {
    kind: u8,
    event_id: EventId<'a>,
    ingest_ms: u64,
    timestamp_ms: u64,
    prev_lsn: u64,
    stream: &'a [u8],
    source: &'a [u8],
    key: Option<&'a [u8]>,
    schema: Option<&'a [u8]>,
    entity_id: &'a [u8],
    count: u64,
}

/// A parsed section: its dictionary and where its records lie.
pub struct Section<'a> {
    bytes: &'a [u8],
    base_ms: u64,
    dict_at: usize,
    entries: Vec<&'a [u8]>,
    /// Bytes from the section's start to the end of its dictionary.
    len: usize,
}

impl<'a> Section<'a> {
    /// Parses the section at the start of `b` (which may go on past it); `None` if
    /// its header or dictionary is malformed.
    pub fn parse(b: &'a [u8]) -> Option<Section<'a>> {
        if *b.first()? != SECTION_MAGIC {
            return None;
        }
        let dict_at = u32::from_le_bytes(b.get(1..5)?.try_into().ok()?) as usize;
        let base_ms = u64::from_le_bytes(b.get(5..13)?.try_into().ok()?);
        if dict_at < SECTION_HEADER_BYTES {
            return None;
        }
        let mut c = Cursor { b, at: dict_at };
        let n = usize::try_from(c.varint()?).ok()?;
        if n > DICT_ENTRIES_MAX {
            return None;
        }
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            entries.push(c.bytes()?);
        }
        Some(Section {
            bytes: b,
            base_ms,
            dict_at,
            entries,
            len: c.at,
        })
    }

    /// The section's length: header, records and dictionary.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.dict_at == SECTION_HEADER_BYTES
    }

    /// Decodes every record into `out` in the in-memory layout and returns how many,
    /// calling `each(offset, in_memory_record)` after each (its offset in the
    /// section: its LSN is the section's plus that). `section_lsn` is where the
    /// section sits in the log (for the `prev` links). `None` if a record is
    /// malformed.
    pub fn decode(
        &self,
        section_lsn: u64,
        out: &mut Vec<u8>,
        mut each: impl FnMut(usize, &[u8]),
    ) -> Option<u32> {
        let mut at = SECTION_HEADER_BYTES;
        let mut n = 0u32;
        while at < self.dict_at {
            let start = out.len();
            let next = self.decode_one(at, section_lsn + at as u64, out)?;
            each(at, &out[start..]);
            at = next;
            n += 1;
        }
        (at == self.dict_at).then_some(n)
    }

    /// Decodes the whole section into an [`EventBatch`] (a part to re-apply).
    pub fn to_batch(&self, section_lsn: u64) -> Option<EventBatch> {
        let mut batch = EventBatch::default();
        let mut props = 0u32;
        let mut buf = Vec::with_capacity(self.dict_at * 2);
        let count = self.decode(section_lsn, &mut buf, |_, rec| {
            if let Some((r, _)) = Record::parse(rec) {
                props += super::Properties(r.properties).count() as u32;
            }
        })?;
        batch.buf = buf;
        batch.count = count;
        batch.props = props;
        Some(batch)
    }

    /// Reads and checks the fields of the record at offset `at` (LSN `lsn`) up to its
    /// property count; the cursor is left at its first property.
    fn head(&self, at: usize, lsn: u64) -> Option<(Head<'a>, Cursor<'a>)> {
        let mut c = Cursor {
            b: self.bytes.get(..self.dict_at)?,
            at,
        };
        let flags = c.u8()?;
        let kind = flags & FLAG_KIND;
        if flags & FLAG_RESERVED != 0 || !matches!(kind, KIND_EVENT | KIND_TOMBSTONE) {
            return None;
        }
        if c.varint()? != at as u64 {
            return None;
        }
        let event_id = if flags & FLAG_UUID != 0 {
            let ms = unzz(c.varint()?, self.base_ms);
            if ms >> 48 != 0 {
                return None;
            }
            let mut u = [0u8; 16];
            u[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
            u[6..].copy_from_slice(c.take(10)?);
            EventId::Uuid(u)
        } else {
            let text = c.bytes()?;
            if text.len() > u8::MAX as usize {
                return None;
            }
            EventId::Text(text)
        };
        let ingest_ms = if flags & FLAG_NO_INGEST != 0 {
            0
        } else {
            match unzz(c.varint()?, self.base_ms) {
                0 => return None,
                v => v,
            }
        };
        let timestamp_ms = unzz(c.varint()?, self.base_ms);
        let prev = c.varint()?;
        let prev_lsn = if flags & FLAG_PREV_ABS != 0 {
            if prev < lsn {
                return None;
            }
            prev
        } else if prev == 0 {
            0
        } else {
            lsn.checked_sub(prev)?
        };
        let stream = self.name_ref(&mut c, false)?.0;
        let source = self.name_ref(&mut c, false)?.0;
        let key = if flags & FLAG_KEY != 0 {
            Some(non_empty(c.bytes()?)?)
        } else {
            None
        };
        let schema = if flags & FLAG_SCHEMA != 0 {
            Some(non_empty(c.bytes()?)?)
        } else {
            None
        };
        let entity_id = c.bytes()?;
        if stream.len() > u8::MAX as usize
            || source.len() > u8::MAX as usize
            || entity_id.len() > u16::MAX as usize
            || key.is_some_and(|k| k.len() > u32::MAX as usize)
            || schema.is_some_and(|s| s.len() > u32::MAX as usize)
        {
            return None;
        }
        let count = c.varint()?;
        if kind == KIND_TOMBSTONE && count != 0 {
            return None;
        }
        Some((
            Head {
                kind,
                event_id,
                ingest_ms,
                timestamp_ms,
                prev_lsn,
                stream,
                source,
                key,
                schema,
                entity_id,
                count,
            },
            c,
        ))
    }

    /// Appends `count` properties at the cursor to `out` in the property-list format
    /// (`event::push_property`); `out` is left as it was on `None`.
    fn properties(&self, c: &mut Cursor<'a>, count: u64, out: &mut Vec<u8>) -> Option<()> {
        let start = out.len();
        for _ in 0..count {
            if self.decode_property(c, out).is_none() {
                out.truncate(start);
                return None;
            }
        }
        u32::try_from(out.len() - start)
            .ok()
            .map(|_| ())
            .or_else(|| {
                out.truncate(start);
                None
            })
    }

    /// Decodes the record at offset `at` (LSN `lsn`) into `out`; returns the offset
    /// after it.
    fn decode_one(&self, at: usize, lsn: u64, out: &mut Vec<u8>) -> Option<usize> {
        let (h, mut c) = self.head(at, lsn)?;
        let mut id_text = [0u8; 36];
        let event_id: &[u8] = match h.event_id {
            EventId::Uuid(u) => uuid::Uuid::from_bytes(u)
                .hyphenated()
                .encode_lower(&mut id_text)
                .as_bytes(),
            EventId::Text(t) => t,
        };
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        out.push(h.kind);
        out.extend_from_slice(&h.ingest_ms.to_le_bytes());
        out.extend_from_slice(&h.timestamp_ms.to_le_bytes());
        out.extend_from_slice(&h.prev_lsn.to_le_bytes());
        push_u8_str(out, event_id);
        push_u8_str(out, h.stream);
        push_u8_str(out, h.source);
        push_u32_bytes(out, h.key.unwrap_or_default());
        push_u32_bytes(out, h.schema.unwrap_or_default());
        out.extend_from_slice(&(h.entity_id.len() as u16).to_le_bytes());
        out.extend_from_slice(h.entity_id);
        let props_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let props = self.properties(&mut c, h.count, out);
        let len = u32::try_from(out.len() - start).ok();
        let (Some(()), Some(len)) = (props, len) else {
            out.truncate(start);
            return None;
        };
        let props_len = (out.len() - props_at - 4) as u32;
        out[props_at..props_at + 4].copy_from_slice(&props_len.to_le_bytes());
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        Some(c.at)
    }

    /// What recovery needs of each record, without building the whole in-memory
    /// record (no event id text, names, key or schema copied): appends one
    /// [`Replayed`] per record to `out` and their property lists to `props`, with the
    /// same checks as [`Section::decode`]; [`Section::update`] turns one into what the
    /// store applies. `None` if a record is malformed (the ones before it are in
    /// `out`).
    pub fn replay(
        &self,
        section_lsn: u64,
        props: &mut Vec<u8>,
        out: &mut Vec<Replayed>,
    ) -> Option<u32> {
        let mut at = SECTION_HEADER_BYTES;
        let mut n = 0u32;
        while at < self.dict_at {
            let lsn = section_lsn + at as u64;
            let (h, mut c) = self.head(at, lsn)?;
            let props_at = props.len();
            self.properties(&mut c, h.count, props)?;
            let entity_at = h.entity_id.as_ptr() as usize - self.bytes.as_ptr() as usize;
            out.push(Replayed {
                lsn,
                kind: h.kind,
                ingest_ms: h.ingest_ms,
                entity: entity_at..entity_at + h.entity_id.len(),
                properties: props_at..props.len(),
            });
            at = c.at;
            n += 1;
        }
        (at == self.dict_at).then_some(n)
    }

    /// The update `r` (from [`Section::replay`] with `props`) stands for.
    #[inline]
    pub fn update<'s>(&'s self, r: &Replayed, props: &'s [u8]) -> Update<'s> {
        Update {
            kind: r.kind,
            entity_id: &self.bytes[r.entity.clone()],
            ingest_ms: r.ingest_ms,
            properties: &props[r.properties.clone()],
        }
    }

    fn decode_property(&self, c: &mut Cursor<'a>, out: &mut Vec<u8>) -> Option<()> {
        let (key, ty) = self.name_ref(c, true)?;
        if key.len() > u16::MAX as usize {
            return None;
        }
        out.extend_from_slice(&(key.len() as u16).to_le_bytes());
        let vl_at = out.len();
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(key);
        let v_at = out.len();
        read_value(c, ty, out)?;
        let vl = u32::try_from(out.len() - v_at).ok()?;
        out[vl_at..vl_at + 4].copy_from_slice(&vl.to_le_bytes());
        Some(())
    }
}

/// Reads a value of type `ty` (the two low bits of its header) and appends its JSON
/// text to `out`, byte for byte what was classified.
pub(crate) fn read_value(c: &mut Cursor<'_>, ty: u64, out: &mut Vec<u8>) -> Option<()> {
    match ty {
        VALUE_RAW => out.extend_from_slice(c.bytes()?),
        VALUE_STRING => {
            out.push(b'"');
            out.extend_from_slice(c.bytes()?);
            out.push(b'"');
        }
        VALUE_UINT => {
            out.extend_from_slice(itoa::Buffer::new().format(c.varint()?).as_bytes());
        }
        _ => {
            let m = c.varint()?;
            if m == 0 {
                return None;
            }
            out.push(b'-');
            out.extend_from_slice(itoa::Buffer::new().format(m).as_bytes());
        }
    }
    Some(())
}

impl<'a> Section<'a> {
    /// A name reference: the name and the two type bits below it (`typed`), or the
    /// name alone (which must then have zero type bits).
    fn name_ref(&self, c: &mut Cursor<'a>, typed: bool) -> Option<(&'a [u8], u64)> {
        let v = c.varint()?;
        let ty = v & 0b11;
        if !typed && ty != 0 {
            return None;
        }
        let name = match v >> 2 {
            0 => c.bytes()?,
            n => *self.entries.get(usize::try_from(n - 1).ok()?)?,
        };
        Some((name, ty))
    }
}

#[inline]
fn non_empty(b: &[u8]) -> Option<&[u8]> {
    (!b.is_empty()).then_some(b)
}

/// Decodes the record that starts at the beginning of `at_record`, which lies at log
/// position `lsn`, into `out` (in-memory layout). `section_of(lsn)` gives the bytes
/// from an earlier LSN on (the log's `bytes_at`): the record's `back` field leads to
/// its section, whose dictionary it may use.
pub fn decode_at<'a>(
    at_record: &[u8],
    lsn: u64,
    section_of: impl FnOnce(u64) -> Option<&'a [u8]>,
    out: &mut Vec<u8>,
) -> Option<()> {
    let mut c = Cursor {
        b: at_record,
        at: 0,
    };
    c.u8()?;
    let back = c.varint()?;
    if back < SECTION_HEADER_BYTES as u64 {
        return None;
    }
    let section_lsn = lsn.checked_sub(back)?;
    let section = Section::parse(section_of(section_lsn)?)?;
    let at = usize::try_from(back).ok()?;
    if at >= section.dict_at {
        return None;
    }
    section.decode_one(at, lsn, out).map(|_| ())
}

#[cfg(test)]
mod tests;
