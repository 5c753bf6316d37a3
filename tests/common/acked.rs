//! Writers that remember what the server acknowledged, for kill -9 tests: each owns
//! disjoint entities and one keep-alive connection, sends single events or batches
//! (every event of a request carries the request's `seq`), and records per entity the
//! last acknowledged `seq` and those sent but never answered. After a restart,
//! [`Writer::verify`] checks that each entity holds its last acknowledged write or one
//! that was in flight.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{batch_body, event, post_request, raw_entities, Conn, Server};

/// Entities per writer (disjoint between writers); a batch writes each of them once.
pub const ENTITIES_PER_WRITER: usize = 50;
/// A writer stops after this even if the kill never interrupted it.
pub const WRITER_DEADLINE: Duration = Duration::from_secs(10);

/// The properties that write `seq` of writer `index` gives each of its entities.
fn properties(index: usize, seq: u64) -> String {
    format!(
        r#"{{"seq":{seq},"w":"w{index}-{seq}","pad":"{}"}}"#,
        "x".repeat((seq % 17) as usize)
    )
}

/// What the test knows about one entity: the `seq` of its last acknowledged write,
/// and writes sent after it that were not acknowledged (the one in flight at a kill).
#[derive(Debug, Default, Clone)]
pub struct Known {
    pub acked: Option<u64>,
    pub pending: Vec<u64>,
}

/// One writer's state, carried over kill cycles.
pub struct Writer {
    pub index: usize,
    /// Sends batches that write every one of its entities, else single events.
    pub batch: bool,
    pub ids: Vec<String>,
    pub known: HashMap<String, Known>,
    /// The next request's sequence number; every event of a request carries it.
    next_seq: u64,
}

/// What a writer saw in one cycle.
#[derive(Debug, Default)]
pub struct CycleStats {
    pub acked_requests: u64,
    /// A request was cut off by the kill (sent, no complete response).
    pub interrupted: bool,
    /// A non-200 answer before the kill: a failure.
    pub unexpected: Option<String>,
}

impl Writer {
    pub fn new(prefix: &str, index: usize) -> Writer {
        let ids: Vec<String> = (0..ENTITIES_PER_WRITER)
            .map(|k| format!("{prefix}-w{index}-e{k}"))
            .collect();
        Writer {
            index,
            batch: index % 2 == 1,
            known: ids
                .iter()
                .map(|id| (id.clone(), Known::default()))
                .collect(),
            ids,
            next_seq: 1,
        }
    }

    /// Sends requests on one keep-alive connection until the server dies, `stop` is
    /// set, or [`WRITER_DEADLINE`]; records every acknowledgement.
    pub fn run(&mut self, port: u16, killing: &AtomicBool, stop: &AtomicBool) -> CycleStats {
        let mut stats = CycleStats::default();
        let Ok(mut conn) = Conn::try_open(port, Duration::from_secs(2)) else {
            stats.unexpected = Some("cannot connect".into());
            return stats;
        };
        let deadline = Instant::now() + WRITER_DEADLINE;
        let mut turn = 0usize;
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            let seq = self.next_seq;
            self.next_seq += 1;
            let targets: Vec<String> = if self.batch {
                self.ids.clone()
            } else {
                vec![self.ids[turn % self.ids.len()].clone()]
            };
            turn += 1;
            let req = if self.batch {
                let events: Vec<String> = targets
                    .iter()
                    .map(|id| event(id, &properties(self.index, seq)))
                    .collect();
                post_request("/api/events/batch", &batch_body(&events))
            } else {
                post_request(
                    "/api/events",
                    &event(&targets[0], &properties(self.index, seq)),
                )
            };
            for id in &targets {
                self.known.get_mut(id).expect("own id").pending.push(seq);
            }
            match conn.try_exchange(&req) {
                Ok(r) if r.status == 200 => {
                    stats.acked_requests += 1;
                    for id in &targets {
                        let k = self.known.get_mut(id).expect("own id");
                        k.acked = Some(seq);
                        k.pending.clear();
                    }
                }
                Ok(r) => {
                    if !killing.load(Ordering::SeqCst) {
                        stats.unexpected =
                            Some(format!("{} {}", r.status, String::from_utf8_lossy(&r.body)));
                    }
                    stats.interrupted = true;
                    break;
                }
                Err(_) => {
                    if !killing.load(Ordering::SeqCst) {
                        stats.unexpected = Some("connection failed before the kill".into());
                    }
                    stats.interrupted = true;
                    break;
                }
            }
        }
        stats
    }

    /// Checks every entity of this writer against what was acknowledged; then takes
    /// what the server holds as the new known state (it is in the log now).
    /// Returns how many entities hold a write that was never acknowledged.
    pub fn verify(&mut self, srv: &Server, failures: &mut Vec<String>) -> usize {
        let mut unacked_present = 0;
        let bodies = raw_entities(srv, &self.ids);
        for (id, body) in self.ids.iter().zip(bodies) {
            let k = self.known.get_mut(id).expect("own id");
            // The whole properties object must be that of one write of this writer.
            let seen = body.map(|b| {
                let v: Value = serde_json::from_slice(&b).expect("entity JSON");
                let p = v["properties"].clone();
                let seq = p["seq"].as_u64();
                let whole = seq.is_some_and(|seq| {
                    serde_json::from_str::<Value>(&properties(self.index, seq))
                        .is_ok_and(|want| want == p)
                });
                (seq, whole, p)
            });
            let ok = match &seen {
                None => k.acked.is_none(),
                Some((Some(seq), whole, _)) => {
                    let (seq, whole) = (*seq, *whole);
                    let unacked = k.acked != Some(seq) && k.pending.contains(&seq);
                    unacked_present += usize::from(unacked);
                    (k.acked == Some(seq) || unacked) && whole
                }
                Some((None, ..)) => false,
            };
            if !ok {
                failures.push(format!(
                    "{id}: found (seq, as written, properties) {seen:?}, last acknowledged \
                     seq {:?}, unacknowledged {:?}",
                    k.acked, k.pending
                ));
            }
            k.acked = seen.and_then(|(seq, ..)| seq);
            k.pending.clear();
        }
        // A batch is atomic across shards (an intent frame plus tagged parts): every
        // entity of a batch writer holds the same write, the acknowledged batch or the
        // one in flight, entirely.
        if self.batch {
            let seqs: Vec<Option<u64>> = self.ids.iter().map(|id| self.known[id].acked).collect();
            if seqs.iter().any(|s| *s != seqs[0]) {
                failures.push(format!(
                    "writer {}: a batch is only partly present: seq per entity {seqs:?}",
                    self.index
                ));
            }
        }
        unacked_present
    }
}
