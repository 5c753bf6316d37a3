//! WebSocket subscriptions: `GET /api/ws`.
//!
//! A connection lives on the shard that accepted it (its *home*); the entities it
//! subscribes to live on their *owning* shards. The two meet like this:
//!
//! ```text
//!  home shard H (the connection)                 owning shard O (the entity)
//!  ─────────────────────────────                 ───────────────────────────
//!  session: {"type":"subscribe","entity_id":P}
//!    local: P → {conn…}         first conn on H for P:
//!                               Interests{P, +H} ──mesh──► interests: P → {H, …}
//!    ◄── "subscribed" once O confirmed (barrier)
//!                                                apply_local → log_and_apply → fanout:
//!                                                  shards_for(id) ∋ H: render the
//!                                                  records' messages once;
//!                                                flush task (after the runnable
//!                                                  ingestion tasks): ONE delivery
//!  delivery task ◄────────── inbox (bounded) ───── per home shard per flush
//!    local.matching_conns(id) → outbox.push (bounded; overflow → 1008)
//!  session writer: outbox (frames, one buffer) → socket, one write per burst
//! ```
//!
//! - `subs`: patterns, and the registry used at both ends (home: pattern → local
//!   connections; owner: pattern → shards with subscribers). An exact id registers
//!   with its owner only; `*` and `prefix*` with every shard. Only the first local
//!   subscriber of a pattern (and the last one leaving) crosses shards, so 1,000
//!   subscribers of `*` on one shard cost one registration per owner.
//! - `fanout`: the owner renders `state_update` / `entity_deleted` once per record and
//!   sends one delivery per interested home shard; the home shard expands it to its
//!   connections. Nothing on this path awaits, so ingestion never waits for a
//!   subscriber.
//! - `outbox`: each connection's bounded queue; `session`: the connection's task
//!   (frames ↔ commands, ping, close handshake, cleanup on every exit path);
//!   `upgrade`: the HTTP handshake; `protocol`: message parsing and rendering.
//!
//! Per shard, `start` runs five tasks: flush (rendered records → home shards' inboxes),
//! delivery (inbox → outboxes), interest sync (home → owners, in order, acknowledging
//! subscribes), the metrics ticker (`metrics_update` to every connection) and
//! housekeeping (pings, shutdown).

pub mod fanout;
pub mod outbox;
pub mod protocol;
pub mod session;
pub mod subs;
pub mod upgrade;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::OnceLock;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use futures_channel::{mpsc, oneshot};
use hashbrown::HashMap;

use crate::auth::registry::Namespace;
use crate::metrics::ShardCounters;
use crate::shard::{Shard, ShardId};
use fanout::{FanoutScratch, Inbound};
use outbox::{CloseReason, Outbox};
use subs::{ConnId, Interests, LocalSubs, Pattern};

/// Subscriptions one connection may hold; a subscribe past it is answered with an
/// error message (the connection stays open).
pub const WS_SUBSCRIPTIONS_PER_CONN_MAX: usize = 10_000;
/// Memory one connection's subscriptions may account for (`Pattern::cost_bytes`: its
/// own set, the home shard's registry and the owners' interest registrations, which
/// for a prefix pattern means every shard); a subscribe past it is answered with an
/// error message (the connection stays open). Derived so that the full count of
/// subscriptions to exact ids of up to `WS_TYPICAL_ID_BYTES` always fits; long ids
/// and prefix patterns on many shards reach it sooner (10,000 exact 1 KiB ids would
/// otherwise hold ~36 MB, and 10,000 prefix patterns of 1 KiB on 64 shards ~730 MB).
pub const WS_SUBSCRIPTION_BYTES_PER_CONN_MAX: usize =
    WS_SUBSCRIPTIONS_PER_CONN_MAX * subs::exact_cost_bytes(WS_TYPICAL_ID_BYTES);
/// Id length that `WS_SUBSCRIPTION_BYTES_PER_CONN_MAX` is derived for.
pub const WS_TYPICAL_ID_BYTES: usize = 64;
/// How often each shard checks for shutdown, to close its connections with 1001.
const HOUSEKEEPING_MS: u64 = 50;
/// CPU shares of WebSocket work (sessions, deliveries, metrics broadcasts) against the
/// default task queue's 1000 (HTTP and ingestion), meant to give ingestion 80 % of a
/// saturated shard's core. Measured, it does not hold under heavy fan-out: glommio
/// 0.9 runs every runnable task before it polls I/O again, so a saturated core splits
/// in proportion to the work each event causes (tuning.md, "The subscriber matrix").
pub const WS_TASK_QUEUE_SHARES: usize = 250;

/// Interest changes waiting for the sync task, and the subscribes waiting for them.
#[derive(Default)]
struct SyncQueue {
    changes: Vec<(Pattern, bool)>,
    waiters: Vec<oneshot::Sender<()>>,
}

/// Every shard's delivery inbox sender, so that an owner can reach a home shard
/// without the request mesh (deliveries must never wait). In `Shared`.
pub struct Switchboard {
    inboxes: Box<[OnceLock<mpsc::UnboundedSender<Inbound>>]>,
}

impl Switchboard {
    pub fn new(shards: usize) -> Self {
        Switchboard {
            inboxes: (0..shards).map(|_| OnceLock::new()).collect(),
        }
    }

    fn sender(&self, to: ShardId) -> Option<&mpsc::UnboundedSender<Inbound>> {
        self.inboxes[to.index()].get()
    }
}

/// This shard's WebSocket state (installed in its `shard::Services`).
#[inline]
pub fn hub(shard: &Shard) -> &Hub {
    shard.services.get()
}

/// One shard's WebSocket state. Lives in its `Shard`'s services; never crosses threads.
pub struct Hub {
    /// Every shard's delivery inbox (process-wide, shared by every hub).
    pub switchboard: std::sync::Arc<Switchboard>,
    /// This shard's connections.
    conns: RefCell<HashMap<ConnId, Rc<Outbox>>>,
    next_conn: Cell<ConnId>,
    /// Home role: pattern → this shard's connections.
    local: RefCell<LocalSubs>,
    /// Owner role: pattern → shards with subscribers.
    interests: RefCell<Interests>,
    sync: RefCell<SyncQueue>,
    sync_waker: RefCell<Option<Waker>>,
    /// Deliveries from this shard to itself (no channel for local work).
    local_inbox: RefCell<VecDeque<Inbound>>,
    inbox_waker: RefCell<Option<Waker>>,
    /// Per home shard: deliveries were dropped since the last one accepted, and a gap
    /// marker was queued (see `fanout`).
    gap_open: RefCell<Vec<bool>>,
    scratch: RefCell<FanoutScratch>,
    /// The flush task, waiting for records rendered by `fanout`.
    flush_waker: RefCell<Option<Waker>>,
    /// Outgoing queue bound of each connection (`FLUX_WS_QUEUE_BYTES`).
    queue_bytes: usize,
    /// The task queue WebSocket work runs in (created by `start`).
    task_queue: Cell<Option<glommio::TaskQueueHandle>>,
    /// Test hook (`FLUX_FAILPOINT=ws-inbox-full`): every other shard's inbox is full.
    inboxes_full: bool,
}

impl Hub {
    pub fn new(
        shards: usize,
        config: &crate::config::Config,
        switchboard: std::sync::Arc<Switchboard>,
    ) -> Self {
        Hub {
            switchboard,
            conns: RefCell::new(HashMap::new()),
            next_conn: Cell::new(1),
            local: RefCell::new(LocalSubs::default()),
            interests: RefCell::new(Interests::default()),
            sync: RefCell::new(SyncQueue::default()),
            sync_waker: RefCell::new(None),
            local_inbox: RefCell::new(VecDeque::new()),
            inbox_waker: RefCell::new(None),
            gap_open: RefCell::new(vec![false; shards]),
            scratch: RefCell::new(FanoutScratch::default()),
            flush_waker: RefCell::new(None),
            queue_bytes: config.ws_queue_bytes,
            task_queue: Cell::new(None),
            inboxes_full: crate::failpoint::on("ws-inbox-full"),
        }
    }

    fn counters<'a>(&self, shard: &'a Shard) -> &'a ShardCounters {
        crate::metrics::registry(shard).shard(shard.id)
    }

    /// Closes this shard's connections confined to `ns`. Closing drops their queues
    /// and ignores every later push, so nothing more reaches them.
    pub fn revoke(&self, ns: &std::sync::Arc<Namespace>) {
        for o in self.conns.borrow().values() {
            if o.tenant
                .get()
                .is_some_and(|t| std::sync::Arc::ptr_eq(t, ns))
            {
                o.close(CloseReason::Revoked);
            }
        }
    }

    /// Registers a new connection.
    pub fn open(&self, shard: &Shard) -> Rc<Outbox> {
        let id = self.next_conn.get();
        self.next_conn.set(id + 1);
        let o = Rc::new(Outbox::new(id, self.queue_bytes));
        self.conns.borrow_mut().insert(id, o.clone());
        ShardCounters::bump(&self.counters(shard).ws_connections, 1);
        o
    }

    /// Drops all subscriptions of a connection (here, and on the owning shards once
    /// no other local connection holds them). Done as soon as it starts closing, so
    /// that owners stop rendering updates for it during the close handshake.
    pub fn release(&self, shard: &Shard, o: &Outbox) {
        let subs: Vec<Pattern> = std::mem::take(&mut *o.subs.borrow_mut())
            .into_iter()
            .collect();
        ShardCounters::drop_by(&self.counters(shard).ws_subscriptions, subs.len() as u64);
        let bytes = o.sub_bytes.replace(0) as u64;
        ShardCounters::drop_by(&self.counters(shard).ws_subscription_bytes, bytes);
        let mut local = self.local.borrow_mut();
        for p in subs {
            if local.unsubscribe(&p, o.id) {
                self.queue_change(p, false);
            }
        }
    }

    /// Forgets a connection and its subscriptions. Called on every exit path of a
    /// session.
    pub fn close(&self, shard: &Shard, o: &Outbox) {
        self.release(shard, o);
        if self.conns.borrow_mut().remove(&o.id).is_some() {
            ShardCounters::drop_by(&self.counters(shard).ws_connections, 1);
        }
    }

    /// Subscribes connection `o` to `p`; returns once every owning shard concerned
    /// has recorded this shard's interest.
    pub async fn subscribe(&self, shard: &Shard, o: &Outbox, p: Pattern) -> Result<(), String> {
        if o.closing().is_some() {
            return Ok(());
        }
        {
            let mut subs = o.subs.borrow_mut();
            if !subs.contains(&p) {
                if subs.len() >= WS_SUBSCRIPTIONS_PER_CONN_MAX {
                    return Err(format!(
                        "too many subscriptions on this connection (at most \
                         {WS_SUBSCRIPTIONS_PER_CONN_MAX})"
                    ));
                }
                let cost = p.cost_bytes(shard.count);
                if o.sub_bytes.get() + cost > WS_SUBSCRIPTION_BYTES_PER_CONN_MAX {
                    return Err(format!(
                        "this connection's subscriptions would take more than \
                         {WS_SUBSCRIPTION_BYTES_PER_CONN_MAX} bytes of server memory (long \
                         ids and prefix patterns cost more): unsubscribe from some first"
                    ));
                }
                o.sub_bytes.set(o.sub_bytes.get() + cost);
                ShardCounters::bump(&self.counters(shard).ws_subscription_bytes, cost as u64);
                subs.insert(p.clone());
                ShardCounters::bump(&self.counters(shard).ws_subscriptions, 1);
                if self.local.borrow_mut().subscribe(&p, o.id) {
                    self.queue_change(p, true);
                }
            }
        }
        self.barrier().await;
        Ok(())
    }

    /// Unsubscribes at once (deliveries are matched against local subscriptions, so
    /// nothing more reaches the connection); the owners learn it in the background.
    pub fn unsubscribe(&self, shard: &Shard, o: &Outbox, p: &Pattern) {
        if o.subs.borrow_mut().remove(p) {
            let cost = p.cost_bytes(shard.count);
            o.sub_bytes.set(o.sub_bytes.get() - cost);
            ShardCounters::drop_by(&self.counters(shard).ws_subscription_bytes, cost as u64);
            ShardCounters::drop_by(&self.counters(shard).ws_subscriptions, 1);
            if self.local.borrow_mut().unsubscribe(p, o.id) {
                self.queue_change(p.clone(), false);
            }
        }
    }

    fn queue_change(&self, p: Pattern, present: bool) {
        self.sync.borrow_mut().changes.push((p, present));
        if let Some(w) = self.sync_waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Resolves once every interest change queued before it has been recorded.
    async fn barrier(&self) {
        let (tx, rx) = oneshot::channel();
        self.sync.borrow_mut().waiters.push(tx);
        if let Some(w) = self.sync_waker.borrow_mut().take() {
            w.wake();
        }
        let _ = rx.await;
    }

    /// Owner side: records interest changes of shard `from`.
    fn apply_interests(&self, shard: &Shard, from: ShardId, changes: &[(Pattern, bool)]) {
        let mut interests = self.interests.borrow_mut();
        let mut delta = 0i64;
        for (p, present) in changes {
            delta += interests.set(p, from, *present);
        }
        let c = &self.counters(shard).ws_interests;
        c.store(c.load(Relaxed).saturating_add_signed(delta), Relaxed);
    }

    /// Queues `msg` to every connection; a full queue closes that connection.
    fn broadcast(&self, shard: &Shard, msg: &[u8]) {
        let mut frame = Vec::with_capacity(msg.len() + 10);
        outbox::put_text(&mut frame, msg);
        let conns = self.conns.borrow();
        for o in conns.values() {
            if o.push_frames(&frame, 1).is_err() {
                self.close_slow(shard, o);
            }
        }
    }

    /// Queues one text message, closing the connection as a slow consumer if it is
    /// full.
    fn push(&self, shard: &Shard, o: &Outbox, text: &[u8]) -> bool {
        match o.push_text(text) {
            Ok(()) => true,
            Err(outbox::Overflow) => {
                self.close_slow(shard, o);
                false
            }
        }
    }

    fn close_slow(&self, shard: &Shard, o: &Outbox) {
        if o.close(CloseReason::SlowConsumer) {
            ShardCounters::bump(&self.counters(shard).ws_slow_consumer_closes, 1);
        }
    }

    /// Queues a reply of the session itself (errors, acknowledgements).
    pub fn reply(&self, shard: &Shard, o: &Outbox, text: String) {
        self.push(shard, o, text.as_bytes());
    }

    pub fn connections(&self) -> usize {
        self.conns.borrow().len()
    }

    /// Bytes of memory this shard's connections' outgoing queues hold
    /// (`Outbox::memory`).
    pub fn queue_memory(&self) -> usize {
        self.conns.borrow().values().map(|o| o.memory()).sum()
    }

    /// Runs `f` as a task of the WebSocket task queue (see `WS_TASK_QUEUE_SHARES`).
    pub fn spawn<T: 'static>(
        &self,
        f: impl std::future::Future<Output = T> + 'static,
    ) -> glommio::Task<T> {
        match self.task_queue.get() {
            Some(q) => glommio::spawn_local_into(f, q).expect("the WebSocket task queue exists"),
            None => glommio::spawn_local(f),
        }
    }
}

/// Closes, on every shard, the connections confined to `ns` (being deleted), and
/// returns once all have. Called after the namespace stopped resolving, so no new
/// connection of it can appear; a session that registered just before checks the
/// flag itself (`session`).
pub async fn revoke_everywhere(shard: &Shard, ns: &std::sync::Arc<Namespace>) {
    for i in 0..shard.count {
        let to = ShardId(i as u16);
        if to == shard.id {
            crate::ws::hub(shard).revoke(ns);
        } else {
            let ns = ns.clone();
            // A shard that is gone (shutting down) closes its connections anyway.
            let _ = shard.mesh.ask(to, move |s| hub(s).revoke(&ns)).await;
        }
    }
}

/// Starts this shard's WebSocket tasks. Called once per shard before it serves.
pub fn start(shard: &Rc<Shard>) {
    let (tx, rx) = mpsc::unbounded();
    if crate::ws::hub(shard).switchboard.inboxes[shard.id.index()]
        .set(tx)
        .is_err()
    {
        panic!("ws::start called twice for shard {}", shard.id.0);
    }
    let queue = glommio::executor().create_task_queue(
        glommio::Shares::Static(WS_TASK_QUEUE_SHARES),
        glommio::Latency::NotImportant,
        "websocket",
    );
    crate::ws::hub(shard).task_queue.set(Some(queue));
    crate::ws::hub(shard)
        .spawn(delivery_task(shard.clone(), rx))
        .detach();
    crate::ws::hub(shard)
        .spawn(metrics_task(shard.clone()))
        .detach();
    // Subscription bookkeeping and pings are small and must not wait behind deliveries.
    glommio::spawn_local(sync_task(shard.clone())).detach();
    // In ingestion's queue: it runs after the ingestion tasks already runnable, so
    // one flush ships what all of them applied.
    glommio::spawn_local(flush_task(shard.clone())).detach();
    glommio::spawn_local(housekeeping_task(shard.clone())).detach();
}

/// Moves deliveries from the inbox (remote) and the local queue into outboxes.
async fn delivery_task(shard: Rc<Shard>, mut rx: mpsc::UnboundedReceiver<Inbound>) {
    use futures_lite::Stream;
    loop {
        let item = poll_fn(|cx| {
            if let Some(d) = crate::ws::hub(&shard).local_inbox.borrow_mut().pop_front() {
                return Poll::Ready(Some(d));
            }
            *crate::ws::hub(&shard).inbox_waker.borrow_mut() = Some(cx.waker().clone());
            std::pin::Pin::new(&mut rx).poll_next(cx)
        })
        .await;
        match item {
            Some(inbound) => crate::ws::hub(&shard).receive(&shard, inbound),
            None => return,
        }
        glommio::yield_if_needed().await;
    }
}

/// Ships rendered records to their home shards (`Shard::flush_fanout`) whenever
/// `fanout` has rendered some.
async fn flush_task(shard: Rc<Shard>) {
    loop {
        poll_fn(|cx| {
            if crate::ws::hub(&shard).scratch.borrow().has_pending() {
                return Poll::Ready(());
            }
            *crate::ws::hub(&shard).flush_waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        shard.flush_fanout();
    }
}

/// Sends interest changes to their owners in order, one message per owner per round,
/// and releases the subscribes waiting for them.
async fn sync_task(shard: Rc<Shard>) {
    loop {
        let (changes, waiters) = poll_fn(|cx| {
            let mut q = crate::ws::hub(&shard).sync.borrow_mut();
            if q.changes.is_empty() && q.waiters.is_empty() {
                *crate::ws::hub(&shard).sync_waker.borrow_mut() = Some(cx.waker().clone());
                return Poll::Pending;
            }
            Poll::Ready((
                std::mem::take(&mut q.changes),
                std::mem::take(&mut q.waiters),
            ))
        })
        .await;
        let mut per_owner: Vec<Vec<(Pattern, bool)>> = vec![Vec::new(); shard.count];
        for (p, present) in changes {
            match &p {
                Pattern::Exact(id) => per_owner[shard.owner(id).index()].push((p, present)),
                Pattern::Prefix(_) => {
                    for list in per_owner.iter_mut() {
                        list.push((p.clone(), present));
                    }
                }
            }
        }
        let mut pending = Vec::new();
        for (i, list) in per_owner.into_iter().enumerate() {
            let to = ShardId(i as u16);
            if list.is_empty() {
                continue;
            }
            if to == shard.id {
                crate::ws::hub(&shard).apply_interests(&shard, to, &list);
                continue;
            }
            let s = shard.clone();
            pending.push(glommio::spawn_local(async move {
                let from = s.id;
                // Unavailable only while shutting down, when nothing is delivered.
                let _ = s
                    .mesh
                    .ask(to, move |owner| {
                        hub(owner).apply_interests(owner, from, &list)
                    })
                    .await;
            }));
        }
        for task in pending {
            task.await;
        }
        for w in waiters {
            let _ = w.send(());
        }
    }
}

/// `metrics_update` to every connection of this shard every interval.
async fn metrics_task(shard: Rc<Shard>) {
    let every = Duration::from_millis(shard.config.metrics_interval_ms);
    let mut next = Instant::now() + every;
    loop {
        glommio::timer::sleep(next.saturating_duration_since(Instant::now())).await;
        // After a stall, skip the missed ticks instead of sending a burst.
        next = (next + every).max(Instant::now());
        if crate::ws::hub(&shard).connections() == 0 {
            continue;
        }
        let now = crate::time::now_ms();
        let (totals, rate) = crate::metrics::current(&shard);
        let mut out = Vec::with_capacity(256);
        crate::metrics::write_update(&mut out, &totals, rate, now);
        crate::ws::hub(&shard).broadcast(&shard, &out);
    }
}

/// Pings every connection each `FLUX_WS_PING_INTERVAL_MS`, closing those that sent
/// nothing for two intervals; on shutdown, closes every connection with 1001.
async fn housekeeping_task(shard: Rc<Shard>) {
    let ping_every = Duration::from_millis(shard.config.ws_ping_interval_ms);
    let mut next_ping = Instant::now() + ping_every;
    loop {
        glommio::timer::sleep(Duration::from_millis(HOUSEKEEPING_MS)).await;
        let snapshot = || -> Vec<Rc<Outbox>> {
            crate::ws::hub(&shard)
                .conns
                .borrow()
                .values()
                .cloned()
                .collect()
        };
        if shard.shutting_down() {
            for o in snapshot() {
                o.close(CloseReason::ShuttingDown);
            }
            continue;
        }
        let now = Instant::now();
        if now < next_ping {
            continue;
        }
        next_ping = now + ping_every;
        for o in snapshot() {
            if now.duration_since(o.last_rx.get()) > 2 * ping_every {
                o.close(CloseReason::PingTimeout);
            } else {
                o.ping();
            }
        }
    }
}
