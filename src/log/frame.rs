//! One log record, a "frame": encoded in place into a caller's buffer, decoded with
//! every check (length bounds, alignment, CRC, LSN, padding) and never a panic on bad
//! bytes.
//!
//! ```text
//!  offset  bytes  field
//!  0       4      len      u32 LE  header + payload bytes, padding NOT included;
//!                                  0 = end of the written log (segments are
//!                                  preallocated with zeros)
//!  4       4      crc      u32 LE  crc32 (crc32fast) of bytes [0, 4) then
//!                                  [8, extent): every byte but its own
//!  8       8      lsn      u64 LE  the frame's own LSN; must equal its position
//!  16      1      kind     u8      record type, opaque to the log
//!  17      n      payload          n = len - 17
//!  len     p      padding          zeros, p = extent - len < 8
//! ```
//!
//! The frame occupies `extent = round_up(len, 8)` bytes, so every frame starts
//! 8-aligned and the next one starts at `lsn + extent`. `len` leaves the padding out
//! because it is the only record of the payload's length: were it padded, a payload
//! ending in zero bytes could not be told from its padding. For the same reason the
//! CRC covers `len` too: otherwise a flipped low bit of `len` that stays within the
//! same extent would silently move a byte between payload and padding.

/// Bytes of a frame header: len, crc, lsn, kind.
pub const FRAME_HEADER_BYTES: usize = 17;
/// Every frame starts and ends on a multiple of this many bytes (LSN and offset).
pub const FRAME_ALIGN: usize = 8;
/// Largest frame extent: `len` is a u32. A segment may bound frames further
/// (its size less its header).
pub const FRAME_BYTES_MAX: usize = u32::MAX as usize / FRAME_ALIGN * FRAME_ALIGN;

const LEN_AT: usize = 0;
const CRC_AT: usize = 4;
const LSN_AT: usize = 8;
const KIND_AT: usize = 16;
const PAYLOAD_AT: usize = 17;

const _: () = assert!(PAYLOAD_AT == FRAME_HEADER_BYTES);
const _: () = assert!(FRAME_ALIGN.is_power_of_two());
const _: () = assert!(FRAME_BYTES_MAX % FRAME_ALIGN == 0);

/// Bytes a frame with `payload_len` bytes of payload occupies, padding included.
///
/// # Panics
/// If that exceeds [`FRAME_BYTES_MAX`]; see [`frame_len_checked`].
pub fn frame_len(payload_len: usize) -> usize {
    frame_len_checked(payload_len).expect("frame larger than FRAME_BYTES_MAX")
}

/// [`frame_len`], or `None` when the frame would exceed [`FRAME_BYTES_MAX`].
pub fn frame_len_checked(payload_len: usize) -> Option<usize> {
    let extent = FRAME_HEADER_BYTES
        .checked_add(payload_len)?
        .checked_next_multiple_of(FRAME_ALIGN)?;
    (extent <= FRAME_BYTES_MAX).then_some(extent)
}

/// Writes a frame at the start of `dst`. `fill` receives the payload's place inside
/// `dst` (exactly `payload_len` bytes) and must write all of it: the payload is never
/// copied through a buffer of ours. The frame's bytes past `frame_len(payload_len)`
/// are left alone.
///
/// `len` goes in before `fill` runs and the CRC after, so a frame interrupted half-way
/// (a panicking `fill`, a killed process) reads back as a bad frame at the tail, which
/// recovery cuts as a torn tail, rather than as an end marker with bytes after it.
///
/// # Panics
/// If `dst` is shorter than the frame or `lsn` is not 8-aligned (callers' bugs).
pub fn write_frame(
    dst: &mut [u8],
    lsn: u64,
    kind: u8,
    payload_len: usize,
    fill: impl FnOnce(&mut [u8]),
) {
    let extent = frame_len(payload_len);
    assert!(
        dst.len() >= extent,
        "frame of {extent} bytes into {}",
        dst.len()
    );
    assert_eq!(lsn % FRAME_ALIGN as u64, 0, "unaligned lsn {lsn}");
    let len = FRAME_HEADER_BYTES + payload_len;
    let frame = &mut dst[..extent];
    // len <= extent <= FRAME_BYTES_MAX < 2^32.
    frame[LEN_AT..CRC_AT].copy_from_slice(&(len as u32).to_le_bytes());
    frame[LSN_AT..KIND_AT].copy_from_slice(&lsn.to_le_bytes());
    frame[KIND_AT] = kind;
    fill(&mut frame[PAYLOAD_AT..len]);
    frame[len..].fill(0);
    let crc = frame_crc(frame);
    frame[CRC_AT..LSN_AT].copy_from_slice(&crc.to_le_bytes());
}

/// What [`read_frame`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameRead<'a> {
    /// A whole, valid frame. `len` is its extent (padding included): the next frame
    /// starts at `lsn + len`.
    Frame {
        lsn: u64,
        kind: u8,
        payload: &'a [u8],
        len: usize,
    },
    /// A zero length field (or no bytes at all): nothing was written here. Whether
    /// the bytes after it are zero too is the caller's question (see `scan`).
    End,
    /// Bytes that are not a valid frame at this position.
    Bad { reason: &'static str },
}

/// Decodes the frame at the start of `src`, which should sit at `expected_lsn`. The
/// whole frame must lie within `src` (pass the rest of the segment, or of the
/// written part of it). Never panics, whatever the bytes.
pub fn read_frame(src: &[u8], expected_lsn: u64) -> FrameRead<'_> {
    if expected_lsn % FRAME_ALIGN as u64 != 0 {
        return bad("lsn is not 8-byte aligned");
    }
    let Some(len) = read_len(src) else {
        return if src.iter().all(|&b| b == 0) {
            FrameRead::End
        } else {
            bad("length field cut short")
        };
    };
    if len == 0 {
        return FrameRead::End;
    }
    if len < FRAME_HEADER_BYTES {
        return bad("length below the frame header size");
    }
    // len < 2^32 so this only fails where usize is 32 bits.
    let Some(extent) = len.checked_next_multiple_of(FRAME_ALIGN) else {
        return bad("length beyond the address space");
    };
    let Some(frame) = src.get(..extent) else {
        return bad("frame extends past the end of the segment");
    };
    let crc_stored = u32::from_le_bytes(array(&frame[CRC_AT..LSN_AT]));
    if frame_crc(frame) != crc_stored {
        return bad("crc mismatch");
    }
    let lsn = u64::from_le_bytes(array(&frame[LSN_AT..KIND_AT]));
    if lsn != expected_lsn {
        return bad("lsn does not match the frame's position");
    }
    if frame[len..].iter().any(|&b| b != 0) {
        return bad("non-zero padding");
    }
    FrameRead::Frame {
        lsn,
        kind: frame[KIND_AT],
        payload: &frame[PAYLOAD_AT..len],
        len: extent,
    }
}

/// The extent the frame at the start of `src` claims, if that claim is plausible:
/// `len` at least a header and the padded frame within `src`. Recovery uses it to
/// find where a bad frame would have ended.
pub fn claimed_extent(src: &[u8]) -> Option<usize> {
    let len = read_len(src)?;
    let extent = len.checked_next_multiple_of(FRAME_ALIGN)?;
    (len >= FRAME_HEADER_BYTES && extent <= src.len()).then_some(extent)
}

/// The CRC of a whole frame (its extent): everything but the crc field itself.
pub fn frame_crc(frame: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&frame[LEN_AT..CRC_AT]);
    hasher.update(&frame[LSN_AT..]);
    hasher.finalize()
}

fn read_len(src: &[u8]) -> Option<usize> {
    let bytes = src.get(LEN_AT..CRC_AT)?;
    usize::try_from(u32::from_le_bytes(array(bytes))).ok()
}

/// `bytes` as an array; callers slice exactly N bytes.
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    bytes.try_into().expect("slice of N bytes")
}

#[cold]
fn bad(reason: &'static str) -> FrameRead<'static> {
    FrameRead::Bad { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload_of(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    fn encode(lsn: u64, kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0xAA; frame_len(payload.len()) + 8];
        write_frame(&mut buf, lsn, kind, payload.len(), |dst| {
            dst.copy_from_slice(payload)
        });
        buf.truncate(frame_len(payload.len()));
        buf
    }

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn frame_len_pads_to_alignment() {
        assert_eq!(frame_len(0), 24);
        assert_eq!(frame_len(7), 24);
        assert_eq!(frame_len(8), 32);
        assert_eq!(frame_len(15), 32);
        assert_eq!(frame_len_checked(usize::MAX), None);
        assert_eq!(
            frame_len_checked(FRAME_BYTES_MAX - FRAME_HEADER_BYTES),
            Some(FRAME_BYTES_MAX)
        );
        assert_eq!(
            frame_len_checked(FRAME_BYTES_MAX - FRAME_HEADER_BYTES + 1),
            None
        );
    }

    #[test]
    fn round_trip_for_payloads_0_to_100() {
        for payload_len in 0..100 {
            // Trailing zero bytes in the payload must survive the padding.
            let mut payload = payload_of(payload_len, payload_len as u8);
            if let Some(last) = payload.last_mut() {
                *last = 0;
            }
            let lsn = 64 + 8 * payload_len as u64;
            let buf = encode(lsn, 7, &payload);
            assert_eq!(buf.len() % FRAME_ALIGN, 0);
            assert!(buf.len() >= FRAME_HEADER_BYTES + payload_len);
            assert!(buf.len() < FRAME_HEADER_BYTES + payload_len + FRAME_ALIGN);
            let len = u32::from_le_bytes(buf[0..4].try_into().unwrap()) as usize;
            assert_eq!(len, FRAME_HEADER_BYTES + payload_len);
            assert!(buf[len..].iter().all(|&b| b == 0), "padding is zero");
            let crc = u32::from_le_bytes(buf[4..8].try_into().unwrap());
            let mut covered = buf[0..4].to_vec();
            covered.extend_from_slice(&buf[8..]);
            assert_eq!(crc, crc32fast::hash(&covered));
            assert_eq!(
                read_frame(&buf, lsn),
                FrameRead::Frame {
                    lsn,
                    kind: 7,
                    payload: &payload,
                    len: buf.len()
                }
            );
            assert_eq!(claimed_extent(&buf), Some(buf.len()));
        }
    }

    #[test]
    fn fill_writes_in_place() {
        let mut buf = vec![0u8; 64];
        let range = buf.as_ptr_range();
        write_frame(&mut buf, 0, 1, 10, |dst| {
            assert_eq!(dst.len(), 10);
            assert_eq!(dst.as_ptr(), range.start.wrapping_add(FRAME_HEADER_BYTES));
            dst.fill(5);
        });
        assert!(
            matches!(read_frame(&buf, 0), FrameRead::Frame { payload, .. } if payload == [5; 10])
        );
    }

    #[test]
    fn frames_follow_each_other() {
        let mut buf = vec![0u8; 256];
        let mut at = 0;
        for n in 0..5 {
            let payload = payload_of(n * 3, 1);
            write_frame(&mut buf[at..], at as u64, n as u8, payload.len(), |d| {
                d.copy_from_slice(&payload)
            });
            at += frame_len(payload.len());
        }
        let mut at = 0;
        for n in 0..5 {
            let FrameRead::Frame {
                kind, payload, len, ..
            } = read_frame(&buf[at..], at as u64)
            else {
                panic!("frame {n}");
            };
            assert_eq!((kind, payload.len()), (n as u8, n * 3));
            at += len;
        }
        assert_eq!(read_frame(&buf[at..], at as u64), FrameRead::End);
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let buf = encode(4096, 3, &payload_of(21, 9));
        for at in 0..buf.len() {
            for bit in 0..8 {
                let mut copy = buf.clone();
                copy[at] ^= 1 << bit;
                let read = read_frame(&copy, 4096);
                assert!(
                    matches!(read, FrameRead::Bad { .. }),
                    "byte {at} bit {bit}: {read:?}"
                );
            }
        }
    }

    #[test]
    fn each_check_has_its_reason() {
        let buf = encode(64, 1, b"abc");
        let reason = |src: &[u8], lsn| match read_frame(src, lsn) {
            FrameRead::Bad { reason } => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(reason(&buf, 72), "lsn does not match the frame's position");
        assert_eq!(reason(&buf, 65), "lsn is not 8-byte aligned");
        assert_eq!(
            reason(&buf[..buf.len() - 8], 64),
            "frame extends past the end of the segment"
        );
        assert_eq!(reason(&buf[..3], 64), "length field cut short");

        let mut short = buf.clone();
        short[0..4].copy_from_slice(&16u32.to_le_bytes());
        assert_eq!(reason(&short, 64), "length below the frame header size");

        let mut crc = buf.clone();
        crc[5] ^= 0x10;
        assert_eq!(reason(&crc, 64), "crc mismatch");

        // Padding damaged but the crc recomputed to match: still refused.
        let mut pad = buf.clone();
        let last = pad.len() - 1;
        pad[last] = 1;
        let fixed = frame_crc(&pad);
        pad[4..8].copy_from_slice(&fixed.to_le_bytes());
        assert_eq!(reason(&pad, 64), "non-zero padding");
    }

    #[test]
    fn zeros_and_nothing_are_end() {
        assert_eq!(read_frame(&[], 0), FrameRead::End);
        assert_eq!(read_frame(&[0; 3], 0), FrameRead::End);
        assert_eq!(read_frame(&[0; 64], 64), FrameRead::End);
        // A zero length is End whatever follows: scan decides what junk after it means.
        let mut junk = [0u8; 32];
        junk[10] = 1;
        assert_eq!(read_frame(&junk, 0), FrameRead::End);
    }

    #[test]
    fn claimed_extent_only_when_plausible() {
        let buf = encode(0, 0, &[1; 30]);
        assert_eq!(claimed_extent(&buf), Some(48));
        assert_eq!(claimed_extent(&buf[..40]), None);
        assert_eq!(claimed_extent(&[0; 64]), None);
        assert_eq!(claimed_extent(&[16, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(claimed_extent(&[1, 2]), None);
    }

    #[test]
    fn every_truncation_of_a_frame_is_bad() {
        let buf = encode(128, 2, &payload_of(40, 3));
        for cut in 1..buf.len() {
            let read = read_frame(&buf[..cut], 128);
            assert!(
                matches!(read, FrameRead::Bad { .. }),
                "cut at {cut}: {read:?}"
            );
        }
        assert_eq!(read_frame(&buf[..0], 128), FrameRead::End);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut buf = [0u8; 256];
        let mut frames = 0;
        for case in 0..10_000 {
            let src_len = (rng.next() % buf.len() as u64) as usize;
            for b in buf.iter_mut() {
                *b = rng.next() as u8;
            }
            // Half the cases get a plausible length, so the later checks run too.
            if case % 2 == 0 {
                let len = (rng.next() % 300) as u32;
                buf[0..4].copy_from_slice(&len.to_le_bytes());
            }
            // Every fourth case also gets a matching crc and lsn.
            let lsn = (rng.next() % 1024) & !7;
            if case % 4 == 0 {
                buf[8..16].copy_from_slice(&lsn.to_le_bytes());
                if let Some(extent) = claimed_extent(&buf[..src_len]) {
                    let crc = frame_crc(&buf[..extent]);
                    buf[4..8].copy_from_slice(&crc.to_le_bytes());
                }
            }
            let src = &buf[..src_len];
            let expected_lsn = if case % 8 == 1 { lsn | 3 } else { lsn };
            match read_frame(src, expected_lsn) {
                FrameRead::Frame {
                    lsn: got,
                    payload,
                    len,
                    ..
                } => {
                    frames += 1;
                    assert_eq!(got, expected_lsn);
                    assert!(len <= src.len() && len % FRAME_ALIGN == 0);
                    assert!(FRAME_HEADER_BYTES + payload.len() <= len);
                }
                FrameRead::End | FrameRead::Bad { .. } => {}
            }
            let _ = claimed_extent(src);
        }
        assert!(frames > 0, "the fuzz reached the success path");
    }

    #[test]
    #[should_panic(expected = "unaligned lsn")]
    fn write_refuses_unaligned_lsn() {
        write_frame(&mut [0; 64], 4, 0, 0, |_| {});
    }

    #[test]
    #[should_panic(expected = "frame of 32 bytes into 24")]
    fn write_refuses_short_dst() {
        write_frame(&mut [0; 24], 0, 0, 8, |_| {});
    }
}
