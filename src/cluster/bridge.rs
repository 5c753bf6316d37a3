//! The NATS bridge: one OS thread running a current-thread tokio runtime with the
//! official client (`async-nats`). The glommio shards never poll a tokio future; they
//! talk to the bridge over bounded `futures-channel` queues ([`Cmd`] in, answers on
//! oneshot channels, [`ShardCmd`] out to each shard's inbox task).
//!
//! What lives here:
//! - the JetStream objects: one stream per partition group (`FLUX_G<n>`, subject
//!   `flux.log.<n>`), the intents of batches that span groups (`FLUX_TXN`,
//!   `flux.txn`), the ownership leases (KV bucket `flux-owners`, key `g<n>`) and the
//!   node heartbeats (KV bucket `flux-nodes`, key `n.<node>`, entries expire after a
//!   lease);
//! - the lease loop ([`leases`]): renews this node's leases, takes free and expired
//!   ones up to its share, gives back what is over its share when a node joins, and
//!   fences itself when a renewal has not succeeded for most of a lease;
//! - the fan-out between nodes: every applied part is published on the core subject
//!   `flux.fanout.<n>`, and every node hands what other nodes publish there to its
//!   shards' subscribers;
//! - the intent scanner ([`scan_intents`]): hands every intent older than
//!   [`INTENT_REDO_AFTER`] to the owners of its groups here, which add the parts they
//!   do not hold yet (the redo of a batch whose coordinator died after the commit).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::bytes::Bytes;
use async_nats::jetstream::{self, consumer, kv, stream};
use async_nats::HeaderMap;
use futures_channel::{mpsc, oneshot};
use futures_util::{SinkExt, StreamExt};

use super::{shard_of_group, Cluster};

/// Messages a shard's inbox holds before the bridge waits.
pub const SHARD_INBOX: usize = 1024;
/// Commands the bridge's queue holds before a shard waits to send.
pub const BRIDGE_QUEUE: usize = 4096;
/// How long an intent may stay without all its parts before owners redo them.
pub const INTENT_REDO_AFTER: Duration = Duration::from_secs(3);
/// How long intents are kept in `FLUX_TXN` (they matter only until redone).
pub const INTENT_KEEP: Duration = Duration::from_secs(3600);
/// `Nats-Msg-Id` deduplication window of the group streams.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(120);

pub const H_TXN: &str = "Flux-Txn";
pub const H_CLAIM: &str = "Flux-Claim";
pub const H_NODE: &str = "Flux-Node";
pub const H_SEQ: &str = "Flux-Seq";

/// What a shard asks of the bridge.
pub enum Cmd {
    /// Appends one group's part to its stream, fenced by the last sequence the owner
    /// applied (`Nats-Expected-Last-Subject-Sequence`), deduplicated by `msg_id`.
    Publish {
        group: u16,
        payload: Bytes,
        msg_id: String,
        expected: u64,
        txn: Option<u64>,
        claim: bool,
        reply: oneshot::Sender<Result<Ack, PubError>>,
    },
    /// Appends a batch's intent (every group's part) to `FLUX_TXN`: the commit point
    /// of a batch that spans groups. Answers its sequence (the batch's txn id).
    Intent {
        payload: Bytes,
        reply: oneshot::Sender<Result<u64, String>>,
    },
    /// Streams a group's messages from sequence `from` up to the stream's last one
    /// at the time of the request, then `Fetched::End`.
    Fetch {
        group: u16,
        from: u64,
        to: mpsc::Sender<Fetched>,
    },
    /// Shows an applied part to the other nodes' subscribers.
    Fanout {
        group: u16,
        seq: u64,
        payload: Bytes,
    },
    /// The owner shard was fenced (its append was refused): give the lease up.
    Fenced { group: u16 },
    /// The owner shard finished taking the group over (or gave it up).
    Serving { group: u16, yes: bool },
}

#[derive(Debug, Clone, Copy)]
pub struct Ack {
    pub seq: u64,
    pub duplicate: bool,
}

#[derive(Debug, Clone)]
pub enum PubError {
    /// The stream's last sequence is not the one expected: another node appended
    /// (ownership moved). Nothing was appended.
    Fenced,
    /// No answer or another error: whether it was appended is unknown.
    Other(String),
}

/// One message of a group's stream.
pub enum Fetched {
    Msg {
        seq: u64,
        txn: Option<u64>,
        /// The node that claimed the group with this message (empty payload).
        claim: Option<String>,
        payload: Bytes,
    },
    /// Everything up to `last` was sent.
    End {
        last: u64,
    },
    Failed(String),
}

/// What the bridge asks of a shard (its inbox task, `owner::inbox`).
pub enum ShardCmd {
    /// This node holds the group's lease now: rebuild the group and serve it.
    Acquire { group: u16 },
    /// Stop serving the group and drop its state (lease lost, given back, or fenced).
    Release { group: u16 },
    /// Records another node applied (for this node's subscribers).
    Remote { records: Vec<u8> },
    /// A committed intent's part for a group owned here: add it unless it is there.
    Intent {
        txn: u64,
        group: u16,
        records: Vec<u8>,
    },
}

/// The shards' end of the bridge.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<Cmd>,
}

impl Handle {
    pub async fn send(&self, cmd: Cmd) -> Result<(), String> {
        let mut tx = self.tx.clone();
        tx.send(cmd)
            .await
            .map_err(|_| "the NATS bridge has stopped".to_string())
    }

    /// Queues without waiting (fan-out: dropped, with a message, when the queue is full).
    pub fn try_send(&self, cmd: Cmd) -> bool {
        self.tx.clone().try_send(cmd).is_ok()
    }
}

pub fn stream_name(group: u16) -> String {
    format!("FLUX_G{group}")
}

pub fn log_subject(group: u16) -> String {
    format!("flux.log.{group}")
}

/// Starts the bridge thread; returns once NATS is connected and the streams and
/// buckets exist (or with the reason it could not).
pub fn start(
    cluster: Arc<Cluster>,
    urls: String,
    replicas: usize,
    lease: Duration,
    shards: Vec<mpsc::Sender<ShardCmd>>,
) -> Result<Handle, String> {
    let (tx, rx) = mpsc::channel::<Cmd>(BRIDGE_QUEUE);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    std::thread::Builder::new()
        .name("flux-nats".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("cannot start the NATS runtime: {e}")));
                    return;
                }
            };
            rt.block_on(async move {
                // A NATS cluster that is starting may answer "no responders" or time
                // out until its JetStream leaders are elected: the set-up is retried.
                let deadline = Instant::now() + Duration::from_secs(45);
                let nats = loop {
                    match setup(&urls, replicas, cluster.groups, lease).await {
                        Ok(n) => break n,
                        Err(e) if Instant::now() < deadline => {
                            eprintln!("flux: cluster: setting up JetStream: {e}; retrying");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    }
                };
                let _ = ready_tx.send(Ok(()));
                run(nats, cluster, lease, shards, rx).await;
            });
        })
        .map_err(|e| format!("cannot start the NATS thread: {e}"))?;
    match ready_rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(())) => Ok(Handle { tx }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("NATS did not answer within 60 s".into()),
    }
}

struct Nats {
    client: async_nats::Client,
    js: jetstream::Context,
    owners: kv::Store,
    nodes: kv::Store,
    streams: Vec<stream::Stream>,
    txn: stream::Stream,
}

async fn setup(
    urls: &str,
    replicas: usize,
    groups: usize,
    lease: Duration,
) -> Result<Nats, String> {
    let addrs: Vec<async_nats::ServerAddr> = urls
        .split(',')
        .map(|u| u.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("FLUX_NATS_URL: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = loop {
        match async_nats::ConnectOptions::new()
            .name("flux")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .connect(addrs.clone())
            .await
        {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                eprintln!("flux: cluster: connecting to NATS: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(format!("cannot connect to NATS at {urls}: {e}")),
        }
    };
    let mut js = jetstream::new(client.clone());
    js.set_timeout(Duration::from_secs(5));
    // The JetStream meta leader may still be being elected when a cluster starts:
    // creating the first stream is retried for a while.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut streams = Vec::with_capacity(groups);
    let mut g = 0;
    while g < groups {
        let cfg = stream::Config {
            name: stream_name(g as u16),
            subjects: vec![log_subject(g as u16)],
            num_replicas: replicas,
            duplicate_window: DEDUP_WINDOW,
            storage: stream::StorageType::File,
            allow_direct: true,
            ..Default::default()
        };
        match js.get_or_create_stream(cfg).await {
            Ok(s) => {
                streams.push(s);
                g += 1;
            }
            Err(e) if Instant::now() < deadline => {
                eprintln!(
                    "flux: cluster: creating stream {}: {e}; retrying",
                    stream_name(g as u16)
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                return Err(format!(
                    "cannot create JetStream stream {}: {e}",
                    stream_name(g as u16)
                ))
            }
        }
    }
    let txn = js
        .get_or_create_stream(stream::Config {
            name: "FLUX_TXN".into(),
            subjects: vec!["flux.txn".into()],
            num_replicas: replicas,
            max_age: INTENT_KEEP,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("cannot create JetStream stream FLUX_TXN: {e}"))?;
    let owners = kv_bucket(
        &js,
        kv::Config {
            bucket: "flux-owners".into(),
            history: 1,
            num_replicas: replicas,
            ..Default::default()
        },
    )
    .await?;
    let nodes = kv_bucket(
        &js,
        kv::Config {
            bucket: "flux-nodes".into(),
            history: 1,
            max_age: lease,
            num_replicas: replicas,
            ..Default::default()
        },
    )
    .await?;
    check_layout(&owners, groups).await?;
    Ok(Nats {
        client,
        js,
        owners,
        nodes,
        streams,
        txn,
    })
}

async fn kv_bucket(js: &jetstream::Context, cfg: kv::Config) -> Result<kv::Store, String> {
    let name = cfg.bucket.clone();
    match js.get_key_value(&name).await {
        Ok(s) => Ok(s),
        Err(_) => match js.create_key_value(cfg).await {
            Ok(s) => Ok(s),
            // Another node created it meanwhile.
            Err(_) => js
                .get_key_value(&name)
                .await
                .map_err(|e| format!("cannot create or open KV bucket {name}: {e}")),
        },
    }
}

/// The group count is fixed when the cluster is created (key `layout`).
async fn check_layout(owners: &kv::Store, groups: usize) -> Result<(), String> {
    let want = format!("groups={groups}");
    let _ = owners.create("layout", Bytes::from(want.clone())).await;
    match owners.get("layout").await {
        Ok(Some(v)) if v == want.as_bytes() => Ok(()),
        Ok(Some(v)) => Err(format!(
            "this NATS cluster's Flux data was created with {} but FLUX_GROUPS gives {want}; \
             start with the cluster's FLUX_GROUPS",
            String::from_utf8_lossy(&v)
        )),
        Ok(None) => Err("the cluster layout key could not be written".into()),
        Err(e) => Err(format!("cannot read the cluster layout: {e}")),
    }
}

async fn run(
    nats: Nats,
    cluster: Arc<Cluster>,
    lease: Duration,
    shards: Vec<mpsc::Sender<ShardCmd>>,
    mut rx: mpsc::Receiver<Cmd>,
) {
    let nats = Arc::new(nats);
    let leases = Arc::new(tokio::sync::Mutex::new(Leases::default()));
    tokio::spawn(lease_loop(
        nats.clone(),
        cluster.clone(),
        lease,
        shards.clone(),
        leases.clone(),
    ));
    tokio::spawn(fanout_in(nats.clone(), cluster.clone(), shards.clone()));
    tokio::spawn(scan_intents(nats.clone(), cluster.clone(), shards.clone()));
    while let Some(cmd) = rx.next().await {
        match cmd {
            Cmd::Publish {
                group,
                payload,
                msg_id,
                expected,
                txn,
                claim,
                reply,
            } => {
                let js = nats.js.clone();
                let node = cluster.node.clone();
                tokio::spawn(async move {
                    let mut headers = HeaderMap::new();
                    headers.insert("Nats-Msg-Id", msg_id.as_str());
                    headers.insert(
                        "Nats-Expected-Last-Subject-Sequence",
                        expected.to_string().as_str(),
                    );
                    if let Some(t) = txn {
                        headers.insert(H_TXN, t.to_string().as_str());
                    }
                    if claim {
                        headers.insert(H_CLAIM, node.as_str());
                    }
                    let r = publish(&js, log_subject(group), headers, payload).await;
                    let _ = reply.send(r);
                });
            }
            Cmd::Intent { payload, reply } => {
                let js = nats.js.clone();
                tokio::spawn(async move {
                    let r = match js.publish("flux.txn", payload).await {
                        Ok(f) => f.await.map(|a| a.sequence).map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    let _ = reply.send(r);
                });
            }
            Cmd::Fetch { group, from, to } => {
                let s = nats.streams[group as usize].clone();
                tokio::spawn(fetch(s, group, from, to));
            }
            Cmd::Fanout {
                group,
                seq,
                payload,
            } => {
                let mut headers = HeaderMap::new();
                headers.insert(H_NODE, cluster.node.as_str());
                headers.insert(H_SEQ, seq.to_string().as_str());
                let _ = nats
                    .client
                    .publish_with_headers(format!("flux.fanout.{group}"), headers, payload)
                    .await;
            }
            Cmd::Fenced { group } => {
                let mut l = leases.lock().await;
                l.held.remove(&group);
                drop(l);
                cluster.set_serving(group, false);
                let _ = shards[shard_of_group(group, cluster.groups, cluster.shards).index()]
                    .clone()
                    .send(ShardCmd::Release { group })
                    .await;
            }
            Cmd::Serving { group, yes } => cluster.set_serving(group, yes),
        }
    }
}

async fn publish(
    js: &jetstream::Context,
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
) -> Result<Ack, PubError> {
    use jetstream::context::PublishErrorKind as K;
    let fut = js
        .publish_with_headers(subject, headers, payload)
        .await
        .map_err(|e| PubError::Other(e.to_string()))?;
    match fut.await {
        Ok(a) => Ok(Ack {
            seq: a.sequence,
            duplicate: a.duplicate,
        }),
        Err(e) if e.kind() == K::WrongLastSequence => Err(PubError::Fenced),
        Err(e) => Err(PubError::Other(e.to_string())),
    }
}

async fn fetch(s: stream::Stream, group: u16, from: u64, mut to: mpsc::Sender<Fetched>) {
    let r: Result<u64, String> = async {
        let last = s
            .get_info()
            .await
            .map_err(|e| e.to_string())?
            .state
            .last_sequence;
        if last < from {
            return Ok(last);
        }
        let consumer = s
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: from,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        let mut msgs = consumer.messages().await.map_err(|e| e.to_string())?;
        while let Some(m) = msgs.next().await {
            let m = m.map_err(|e| e.to_string())?;
            let seq = m.info().map_err(|e| e.to_string())?.stream_sequence;
            let headers = m.headers.as_ref();
            let txn = headers
                .and_then(|h| h.get(H_TXN))
                .and_then(|v| v.as_str().parse().ok());
            let claim = headers
                .and_then(|h| h.get(H_CLAIM))
                .map(|v| v.as_str().to_string());
            if to
                .send(Fetched::Msg {
                    seq,
                    txn,
                    claim,
                    payload: m.payload.clone(),
                })
                .await
                .is_err()
            {
                return Ok(seq);
            }
            if seq >= last {
                break;
            }
        }
        Ok(last)
    }
    .await;
    let _ = to
        .send(match r {
            Ok(last) => Fetched::End { last },
            Err(e) => Fetched::Failed(format!("reading stream {}: {e}", stream_name(group))),
        })
        .await;
}

/// This node's view of the leases.
#[derive(Default)]
struct Leases {
    /// Groups whose lease this node holds: (KV revision, when it was last renewed).
    held: HashMap<u16, (u64, Instant)>,
    /// Every other group's lease as last seen: (revision, when this node first saw that
    /// revision). A lease whose revision has not moved for a whole lease is expired.
    seen: HashMap<u16, (u64, Instant)>,
    /// A first round has run.
    started: bool,
}

/// The value of a lease: `node\nurl`; empty when given back.
fn lease_value(cluster: &Cluster) -> Bytes {
    Bytes::from(format!("{}\n{}", cluster.node, cluster.url))
}

fn parse_lease(v: &[u8]) -> Option<(String, String)> {
    let s = std::str::from_utf8(v).ok()?;
    let (node, url) = s.split_once('\n')?;
    Some((node.to_string(), url.to_string()))
}

async fn lease_loop(
    nats: Arc<Nats>,
    cluster: Arc<Cluster>,
    lease: Duration,
    shards: Vec<mpsc::Sender<ShardCmd>>,
    leases: Arc<tokio::sync::Mutex<Leases>>,
) {
    let tick = lease / 3;
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let mut l = leases.lock().await;
        if let Err(e) = lease_round(&nats, &cluster, lease, &shards, &mut l).await {
            eprintln!("flux: cluster: lease round failed: {e}");
        }
        // Fence ourselves: a lease not renewed for most of its time may be taken by
        // another node as soon as it expires there.
        let now = Instant::now();
        let stale: Vec<u16> = l
            .held
            .iter()
            .filter(|(_, (_, at))| now.duration_since(*at) > lease - tick)
            .map(|(g, _)| *g)
            .collect();
        for g in stale {
            eprintln!("flux: cluster: lease of group {g} not renewed in time; giving it up");
            l.held.remove(&g);
            release(&cluster, &shards, g).await;
        }
    }
}

async fn release(cluster: &Cluster, shards: &[mpsc::Sender<ShardCmd>], g: u16) {
    cluster.set_serving(g, false);
    cluster.set_owner(g, None);
    let _ = shards[shard_of_group(g, cluster.groups, cluster.shards).index()]
        .clone()
        .send(ShardCmd::Release { group: g })
        .await;
}

async fn lease_round(
    nats: &Nats,
    cluster: &Cluster,
    lease: Duration,
    shards: &[mpsc::Sender<ShardCmd>],
    l: &mut Leases,
) -> Result<(), String> {
    let now = Instant::now();
    nats.nodes
        .put(
            format!("n.{}", cluster.node),
            Bytes::from(cluster.url.clone()),
        )
        .await
        .map_err(|e| format!("heartbeat: {e}"))?;
    let mut live = 0usize;
    let mut keys = nats.nodes.keys().await.map_err(|e| e.to_string())?;
    while let Some(k) = keys.next().await {
        if k.is_ok() {
            live += 1;
        }
    }
    let live = live.max(1);
    let share = cluster.groups.div_ceil(live);
    let mine_value = lease_value(cluster);
    let mut free = Vec::new();
    for g in 0..cluster.groups as u16 {
        let key = format!("g{g}");
        let entry = nats
            .owners
            .entry(key.clone())
            .await
            .map_err(|e| e.to_string())?;
        let (rev, value) = match &entry {
            Some(e) if e.operation == kv::Operation::Put => (e.revision, Some(e.value.clone())),
            Some(e) => (e.revision, None),
            None => (0, None),
        };
        let owner = value.as_deref().and_then(parse_lease);
        if let Some((held_rev, _)) = l.held.get(&g).copied() {
            if held_rev != rev {
                // Someone else wrote our key: we lost it.
                eprintln!("flux: cluster: lease of group {g} was taken over");
                l.held.remove(&g);
                release(cluster, shards, g).await;
            } else {
                match nats.owners.update(&key, mine_value.clone(), rev).await {
                    Ok(r) => {
                        l.held.insert(g, (r, Instant::now()));
                    }
                    Err(e) => {
                        eprintln!("flux: cluster: renewing the lease of group {g}: {e}");
                    }
                }
                continue;
            }
        }
        match owner {
            Some((node, url)) if node == cluster.node => {
                // Ours from before a restart: take it back at once.
                free.insert(0, (g, rev));
                let _ = url;
            }
            Some((node, url)) => {
                cluster.set_owner(g, Some((node.into(), url.into())));
                let seen = l.seen.entry(g).or_insert((rev, now));
                if seen.0 != rev {
                    *seen = (rev, now);
                } else if now.duration_since(seen.1) >= lease {
                    free.push((g, rev));
                }
            }
            None => {
                cluster.set_owner(g, None);
                free.push((g, rev));
            }
        }
    }
    // Give back what is over our share (a node joined).
    if l.held.len() > share {
        let mut mine: Vec<u16> = l.held.keys().copied().collect();
        mine.sort_unstable();
        for g in mine.into_iter().skip(share) {
            let (rev, _) = l.held.remove(&g).expect("present");
            release(cluster, shards, g).await;
            let _ = nats.owners.update(format!("g{g}"), Bytes::new(), rev).await;
            eprintln!("flux: cluster: gave group {g} back ({live} nodes live)");
        }
        return Ok(());
    }
    if !l.started {
        // The first round only announces this node, so that nodes starting together
        // see each other before they share the groups out.
        l.started = true;
        return Ok(());
    }
    for (g, rev) in free {
        if l.held.len() >= share {
            break;
        }
        let key = format!("g{g}");
        let r = if rev == 0 {
            nats.owners
                .create(&key, mine_value.clone())
                .await
                .map_err(|e| e.to_string())
        } else {
            nats.owners
                .update(&key, mine_value.clone(), rev)
                .await
                .map_err(|e| e.to_string())
        };
        // An error: another node was faster.
        if let Ok(r) = r {
            eprintln!("flux: cluster: node {} takes group {g}", cluster.node);
            l.held.insert(g, (r, Instant::now()));
            l.seen.remove(&g);
            cluster.set_owner(
                g,
                Some((cluster.node.as_str().into(), cluster.url.as_str().into())),
            );
            let _ = shards[shard_of_group(g, cluster.groups, cluster.shards).index()]
                .clone()
                .send(ShardCmd::Acquire { group: g })
                .await;
        }
    }
    Ok(())
}

/// Hands what other nodes applied to this node's subscribers.
async fn fanout_in(nats: Arc<Nats>, cluster: Arc<Cluster>, shards: Vec<mpsc::Sender<ShardCmd>>) {
    let mut sub = match nats.client.subscribe("flux.fanout.>").await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("flux: cluster: cannot subscribe to the fan-out: {e}");
            return;
        }
    };
    while let Some(m) = sub.next().await {
        let from_us = m
            .headers
            .as_ref()
            .and_then(|h| h.get(H_NODE))
            .is_some_and(|v| v.as_str() == cluster.node);
        if from_us {
            continue;
        }
        let Some(g) = m
            .subject
            .as_str()
            .rsplit('.')
            .next()
            .and_then(|g| g.parse::<u16>().ok())
            .filter(|g| (*g as usize) < cluster.groups)
        else {
            continue;
        };
        let to = shard_of_group(g, cluster.groups, cluster.shards).index();
        let _ = shards[to]
            .clone()
            .send(ShardCmd::Remote {
                records: m.payload.to_vec(),
            })
            .await;
    }
}

/// Hands every intent to the owners of its groups here once it is old enough (see
/// the module doc). Starts over from the first intent kept whenever this node takes a
/// group, so a new owner sees every intent of the last hour.
async fn scan_intents(nats: Arc<Nats>, cluster: Arc<Cluster>, shards: Vec<mpsc::Sender<ShardCmd>>) {
    loop {
        let epoch = cluster.acquired_epoch();
        if let Err(e) = scan_once(&nats, &cluster, &shards, epoch).await {
            eprintln!("flux: cluster: reading intents: {e}");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

async fn scan_once(
    nats: &Nats,
    cluster: &Cluster,
    shards: &[mpsc::Sender<ShardCmd>],
    epoch: u64,
) -> Result<(), String> {
    let consumer = nats
        .txn
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut msgs = consumer.messages().await.map_err(|e| e.to_string())?;
    loop {
        let next = tokio::time::timeout(Duration::from_millis(500), msgs.next()).await;
        if cluster.acquired_epoch() != epoch {
            return Ok(()); // a group was taken: start over
        }
        let m = match next {
            Err(_) => continue,
            Ok(None) => return Ok(()),
            Ok(Some(m)) => m.map_err(|e| e.to_string())?,
        };
        let info = m.info().map_err(|e| e.to_string())?;
        let seq = info.stream_sequence;
        let published = info.published;
        let age = time::OffsetDateTime::now_utc() - published;
        let wait = time::Duration::try_from(INTENT_REDO_AFTER).unwrap_or_default() - age;
        if wait.is_positive() {
            tokio::time::sleep(wait.unsigned_abs()).await;
        }
        for (g, records) in super::txn::parts(&m.payload) {
            if (g as usize) >= cluster.groups || !cluster.is_mine(g) {
                continue;
            }
            let to = shard_of_group(g, cluster.groups, cluster.shards).index();
            let _ = shards[to]
                .clone()
                .send(ShardCmd::Intent {
                    txn: seq,
                    group: g,
                    records: records.to_vec(),
                })
                .await;
        }
    }
}
