//! What the server acknowledged, per entity: the basis of `--verify`, and the
//! `--record` file that keeps it across a crash.
//!
//! Each entity is written by one connection, one request after another, and
//! every write sets the same property keys, so the entity must hold exactly
//! its last acknowledged write — unless a write's outcome is unknown (timeout,
//! reset, a 5xx other than 503): that write may or may not have been applied,
//! and may be applied after later writes too (a server goes on with a request
//! whose client stopped waiting; a cluster completes a committed batch later),
//! so holding it is correct, whether it was sent before or after the last
//! acknowledged one. A 503 (and any 4xx) says "not applied".
//!
//! Record file: JSON lines, appended with one `write(2)` per batch of lines
//! (O_APPEND, so lines from different threads never interleave), each batch
//! written when it happens and before the request bytes of a `send` leave:
//! ```text
//! {"flux_loadtest_record":1,"url":"http://127.0.0.1:3000","start_unix_ms":1700000000000}
//! {"op":"send","id":"lt-000042","seq":17,"properties":{"p0":"k3x9","p1":17}}
//! {"op":"ack","id":"lt-000042","seq":17}
//! {"op":"rejected","id":"lt-000042","seq":18}
//! ```
//! A `send` without `ack` or `rejected` has an unknown outcome. The file
//! survives a kill of the tool (the page cache keeps it); no fsync is made,
//! so a machine crash may lose its tail.

use crate::workload::{Workload, WriteRef};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// Unknown-outcome writes kept per entity; past this the
/// entity is reported as unverifiable rather than growing without bound.
pub const UNKNOWN_PER_ENTITY_MAX: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Acked,
    /// Definitely not applied (4xx, 429, 503).
    Rejected,
    /// Maybe applied (no response, or another 5xx).
    Unknown,
}

impl Outcome {
    pub fn of_status(status: u16) -> Outcome {
        match status {
            200..=299 => Outcome::Acked,
            400..=499 | 503 => Outcome::Rejected,
            _ => Outcome::Unknown,
        }
    }
}

/// Writes of one entity that the server may hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntityLog {
    pub acked: Option<WriteRef>,
    /// Writes whose outcome is unknown (before or after `acked`).
    pub unknown: Vec<WriteRef>,
    pub overflow: bool,
}

/// Acknowledged writes of the entities of one connection (or, merged, of all).
#[derive(Debug, Default)]
pub struct Ledger {
    pub entities: HashMap<u64, EntityLog>,
}

impl Ledger {
    pub fn outcome(&mut self, w: &WriteRef, outcome: Outcome) {
        let log = self.entities.entry(w.entity).or_default();
        match outcome {
            Outcome::Acked => log.acked = Some(*w),
            Outcome::Rejected => {}
            Outcome::Unknown => {
                if log.unknown.len() < UNKNOWN_PER_ENTITY_MAX {
                    log.unknown.push(*w);
                } else {
                    log.overflow = true;
                }
            }
        }
    }

    pub fn absorb(&mut self, other: Ledger) {
        // Connections own disjoint entities.
        for (e, log) in other.entities {
            let prev = self.entities.insert(e, log);
            assert!(prev.is_none(), "entity {e} written by two connections");
        }
    }
}

/// The thread's handle on the `--record` file, with its pending lines.
#[derive(Debug)]
pub struct Recorder {
    file: File,
    lines: Vec<u8>,
}

impl Recorder {
    /// Opens (creating or appending to) the record file.
    pub fn open(path: &Path) -> std::io::Result<Recorder> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Recorder {
            file,
            lines: Vec::with_capacity(64 * 1024),
        })
    }

    pub fn header(&mut self, url: &str, start_unix_ms: u64) -> std::io::Result<()> {
        let line = serde_json::json!({
            "flux_loadtest_record": 1,
            "url": url,
            "start_unix_ms": start_unix_ms,
        });
        self.lines.extend_from_slice(line.to_string().as_bytes());
        self.lines.push(b'\n');
        self.flush()
    }

    pub fn send(&mut self, w: &Workload, wr: &WriteRef) {
        let mut num = itoa::Buffer::new();
        let l = &mut self.lines;
        l.extend_from_slice(b"{\"op\":\"send\",\"id\":\"");
        w.write_id(l, wr.entity);
        l.extend_from_slice(b"\",\"seq\":");
        l.extend_from_slice(num.format(wr.seq).as_bytes());
        l.extend_from_slice(b",\"properties\":");
        w.write_properties(l, wr);
        l.extend_from_slice(b"}\n");
    }

    pub fn outcome(&mut self, w: &Workload, wr: &WriteRef, outcome: Outcome) {
        let op: &[u8] = match outcome {
            Outcome::Acked => b"ack",
            Outcome::Rejected => b"rejected",
            Outcome::Unknown => return,
        };
        let mut num = itoa::Buffer::new();
        let l = &mut self.lines;
        l.extend_from_slice(b"{\"op\":\"");
        l.extend_from_slice(op);
        l.extend_from_slice(b"\",\"id\":\"");
        w.write_id(l, wr.entity);
        l.extend_from_slice(b"\",\"seq\":");
        l.extend_from_slice(num.format(wr.seq).as_bytes());
        l.extend_from_slice(b"}\n");
    }

    /// Appends the pending lines with one write.
    pub fn flush(&mut self) -> std::io::Result<()> {
        if self.lines.is_empty() {
            return Ok(());
        }
        let r = self.file.write_all(&self.lines);
        self.lines.clear();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wr(entity: u64, seq: u64) -> WriteRef {
        WriteRef {
            entity,
            seq,
            sent_us: 0,
        }
    }

    #[test]
    fn last_ack_wins_and_unknowns_stay_candidates() {
        let mut l = Ledger::default();
        l.outcome(&wr(1, 1), Outcome::Acked);
        l.outcome(&wr(1, 2), Outcome::Unknown);
        l.outcome(&wr(1, 3), Outcome::Rejected);
        let log = &l.entities[&1];
        assert_eq!(log.acked, Some(wr(1, 1)));
        assert_eq!(log.unknown, vec![wr(1, 2)]);
        l.outcome(&wr(1, 4), Outcome::Acked);
        let log = &l.entities[&1];
        assert_eq!(log.acked, Some(wr(1, 4)));
        // Write 2 may still be applied after write 4 (its client stopped waiting).
        assert_eq!(log.unknown, vec![wr(1, 2)]);
        for s in 0..100 {
            l.outcome(&wr(2, s), Outcome::Unknown);
        }
        assert!(l.entities[&2].overflow);
        assert_eq!(l.entities[&2].unknown.len(), UNKNOWN_PER_ENTITY_MAX);
    }

    #[test]
    fn statuses_map_to_outcomes() {
        assert_eq!(Outcome::of_status(200), Outcome::Acked);
        assert_eq!(Outcome::of_status(400), Outcome::Rejected);
        assert_eq!(Outcome::of_status(429), Outcome::Rejected);
        assert_eq!(Outcome::of_status(503), Outcome::Rejected);
        assert_eq!(Outcome::of_status(500), Outcome::Unknown);
    }
}
