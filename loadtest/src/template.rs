//! Event bodies compiled once into a template: literal byte runs between the
//! few fields that vary per event (stream, source, entity id, property values,
//! send time). Rendering an event is a walk over the pieces that copies the
//! literals and writes the fields straight into the output buffer: no
//! `format!`, no per-byte pushes, no intermediate buffers.
//!
//! ```text
//! {"stream":"loadtest-|S|","source":"lt-|R|","payload":{"entity_id":"|ID|","properties":{"p0":"|V0|","p1":|SEQ|,"_lt_sent_us":|T|}}}
//!  └──────── literal ─┘ └──── literal ───┘ └──────── literal ────────┘ └────────── literal ────────┘    └ literal ┘     └─ literal ──┘
//! ```
//!
//! Property values are a pure function of (write sequence, property index),
//! so a write can be re-rendered for verification from its sequence number.

use crate::rng::Rng;

/// Property carrying the publisher's send time (Unix µs) for subscribers.
pub const SENT_US_PROPERTY: &str = "_lt_sent_us";
/// Entity numbers are zero-padded to this many digits.
pub const ID_DIGITS: usize = 6;
/// Characters of string values.
const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
/// Characters drawn from one 64-bit random word (36^12 < 2^64).
const CHARS_PER_WORD: usize = 12;

/// Literal bytes are copied in whole chunks of this size (a constant-size
/// copy is two vector moves, a call to `memcpy` is not); the copy may run up
/// to a chunk past the literal, into space that the next piece overwrites.
const CHUNK: usize = 32;
/// Room past the end of an event that chunked copies may scribble on.
const SLACK: usize = CHUNK;

/// One piece of a compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// `len` bytes, zero-padded to whole chunks.
    Lit {
        chunks: Box<[[u8; CHUNK]]>,
        len: usize,
    },
    /// Stream number (only with more than one stream).
    Stream,
    Source,
    /// `[ns/]<prefix>NNNNNN`
    Id,
    /// String property `k`: `value_size` characters derived from (seq, k).
    Str(u32),
    /// Integer property: the write's sequence number.
    Seq,
    /// The send time, Unix µs.
    Sent,
}

/// The varying values of one event.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    pub stream: u64,
    pub source: u64,
    pub entity: u64,
    pub seq: u64,
    /// Decimal digits of the send time (empty when not embedded).
    pub sent: &'a [u8],
}

/// What an event looks like, compiled from the flags.
#[derive(Debug, Clone)]
pub struct Template {
    event: Vec<Piece>,
    properties: Vec<Piece>,
    /// `ns/<prefix>` per namespace, or just the prefix.
    id_prefixes: Vec<Box<[u8]>>,
    value_size: usize,
    /// Most bytes one event (or properties object) can take.
    event_bytes_max: usize,
    properties_bytes_max: usize,
}

/// The shape of events, as the flags describe it.
#[derive(Debug, Clone)]
pub struct Shape<'a> {
    pub props: usize,
    pub value_size: usize,
    pub streams: usize,
    pub prefix: &'a str,
    pub namespaces: &'a [String],
    pub embed_sent: bool,
}

/// Builds a piece list, merging adjacent literals.
#[derive(Default)]
struct Builder(Vec<Part>);

/// A piece while building: literals still plain bytes.
#[derive(Clone)]
enum Part {
    Lit(Vec<u8>),
    Field(Piece),
}

impl Builder {
    fn lit(&mut self, s: &[u8]) -> &mut Self {
        match self.0.last_mut() {
            Some(Part::Lit(prev)) => prev.extend_from_slice(s),
            _ => self.0.push(Part::Lit(s.to_vec())),
        }
        self
    }

    fn field(&mut self, p: Piece) -> &mut Self {
        self.0.push(Part::Field(p));
        self
    }

    fn extend(&mut self, parts: &[Part]) -> &mut Self {
        for p in parts {
            match p {
                Part::Lit(s) => self.lit(s),
                Part::Field(f) => self.field(f.clone()),
            };
        }
        self
    }

    fn build(&self) -> Vec<Piece> {
        self.0
            .iter()
            .map(|p| match p {
                Part::Lit(s) => Piece::Lit {
                    chunks: s
                        .chunks(CHUNK)
                        .map(|c| {
                            let mut chunk = [0u8; CHUNK];
                            chunk[..c.len()].copy_from_slice(c);
                            chunk
                        })
                        .collect(),
                    len: s.len(),
                },
                Part::Field(f) => f.clone(),
            })
            .collect()
    }
}

impl Template {
    pub fn new(s: &Shape) -> Template {
        // {"p0":"…","p1":17,…,"_lt_sent_us":1700000000000000}: even
        // properties are strings, odd ones integers.
        let mut props = Builder::default();
        props.lit(b"{");
        for k in 0..s.props {
            if k > 0 {
                props.lit(b",");
            }
            props.lit(format!("\"p{k}\":").as_bytes());
            if k % 2 == 0 {
                props.lit(b"\"").field(Piece::Str(k as u32)).lit(b"\"");
            } else {
                props.field(Piece::Seq);
            }
        }
        if s.embed_sent {
            if s.props > 0 {
                props.lit(b",");
            }
            props.lit(format!("\"{SENT_US_PROPERTY}\":").as_bytes());
            props.field(Piece::Sent);
        }
        props.lit(b"}");

        let mut event = Builder::default();
        event.lit(b"{\"stream\":\"loadtest");
        if s.streams > 1 {
            event.lit(b"-").field(Piece::Stream);
        }
        event
            .lit(b"\",\"source\":\"lt-")
            .field(Piece::Source)
            .lit(b"\",\"payload\":{\"entity_id\":\"")
            .field(Piece::Id)
            .lit(b"\",\"properties\":")
            .extend(&props.0)
            .lit(b"}}");

        let id_prefixes = if s.namespaces.is_empty() {
            vec![s.prefix.as_bytes().into()]
        } else {
            s.namespaces
                .iter()
                .map(|ns| format!("{ns}/{}", s.prefix).into_bytes().into_boxed_slice())
                .collect()
        };
        let (event, properties) = (event.build(), props.build());
        let bytes_max = |pieces: &[Piece]| -> usize {
            pieces
                .iter()
                .map(|p| match p {
                    Piece::Lit { len, .. } => *len,
                    Piece::Id => {
                        id_prefixes.iter().map(|p| p.len()).max().unwrap_or(0) + U64_DIGITS_MAX
                    }
                    Piece::Str(_) => s.value_size,
                    Piece::Stream | Piece::Source | Piece::Seq | Piece::Sent => U64_DIGITS_MAX,
                })
                .sum()
        };
        Template {
            event_bytes_max: bytes_max(&event),
            properties_bytes_max: bytes_max(&properties),
            event,
            properties,
            id_prefixes,
            value_size: s.value_size,
        }
    }

    /// Appends one event object.
    pub fn write_event(&self, out: &mut Vec<u8>, f: &Fields) {
        self.append(&self.event, self.event_bytes_max, out, f);
    }

    /// Appends the properties object of a write.
    pub fn write_properties(&self, out: &mut Vec<u8>, f: &Fields) {
        self.append(&self.properties, self.properties_bytes_max, out, f);
    }

    /// Appends `count` events separated by commas, `fields(i)` giving the
    /// values of event `i`: the buffer grows once for all of them.
    pub fn write_events<'a>(
        &self,
        out: &mut Vec<u8>,
        count: usize,
        mut fields: impl FnMut(usize) -> Fields<'a>,
    ) {
        let mut pos = out.len();
        out.resize(pos + count * (self.event_bytes_max + 1) + SLACK, 0);
        for i in 0..count {
            if i > 0 {
                out[pos] = b',';
                pos += 1;
            }
            pos = self.walk(&self.event, out, pos, &fields(i));
        }
        out.truncate(pos);
    }

    /// `[ns/]<prefix>NNNNNN`: namespaces are assigned round robin.
    pub fn write_id(&self, out: &mut Vec<u8>, entity: u64) {
        let pos = out.len();
        out.resize(pos + self.id_bytes_max(), 0);
        let end = self.id_at(out, pos, entity);
        out.truncate(end);
    }

    fn id_bytes_max(&self) -> usize {
        self.id_prefixes.iter().map(|p| p.len()).max().unwrap_or(0) + U64_DIGITS_MAX
    }

    fn id_at(&self, buf: &mut [u8], pos: usize, entity: u64) -> usize {
        let prefix = &self.id_prefixes[(entity % self.id_prefixes.len() as u64) as usize];
        let end = pos + prefix.len();
        buf[pos..end].copy_from_slice(prefix);
        write_u64(buf, end, entity, ID_DIGITS)
    }

    fn append(&self, pieces: &[Piece], bytes_max: usize, out: &mut Vec<u8>, f: &Fields) {
        let pos = out.len();
        out.resize(pos + bytes_max + SLACK, 0);
        let end = self.walk(pieces, out, pos, f);
        out.truncate(end);
    }

    /// Writes the pieces at `buf[pos..]`, which has room for the most they
    /// can take plus [`SLACK`]; returns where they end.
    fn walk(&self, pieces: &[Piece], buf: &mut [u8], mut pos: usize, f: &Fields) -> usize {
        for p in pieces {
            pos = match p {
                Piece::Lit { chunks, len } => {
                    for (i, c) in chunks.iter().enumerate() {
                        buf[pos + i * CHUNK..pos + (i + 1) * CHUNK].copy_from_slice(c);
                    }
                    pos + len
                }
                Piece::Stream => write_u64(buf, pos, f.stream, 1),
                Piece::Source => write_u64(buf, pos, f.source, 1),
                Piece::Id => self.id_at(buf, pos, f.entity),
                Piece::Str(k) => write_value(buf, pos, f.seq, *k as u64, self.value_size),
                Piece::Seq => write_u64(buf, pos, f.seq, 1),
                Piece::Sent => {
                    buf[pos..pos + f.sent.len()].copy_from_slice(f.sent);
                    pos + f.sent.len()
                }
            };
        }
        pos
    }
}

/// Decimal digits of the largest `u64`.
const U64_DIGITS_MAX: usize = 20;

/// `"00"` … `"99"`.
static DIGIT_PAIRS: [[u8; 2]; 100] = {
    let mut t = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

/// Writes `v` in decimal at `buf[pos..]`, zero-padded to `width` digits;
/// returns where it ends.
fn write_u64(buf: &mut [u8], pos: usize, mut v: u64, width: usize) -> usize {
    let digits = (v.checked_ilog10().unwrap_or(0) + 1) as usize;
    let len = digits.max(width);
    let out = &mut buf[pos..pos + len];
    let mut i = len;
    while v >= 100 {
        i -= 2;
        out[i..i + 2].copy_from_slice(&DIGIT_PAIRS[(v % 100) as usize]);
        v /= 100;
    }
    if v >= 10 {
        i -= 2;
        out[i..i + 2].copy_from_slice(&DIGIT_PAIRS[v as usize]);
    } else {
        i -= 1;
        out[i] = b'0' + v as u8;
    }
    out[..i].fill(b'0');
    pos + len
}

/// Writes `len` bytes of `[0-9a-z]` derived from (seq, k), distinct per
/// write, at `buf[pos..]`, which has [`CHARS_PER_WORD`] bytes of room past
/// the value (whole words are written); returns where it ends. A random word
/// gives twelve characters, its base-36 digits from the lowest; they are
/// computed two at a time from a table, in 32-bit halves (a 64-bit division
/// costs several times a 32-bit one).
fn write_value(buf: &mut [u8], pos: usize, seq: u64, k: u64, len: usize) -> usize {
    let mut x = Rng::derive(seq, k).next_u64();
    let mut done = 0;
    while done < len {
        if done > 0 {
            // The rest of the previous word, as the character-at-a-time
            // definition leaves it after twelve divisions by 36.
            x = Rng::derive(x / POW36_12, done as u64).next_u64();
        }
        let word = &mut buf[pos + done..pos + done + CHARS_PER_WORD];
        let lo = (x % POW36_6) as u32;
        let hi = ((x / POW36_6) % POW36_6) as u32;
        for (half, mut v) in [lo, hi].into_iter().enumerate() {
            for pair in 0..3 {
                let at = half * 6 + pair * 2;
                word[at..at + 2].copy_from_slice(&PAIRS[(v % 1296) as usize]);
                v /= 1296;
            }
        }
        done += CHARS_PER_WORD.min(len - done);
    }
    pos + len
}

const POW36_6: u64 = 36u64.pow(6);
const POW36_12: u64 = 36u64.pow(12);
/// `PAIRS[r]` = the two base-36 digits of `r < 36²`, lowest first.
static PAIRS: [[u8; 2]; 1296] = {
    let mut t = [[0u8; 2]; 1296];
    let mut r = 0;
    while r < 1296 {
        t[r] = [ALPHABET[r % 36], ALPHABET[r / 36]];
        r += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The straightforward rendering the template replaced, kept as the
    /// reference: same bytes for every shape.
    fn reference(s: &Shape, f: &Fields, out: &mut Vec<u8>) {
        let mut num = itoa::Buffer::new();
        out.extend_from_slice(b"{\"stream\":\"loadtest");
        if s.streams > 1 {
            out.push(b'-');
            out.extend_from_slice(num.format(f.stream).as_bytes());
        }
        out.extend_from_slice(b"\",\"source\":\"lt-");
        out.extend_from_slice(num.format(f.source).as_bytes());
        out.extend_from_slice(b"\",\"payload\":{\"entity_id\":\"");
        if !s.namespaces.is_empty() {
            let ns = &s.namespaces[(f.entity % s.namespaces.len() as u64) as usize];
            out.extend_from_slice(ns.as_bytes());
            out.push(b'/');
        }
        out.extend_from_slice(s.prefix.as_bytes());
        out.extend_from_slice(format!("{:06}", f.entity).as_bytes());
        out.extend_from_slice(b"\",\"properties\":{");
        for k in 0..s.props {
            if k > 0 {
                out.push(b',');
            }
            out.extend_from_slice(format!("\"p{k}\":").as_bytes());
            if k % 2 == 0 {
                out.push(b'"');
                // One character at a time, re-deriving every 12.
                let mut x = Rng::derive(f.seq, k as u64).next_u64();
                for i in 0..s.value_size {
                    if i % 12 == 0 && i > 0 {
                        x = Rng::derive(x, i as u64).next_u64();
                    }
                    out.push(ALPHABET[(x % 36) as usize]);
                    x /= 36;
                }
                out.push(b'"');
            } else {
                out.extend_from_slice(num.format(f.seq).as_bytes());
            }
        }
        if s.embed_sent {
            if s.props > 0 {
                out.push(b',');
            }
            out.extend_from_slice(format!("\"{SENT_US_PROPERTY}\":").as_bytes());
            out.extend_from_slice(f.sent);
        }
        out.extend_from_slice(b"}}}");
    }

    #[test]
    fn same_bytes_as_the_reference_for_every_shape() {
        let ns = ["a".to_string(), "bb".to_string()];
        for props in [0, 1, 2, 3, 4, 7] {
            for value_size in [1, 11, 12, 13, 16, 25, 100] {
                for (streams, namespaces, embed_sent) in
                    [(1, &[][..], false), (3, &ns[..], true), (1, &ns[..1], true)]
                {
                    let shape = Shape {
                        props,
                        value_size,
                        streams,
                        prefix: "lt-",
                        namespaces,
                        embed_sent,
                    };
                    let t = Template::new(&shape);
                    for (entity, seq) in [(0, 1), (7, 99), (1_234_567, 123_456_789_012)] {
                        let f = Fields {
                            stream: 2,
                            source: 3,
                            entity,
                            seq,
                            sent: if embed_sent { b"1700000000000000" } else { b"" },
                        };
                        let (mut got, mut want) = (b"x".to_vec(), b"x".to_vec());
                        t.write_event(&mut got, &f);
                        reference(&shape, &f, &mut want);
                        assert_eq!(
                            String::from_utf8(got).unwrap(),
                            String::from_utf8(want.clone()).unwrap()
                        );
                        // Several at once, comma separated.
                        let mut many = b"x".to_vec();
                        t.write_events(&mut many, 3, |_| f);
                        let one = &want[1..];
                        assert_eq!(many, [&b"x"[..], one, b",", one, b",", one].concat());
                        assert!(t.event_bytes_max >= one.len());
                    }
                }
            }
        }
    }

    #[test]
    fn decimal_digits_with_padding() {
        for (v, width, want) in [
            (0u64, 1, "0"),
            (7, 6, "000007"),
            (42, 1, "42"),
            (1_234_567, 6, "1234567"),
            (999_999, 6, "999999"),
            (u64::MAX, 1, "18446744073709551615"),
        ] {
            let mut buf = [b'#'; 32];
            let end = write_u64(&mut buf, 3, v, width);
            assert_eq!(std::str::from_utf8(&buf[3..end]).unwrap(), want);
            assert_eq!(&buf[..3], b"###");
        }
    }

    #[test]
    fn properties_object_is_json() {
        let t = Template::new(&Shape {
            props: 3,
            value_size: 5,
            streams: 1,
            prefix: "x",
            namespaces: &[],
            embed_sent: true,
        });
        let mut out = Vec::new();
        let f = Fields {
            stream: 0,
            source: 0,
            entity: 1,
            seq: 42,
            sent: b"5",
        };
        t.write_properties(&mut out, &f);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["p0"].as_str().unwrap().len(), 5);
        assert_eq!(v["p1"], 42);
        assert_eq!(v[SENT_US_PROPERTY], 5);
        // Literals are merged: no two in a row.
        assert!(t
            .event
            .windows(2)
            .all(|w| !matches!(w, [Piece::Lit { .. }, Piece::Lit { .. }])));
    }
}
