//! Shards: one pinned glommio executor each, owning a contiguous range of partitions,
//! the entities in them, and (with the log) their log.
//!
//! `router` is the pure id → shard mapping; `mesh` is the only place where work
//! crosses shards. This layer knows nothing of the features above it (`api`, `ws`,
//! `metrics`, `auth`): they keep their per-shard state in [`Services`], answer their
//! cross-shard requests with `mesh::Request::Run` closures, and see applied records
//! through the `on_applied` hook the server installs (see ARCHITECTURE.md, layers).

pub mod backup;
pub mod keeper;
pub mod mesh;
pub mod recovery;
pub mod router;
pub mod services;
pub mod snapshotter;
pub mod txn;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

pub use router::{shard_for, ShardId};
pub use services::Services;

use crate::config::{Config, SyncMode};
use crate::event::compact::{section_bound, SectionWriter};
use crate::event::{EventBatch, Record};
use crate::ids::EventIdGen;
use crate::ingest::decode::Decoder;
use crate::log::durable::Durability;
use crate::log::{
    txn as txnlog, AppendError, ShardLog, FRAME_EVENTS, FRAME_INTENT, FRAME_NOTE, FRAME_PART,
    FRAME_STREAM, STREAM_HEAD_BYTES,
};
use crate::state::{write_entity_json, Page, PageQuery, Store};
use crate::time;
use mesh::{Mesh, Request, Unavailable};

/// Process-wide flags shared by all shards.
pub struct Shared {
    /// Set once SIGINT/SIGTERM arrived: stop accepting, finish open requests.
    pub shutting_down: AtomicBool,
    /// Shards that have finished their own open requests after shutdown began. A shard
    /// keeps serving its peers until all have, since their requests may need it.
    pub drained: AtomicUsize,
    /// Shards whose recovery has finished.
    pub recovered: AtomicUsize,
    /// Records replayed so far by all shards (recovery progress for `/health`).
    pub replayed: AtomicU64,
    /// Where shards exchange cross-shard batch outcomes during recovery.
    pub board: txnlog::Board,
    /// Per shard: when its executor last ran its heartbeat task, in ms since `epoch`
    /// (`heartbeat`); the main thread watches them (`server`).
    pub heartbeat_ms: Box<[AtomicU64]>,
    /// Per shard: set by the main thread while the shard's heartbeat is older than
    /// `limits::SHARD_STALL_MS` (`/health` and `/metrics` report it).
    pub stalled: Box<[AtomicBool]>,
    /// The origin of `heartbeat_ms`.
    pub epoch: std::time::Instant,
    /// Per shard: its log's syncs and roll-overs (written by that shard only; `/metrics`
    /// reads them).
    pub log_stats: Box<[LogStats]>,
    /// Limits changeable at run time (`/api/admin/config`).
    pub limits: crate::runtime::RuntimeLimits,
    /// Per shard: why its log failed, once it has (`Shard::fail`); `/health` and
    /// `/metrics` report it.
    pub failed: Box<[OnceLock<String>]>,
    /// Per shard: everything of its log below this LSN is durable (published after
    /// each successful sync), so a batch's coordinator knows when the parts it sent
    /// are (`txn`).
    pub durable_lsn: Box<[AtomicU64]>,
    /// Per shard: frame bytes its log can take without making a segment on its event
    /// loop (`ShardLog::capacity`), published by that shard after every change.
    pub log_room: Box<[AtomicU64]>,
    /// Per shard: frame bytes of cross-shard parts that coordinators hold against
    /// `log_room` (see `txn`): taken before a batch commits, given back once the part
    /// is appended or the batch abandoned.
    pub log_held: Box<[AtomicU64]>,
    /// Cross-shard batches wait here while a backup takes its cut (`backup`).
    pub backup_gate: backup::Gate,
}

impl Shared {
    pub fn new(shards: usize, limits: crate::runtime::RuntimeLimits) -> Self {
        Shared {
            shutting_down: AtomicBool::new(false),
            drained: AtomicUsize::new(0),
            recovered: AtomicUsize::new(0),
            replayed: AtomicU64::new(0),
            board: txnlog::Board::new(shards),
            log_stats: (0..shards).map(|_| LogStats::default()).collect(),
            heartbeat_ms: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            stalled: (0..shards).map(|_| AtomicBool::new(false)).collect(),
            epoch: std::time::Instant::now(),
            limits,
            failed: (0..shards).map(|_| OnceLock::new()).collect(),
            durable_lsn: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            log_room: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            log_held: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            backup_gate: backup::Gate::default(),
        }
    }

    /// Milliseconds since `epoch`.
    pub fn clock_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The shards the main thread found stalled and still silent, with how long each
    /// has been. A shard that beat again since the watch's last look is left out:
    /// the flag lags its heartbeat by up to one watch period.
    pub fn stalled_shards(&self) -> Vec<(usize, u64)> {
        let now = self.clock_ms();
        self.stalled
            .iter()
            .enumerate()
            .filter(|(_, s)| s.load(Ordering::Acquire))
            .map(|(i, _)| {
                let beat = self.heartbeat_ms[i].load(Ordering::Acquire);
                (i, now.saturating_sub(beat))
            })
            .filter(|(_, silent)| *silent > crate::limits::SHARD_STALL_MS)
            .collect()
    }

    /// Records that shard `i` is running a task now (its heartbeat), once its
    /// heartbeat has begun (0 means "not beating yet" to the watch).
    pub fn beat(&self, i: usize) {
        let beat = &self.heartbeat_ms[i];
        if beat.load(Ordering::Relaxed) != 0 {
            beat.store(self.clock_ms().max(1), Ordering::Release);
        }
    }

    /// The shards whose log failed, with the cause.
    pub fn failed_shards(&self) -> Vec<(usize, &str)> {
        self.failed
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.get().map(|c| (i, c.as_str())))
            .collect()
    }
}

/// Counters of one shard's log, written by that shard only (a relaxed store).
#[derive(Default)]
#[repr(align(128))] // its own cache lines: shards write these concurrently
pub struct LogStats {
    /// fdatasync calls that completed.
    pub syncs: AtomicU64,
    /// fdatasync calls that failed (each one fails the shard's log: see `log::durable`).
    pub sync_failures: AtomicU64,
    /// Roll-overs to a new segment, and those that found no spare ready and made the
    /// segment on the event loop.
    pub rolls: AtomicU64,
    pub rolls_without_spare: AtomicU64,
    /// Wall-clock ms when this shard's last snapshot was complete; 0 before the first
    /// one since start.
    pub last_snapshot_ms: AtomicU64,
}

/// A relaxed add by the single writer of `c`: no read-modify-write needed.
#[inline]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// How long a part stays in the snapshot replay window after it was appended, at
/// least: a cross-shard batch still without its DONE when a snapshot starts could
/// otherwise lose a re-apply at recovery. Batches finish in milliseconds, but their
/// DONE waits for the parts to be durable (`txn`): with `FLUX_SYNC=interval:<ms>`,
/// up to about two intervals, so the window is this plus three intervals
/// (`Shard::part_window`).
pub const PART_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// Entities `Shard::count_prefix` counts before it lets other tasks run: ~1.3 ms of
/// walking the ordered id set (measured: `GET /api/namespaces/:name` of a namespace of
/// 1,000,000 entities on 2 shards answers in 10–17 ms, release build, so ~20 ns per
/// entity).
pub const COUNT_STEP_ENTITIES: usize = 65_536;

/// What applying records on their owning shard gave.
#[derive(Debug, Clone, Copy)]
pub struct Applied {
    /// The LSN just past the frame (what a durable acknowledgement waits for).
    pub end_lsn: u64,
    /// False for a committed cross-shard part that could not be logged here (the
    /// shard's log failed): it is applied in memory, and its coordinator's intent
    /// holds it for the next recovery.
    pub logged: bool,
}

/// See `Shard::cut_note`.
pub type CutNote = fn(&Shard) -> Option<Vec<u8>>;

/// Everything one shard owns. Lives in an `Rc` on its executor; never crosses threads.
pub struct Shard {
    pub id: ShardId,
    pub count: usize,
    pub config: Arc<Config>,
    pub shared: Arc<Shared>,
    pub store: RefCell<Store>,
    pub mesh: Mesh,
    /// JSON decoder state (simd-json buffers), reused by every request of this shard;
    /// decoding never awaits, so one is enough.
    pub decoder: RefCell<Decoder>,
    /// Open connections on this shard.
    pub connections: Cell<usize>,
    /// Requests of this shard's connections between head and response.
    pub in_flight: Cell<usize>,
    /// Event ids for events parsed on this shard.
    pub ids: RefCell<EventIdGen>,
    /// Counter of cross-shard batches this shard coordinated (continues after recovery).
    pub txn_seq: Cell<u64>,
    /// Intents of this shard whose parts are not all acknowledged yet: txn → LSN. A
    /// snapshot's replay point stays at or before the oldest (see `snapshot`).
    pub open_intents: RefCell<std::collections::BTreeMap<u64, u64>>,
    /// LSNs of parts appended here recently (bounded by `PART_WINDOW`), so a snapshot's
    /// replay point stays before any part whose batch may still be open.
    pub recent_parts: RefCell<std::collections::VecDeque<(std::time::Instant, u64)>>,
    /// Batches this shard coordinated whose DONE waits until every part is durable
    /// (`FLUX_SYNC=interval`; see `txn::finish`).
    pub pending_done: RefCell<Vec<txn::PendingDone>>,
    /// Wakes the log keeper (a spare segment is wanted, see `keeper`).
    pub keeper_wake: RefCell<Option<std::task::Waker>>,
    /// Roll-overs of the log already counted in the metrics.
    rolls_seen: Cell<(u64, u64)>,
    /// This shard's log; `None` only until recovery has finished.
    pub log: RefCell<Option<ShardLog>>,
    /// Where a frame's payload is encoded before it is copied into the log (reused).
    log_scratch: RefCell<Vec<u8>>,
    pub durability: Durability,
    /// A weak self-reference, to hand `Rc<Shard>` to spawned tasks.
    me: std::rc::Weak<Shard>,
    /// The per-shard state of the features above this layer, by type (installed by
    /// the server before the shard serves).
    pub services: Services,
    /// Called with the encoded records just applied, in log order, before their frame
    /// is appended (the WebSocket fan-out and the event counters).
    on_applied: fn(&Shard, &[u8]),
    /// What recovery replayed besides records: stream positions and notes
    /// (`FRAME_STREAM`, `FRAME_NOTE`) from the replay point on, in log order; taken
    /// once by the layer above that wrote them (cluster mode).
    pub traces: RefCell<Vec<recovery::Trace>>,
    /// A note the snapshotter appends at each snapshot's cut (before its replay
    /// point), so that recovery meets it first: the layer above's state that the
    /// snapshot's store reflects (cluster mode: `cluster::chain::cut_note`).
    pub cut_note: Cell<Option<CutNote>>,
    /// Asks the snapshotter for a snapshot soon (the layer above changed state the
    /// log alone cannot rebuild; cluster mode: a group loaded from a snapshot).
    pub snapshot_wanted: Cell<bool>,
}

/// The frame a shard's records go into, and what it carries besides them.
pub enum FrameShape<'a> {
    /// `FRAME_EVENTS`: the records alone.
    Events,
    /// `FRAME_PART`: `[txn u64]`, then the records.
    Part { txn: u64 },
    /// `FRAME_STREAM`: `[key u16][seq u64][txn u64]`, then the records: message `seq`
    /// of the outside stream `key` (0: no txn).
    Stream { key: u16, seq: u64, txn: u64 },
    /// `FRAME_INTENT` (`log::txn`): the coordinator's part first, then every other
    /// shard's, each encoded as its own section (their links are not known here: 0).
    Intent {
        txn: u64,
        /// The coordinator: this shard.
        me: u16,
        others: &'a [(u16, &'a EventBatch)],
    },
}

impl FrameShape<'_> {
    /// Bytes the frame's payload takes at most with `own` as this shard's records.
    pub fn payload_bound(&self, own: &EventBatch) -> usize {
        let own = section_bound(own);
        match self {
            FrameShape::Events => own,
            FrameShape::Part { .. } => txnlog::TXN_BYTES + own,
            FrameShape::Stream { .. } => STREAM_HEAD_BYTES + own,
            FrameShape::Intent { others, .. } => {
                txnlog::INTENT_HEAD_BYTES
                    + txnlog::INTENT_PART_HEAD_BYTES
                    + own
                    + others
                        .iter()
                        .map(|(_, b)| txnlog::INTENT_PART_HEAD_BYTES + section_bound(b))
                        .sum::<usize>()
            }
        }
    }

    /// Writes what comes before this shard's section; returns the frame kind.
    fn begin(&self, out: &mut Vec<u8>) -> u8 {
        match self {
            FrameShape::Events => FRAME_EVENTS,
            FrameShape::Part { txn } => {
                out.extend_from_slice(&txn.to_le_bytes());
                FRAME_PART
            }
            FrameShape::Stream { key, seq, txn } => {
                out.extend_from_slice(&key.to_le_bytes());
                out.extend_from_slice(&seq.to_le_bytes());
                out.extend_from_slice(&txn.to_le_bytes());
                FRAME_STREAM
            }
            FrameShape::Intent { txn, me, others } => {
                txnlog::begin_intent(*txn, others.len() + 1, out);
                txnlog::begin_part(*me, out);
                FRAME_INTENT
            }
        }
    }

    /// Completes the payload after this shard's section of `own_len` bytes.
    fn end(&self, own_len: usize, out: &mut Vec<u8>) {
        if let FrameShape::Intent { others, .. } = self {
            txnlog::end_part(out, own_len);
            for (shard, b) in others.iter() {
                txnlog::begin_part(*shard, out);
                let mut w = SectionWriter::new(out, 0, SectionWriter::base_ms_of(&b.buf));
                for r in b.records() {
                    w.push(&r, 0);
                }
                let len = w.finish();
                txnlog::end_part(out, len);
            }
        }
    }
}

/// Where `apply_records` gets each record's LSN and what it does with the record's
/// history link (the entity's previous head, which the store returns as it applies).
pub enum ApplyTo<'w, 'o, 'r> {
    /// Into the log: each record's LSN is where the section writer puts it, and the
    /// writer encodes it with its link.
    Log(&'w mut SectionWriter<'o, 'r>),
    /// In memory only (a committed part the failed log could not take): record `i`
    /// gets `base + i`, LSNs no log holds, so history reads end there.
    Unlogged { base: u64 },
}

/// Applies each record of `records` to the store, in order, at the LSN `to` gives it,
/// and hands it with its history link to the log's section writer.
pub fn apply_records<'r>(
    store: &mut Store,
    records: &'r [u8],
    mut to: ApplyTo<'_, '_, 'r>,
    check: impl Fn(&[u8]),
) {
    // Lookups run a group of PREFETCH_GROUP records ahead of the merges
    // (`Store::prefetch`), a group at a time: back-to-back lookups let the CPU wait on
    // their cache misses together.
    let mut ahead = 0;
    for _ in 0..PREFETCH_GROUP {
        ahead = prefetch_record(store, records, ahead);
    }
    let mut off = 0;
    let mut n = 0usize;
    while off < records.len() {
        if n % PREFETCH_GROUP == 0 {
            for _ in 0..PREFETCH_GROUP {
                ahead = prefetch_record(store, records, ahead);
            }
        }
        // One parse and one lookup per record: the store gives the entity's previous
        // head as it applies, and the log writes it as the record's link.
        let (r, len) = Record::parse(&records[off..]).expect("records are encoded by us");
        check(r.entity_id);
        match &mut to {
            ApplyTo::Log(w) => {
                let (_, prev) = store.apply_chained(&r, w.next_lsn());
                w.push(&r, prev);
            }
            ApplyTo::Unlogged { base } => {
                store.apply_chained(&r, *base + n as u64);
            }
        }
        n += 1;
        off += len;
    }
}

/// Appends this shard's records (`own`) to `log` as one frame of the given shape,
/// applying each to `store` at the LSN it gets and encoding it with its history link
/// (`prev_lsn`, which the store gives as it applies) on the way: the frame's payload
/// is built in `scratch` and copied into the log once. Returns the LSN just past the
/// frame. Used live (`Shard::log_and_apply`), by recovery's redo and by the benches.
pub fn log_and_apply(
    log: &mut ShardLog,
    store: &mut Store,
    scratch: &mut Vec<u8>,
    shape: FrameShape<'_>,
    own: &EventBatch,
    check: impl Fn(&[u8]),
) -> Result<u64, AppendError> {
    let frame_lsn = log.reserve(shape.payload_bound(own))?;
    scratch.clear();
    let kind = shape.begin(scratch);
    let own_lsn = frame_lsn + ShardLog::PAYLOAD_OFFSET + scratch.len() as u64;
    let mut w = SectionWriter::new(scratch, own_lsn, SectionWriter::base_ms_of(&own.buf));
    apply_records(store, &own.buf, ApplyTo::Log(&mut w), check);
    let own_len = w.finish();
    shape.end(own_len, scratch);
    Ok(log.append_with(kind, scratch.len(), |dst| dst.copy_from_slice(scratch)))
}

/// How many records `apply_records` looks up at a time, one group ahead of applying.
pub(crate) const PREFETCH_GROUP: usize = 8;

/// Looks up the entity of the record at `off` (if any) and returns the next offset.
#[inline]
fn prefetch_record(store: &Store, records: &[u8], off: usize) -> usize {
    match Record::parse(records.get(off..).unwrap_or_default()) {
        Some((r, len)) => {
            store.prefetch(r.entity_id);
            off + len
        }
        None => off,
    }
}

/// Why records could not be applied, or were applied but could not be acknowledged.
#[derive(Debug, Clone)]
pub enum ApplyError {
    /// The shard is going away: not applied.
    Unavailable,
    /// The log could not take the write (disk full, I/O error): not applied; 503,
    /// reads go on, later writes may succeed.
    Storage(String),
    /// The shard's log failed earlier (a failed fdatasync): not applied; writes to
    /// this shard are refused until a restart.
    Failed(String),
    /// Applied and visible, but the sync that would have made it durable failed: the
    /// shard's log failed with it. Whether it survives a crash is unknown.
    NotDurable(String),
    /// A cross-shard batch was committed (its intent is logged) but a part could not
    /// be delivered to its shard; the next start completes it from the intent (in
    /// cluster mode: the part's owner, within seconds). 504: applied later.
    Incomplete(String),
    /// Cluster mode: the write may or may not be applied (the replicated log did not
    /// answer in time), or it is committed and applied later; 504. Never 503, which
    /// says "not applied".
    Unknown(String),
    /// Cluster mode: a message for the NATS servers would exceed their
    /// `max_payload`; not applied; 413.
    TooLarge(String),
}

impl From<AppendError> for ApplyError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::Failed(_) => ApplyError::Failed(e.to_string()),
            e => ApplyError::Storage(e.to_string()),
        }
    }
}

impl From<Unavailable> for ApplyError {
    fn from(_: Unavailable) -> Self {
        ApplyError::Unavailable
    }
}

impl Shard {
    pub fn new(
        id: ShardId,
        count: usize,
        config: Arc<Config>,
        shared: Arc<Shared>,
        mesh: Mesh,
        services: Services,
        on_applied: fn(&Shard, &[u8]),
    ) -> Rc<Self> {
        let max_properties = config.max_properties_per_event;
        Rc::new_cyclic(|me| Shard {
            id,
            count,
            config,
            shared,
            store: RefCell::new(Store::default()),
            mesh,
            decoder: RefCell::new(Decoder::with_max_properties(max_properties)),
            connections: Cell::new(0),
            in_flight: Cell::new(0),
            ids: RefCell::new(EventIdGen::new(id.0)),
            txn_seq: Cell::new(0),
            open_intents: RefCell::new(Default::default()),
            recent_parts: RefCell::new(Default::default()),
            pending_done: RefCell::new(Vec::new()),
            keeper_wake: RefCell::new(None),
            rolls_seen: Cell::new((0, 0)),
            log: RefCell::new(None),
            log_scratch: RefCell::new(Vec::new()),
            durability: {
                let d = Durability::default();
                d.fail_next.set(
                    crate::failpoint::arg("sync-fails")
                        .is_some_and(|a| a.is_empty() || a == id.0.to_string()),
                );
                d
            },
            me: me.clone(),
            services,
            on_applied,
            traces: RefCell::new(Vec::new()),
            cut_note: Cell::new(None),
            snapshot_wanted: Cell::new(false),
        })
    }

    pub(crate) fn me(&self) -> Rc<Shard> {
        self.me
            .upgrade()
            .expect("a shard outlives its tasks' calls")
    }

    /// Whether every shard has recovered and serves requests.
    pub fn ready(&self) -> bool {
        self.shared.recovered.load(Ordering::Acquire) == self.count
    }

    #[inline]
    pub fn owner(&self, entity_id: &[u8]) -> ShardId {
        shard_for(entity_id, self.count)
    }

    pub fn shutting_down(&self) -> bool {
        self.shared.shutting_down.load(Ordering::Relaxed)
    }

    /// Logs and applies records owned by this shard, in order, as one frame (so the
    /// part is atomic within this shard): `FRAME_EVENTS`, or `FRAME_PART` when the
    /// batch is one part of a cross-shard batch. Returns the LSN just past the frame,
    /// which a durable acknowledgement must wait for.
    pub fn apply_local(&self, batch: &mut EventBatch) -> Result<u64, ApplyError> {
        batch.stamp_ingest(time::now_ms());
        match batch.txn {
            None => self.log_and_apply(FrameShape::Events, batch),
            Some(txn) => {
                let lsn = self.log.borrow().as_ref().map_or(0, ShardLog::write_lsn);
                let end = self.log_and_apply(FrameShape::Part { txn }, batch)?;
                let now = std::time::Instant::now();
                let mut recent = self.recent_parts.borrow_mut();
                while recent
                    .front()
                    .is_some_and(|(t, _)| now.duration_since(*t) > self.part_window())
                {
                    recent.pop_front();
                }
                recent.push_back((now, lsn));
                Ok(end)
            }
        }
    }

    /// Logs and applies records whose ingest time is already stamped: message `seq`
    /// of the outside stream `key` (a cluster group's part, applied as its stream
    /// holds it; `txn` 0 for none), one `FRAME_STREAM` frame. Recovery reports the
    /// stream position with the records (`Recovered::traces`).
    pub fn apply_streamed(
        &self,
        batch: &EventBatch,
        key: u16,
        seq: u64,
        txn: u64,
    ) -> Result<u64, ApplyError> {
        self.log_and_apply(FrameShape::Stream { key, seq, txn }, batch)
    }

    /// Appends a note of the layers above (`FRAME_NOTE`, opaque here), which recovery
    /// hands back in log order. Returns the note's LSN.
    pub fn append_note(&self, payload: &[u8]) -> Result<u64, ApplyError> {
        let mut guard = self.log.borrow_mut();
        let log = guard.as_mut().ok_or(ApplyError::Unavailable)?;
        let lsn = log.reserve(payload.len())?;
        log.append(FRAME_NOTE, payload);
        let room = log.capacity();
        drop(guard);
        self.shared.log_room[self.id.index()].store(room, Ordering::Release);
        self.note_rolls();
        Ok(lsn)
    }

    /// Logs a cross-shard batch's intent (every part; ours first) and applies our own
    /// part from it: the batch's commit point (see `txn`).
    pub fn apply_intent(
        &self,
        txn: u64,
        own: &mut EventBatch,
        others: &[(u16, &EventBatch)],
    ) -> Result<u64, ApplyError> {
        own.stamp_ingest(time::now_ms());
        if crate::failpoint::on("txn-intent-fails") {
            return Err(ApplyError::Storage(
                "failpoint txn-intent-fails: the intent could not be appended".into(),
            ));
        }
        let lsn = self.log.borrow().as_ref().map_or(0, ShardLog::write_lsn);
        let end = self.log_and_apply(
            FrameShape::Intent {
                txn,
                me: self.id.0,
                others,
            },
            own,
        )?;
        // reserve() may have rolled to a new segment: the frame starts at or after `lsn`.
        self.open_intents.borrow_mut().insert(txn, lsn);
        Ok(end)
    }

    /// Applies a committed cross-shard part that its coordinator held room for. Its
    /// batch is committed, so it is applied whatever happens: if the log cannot take
    /// it (the log failed since the hold), it is applied in memory only and the shard
    /// fails (no later frame may precede its redo at recovery, which takes it from
    /// the coordinator's intent).
    pub fn apply_committed_part(&self, batch: &mut EventBatch) -> Applied {
        if crate::failpoint::arg("txn-part-append-fails")
            .is_some_and(|a| a.is_empty() || a == self.id.0.to_string())
        {
            self.fail("failpoint txn-part-append-fails: the log failed after the hold");
        }
        match self.apply_local(batch) {
            Ok(end_lsn) => Applied {
                end_lsn,
                logged: true,
            },
            Err(e) => {
                self.fail(&format!(
                    "a committed cross-shard part could not be logged ({}); it is applied in \
                     memory and recovered from its coordinator's intent at the next start",
                    describe(&e)
                ));
                batch.stamp_ingest(time::now_ms());
                // LSNs no log holds: history reads of these records end there.
                let to = ApplyTo::Unlogged { base: UNLOGGED_LSN };
                apply_records(&mut self.store.borrow_mut(), &batch.buf, to, |_| {});
                (self.on_applied)(self, &batch.buf);
                Applied {
                    end_lsn: 0,
                    logged: false,
                }
            }
        }
    }

    /// Makes room for a cross-shard part's frame of `payload_len` bytes (at most)
    /// available to holds (`Request::Hold`, the slow path of `txn` when `log_room` is
    /// short): makes the spare segment now if need be, and publishes the new room.
    pub fn ensure_room(&self, payload_len: usize) -> Result<(), ApplyError> {
        let r = self
            .log
            .borrow_mut()
            .as_mut()
            .expect("writes arrive only after recovery")
            .ensure_room(payload_len)
            .map_err(ApplyError::from);
        self.note_rolls();
        self.publish_room();
        r
    }

    /// Publishes this log's capacity for holds (`Shared::log_room`).
    pub fn publish_room(&self) {
        let room = self.log.borrow().as_ref().map_or(0, ShardLog::capacity);
        self.shared.log_room[self.id.index()].store(room, Ordering::Release);
    }

    /// Fails this shard's log: every later write is refused (503 with `cause`) until
    /// a restart rebuilds the state from the disk; reads go on; `/health` says so.
    pub fn fail(&self, cause: &str) {
        if let Some(log) = self.log.borrow_mut().as_mut() {
            log.fail(cause);
        }
        // The first cause is the one `/health` reports; every one is logged.
        let first = self
            .log
            .borrow()
            .as_ref()
            .and_then(|l| l.failed().map(|c| c.to_string()))
            .unwrap_or_else(|| cause.to_string());
        let _ = self.shared.failed[self.id.index()].set(first);
        self.publish_room();
        eprintln!(
            "flux: shard {}: {cause}; this shard refuses writes until the server is \
             restarted (reads go on)",
            self.id.0
        );
    }

    /// Counts roll-overs made since the last call and wakes the log keeper, which
    /// prepares the next spare segment.
    fn note_rolls(&self) {
        let Some((rolls, without)) = self
            .log
            .borrow()
            .as_ref()
            .map(|l| (l.rolls, l.rolls_without_spare))
        else {
            return;
        };
        let (seen, seen_without) = self.rolls_seen.get();
        if (rolls, without) == (seen, seen_without) {
            return;
        }
        self.rolls_seen.set((rolls, without));
        let c = &self.shared.log_stats[self.id.index()];
        bump(&c.rolls, rolls - seen);
        bump(&c.rolls_without_spare, without - seen_without);
        keeper::wake(self);
    }

    /// Appends this shard's records (`own`) as one frame of the given shape (see
    /// [`log_and_apply`]) and shows them to the features (`on_applied`). Returns the
    /// LSN just past the frame.
    fn log_and_apply(&self, shape: FrameShape<'_>, own: &EventBatch) -> Result<u64, ApplyError> {
        let mut log_guard = self.log.borrow_mut();
        let log = log_guard
            .as_mut()
            .expect("writes arrive only after recovery");
        let end = log_and_apply(
            log,
            &mut self.store.borrow_mut(),
            &mut self.log_scratch.borrow_mut(),
            shape,
            own,
            |id| debug_assert_eq!(self.owner(id), self.id, "record routed to the wrong shard"),
        )?;
        (self.on_applied)(self, &own.buf);
        let rolled = log.rolls != self.rolls_seen.get().0;
        let room = log.capacity();
        drop(log_guard);
        self.shared.log_room[self.id.index()].store(room, Ordering::Release);
        if rolled {
            self.note_rolls();
        }
        Ok(end)
    }

    /// See [`PART_WINDOW`].
    pub fn part_window(&self) -> std::time::Duration {
        match self.config.sync {
            SyncMode::Interval { ms } => PART_WINDOW + std::time::Duration::from_millis(3 * ms),
            _ => PART_WINDOW,
        }
    }

    /// Whether acknowledgements must wait for stable storage.
    pub fn sync_always(&self) -> bool {
        self.config.sync == SyncMode::Always
    }

    /// Waits until everything below `lsn` is on stable storage. An error means the
    /// records are applied but not known to be durable (the shard has failed).
    pub async fn sync_to(&self, lsn: u64) -> Result<(), ApplyError> {
        let before = self.durability.syncs.get();
        let r = self.durability.sync_to(&self.log, lsn).await;
        self.after_sync(before, &r);
        r.map_err(|e| ApplyError::NotDurable(e.to_string()))
    }

    /// Syncs everything appended so far.
    pub async fn sync_now(&self) -> std::io::Result<()> {
        let before = self.durability.syncs.get();
        let r = self.durability.sync_now(&self.log).await;
        self.after_sync(before, &r);
        r
    }

    /// Counts syncs, publishes the durable LSN, and fails the shard on an error.
    fn after_sync(&self, before: u64, r: &std::io::Result<()>) {
        let c = &self.shared.log_stats[self.id.index()];
        let done = self.durability.syncs.get().saturating_sub(before);
        if done > 0 {
            bump(&c.syncs, done);
            self.shared.durable_lsn[self.id.index()]
                .fetch_max(self.durability.synced_lsn(), Ordering::Release);
        }
        let failed_now = self.shared.failed[self.id.index()].get().is_none()
            && self
                .log
                .borrow()
                .as_ref()
                .is_some_and(|l| l.failed().is_some());
        if let (Err(e), true) = (r, failed_now) {
            bump(&c.sync_failures, 1);
            self.fail(&e.to_string());
        }
    }

    /// Renders entity `id` (owned by `owner`) into `out`; false if it does not exist.
    pub async fn get_entity(
        &self,
        owner: ShardId,
        id: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<bool, Unavailable> {
        if owner == self.id {
            let store = self.store.borrow();
            return Ok(match store.get(id) {
                Some(e) => {
                    write_entity_json(out, id, e);
                    true
                }
                None => false,
            });
        }
        match self.mesh.get(owner, id).await? {
            Some(json) => {
                out.extend_from_slice(&json);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// One listing page from shard `from`.
    pub async fn page(
        &self,
        from: ShardId,
        query: PageQuery,
        page: &mut Page,
    ) -> Result<(), Unavailable> {
        if from == self.id {
            self.store.borrow().page(&query, page);
            return Ok(());
        }
        *page = self.mesh.page(from, query).await?;
        Ok(())
    }

    /// How many of this shard's entities have an id starting with `prefix`. Counted in
    /// steps of `COUNT_STEP_ENTITIES`, yielding between them, so a namespace of
    /// millions of entities does not hold the shard. Entities written or deleted
    /// meanwhile may or may not be counted.
    pub async fn count_prefix(&self, prefix: &[u8]) -> u64 {
        let mut total = 0;
        let mut after: Option<crate::state::Id> = None;
        loop {
            let (n, last) =
                self.store
                    .borrow()
                    .count_prefix(prefix, after.as_deref(), COUNT_STEP_ENTITIES);
            total += n as u64;
            match last {
                None => return total,
                Some(id) => after = Some(id),
            }
            glommio::yield_if_needed().await;
        }
    }

    /// `count_prefix` on shard `on`.
    pub async fn count_prefix_on(&self, on: ShardId, prefix: &[u8]) -> Result<u64, Unavailable> {
        if on == self.id {
            return Ok(self.count_prefix(prefix).await);
        }
        let prefix = prefix.into();
        self.mesh
            .call(on, |reply| Request::Count { prefix, reply })
            .await
    }

    /// Serves a request that another shard sent to this one.
    pub fn handle(&self, req: Request) {
        match req {
            Request::Apply {
                mut batch,
                sync,
                reply,
            } => {
                let result = match batch.txn {
                    Some(_) => Ok(self.apply_committed_part(&mut batch)),
                    None => self.apply_local(&mut batch).map(|end_lsn| Applied {
                        end_lsn,
                        logged: true,
                    }),
                };
                match result {
                    Ok(done) if sync && done.logged => {
                        let shard = self.me();
                        glommio::spawn_local(async move {
                            let synced = shard.sync_to(done.end_lsn).await;
                            let _ = reply.send(synced.map(|()| done));
                        })
                        .detach();
                    }
                    result => {
                        let _ = reply.send(result);
                    }
                }
            }
            Request::Hold { len, reply } => {
                let _ = reply.send(self.ensure_room(len));
            }
            Request::Get { id, reply } => {
                debug_assert_eq!(self.owner(&id), self.id);
                let store = self.store.borrow();
                let json = store.get(&id).map(|e| {
                    let mut out = Vec::with_capacity(64 + e.props.flat_len());
                    write_entity_json(&mut out, &id, e);
                    out
                });
                let _ = reply.send(json);
            }
            Request::Page { query, reply } => {
                let mut page = Page::default();
                self.store.borrow().page(&query, &mut page);
                let _ = reply.send(page);
            }
            Request::Count { prefix, reply } => {
                let shard = self.me();
                glommio::spawn_local(async move {
                    let _ = reply.send(shard.count_prefix(&prefix).await);
                })
                .detach();
            }
            Request::Run(task) => task(&self.me()),
        }
    }
}

/// Runs futures concurrently (one task), returning their outputs in order.
pub async fn join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<std::pin::Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut outs: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (f, out) in futs.iter_mut().zip(outs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *out = Some(v),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outs.into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}

/// Base LSN given to records applied without a log frame (`apply_committed_part`):
/// beyond any real log position, so history reads find nothing there and stop.
pub const UNLOGGED_LSN: u64 = 1 << 62;

/// The message of an apply error, for logs and answers.
pub fn describe(e: &ApplyError) -> String {
    match e {
        ApplyError::Unavailable => "the shard is shutting down".into(),
        ApplyError::Storage(m)
        | ApplyError::Failed(m)
        | ApplyError::NotDurable(m)
        | ApplyError::Incomplete(m)
        | ApplyError::Unknown(m)
        | ApplyError::TooLarge(m) => m.clone(),
    }
}

/// This shard's heartbeat: publishes the time every `limits::HEARTBEAT_MS` for the
/// main thread's watch (`server`), which reports a shard whose executor stopped
/// running tasks. Runs in the default task queue, so it beats only when the shard
/// really schedules work.
pub async fn heartbeat(shard: Rc<Shard>) {
    let i = shard.id.index();
    let stall_marker = crate::failpoint::on("shard-stall").then(|| {
        shard
            .config
            .data_dir
            .join(format!("shard-{i}"))
            .join(".stall")
    });
    while !shard.shutting_down() {
        // 0 means "not beating yet" to the watch.
        shard.shared.heartbeat_ms[i].store(shard.shared.clock_ms().max(1), Ordering::Release);
        if let Some(marker) = &stall_marker {
            // Test hook: block this executor's thread, as a runaway task would.
            while marker.exists() {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        glommio::timer::sleep(std::time::Duration::from_millis(
            crate::limits::HEARTBEAT_MS,
        ))
        .await;
    }
}
