//! The owner's side of a group: appending parts to its stream and applying them,
//! taking a group over, giving it up, and the inbox the bridge feeds.
//!
//! All of it runs on the shard that holds the group (`shard_of_group`). A group's
//! appends go one at a time (`Group::lock`): each names the sequence it expects to
//! follow, so one in flight per group is what the fence allows.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;
use std::time::Duration;

use ::bytes::Bytes;
use futures_channel::{mpsc, oneshot};
use futures_util::StreamExt;
use glommio::sync::Semaphore;

use super::bridge::{Ack, Cmd, Fetched, PubError, ShardCmd};
use super::{group_of, local, Cluster};
use crate::event::{EventBatch, Properties, Record};
use crate::shard::{ApplyError, Shard};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Taken; replaying the stream before serving.
    Loading,
    Serving,
    /// Given up (lease lost, fenced, released): its state is dropped.
    Gone,
}

/// A group this shard holds.
pub struct Group {
    pub id: u16,
    state: Cell<State>,
    /// The stream sequence of the last message applied here.
    applied: Cell<u64>,
    lock: Semaphore,
    /// Intents (their `FLUX_TXN` sequence) whose part for this group is in the stream.
    txns: RefCell<HashSet<u64>>,
    /// The stream sequence of the last snapshot stored or loaded (see `snapshot`).
    snap_seq: Cell<u64>,
    /// Parts waiting for the group's turn (group commit, see [`apply_part`]).
    pending: RefCell<std::collections::VecDeque<Pending>>,
    /// The sequence the last fan-out tick announced, and how many more times it is
    /// announced (see [`fanout_ticks`]).
    ticked: Cell<(u64, u8)>,
}

/// A part waiting for its group's turn, and where its answer goes.
struct Pending {
    batch: EventBatch,
    done: oneshot::Sender<Result<(), WriteError>>,
}

impl Group {
    fn new(id: u16) -> Self {
        Group {
            id,
            state: Cell::new(State::Loading),
            applied: Cell::new(0),
            lock: Semaphore::new(1),
            txns: RefCell::new(HashSet::new()),
            snap_seq: Cell::new(0),
            pending: RefCell::new(std::collections::VecDeque::new()),
            ticked: Cell::new((0, 0)),
        }
    }

    pub fn state(&self) -> State {
        self.state.get()
    }

    pub fn applied(&self) -> u64 {
        self.applied.get()
    }

    /// The intents whose part for this group its state holds.
    pub fn txns_held(&self) -> HashSet<u64> {
        self.txns.borrow().clone()
    }
}

/// Why a part was not applied by its owner.
#[derive(Debug, Clone)]
pub enum WriteError {
    /// This node does not (or no longer) serve the group: ask again where it lives.
    NotOwner,
    /// Not applied; 503.
    Unavailable(String),
    /// Maybe applied, or committed and applied later (the replicated log did not
    /// answer in time, or took it but this node could not apply it); 504.
    Unknown(String),
}

impl From<WriteError> for ApplyError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::NotOwner => ApplyError::Storage(
                "the group of these entities is moving to another node; retry".into(),
            ),
            WriteError::Unavailable(m) => ApplyError::Storage(m),
            WriteError::Unknown(m) => ApplyError::Unknown(m),
        }
    }
}

/// How long a write waits for a group being taken over here.
const LOADING_WAIT: Duration = Duration::from_secs(20);

/// The group, once it serves here (waits while it is being taken over).
async fn serving_group(shard: &Shard, g: u16) -> Result<Rc<Group>, WriteError> {
    let l = local(shard).ok_or(WriteError::NotOwner)?;
    let started = std::time::Instant::now();
    loop {
        let group = l.groups.borrow().get(&g).cloned();
        match group {
            Some(gr) if gr.state() == State::Serving => return Ok(gr),
            Some(gr) if gr.state() == State::Loading && started.elapsed() < LOADING_WAIT => {}
            None if l.cluster.is_mine(g) && started.elapsed() < LOADING_WAIT => {}
            _ => return Err(WriteError::NotOwner),
        }
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
}

/// Builds a batch from records read off the network or a stream, checking every
/// record and that each belongs to group `g`.
pub fn batch_from_records(buf: Vec<u8>, g: u16, groups: usize) -> Option<EventBatch> {
    let mut count = 0u32;
    let mut props = 0u32;
    let mut off = 0;
    while off < buf.len() {
        let (r, len) = Record::parse_stored(&buf[off..])?;
        if group_of(r.entity_id, groups) != g {
            return None;
        }
        count += 1;
        props += Properties(r.properties).count() as u32;
        off += len;
    }
    Some(EventBatch {
        buf,
        count,
        props,
        txn: None,
        client_ids: false,
    })
}

/// The message id of a part: its first event's id and how many events it has (a
/// single event: its id alone), or the intent and group of a batch's part.
fn msg_id(batch: &EventBatch, txn: Option<u64>, g: u16) -> String {
    if let Some(t) = txn {
        return format!("t{t}.g{g}");
    }
    match batch.records().next() {
        Some(r) if batch.count == 1 => String::from_utf8_lossy(r.event_id).into_owned(),
        Some(r) => format!("{}+{}", String::from_utf8_lossy(r.event_id), batch.count),
        None => String::new(),
    }
}

async fn publish(
    cluster: &Cluster,
    g: u16,
    payload: Bytes,
    msg_id: String,
    expected: u64,
    txn: Option<u64>,
    claim: bool,
) -> Result<Ack, PubError> {
    let (tx, rx) = oneshot::channel();
    cluster
        .bridge()
        .send(Cmd::Publish {
            group: g,
            payload,
            msg_id,
            expected,
            txn,
            claim,
            reply: tx,
        })
        .await
        .map_err(PubError::Other)?;
    rx.await
        .unwrap_or_else(|_| Err(PubError::Other("the NATS bridge dropped the append".into())))
}

/// Appends group `g`'s part to its stream and applies it here, the owner (see the
/// module doc of `cluster`). `txn`: the intent of a batch that spans groups.
///
/// Group commit: a group has one append in flight (the fence names the sequence it
/// follows), so the parts that arrive meanwhile wait, and whoever gets the next turn
/// appends every waiting part (up to one NATS message) as one message, applies it,
/// and answers each. A part of a batch that spans groups (`txn`) goes alone: its
/// message id and header name its intent.
pub async fn apply_part(
    shard: &Shard,
    g: u16,
    batch: EventBatch,
    txn: Option<u64>,
) -> Result<(), WriteError> {
    let cluster = local(shard).ok_or(WriteError::NotOwner)?.cluster.clone();
    let group = serving_group(shard, g).await?;
    if txn.is_some() || batch.client_ids {
        let _turn = group
            .lock
            .acquire_permit(1)
            .await
            .map_err(|_| WriteError::NotOwner)?;
        return commit(shard, &cluster, &group, batch, txn).await;
    }
    let (tx, mut rx) = oneshot::channel();
    group
        .pending
        .borrow_mut()
        .push_back(Pending { batch, done: tx });
    // Bound: every turn commits at least the oldest waiting part, and ours waits.
    loop {
        if let Ok(Some(r)) = rx.try_recv() {
            return r;
        }
        let _turn = group
            .lock
            .acquire_permit(1)
            .await
            .map_err(|_| WriteError::NotOwner)?;
        if let Ok(Some(r)) = rx.try_recv() {
            return r; // a turn before ours committed it
        }
        let max = cluster.max_message().max(1);
        let mut parts = Vec::new();
        let mut bytes = 0;
        {
            let mut q = group.pending.borrow_mut();
            while let Some(p) = q.front() {
                if !parts.is_empty() && bytes + p.batch.buf.len() > max {
                    break;
                }
                bytes += p.batch.buf.len();
                parts.push(q.pop_front().expect("front"));
            }
        }
        // One part alone goes as it is; several are joined into one message.
        let mut all = EventBatch::default();
        let mut waiting = Vec::with_capacity(parts.len());
        if parts.len() == 1 {
            let p = parts.pop().expect("one");
            all = p.batch;
            waiting.push(p.done);
        } else {
            all.buf.reserve(bytes);
            for p in parts {
                all.buf.extend_from_slice(&p.batch.buf);
                all.count += p.batch.count;
                all.props += p.batch.props;
                waiting.push(p.done);
            }
        }
        let r = commit(shard, &cluster, &group, all, None).await;
        for done in waiting {
            let _ = done.send(r.clone());
        }
    }
}

/// Appends one message (`batch`) to the group's stream and applies it, holding the
/// group's turn.
async fn commit(
    shard: &Shard,
    cluster: &Cluster,
    group: &Group,
    mut batch: EventBatch,
    txn: Option<u64>,
) -> Result<(), WriteError> {
    let g = group.id;
    if group.state() != State::Serving {
        return Err(WriteError::NotOwner);
    }
    if let Some(t) = txn {
        if group.txns.borrow().contains(&t) {
            return Ok(()); // added already (by the intent scanner, or a retry)
        }
    }
    batch.stamp_ingest(crate::time::now_ms());
    let payload = Bytes::from(batch.buf.clone());
    let id = msg_id(&batch, txn, g);
    // An append whose answer is lost (a NATS server died, a leader is being elected)
    // is sent again, identical, until JetStream answers: its message id makes the
    // retry a duplicate if the first one was stored, so the client gets a definite
    // answer instead of "maybe".
    let started = std::time::Instant::now();
    let mut fenced_once = false;
    // Bound: a Fenced answer is retried once (after a catch-up that found only our
    // own appends); other failures are retried until AMBIGUOUS_RETRY has passed.
    loop {
        let r = publish(
            cluster,
            g,
            payload.clone(),
            id.clone(),
            group.applied(),
            txn,
            false,
        )
        .await;
        match r {
            Ok(ack) if ack.seq <= group.applied() => return Ok(()), // a duplicate, applied
            Ok(ack) => {
                // The stream may hold messages we have not applied (an earlier append
                // whose answer was lost): apply them first, in order. The replica that
                // answers a catch-up may lag behind the leader that took ours: read
                // again until every message before ours is applied.
                let mut tries = 0;
                while ack.seq != group.applied() + 1 {
                    if group.state() != State::Serving {
                        return Ok(()); // committed; see `apply_here`
                    }
                    if tries == CATCH_UP_TRIES {
                        give_up(shard, cluster, group, "its stream could not be read").await;
                        return Err(WriteError::Unknown(format!(
                            "the write is in the replicated log (sequence {}), but this node \
                             could not read the messages before it; the group moves to \
                             another node",
                            ack.seq
                        )));
                    }
                    if tries > 0 {
                        glommio::timer::sleep(Duration::from_millis(100)).await;
                    }
                    tries += 1;
                    // Committed (the stream holds it) whatever happens here.
                    catch_up(shard, group, ack.seq - 1)
                        .await
                        .map_err(WriteError::Unknown)?;
                }
                return apply_here(shard, cluster, group, &batch, payload, ack.seq, txn);
            }
            Err(PubError::Fenced) if !fenced_once => {
                fenced_once = true;
                match catch_up(shard, group, u64::MAX).await {
                    // Only our own earlier appends (an answer lost), and still ours:
                    // try again after them.
                    Ok(false) if group.state() == State::Serving => continue,
                    Ok(_) => {}
                    Err(e) => return Err(WriteError::Unavailable(e)),
                }
                give_up(shard, cluster, group, "another node appended to its stream").await;
                return Err(WriteError::NotOwner);
            }
            Err(PubError::Fenced) => {
                give_up(shard, cluster, group, "its stream moved on twice").await;
                return Err(WriteError::NotOwner);
            }
            Err(PubError::Other(e)) => {
                if started.elapsed() < AMBIGUOUS_RETRY && group.state() == State::Serving {
                    glommio::timer::sleep(Duration::from_millis(250)).await;
                    continue;
                }
                return Err(WriteError::Unknown(format!(
                    "the replicated log did not acknowledge the write within {} s ({e}); it \
                     may or may not be applied: retry with the same eventIds",
                    AMBIGUOUS_RETRY.as_secs()
                )));
            }
        }
    }
}

/// How often the messages before an append are read before the group is given up.
const CATCH_UP_TRIES: u32 = 50;

/// How long an append whose answer was lost is sent again.
const AMBIGUOUS_RETRY: Duration = Duration::from_secs(20);

fn apply_here(
    shard: &Shard,
    cluster: &Cluster,
    group: &Group,
    batch: &EventBatch,
    payload: Bytes,
    seq: u64,
    txn: Option<u64>,
) -> Result<(), WriteError> {
    if group.state() != State::Serving {
        // Given up while the append was in flight. The stream has it (committed), and
        // whoever serves the group next applies it: its claim follows it in the stream.
        // Applying it here could put an old value over newer ones if this node has
        // taken the group again meanwhile (a new `Group` on the same store).
        return Ok(());
    }
    if let Err(e) = shard.apply_streamed(batch, group.id, seq, txn.unwrap_or(0)) {
        // The stream holds it: it is committed, but this node's state is not whole
        // any more; another node rebuilds the group from the stream.
        let msg = format!(
            "the write is in the replicated log but this node could not apply it ({}); \
             the group moves to another node",
            crate::shard::describe(&e)
        );
        group.state.set(State::Gone);
        let _ = cluster.bridge().try_send(Cmd::Fenced { group: group.id });
        return Err(WriteError::Unknown(msg));
    }
    group.applied.set(seq);
    if let Some(t) = txn {
        group.txns.borrow_mut().insert(t);
    }
    if crate::failpoint::on("cluster-fanout-drop")
        && shard.config.data_dir.join(".fanout-drop").exists()
    {
        eprintln!(
            "flux: cluster: failpoint: the fan-out of group {} message {seq} is dropped",
            group.id
        );
        return Ok(());
    }
    if !cluster.bridge().try_send(Cmd::Fanout {
        group: group.id,
        seq,
        payload,
    }) {
        eprintln!("flux: cluster: fan-out queue full, an update was not sent to the other nodes");
    }
    Ok(())
}

/// Applies the group's stream after what is applied here, up to `upto` (or its end).
/// Returns whether it met another node's claim (the group moved away).
async fn catch_up(shard: &Shard, group: &Group, upto: u64) -> Result<bool, String> {
    let cluster = &local(shard).expect("cluster mode").cluster;
    let (tx, mut rx) = mpsc::channel::<Fetched>(256);
    cluster
        .bridge()
        .send(Cmd::Fetch {
            group: group.id,
            from: group.applied() + 1,
            to: tx,
        })
        .await?;
    let mut foreign_claim = false;
    let mut n = 0u64;
    while let Some(f) = rx.next().await {
        match f {
            Fetched::Msg {
                seq,
                txn,
                claim,
                payload,
            } => {
                if seq <= group.applied() || seq > upto {
                    continue;
                }
                if group.state() == State::Gone {
                    // Released meanwhile: its state is dropped, nothing more is applied.
                    return Err(format!("group {} was given up", group.id));
                }
                if let Some(node) = claim {
                    // Another node claimed the group after what we applied: it moved.
                    // (Taking a group over replays old claims too; it ignores this.)
                    if node != cluster.node {
                        foreign_claim = true;
                    }
                } else if !payload.is_empty() {
                    let Some(batch) =
                        batch_from_records(payload.to_vec(), group.id, cluster.groups)
                    else {
                        return Err(format!(
                            "message {seq} of stream {} is not a valid part",
                            super::bridge::stream_name(group.id)
                        ));
                    };
                    shard
                        .apply_streamed(&batch, group.id, seq, txn.unwrap_or(0))
                        .map_err(|e| crate::shard::describe(&e))?;
                }
                if let Some(t) = txn {
                    group.txns.borrow_mut().insert(t);
                }
                group.applied.set(seq);
                n += 1;
                if n % 256 == 0 {
                    glommio::yield_if_needed().await;
                }
            }
            Fetched::End { .. } => return Ok(foreign_claim),
            Fetched::Failed(e) => return Err(e),
        }
    }
    Err("the NATS bridge stopped".into())
}

/// Drops the group here and tells the bridge (which gives the lease up).
async fn give_up(shard: &Shard, cluster: &Cluster, group: &Group, why: &str) {
    eprintln!(
        "flux: cluster: node {} gives group {} up: {why}",
        cluster.node, group.id
    );
    release(shard, group.id);
    let _ = cluster.bridge().send(Cmd::Fenced { group: group.id }).await;
}

/// Stops serving group `g` here and drops its entities.
pub fn release(shard: &Shard, g: u16) {
    let Some(l) = local(shard) else { return };
    let held = l.groups.borrow_mut().remove(&g);
    if let Some(gr) = held {
        gr.state.set(State::Gone);
        super::chain::note_drop(shard, g);
    }
    l.cluster.set_serving(g, false);
    let groups = l.cluster.groups;
    let n = shard
        .store
        .borrow_mut()
        .remove_where(|id| group_of(id, groups) == g);
    if n > 0 {
        eprintln!(
            "flux: cluster: shard {} dropped {n} entities of group {g}",
            shard.id.0
        );
    }
}

/// Takes group `g` over: drops what this shard held of it, replays its stream, appends
/// a claim (the fence for the previous owner), then serves it.
pub async fn acquire(shard: Rc<Shard>, g: u16) {
    let Some(l) = local(&shard) else { return };
    let cluster = l.cluster.clone();
    release(&shard, g);
    let group = Rc::new(Group::new(g));
    l.groups.borrow_mut().insert(g, group.clone());
    let started = std::time::Instant::now();
    let _turn = group.lock.acquire_permit(1).await;
    // What this node's own log rebuilt of the group at start-up, if it is of this
    // stream (not one deleted and made anew). Whenever the parked state is not used,
    // the log notes it dropped.
    let parked = match super::chain::unpark(&shard, g) {
        Some(p) if p.chain.created == cluster.stream_created(g) => Some(p),
        Some(_) => {
            super::chain::note_drop(&shard, g);
            None
        }
        None => None,
    };
    let have = parked.as_ref().map_or(0, |p| p.chain.seq);
    let loaded = load_snapshot(&shard, &cluster, &group, have).await;
    let released = group.state() == State::Gone;
    match parked {
        Some(p) if !loaded && !released => {
            let n = p.store.len();
            shard.store.borrow_mut().absorb(p.store);
            group.applied.set(p.chain.seq);
            group.txns.borrow_mut().extend(p.chain.txns);
            // A shard snapshot's cut may have listed the group while it was empty
            // here: it is rebuildable from the log again after the next one.
            super::chain::note_load(&shard, g);
            eprintln!(
                "flux: cluster: group {g} restored from this node's log: {n} entities, stream at {}",
                p.chain.seq
            );
        }
        Some(_) => super::chain::note_drop(&shard, g),
        None => {}
    }
    if released {
        return; // released while the snapshot was asked for
    }
    // Bound: each turn either serves, stops (released meanwhile), or waits 500 ms;
    // the lease loop releases the group if it cannot be renewed.
    loop {
        if group.state() == State::Gone {
            return;
        }
        if let Err(e) = catch_up(&shard, &group, u64::MAX).await {
            eprintln!("flux: cluster: replaying group {g}: {e}; retrying");
            glommio::timer::sleep(Duration::from_millis(500)).await;
            continue;
        }
        let id = format!("claim.{}.{}", cluster.node, crate::time::now_ms());
        match publish(&cluster, g, Bytes::new(), id, group.applied(), None, true).await {
            Ok(ack) => {
                group.applied.set(ack.seq);
                break;
            }
            Err(PubError::Fenced) => continue, // the old owner appended meanwhile
            Err(PubError::Other(e)) => {
                eprintln!("flux: cluster: claiming group {g}: {e}; retrying");
                glommio::timer::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    if group.state() == State::Gone {
        return;
    }
    group.state.set(State::Serving);
    cluster.set_serving(g, true);
    // The next shard snapshot's note lists the group: from then on this node's log
    // rebuilds it at a restart (`chain`). Until then a restart reads it from a group
    // snapshot and the stream.
    shard.snapshot_wanted.set(true);
    let _ = cluster
        .bridge()
        .send(Cmd::Serving {
            group: g,
            yes: true,
        })
        .await;
    eprintln!(
        "flux: cluster: node {} serves group {g} (stream at {}, snapshot at {}, {} ms)",
        cluster.node,
        group.applied(),
        group.snap_seq.get(),
        started.elapsed().as_millis()
    );
}

/// Loads the group's snapshot (this node's copy or JetStream's, see
/// `bridge::read_snapshot`) if there is a valid one beyond stream sequence `have`;
/// returns whether it did (else the caller has the state at `have`, or the whole
/// stream is replayed).
async fn load_snapshot(shard: &Shard, cluster: &Cluster, group: &Group, have: u64) -> bool {
    let (tx, rx) = oneshot::channel();
    if cluster
        .bridge()
        .send(Cmd::GetSnapshot {
            group: group.id,
            have,
            reply: tx,
        })
        .await
        .is_err()
    {
        return false;
    }
    let answer = rx.await;
    if group.state() == State::Gone {
        return false; // released meanwhile: nothing is put in the store
    }
    match answer {
        Ok(Ok(Some((bytes, from)))) => {
            let started = std::time::Instant::now();
            let loaded = super::snapshot::load(
                &bytes,
                group.id,
                cluster.groups,
                &mut shard.store.borrow_mut(),
            );
            match loaded {
                Ok(l) => {
                    super::chain::note_load(shard, group.id);
                    group.applied.set(l.seq);
                    group.snap_seq.set(l.seq);
                    group.txns.borrow_mut().extend(l.txns);
                    eprintln!(
                        "flux: cluster: group {} snapshot loaded from {from}: {} entities, stream at {} ({} bytes, {} ms)",
                        group.id,
                        l.entities,
                        l.seq,
                        bytes.len(),
                        started.elapsed().as_millis()
                    );
                    true
                }
                Err(e) => {
                    eprintln!(
                        "flux: cluster: group {}: {e}; replaying its stream after {have}",
                        group.id
                    );
                    false
                }
            }
        }
        Ok(Ok(None)) => false,
        Ok(Err(e)) => {
            eprintln!(
                "flux: cluster: group {}: reading its snapshot failed ({e}); replaying its \
                 stream after {have}",
                group.id
            );
            false
        }
        Err(_) => false,
    }
}

/// Stores a snapshot of each group this shard serves that changed since its last one,
/// every `FLUX_GROUP_SNAPSHOT_MS`.
pub async fn snapshots(shard: Rc<Shard>) {
    let Some(l) = local(&shard) else { return };
    let cluster = l.cluster.clone();
    let every = Duration::from_millis(shard.config.group_snapshot_ms);
    while !shard.shutting_down() {
        glommio::timer::sleep(every).await;
        let groups: Vec<Rc<Group>> = l.groups.borrow().values().cloned().collect();
        for group in groups {
            if group.state() != State::Serving || group.applied() <= group.snap_seq.get() {
                continue;
            }
            if let Err(e) = take_snapshot(&shard, &cluster, &group).await {
                eprintln!("flux: cluster: snapshot of group {}: {e}", group.id);
            }
        }
    }
}

async fn take_snapshot(shard: &Shard, cluster: &Cluster, group: &Group) -> Result<(), String> {
    // Intents older than what FLUX_TXN holds can never be redone: not kept.
    let (tx, rx) = oneshot::channel();
    cluster.bridge().send(Cmd::TxnFirst { reply: tx }).await?;
    let first = rx.await.unwrap_or_else(|_| Err("bridge stopped".into()))?;
    if group.state() != State::Serving {
        return Ok(());
    }
    // Fuzzy (see `snapshot::Encoder`): the sequence and intents of now, the entities
    // a slice at a time while the shard goes on serving, this group's writes too.
    group.txns.borrow_mut().retain(|t| *t >= first);
    let txns: Vec<u64> = group.txns.borrow().iter().copied().collect();
    let seq = group.applied();
    let started = std::time::Instant::now();
    let mut longest = Duration::ZERO;
    let mut enc = super::snapshot::Encoder::new(
        group.id,
        cluster.groups,
        seq,
        &txns,
        shard.store.borrow().len() / cluster.groups.max(1) * cluster.shards,
    );
    let mut after = None;
    // Bound: each turn moves `after` on by up to SNAPSHOT_SLICE entities.
    loop {
        let t = std::time::Instant::now();
        let done = enc.feed(&shard.store.borrow(), &mut after, SNAPSHOT_SLICE);
        longest = longest.max(t.elapsed());
        if done {
            break;
        }
        futures_lite::future::yield_now().await;
        if group.state() != State::Serving {
            return Ok(()); // released meanwhile: its entities are gone
        }
    }
    let bytes = enc.finish();
    eprintln!(
        "flux: cluster: group {} snapshot encoded in {} ms, the longest slice {} µs",
        group.id,
        started.elapsed().as_millis(),
        longest.as_micros()
    );
    let len = bytes.len();
    let (tx, rx) = oneshot::channel();
    cluster
        .bridge()
        .send(Cmd::PutSnapshot {
            group: group.id,
            bytes,
            reply: tx,
        })
        .await?;
    rx.await.unwrap_or_else(|_| Err("bridge stopped".into()))?;
    group.snap_seq.set(seq);
    eprintln!(
        "flux: cluster: group {} snapshot stored at stream sequence {seq} ({len} bytes)",
        group.id
    );
    Ok(())
}

/// How often an owner announces its groups' sequences to the other nodes.
const FANOUT_TICK: Duration = Duration::from_secs(1);
/// How many ticks announce a sequence after the first (a tick is lost like any
/// fan-out message).
const TICK_REPEATS: u8 = 3;

/// Announces, every `FANOUT_TICK`, the sequence each group served here has applied
/// (a fan-out message without records) while it is new, so that the other nodes find
/// a fan-out message lost at the end of a burst: one that no later message of its
/// group follows (see `bridge::fanout_in`). A quiet group sends nothing.
pub async fn fanout_ticks(shard: Rc<Shard>) {
    let Some(l) = local(&shard) else { return };
    let cluster = l.cluster.clone();
    while !shard.shutting_down() {
        glommio::timer::sleep(FANOUT_TICK).await;
        let groups: Vec<Rc<Group>> = l.groups.borrow().values().cloned().collect();
        for group in groups {
            if group.state() != State::Serving {
                continue;
            }
            let (seq, left) = group.ticked.get();
            let applied = group.applied();
            let left = match (applied != seq, left) {
                (true, _) => TICK_REPEATS,
                (false, 0) => continue,
                (false, n) => n - 1,
            };
            group.ticked.set((applied, left));
            let _ = cluster.bridge().try_send(Cmd::Fanout {
                group: group.id,
                seq: applied,
                payload: Bytes::new(),
            });
        }
    }
}

/// Entities of the shard's store a group snapshot visits per turn of the event loop
/// (a few ms; see `take_snapshot`).
const SNAPSHOT_SLICE: usize = 2048;

/// A shard's inbox from the bridge.
pub async fn inbox(shard: Rc<Shard>, mut rx: mpsc::Receiver<ShardCmd>) {
    while let Some(cmd) = rx.next().await {
        match cmd {
            ShardCmd::Acquire { group } => {
                glommio::spawn_local(acquire(shard.clone(), group)).detach();
            }
            ShardCmd::Release { group } => release(&shard, group),
            ShardCmd::Revoke { namespaces } => {
                let s = shard.clone();
                glommio::spawn_local(async move {
                    for ns in namespaces {
                        crate::ws::revoke_everywhere(&s, &ns).await;
                    }
                })
                .detach();
            }
            ShardCmd::Remote { records } => {
                if crate::event::valid_stored_records(&records) {
                    shard.fanout_from_peer(&records);
                }
            }
            ShardCmd::Intent {
                txn,
                group,
                records,
            } => {
                let s = shard.clone();
                glommio::spawn_local(async move {
                    let groups = local(&s).map_or(1, |l| l.cluster.groups);
                    let Some(batch) = batch_from_records(records, group, groups) else {
                        eprintln!(
                            "flux: cluster: intent {txn} has a malformed part for group {group}"
                        );
                        return;
                    };
                    let held = local(&s)
                        .and_then(|l| l.groups.borrow().get(&group).cloned())
                        .is_some_and(|gr| gr.txns.borrow().contains(&txn));
                    if held {
                        return;
                    }
                    match apply_part(&s, group, batch, Some(txn)).await {
                        Ok(()) => {}
                        Err(e) => eprintln!(
                            "flux: cluster: redoing part of intent {txn} in group {group}: {e:?}"
                        ),
                    }
                })
                .detach();
            }
        }
    }
}
