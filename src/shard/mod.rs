//! Shards: one pinned glommio executor each, owning a contiguous range of partitions,
//! the entities in them, and (with the log) their log.
//!
//! `placement` starts the executors; `router` is the pure id → shard mapping; `mesh` is
//! the only place where work crosses shards.

pub mod mesh;
pub mod placement;
pub mod recovery;
pub mod router;
pub mod snapshotter;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

pub use router::{shard_for, ShardId};

use crate::api::history::{self, HistoryPage, HistoryQuery};
use crate::config::{Config, SyncMode};
use crate::event::{EventBatch, Record};
use crate::ids::EventIdGen;
use crate::ingest::decode::Decoder;
use crate::log::durable::Durability;
use crate::log::{txn, AppendError, ShardLog, FRAME_DONE, FRAME_EVENTS, FRAME_INTENT, FRAME_PART};
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
    pub board: txn::Board,
    /// Per-shard counters read by any shard (`metrics_update`, `/metrics`).
    pub metrics: crate::metrics::Registry,
    /// Every shard's WebSocket delivery inbox.
    pub ws: crate::ws::Switchboard,
    /// Namespaces, tokens and rate-limit buckets (auth mode).
    pub auth: Arc<crate::auth::Auth>,
    /// Limits changeable at run time (`/api/admin/config`).
    pub limits: crate::runtime::RuntimeLimits,
}

impl Shared {
    pub fn new(
        shards: usize,
        auth: crate::auth::Auth,
        limits: crate::runtime::RuntimeLimits,
    ) -> Self {
        Shared {
            shutting_down: AtomicBool::new(false),
            drained: AtomicUsize::new(0),
            recovered: AtomicUsize::new(0),
            replayed: AtomicU64::new(0),
            board: txn::Board::new(shards),
            metrics: crate::metrics::Registry::new(shards),
            ws: crate::ws::Switchboard::new(shards),
            auth: Arc::new(auth),
            limits,
        }
    }
}

/// How long a part stays in the snapshot replay window after it was appended: a
/// cross-shard batch open longer than this when a snapshot starts could lose a
/// re-apply at recovery. Batches finish in milliseconds; 60 s is the stated bound.
pub const PART_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// Frame kind of a participant's part (re-exported for recovery's redo).
pub(crate) const FRAME_PART_KIND: u8 = FRAME_PART;

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
    /// This shard's log; `None` only until recovery has finished.
    pub log: RefCell<Option<ShardLog>>,
    pub durability: Durability,
    /// A weak self-reference, to hand `Rc<Shard>` to spawned tasks.
    me: std::rc::Weak<Shard>,
    /// WebSocket connections and subscriptions (see `ws`).
    pub ws: crate::ws::Hub,
    /// Histograms and the event-rate window of this shard (see `metrics`).
    pub metrics: crate::metrics::Local,
    /// This shard's copy of the namespace registry (see `auth`).
    pub auth: crate::auth::Local,
}

/// Stamps each record's `prev_lsn` from the store and applies it at LSN
/// `base + offset`. Used live and by recovery's redo of missing parts.
pub fn apply_records(store: &mut Store, records: &mut [u8], base: u64, check: impl Fn(&[u8])) {
    let mut off = 0;
    while off < records.len() {
        // One parse per record: applying does not read `prev_lsn`, so it is written
        // into the record after the store has given it and taken the new head.
        let (r, len) = Record::parse(&records[off..]).expect("records are encoded by us");
        check(r.entity_id);
        let prev = store.last_lsn(r.entity_id);
        store.apply(&r, base + off as u64);
        crate::event::set_prev_lsn(&mut records[off..], prev);
        off += len;
    }
}

/// Why records could not be applied.
#[derive(Debug, Clone)]
pub enum ApplyError {
    /// The shard is going away.
    Unavailable,
    /// The log could not take the write (disk full, I/O error): 503, reads go on.
    Storage(String),
}

impl From<AppendError> for ApplyError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::Io(e) => ApplyError::Storage(e.to_string()),
            AppendError::TooLarge => {
                ApplyError::Storage("request part larger than a log segment".into())
            }
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
        store: Store,
    ) -> Rc<Self> {
        let ws = crate::ws::Hub::new(count, &config);
        let auth = crate::auth::Local::new(shared.auth.clone());
        let max_properties = config.max_properties_per_event;
        Rc::new_cyclic(|me| Shard {
            id,
            count,
            config,
            shared,
            store: RefCell::new(store),
            mesh,
            decoder: RefCell::new(Decoder::with_max_properties(max_properties)),
            connections: Cell::new(0),
            in_flight: Cell::new(0),
            ids: RefCell::new(EventIdGen::new(id.0)),
            txn_seq: Cell::new(0),
            open_intents: RefCell::new(Default::default()),
            recent_parts: RefCell::new(Default::default()),
            log: RefCell::new(None),
            durability: Durability::default(),
            me: me.clone(),
            ws,
            metrics: crate::metrics::Local::default(),
            auth,
        })
    }

    fn me(&self) -> Rc<Shard> {
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
            None => self.log_and_apply(FRAME_EVENTS, &[], &mut batch.buf, &[]),
            Some(txn) => {
                let lsn = self.log.borrow().as_ref().map_or(0, ShardLog::write_lsn);
                let end =
                    self.log_and_apply(FRAME_PART, &txn.to_le_bytes(), &mut batch.buf, &[])?;
                let now = std::time::Instant::now();
                let mut recent = self.recent_parts.borrow_mut();
                while recent
                    .front()
                    .is_some_and(|(t, _)| now.duration_since(*t) > PART_WINDOW)
                {
                    recent.pop_front();
                }
                recent.push_back((now, lsn));
                Ok(end)
            }
        }
    }

    /// Closes an intent once every part is acknowledged (or failed): a `FRAME_DONE`
    /// tells recovery that no part needs re-applying.
    pub fn close_intent(&self, txn: u64, all_applied: bool) {
        self.open_intents.borrow_mut().remove(&txn);
        if !all_applied {
            return;
        }
        let mut log = self.log.borrow_mut();
        let Some(log) = log.as_mut() else { return };
        // Best effort: without the marker, recovery checks the parts instead.
        if log.reserve(txn::TXN_BYTES).is_ok() {
            log.append(FRAME_DONE, &txn.to_le_bytes());
        }
    }

    /// Coordinates a batch that spans shards: logs the intent (every part; ours first)
    /// and applies our own part from it. The caller then sends the other parts, each
    /// tagged with the returned txn id (see `log::txn`).
    pub fn apply_intent(
        &self,
        own: &mut EventBatch,
        others: &[(u16, &EventBatch)],
    ) -> Result<(u64, u64), ApplyError> {
        let seq = self.txn_seq.get() + 1;
        self.txn_seq.set(seq);
        let txn = txn::txn_id(self.id.0, seq);
        own.stamp_ingest(time::now_ms());
        let mut prefix = Vec::with_capacity(16);
        prefix.extend_from_slice(&txn.to_le_bytes());
        prefix.extend_from_slice(&((others.len() + 1) as u16).to_le_bytes());
        prefix.extend_from_slice(&self.id.0.to_le_bytes());
        prefix.extend_from_slice(&(own.buf.len() as u32).to_le_bytes());
        let mut suffix = Vec::with_capacity(others.iter().map(|(_, b)| b.buf.len() + 6).sum());
        for (shard, b) in others {
            suffix.extend_from_slice(&shard.to_le_bytes());
            suffix.extend_from_slice(&(b.buf.len() as u32).to_le_bytes());
            suffix.extend_from_slice(&b.buf);
        }
        let lsn = self.log.borrow().as_ref().map_or(0, ShardLog::write_lsn);
        let end = self.log_and_apply(FRAME_INTENT, &prefix, &mut own.buf, &suffix)?;
        // reserve() may have rolled to a new segment: the frame starts at or after `lsn`.
        self.open_intents.borrow_mut().insert(txn, lsn);
        if self.config.failpoint.as_deref() == Some("abort-after-intent") {
            // Test hook: die between the coordinator's append and the others'.
            eprintln!("flux: failpoint abort-after-intent");
            std::process::abort();
        }
        Ok((txn, end))
    }

    /// Appends `prefix | records | suffix` as one frame, stamping each record's
    /// `prev_lsn` and applying it to the store with its LSN.
    fn log_and_apply(
        &self,
        kind: u8,
        prefix: &[u8],
        records: &mut [u8],
        suffix: &[u8],
    ) -> Result<u64, ApplyError> {
        let mut log_guard = self.log.borrow_mut();
        let log = log_guard
            .as_mut()
            .expect("writes arrive only after recovery");
        let len = prefix.len() + records.len() + suffix.len();
        let frame_lsn = log.reserve(len).map_err(ApplyError::from)?;
        let base = frame_lsn + ShardLog::PAYLOAD_OFFSET + prefix.len() as u64;
        apply_records(&mut self.store.borrow_mut(), records, base, |id| {
            debug_assert_eq!(self.owner(id), self.id, "record routed to the wrong shard");
        });
        self.fanout(records);
        Ok(log.append_with(kind, len, |dst| {
            dst[..prefix.len()].copy_from_slice(prefix);
            dst[prefix.len()..prefix.len() + records.len()].copy_from_slice(records);
            dst[prefix.len() + records.len()..].copy_from_slice(suffix);
        }))
    }

    /// Whether acknowledgements must wait for stable storage.
    pub fn sync_always(&self) -> bool {
        self.config.sync == SyncMode::Always
    }

    /// Waits until everything below `lsn` is on stable storage.
    pub async fn sync_to(&self, lsn: u64) -> Result<(), ApplyError> {
        let before = self.durability.syncs.get();
        let r = self.durability.sync_to(&self.log, lsn).await;
        self.count_syncs(before);
        r.map_err(|e| ApplyError::Storage(e.to_string()))
    }

    /// Syncs everything appended so far.
    pub async fn sync_now(&self) -> std::io::Result<()> {
        let before = self.durability.syncs.get();
        let r = self.durability.sync_now(&self.log).await;
        self.count_syncs(before);
        r
    }

    fn count_syncs(&self, before: u64) {
        let done = self.durability.syncs.get().saturating_sub(before);
        if done > 0 {
            crate::metrics::ShardCounters::bump(
                &self.shared.metrics.shard(self.id).log_syncs,
                done,
            );
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

    /// Renders the next page of the history of `q.entity` (owned by `owner`) into
    /// `page`; false if the entity does not exist.
    pub async fn history(
        &self,
        owner: ShardId,
        q: HistoryQuery,
        page: &mut HistoryPage,
    ) -> Result<bool, Unavailable> {
        if owner == self.id {
            return Ok(self.history_local(&q, page));
        }
        match self.mesh.history(owner, q).await? {
            Some(p) => {
                // The page moved through the channel, not copied.
                *page = p;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn history_local(&self, q: &HistoryQuery, page: &mut HistoryPage) -> bool {
        let log = self.log.borrow();
        let log = log.as_ref().expect("reads arrive only after recovery");
        history::render(&self.store.borrow(), log, q, page)
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

    /// Serves a request that another shard sent to this one.
    pub fn handle(&self, req: Request) {
        match req {
            Request::Apply {
                mut batch,
                sync,
                reply,
            } => match self.apply_local(&mut batch) {
                Ok(end) if sync => {
                    let shard = self.me();
                    glommio::spawn_local(async move {
                        let _ = reply.send(shard.sync_to(end).await);
                    })
                    .detach();
                }
                result => {
                    let _ = reply.send(result.map(|_| ()));
                }
            },
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
            Request::History { query, reply } => {
                let mut page = HistoryPage::default();
                let found = self.history_local(&query, &mut page);
                let _ = reply.send(found.then_some(page));
            }
            Request::Page { query, reply } => {
                let mut page = Page::default();
                self.store.borrow().page(&query, &mut page);
                let _ = reply.send(page);
            }
            Request::Ws(msg) => crate::ws::handle(self, msg),
            Request::Delete(msg) => crate::api::delete::handle(&self.me(), msg),
            Request::Metrics { reply } => {
                let _ = reply.send(self.metrics.hist.borrow().clone());
            }
        }
    }
}
