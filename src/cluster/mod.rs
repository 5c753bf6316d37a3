//! Cluster mode (`FLUX_NATS_URL`): several Flux nodes on a replicated NATS JetStream
//! log. Without `FLUX_NATS_URL` nothing here starts and the request path checks one
//! `Option` ([`local`]).
//!
//! - The 4096 partitions are cut into `FLUX_GROUPS` contiguous **groups** (16 by
//!   default); a group is the unit of ownership and of order, and has its own stream
//!   (`FLUX_G<n>`), so stream leaders spread over the NATS nodes. Groups nest in the
//!   node's shards (`FLUX_GROUPS` is a multiple of `FLUX_SHARDS`): group `g` lives on
//!   shard `g * shards / groups` of whichever node owns it.
//! - **Ownership**: each group is owned by one node, which holds its lease (KV bucket
//!   `flux-owners`, compare-and-set by revision; see `bridge`). Only the owner applies
//!   the group's records, serves its reads and appends to its stream.
//! - **Writes** (`write`): the node that parsed a request sends each group's part
//!   to the group's owner (its own shard, or the owner node over HTTP,
//!   `POST /api/internal/part`). The owner appends the part to the group's stream with
//!   `Nats-Expected-Last-Subject-Sequence` = the last sequence it applied (a node that
//!   lost the group cannot append: fenced) and `Nats-Msg-Id` (a retry is not appended
//!   twice), waits for JetStream's acknowledgement (the part is replicated), applies it
//!   to its shard (store, local log, subscribers) and answers. A batch that spans
//!   groups first appends its intent (every part) to `FLUX_TXN`, its commit point; the
//!   parts carry the intent's sequence, and owners add any part of an intent older
//!   than a few seconds that they do not hold yet (`bridge::scan_intents`).
//! - **Reads** of an entity go to its group's owner, which applied every acknowledged
//!   write before it was acknowledged (read your writes on any node).
//! - **Takeover** (`owner::acquire`): a node that takes a group drops what it held
//!   of it, replays the group's stream, then appends a claim (fencing the previous
//!   owner: its next append finds another last sequence) and serves.

pub mod bridge;
pub mod chain;
pub mod owner;
pub mod peer;
pub mod snapshot;
pub mod txn;
pub mod write;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::limits::PARTITIONS;
use crate::shard::router::partition_of;
use crate::shard::{Shard, ShardId};

/// The group of an entity id.
#[inline]
pub fn group_of(id: &[u8], groups: usize) -> u16 {
    (partition_of(id).0 as usize * groups / PARTITIONS as usize) as u16
}

/// The shard (on every node) that holds group `g`.
#[inline]
pub fn shard_of_group(g: u16, groups: usize, shards: usize) -> ShardId {
    ShardId((g as usize * shards / groups) as u16)
}

/// Where a group is served, as this node knows it.
#[derive(Clone, Debug)]
pub enum Route {
    /// By this node (its shard `shard_of_group`).
    Here,
    /// By the node at this URL.
    Node(Arc<str>),
    /// By nobody yet (no lease, or it expired and is being taken over).
    Nobody,
}

/// A lease holder: (node, URL).
pub type Owner = (Arc<str>, Arc<str>);

#[derive(Default, Clone)]
struct Slot {
    /// Lease holder: (node, url).
    owner: Option<(Arc<str>, Arc<str>)>,
}

/// The process-wide cluster state, shared by the shards and the bridge.
/// Bytes kept for a message's headers under the servers' `max_payload`.
const HEADER_ROOM: usize = 1024;

pub struct Cluster {
    pub node: String,
    pub url: String,
    pub groups: usize,
    pub shards: usize,
    /// `Authorization` header value for requests to other nodes (the admin token,
    /// which every node of an auth-mode cluster shares), if auth is on.
    pub peer_auth: Option<String>,
    /// Where this node keeps its own copy of its groups' snapshots
    /// (`<FLUX_DATA_DIR>/cluster`, see `bridge::read_snapshot`).
    pub snapshot_dir: std::path::PathBuf,
    table: RwLock<Vec<Slot>>,
    serving: Vec<AtomicBool>,
    acquired: AtomicU64,
    /// The largest message the NATS servers take (their `max_payload`), less room for
    /// headers; learned at connect (0 until then: no limit checked).
    max_message: std::sync::atomic::AtomicUsize,
    bridge: std::sync::OnceLock<bridge::Handle>,
    /// Each group stream's creation time (ns), set once connected: a node's own
    /// state of a group is only used on the stream it was made from (`chain`).
    stream_created: Vec<AtomicU64>,
}

impl Cluster {
    pub fn new(cfg: &crate::config::Config) -> Self {
        let groups = cfg.groups;
        Cluster {
            node: cfg.node_id.clone().unwrap_or_default(),
            url: cfg.advertise(),
            groups,
            shards: cfg.shard_count(),
            peer_auth: cfg
                .auth_enabled
                .then(|| cfg.admin_token.as_ref().map(|t| format!("Bearer {}", t.0)))
                .flatten(),
            snapshot_dir: cfg.data_dir.join("cluster"),
            table: RwLock::new(vec![Slot::default(); groups]),
            serving: (0..groups).map(|_| AtomicBool::new(false)).collect(),
            acquired: AtomicU64::new(0),
            max_message: std::sync::atomic::AtomicUsize::new(0),
            bridge: std::sync::OnceLock::new(),
            stream_created: (0..groups).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub(crate) fn set_max_payload(&self, max_payload: usize) {
        self.max_message
            .store(max_payload.saturating_sub(HEADER_ROOM), Ordering::Relaxed);
    }

    /// The largest message the NATS servers take, less room for headers (group commit
    /// fills messages up to it); 1 MiB less that room until connected.
    pub fn max_message(&self) -> usize {
        match self.max_message.load(Ordering::Relaxed) {
            0 => (1 << 20) - HEADER_ROOM,
            n => n,
        }
    }

    /// Refuses a message the NATS servers would not take (an intent holds a whole
    /// batch, a part a group's share of it): sending it again would never succeed.
    pub fn check_size(&self, what: &str, len: usize) -> Result<(), crate::shard::ApplyError> {
        let max = self.max_message();
        if len <= max {
            return Ok(());
        }
        Err(crate::shard::ApplyError::TooLarge(format!(
            "{what} of this request takes {len} bytes in the log, more than the NATS \
             servers take in one message ({max} bytes with headers; their max_payload): \
             send smaller batches, or raise max_payload in the nats-server configuration"
        )))
    }

    pub(crate) fn set_stream_created(&self, g: u16, ns: u64) {
        self.stream_created[g as usize].store(ns, Ordering::Release);
    }

    /// When group `g`'s stream was created (ns; 0 until connected).
    pub fn stream_created(&self, g: u16) -> u64 {
        self.stream_created[g as usize].load(Ordering::Acquire)
    }

    pub fn set_bridge(&self, h: bridge::Handle) {
        let _ = self.bridge.set(h);
    }

    pub fn bridge(&self) -> &bridge::Handle {
        self.bridge
            .get()
            .expect("the bridge starts before the shards serve")
    }

    /// Who serves group `g`.
    pub fn route(&self, g: u16) -> Route {
        let t = self.table.read().unwrap_or_else(|e| e.into_inner());
        match &t[g as usize].owner {
            Some((node, _)) if **node == *self.node => Route::Here,
            Some((_, url)) => Route::Node(url.clone()),
            None => Route::Nobody,
        }
    }

    /// Whether this node holds group `g`'s lease.
    pub fn is_mine(&self, g: u16) -> bool {
        matches!(self.route(g), Route::Here)
    }

    pub(crate) fn set_owner(&self, g: u16, owner: Option<(Arc<str>, Arc<str>)>) {
        let mut t = self.table.write().unwrap_or_else(|e| e.into_inner());
        let mine =
            |o: &Option<(Arc<str>, Arc<str>)>| o.as_ref().is_some_and(|(n, _)| **n == *self.node);
        if mine(&owner) && !mine(&t[g as usize].owner) {
            self.acquired.fetch_add(1, Ordering::AcqRel);
        }
        t[g as usize].owner = owner;
    }

    pub(crate) fn set_serving(&self, g: u16, yes: bool) {
        self.serving[g as usize].store(yes, Ordering::Release);
    }

    /// Whether this node serves group `g` now (taken over and caught up).
    pub fn serving(&self, g: u16) -> bool {
        self.serving[g as usize].load(Ordering::Acquire)
    }

    /// Moves each time this node takes a group (the intent scanner starts over).
    pub fn acquired_epoch(&self) -> u64 {
        self.acquired.load(Ordering::Acquire)
    }

    /// `(group, node, url, served here)` for every group (`/api/cluster`).
    pub fn owners(&self) -> Vec<(u16, Option<Owner>, bool)> {
        let t = self.table.read().unwrap_or_else(|e| e.into_inner());
        t.iter()
            .enumerate()
            .map(|(g, s)| (g as u16, s.owner.clone(), self.serving(g as u16)))
            .collect()
    }
}

/// A shard's cluster state (a shard service, installed only in cluster mode).
pub struct Local {
    pub cluster: Arc<Cluster>,
    /// The groups this shard holds, by group.
    pub(crate) groups: RefCell<HashMap<u16, Rc<owner::Group>>>,
    /// Groups this shard's log rebuilt at start-up, kept out of the store until this
    /// node takes them again (or another node does: then dropped); see `chain`.
    pub(crate) parked: RefCell<HashMap<u16, chain::Parked>>,
    pub(crate) peers: peer::Pool,
}

impl Local {
    pub fn new(cluster: Arc<Cluster>) -> Self {
        Local {
            cluster,
            groups: RefCell::new(HashMap::new()),
            parked: RefCell::new(HashMap::new()),
            peers: peer::Pool::default(),
        }
    }
}

/// This shard's cluster state; `None` on a single node (one field read).
#[inline]
pub fn local(shard: &Shard) -> Option<&Local> {
    shard.config.nats_url.as_ref()?;
    shard.services.find::<Local>()
}

/// Cluster mode: sends this node's namespace registry to every node (the
/// `flux-auth` bucket); called by the registry node (the one serving group 0) after
/// a registration or a deletion. Retried for a few seconds.
pub async fn publish_registry(shard: &Shard) -> Result<(), String> {
    let Some(l) = local(shard) else {
        return Ok(());
    };
    let text = crate::auth::local(shard).shared().registry.render_current();
    let started = std::time::Instant::now();
    // Bound: retried every 250 ms for 10 s.
    loop {
        let (tx, rx) = futures_channel::oneshot::channel();
        l.cluster
            .bridge()
            .send(bridge::Cmd::PutRegistry {
                text: ::bytes::Bytes::from(text.clone().into_bytes()),
                reply: tx,
            })
            .await?;
        match rx
            .await
            .unwrap_or_else(|_| Err("the NATS bridge stopped".into()))
        {
            Ok(()) => return Ok(()),
            Err(e) if started.elapsed() > std::time::Duration::from_secs(10) => return Err(e),
            Err(_) => glommio::timer::sleep(std::time::Duration::from_millis(250)).await,
        }
    }
}
