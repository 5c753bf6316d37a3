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

/// The object store of group snapshots.
const SNAPSHOT_BUCKET: &str = "flux-snapshots";
/// A snapshot not read within this is not used (the group replays its whole stream).
/// The object metadata key holding the stream sequence a snapshot reflects.
const SNAPSHOT_SEQ: &str = "flux-seq";
const SNAPSHOT_READ: Duration = Duration::from_secs(10);
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
    /// Every part of intent `txn` is applied: the intent is removed from `FLUX_TXN`
    /// (only intents with a part still missing stay for the redo, at most
    /// `INTENT_KEEP`).
    IntentDone { txn: u64 },
    /// Streams a group's messages from sequence `from` up to the stream's last one
    /// at the time of the request, then `Fetched::End`.
    Fetch {
        group: u16,
        from: u64,
        to: mpsc::Sender<Fetched>,
    },
    /// Shows an applied part to the other nodes' subscribers; without records, a
    /// tick that only announces the group's sequence (`owner::fanout_ticks`).
    Fanout {
        group: u16,
        seq: u64,
        payload: Bytes,
    },
    /// The owner shard was fenced (its append was refused): give the lease up.
    Fenced { group: u16 },
    /// The owner shard finished taking the group over (or gave it up).
    Serving { group: u16, yes: bool },
    /// Stores a group's snapshot (`cluster::snapshot`) as object `g<n>`.
    PutSnapshot {
        group: u16,
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// The group's snapshot, if one is stored.
    GetSnapshot {
        group: u16,
        /// Only a snapshot beyond this stream sequence is wanted.
        have: u64,
        reply: oneshot::Sender<Result<Option<FoundSnapshot>, String>>,
    },
    /// The first sequence `FLUX_TXN` still holds (older intents are gone).
    TxnFirst {
        reply: oneshot::Sender<Result<u64, String>>,
    },
    /// The namespace registry changed on this node (the registry node, which serves
    /// group 0): every node loads it from the `flux-auth` bucket.
    PutRegistry {
        text: Bytes,
        reply: oneshot::Sender<Result<(), String>>,
    },
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

/// A group snapshot's bytes and where they were read from.
pub type FoundSnapshot = (Vec<u8>, &'static str);

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
    /// Namespaces another node removed: close their connections here.
    Revoke {
        namespaces: Vec<Arc<crate::auth::registry::Namespace>>,
    },
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
    auth: Arc<crate::auth::Auth>,
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
                cluster.set_max_payload(nats.client.server_info().max_payload);
                for (g, st) in nats.streams.iter().enumerate() {
                    cluster.set_stream_created(g as u16, stream_created(st));
                }
                let _ = ready_tx.send(Ok(()));
                run(nats, cluster, auth, lease, shards, rx).await;
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
    registry: kv::Store,
    snapshots: jetstream::object_store::ObjectStore,
    /// The object store's stream (`read_snapshot`).
    snapshot_stream: stream::Stream,
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
            .event_callback(|e| async move { eprintln!("flux: cluster: NATS connection: {e}") })
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
    let registry = kv_bucket(
        &js,
        kv::Config {
            bucket: "flux-auth".into(),
            history: 1,
            num_replicas: replicas,
            ..Default::default()
        },
    )
    .await?;
    let snapshots = match js.get_object_store(SNAPSHOT_BUCKET).await {
        Ok(s) => s,
        Err(_) => js
            .create_object_store(jetstream::object_store::Config {
                bucket: SNAPSHOT_BUCKET.into(),
                num_replicas: replicas,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("cannot create the object store {SNAPSHOT_BUCKET}: {e}"))?,
    };
    let snapshot_stream = js
        .get_stream(format!("OBJ_{SNAPSHOT_BUCKET}"))
        .await
        .map_err(|e| format!("the object store {SNAPSHOT_BUCKET}: {e}"))?;
    check_layout(&owners, groups).await?;
    Ok(Nats {
        client,
        js,
        owners,
        registry,
        snapshots,
        snapshot_stream,
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
    auth: Arc<crate::auth::Auth>,
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
    if auth.enabled {
        tokio::spawn(watch_registry(nats.clone(), auth, shards.clone()));
    }
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
            Cmd::IntentDone { txn } => {
                let s = nats.txn.clone();
                tokio::spawn(async move {
                    // Not removed (no answer): it stays until INTENT_KEEP; its redo
                    // finds every part applied.
                    let _ = s.delete_message(txn).await;
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
                tokio::spawn(fetch(nats.client.clone(), group, from, to));
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
                // Not here: a lease round holds the leases for up to a few ticks.
                let (leases, cluster, shards) = (leases.clone(), cluster.clone(), shards.clone());
                tokio::spawn(async move {
                    leases.lock().await.held.remove(&group);
                    cluster.set_serving(group, false);
                    let to = shard_of_group(group, cluster.groups, cluster.shards).index();
                    let _ = shards[to].clone().send(ShardCmd::Release { group }).await;
                });
            }
            Cmd::Serving { group, yes } => cluster.set_serving(group, yes),
            Cmd::PutSnapshot {
                group,
                bytes,
                reply,
            } => {
                let (nats, cluster) = (nats.clone(), cluster.clone());
                tokio::spawn(async move {
                    let seq = super::snapshot::seq_of(&bytes).unwrap_or(0);
                    let meta = jetstream::object_store::ObjectMetadata {
                        name: format!("g{group}"),
                        metadata: HashMap::from([(SNAPSHOT_SEQ.to_string(), seq.to_string())]),
                        ..Default::default()
                    };
                    let r = nats
                        .snapshots
                        .put(meta, &mut bytes.as_slice())
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string());
                    // This node's own copy, for its next start (`read_snapshot`).
                    let path = local_snapshot(&nats, &cluster, group);
                    let written =
                        tokio::task::spawn_blocking(move || write_durably(&path, &bytes)).await;
                    if let Ok(Err(e)) = written {
                        eprintln!(
                            "flux: cluster: group {group}: keeping its snapshot on disk: {e}"
                        );
                    }
                    let _ = reply.send(r);
                });
            }
            Cmd::GetSnapshot { group, have, reply } => {
                let (nats, cluster) = (nats.clone(), cluster.clone());
                tokio::spawn(async move {
                    let read = read_snapshot(&nats, &cluster, group, have);
                    let r = tokio::time::timeout(SNAPSHOT_READ, read)
                        .await
                        .unwrap_or_else(|_| Err("timed out".into()));
                    let _ = reply.send(r);
                });
            }
            Cmd::TxnFirst { reply } => {
                let txn = nats.txn.clone();
                tokio::spawn(async move {
                    let r = txn
                        .get_info()
                        .await
                        .map(|i| i.state.first_sequence)
                        .map_err(|e| e.to_string());
                    let _ = reply.send(r);
                });
            }
            Cmd::PutRegistry { text, reply } => {
                let kv = nats.registry.clone();
                tokio::spawn(async move {
                    let r = kv
                        .put("registry", text)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string());
                    let _ = reply.send(r);
                });
            }
        }
    }
}

/// This node's copy of group `g`'s snapshot, named after the stream's creation time:
/// a copy made from a stream since deleted and made anew is never used.
fn local_snapshot(nats: &Nats, cluster: &Cluster, g: u16) -> std::path::PathBuf {
    let created = nats.streams[g as usize]
        .cached_info()
        .created
        .unix_timestamp_nanos();
    cluster.snapshot_dir.join(format!("g{g}-{created}.snap"))
}

/// A stream's creation time in ns: tells a stream made anew from the one a node's
/// files were made from (`Cluster::stream_created`).
fn stream_created(s: &stream::Stream) -> u64 {
    s.cached_info().created.unix_timestamp_nanos() as u64
}

/// Replaces `path` with `bytes` so that a crash leaves the old or the new file whole.
fn write_durably(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().expect("a file in a directory");
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    crate::log::naming::sync_dir(dir)
}

/// The newest snapshot of group `g` this node can get: its own copy on disk (kept by
/// the last owner that ran here, so a restart reads no snapshot over the network) or
/// the one in JetStream, whichever reflects the later stream sequence. A copy beyond
/// the stream's end (the streams were made anew) is not used. `load` checks the
/// chosen one whole; a damaged one means a replay of the whole stream. Only a
/// snapshot beyond stream sequence `have` (what the node's own log rebuilt) is read.
async fn read_snapshot(
    nats: &Nats,
    cluster: &Cluster,
    g: u16,
    have: u64,
) -> Result<Option<FoundSnapshot>, String> {
    use jetstream::object_store::InfoErrorKind;
    let path = local_snapshot(nats, cluster, g);
    let local = tokio::task::spawn_blocking(move || std::fs::read(path).ok())
        .await
        .ok()
        .flatten()
        .and_then(|b| super::snapshot::seq_of(&b).map(|seq| (seq, b)))
        .filter(|(seq, _)| *seq > have);
    let info = match nats.snapshots.info(format!("g{g}")).await {
        Ok(i) if i.deleted => None,
        Ok(i) => Some(i),
        Err(e) if e.kind() == InfoErrorKind::NotFound => None,
        Err(e) if local.is_none() => return Err(e.to_string()),
        Err(_) => None,
    };
    let remote_seq = info.as_ref().map(|i| {
        i.metadata
            .get(SNAPSHOT_SEQ)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(u64::MAX) // older objects without it: read it
    });
    let info = info.filter(|_| remote_seq.is_some_and(|r| r > have));
    if let Some((seq, bytes)) = local {
        let last = nats.streams[g as usize]
            .clone()
            .get_info()
            .await
            .map_err(|e| e.to_string())?
            .state
            .last_sequence;
        if seq <= last && remote_seq.is_none_or(|r| seq >= r) {
            return Ok(Some((bytes, "this node's disk")));
        }
    }
    let Some(info) = info else {
        return Ok(None);
    };
    // Chunk by chunk, not through the object store's `AsyncRead`: async-nats 0.46
    // unwraps the result of creating its consumer there, so a JetStream timeout would
    // panic, and the release build aborts on a panic.
    let mut buf = Vec::with_capacity(info.size);
    if info.chunks == 0 {
        return Ok(Some((buf, "JetStream")));
    }
    let consumer = nats
        .snapshot_stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: format!("$O.{SNAPSHOT_BUCKET}.C.{}", info.nuid),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut msgs = consumer.messages().await.map_err(|e| e.to_string())?;
    let mut chunks = 0;
    while let Some(m) = msgs.next().await {
        let m = m.map_err(|e| e.to_string())?;
        buf.extend_from_slice(&m.payload);
        chunks += 1;
        if chunks == info.chunks {
            return Ok(Some((buf, "JetStream")));
        }
    }
    Err("the snapshot's chunks ended early".into())
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

/// Messages per batched direct get.
const FETCH_BATCH: usize = 256;
/// How long one batch of a direct get may take.
const FETCH_WAIT: Duration = Duration::from_secs(5);

/// Reads group `group`'s stream from sequence `from` to its end into `to`, then
/// `Fetched::End`. Batched direct gets (`$JS.API.DIRECT.GET`, `{"seq","batch"}`,
/// answered by any replica, the batch closed by a 204 status): no JetStream consumer
/// is made, so a catch-up does not wait on the meta leader, which is busy or being
/// elected right after a NATS server died (consumer creation then timed out for tens of
/// seconds). A replica that lags only makes the catch-up stop early: the owner's next
/// append (or its claim) names the sequence it reached and is refused until it has read
/// the rest.
async fn fetch(client: async_nats::Client, group: u16, from: u64, mut to: mpsc::Sender<Fetched>) {
    let stream = stream_name(group);
    let r: Result<u64, String> = async {
        let inbox = client.new_inbox();
        let mut sub = client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| e.to_string())?;
        let subject = format!("$JS.API.DIRECT.GET.{stream}");
        let mut next = from;
        // Bound: every batch either ends the stream or moves `next` forward.
        loop {
            let req = format!(r#"{{"seq":{next},"batch":{FETCH_BATCH}}}"#);
            client
                .publish_with_reply(subject.clone(), inbox.clone(), req.into())
                .await
                .map_err(|e| e.to_string())?;
            let mut got = 0usize;
            loop {
                let m = tokio::time::timeout(FETCH_WAIT, sub.next())
                    .await
                    .map_err(|_| "timed out".to_string())?
                    .ok_or("the subscription closed")?;
                match m.status.map(|s| s.as_u16()) {
                    None => {}
                    // No message at or after `next`: the stream ends before it.
                    Some(404) => return Ok(next - 1),
                    Some(204) => break, // end of this batch
                    Some(code) => {
                        return Err(format!(
                            "direct get: {code} {}",
                            m.description.as_deref().unwrap_or("")
                        ))
                    }
                }
                let headers = m.headers.as_ref();
                let seq: u64 = headers
                    .and_then(|h| h.get(async_nats::header::NATS_SEQUENCE))
                    .and_then(|v| v.as_str().parse().ok())
                    .ok_or("direct get: a message without its sequence")?;
                if seq < next {
                    continue; // not ours (an answer to an earlier request)
                }
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
                next = seq + 1;
                got += 1;
            }
            if got == 0 {
                return Ok(next - 1);
            }
        }
    }
    .await;
    let _ = to
        .send(match r {
            Ok(last) => Fetched::End { last },
            Err(e) => Fetched::Failed(format!("reading stream {stream}: {e}")),
        })
        .await;
}

/// This node's view of the leases.
#[derive(Default)]
struct Leases {
    /// Groups whose lease this node holds: (KV revision, when it was last renewed).
    held: HashMap<u16, (u64, Instant)>,
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
    let owners = Arc::new(std::sync::Mutex::new(View::default()));
    let nodes = Arc::new(std::sync::Mutex::new(View::default()));
    tokio::spawn(watch_bucket(
        nats.owners.clone(),
        owners.clone(),
        "flux-owners",
    ));
    tokio::spawn(watch_bucket(
        nats.nodes.clone(),
        nodes.clone(),
        "flux-nodes",
    ));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let mut l = leases.lock().await;
        let views = Views {
            owners: &owners,
            nodes: &nodes,
        };
        lease_round(&nats, &cluster, lease, &shards, &mut l, views).await;
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

/// A key-value bucket as this node last saw it through a watch.
#[derive(Default)]
struct View {
    entries: HashMap<String, Seen>,
}

struct Seen {
    revision: u64,
    /// None: deleted or purged.
    value: Option<Bytes>,
    /// When this node first saw this revision (by its own clock).
    at: Instant,
}

impl View {
    fn see(&mut self, e: kv::Entry) {
        let value = (e.operation == kv::Operation::Put).then_some(e.value);
        match self.entries.get_mut(&e.key) {
            Some(s) if s.revision >= e.revision => {}
            Some(s) => {
                *s = Seen {
                    revision: e.revision,
                    value,
                    at: Instant::now(),
                }
            }
            None => {
                self.entries.insert(
                    e.key,
                    Seen {
                        revision: e.revision,
                        value,
                        at: Instant::now(),
                    },
                );
            }
        }
    }
}

struct Views<'a> {
    owners: &'a std::sync::Mutex<View>,
    nodes: &'a std::sync::Mutex<View>,
}

/// Keeps `view` current: one long-lived watch (an ordered consumer) per bucket, made
/// again when it fails, so a lease round reads nothing from JetStream.
async fn watch_bucket(store: kv::Store, view: Arc<std::sync::Mutex<View>>, name: &str) {
    loop {
        match store.watch_with_history(">").await {
            Ok(mut w) => {
                while let Some(e) = w.next().await {
                    match e {
                        Ok(e) => view.lock().expect("view").see(e),
                        Err(e) => {
                            eprintln!("flux: cluster: watching {name}: {e}; watching again");
                            break;
                        }
                    }
                }
            }
            Err(e) => eprintln!("flux: cluster: watching {name}: {e}; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One round of the lease protocol. Writes only (renewals, heartbeat, takes), each
/// bounded by a tick and the renewals concurrent, so a slow JetStream delays a round
/// by at most a tick or two; the picture of the buckets comes from the watches.
async fn lease_round(
    nats: &Nats,
    cluster: &Cluster,
    lease: Duration,
    shards: &[mpsc::Sender<ShardCmd>],
    l: &mut Leases,
    views: Views<'_>,
) {
    let tick = lease / 3;
    let started = Instant::now();
    let mine_value = lease_value(cluster);
    // Renewals (compare-and-set on the revision we hold) and the heartbeat, together.
    let renewals = l.held.iter().map(|(&g, &(rev, _))| {
        let owners = nats.owners.clone();
        let v = mine_value.clone();
        async move {
            let r = tokio::time::timeout(tick, owners.update(format!("g{g}"), v, rev)).await;
            (g, rev, r)
        }
    });
    let heartbeat = tokio::time::timeout(
        tick,
        nats.nodes.put(
            format!("n.{}", cluster.node),
            Bytes::from(cluster.url.clone()),
        ),
    );
    let (renewed, beat) =
        futures_util::future::join(futures_util::future::join_all(renewals), heartbeat).await;
    match beat {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => eprintln!("flux: cluster: heartbeat: {e}"),
        Err(_) => eprintln!("flux: cluster: heartbeat: timed out"),
    }
    for (g, rev, r) in renewed {
        match r {
            Ok(Ok(new)) => {
                // Counted from the round's start: other nodes time the lease from
                // when they see the new revision, which is later.
                l.held.insert(g, (new, started));
            }
            Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                // Our own earlier renewal whose answer was lost, or another node's take:
                // the key itself says (the watch may not have shown our write yet).
                let key = format!("g{g}");
                let seen = match tokio::time::timeout(tick, nats.owners.entry(&key)).await {
                    Ok(Ok(e)) => e.map(|e| (e.revision, Some(e.value))),
                    _ => views
                        .owners
                        .lock()
                        .expect("view")
                        .entries
                        .get(&key)
                        .map(|s| (s.revision, s.value.clone())),
                };
                match seen {
                    Some((r, Some(v))) if v == mine_value && r > rev => {
                        l.held.insert(g, (r, l.held[&g].1));
                    }
                    _ => {
                        eprintln!("flux: cluster: lease of group {g} was taken over");
                        l.held.remove(&g);
                        release(cluster, shards, g).await;
                    }
                }
            }
            Ok(Err(e)) => eprintln!("flux: cluster: renewing the lease of group {g}: {e}"),
            Err(_) => eprintln!("flux: cluster: renewing the lease of group {g}: timed out"),
        }
    }
    let now = Instant::now();
    let me = format!("n.{}", cluster.node);
    let live = 1 + views
        .nodes
        .lock()
        .expect("view")
        .entries
        .iter()
        .filter(|(k, s)| **k != me && s.value.is_some() && now.duration_since(s.at) < lease)
        .count();
    let share = cluster.groups.div_ceil(live);
    let mut free = Vec::new();
    let mut lost = Vec::new();
    {
        let owners = views.owners.lock().expect("view");
        for g in 0..cluster.groups as u16 {
            let seen = owners.entries.get(&format!("g{g}"));
            let owner = seen.and_then(|s| s.value.as_deref()).and_then(parse_lease);
            if let Some(&(held_rev, _)) = l.held.get(&g) {
                if let Some(s) = seen.filter(|s| s.revision > held_rev) {
                    if s.value.as_ref() != Some(&mine_value) {
                        lost.push(g); // another node wrote our key
                    }
                }
                continue;
            }
            let rev = seen.map_or(0, |s| s.revision);
            match owner {
                Some((node, _)) if node == cluster.node => {
                    // Ours from before a restart: take it back at once.
                    free.insert(0, (g, rev));
                }
                Some((node, url)) => {
                    cluster.set_owner(g, Some((node.into(), url.into())));
                    if seen.is_some_and(|s| now.duration_since(s.at) >= lease) {
                        free.push((g, rev));
                    }
                }
                None => {
                    cluster.set_owner(g, None);
                    free.push((g, rev));
                }
            }
        }
    }
    for g in lost {
        eprintln!("flux: cluster: lease of group {g} was taken over");
        l.held.remove(&g);
        release(cluster, shards, g).await;
    }
    // Give back what is over our share (a node joined).
    if l.held.len() > share {
        let mut mine: Vec<u16> = l.held.keys().copied().collect();
        mine.sort_unstable();
        for g in mine.into_iter().skip(share) {
            let (rev, _) = l.held.remove(&g).expect("present");
            release(cluster, shards, g).await;
            let _ =
                tokio::time::timeout(tick, nats.owners.update(format!("g{g}"), Bytes::new(), rev))
                    .await;
            eprintln!("flux: cluster: gave group {g} back ({live} nodes live)");
        }
        return;
    }
    if !l.started {
        // The first round only announces this node, so that nodes starting together
        // see each other before they share the groups out.
        l.started = true;
        return;
    }
    for (g, rev) in free {
        if l.held.len() >= share {
            break;
        }
        let key = format!("g{g}");
        let taken = if rev == 0 {
            tokio::time::timeout(tick, nats.owners.create(&key, mine_value.clone()))
                .await
                .map(|r| r.ok())
        } else {
            tokio::time::timeout(tick, nats.owners.update(&key, mine_value.clone(), rev))
                .await
                .map(|r| r.ok())
        };
        // None: another node was faster, or no answer (tried again next round; an
        // answer lost after the write shows in the watch as our own key).
        if let Ok(Some(r)) = taken {
            eprintln!("flux: cluster: node {} takes group {g}", cluster.node);
            l.held.insert(g, (r, started));
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
}

/// Hands what other nodes applied to this node's subscribers, in each group's stream
/// order. The fan-out is core NATS (at most once): a message lost on the way (a NATS
/// server died, an owner died between its append and its fan-out, a full queue)
/// shows as a gap in the group's sequence at the next message, or at the owner's next
/// tick (`owner::fanout_ticks`: a message without records announcing the sequence
/// reached, every second while it moves), and the gap is read from the stream
/// (direct get) and delivered first. Messages this node fanned out itself (it owned the
/// group) only move the sequence on: its own subscribers had them when it applied them.
async fn fanout_in(nats: Arc<Nats>, cluster: Arc<Cluster>, shards: Vec<mpsc::Sender<ShardCmd>>) {
    let mut sub = match nats.client.subscribe("flux.fanout.>").await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("flux: cluster: cannot subscribe to the fan-out: {e}");
            return;
        }
    };
    let mut last: HashMap<u16, u64> = HashMap::new();
    while let Some(m) = sub.next().await {
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
        let headers = m.headers.as_ref();
        let from_us = headers
            .and_then(|h| h.get(H_NODE))
            .is_some_and(|v| v.as_str() == cluster.node);
        let seq = headers
            .and_then(|h| h.get(H_SEQ))
            .and_then(|v| v.as_str().parse::<u64>().ok());
        let to = shards[shard_of_group(g, cluster.groups, cluster.shards).index()].clone();
        if let Some(seq) = seq {
            let seen = last.get(&g).copied();
            if seen.is_some_and(|l| seq <= l) {
                continue; // delivered already (a gap read it from the stream)
            }
            last.insert(g, seq);
            if from_us {
                continue;
            }
            // A tick (no records) announces `seq` without carrying it: read it too.
            let tick = m.payload.is_empty();
            let last_missing = if tick { seq } else { seq - 1 };
            if let Some(l) = seen.filter(|l| last_missing > *l) {
                fill_gap(&nats.client, g, l + 1, last_missing, to.clone()).await;
            }
        } else if from_us {
            continue;
        }
        if m.payload.is_empty() {
            continue; // an owner's tick: it only announced the sequence
        }
        let _ = to
            .clone()
            .send(ShardCmd::Remote {
                records: m.payload.to_vec(),
            })
            .await;
    }
}

/// Most messages a fan-out gap is read for; a longer one is reported, not filled.
const FANOUT_GAP_MAX: u64 = 4096;

/// Delivers group `g`'s messages `from..=to` from its stream to the shard `to_shard`
/// (the fan-out missed them).
async fn fill_gap(
    client: &async_nats::Client,
    g: u16,
    from: u64,
    to: u64,
    mut to_shard: mpsc::Sender<ShardCmd>,
) {
    if to - from + 1 > FANOUT_GAP_MAX {
        eprintln!(
            "flux: cluster: fan-out of group {g} missed {} messages; subscribers here did not \
             get them (more than {FANOUT_GAP_MAX} to read back)",
            to - from + 1
        );
        return;
    }
    let (tx, mut rx) = mpsc::channel::<Fetched>(256);
    tokio::spawn(fetch(client.clone(), g, from, tx));
    while let Some(f) = rx.next().await {
        match f {
            Fetched::Msg {
                seq,
                claim,
                payload,
                ..
            } => {
                if seq > to {
                    return; // fetch stops when the receiver is dropped
                }
                if claim.is_none() && !payload.is_empty() {
                    let _ = to_shard
                        .send(ShardCmd::Remote {
                            records: payload.to_vec(),
                        })
                        .await;
                }
            }
            Fetched::End { .. } => return,
            Fetched::Failed(e) => {
                eprintln!("flux: cluster: fan-out of group {g} missed messages {from}..={to}: {e}");
                return;
            }
        }
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

/// Loads the cluster's namespace registry whenever it changes (and once at start),
/// and has the connections of removed namespaces closed.
async fn watch_registry(
    nats: Arc<Nats>,
    auth: Arc<crate::auth::Auth>,
    shards: Vec<mpsc::Sender<ShardCmd>>,
) {
    loop {
        let mut watch = match nats.registry.watch_with_history("registry").await {
            Ok(w) => w,
            Err(e) => {
                eprintln!("flux: cluster: watching the namespace registry: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(entry) = watch.next().await {
            let Ok(entry) = entry else { break };
            if entry.operation != kv::Operation::Put {
                continue;
            }
            let a = auth.clone();
            let value = entry.value.clone();
            // A file write and fsync: off the runtime's thread.
            let removed =
                tokio::task::spawn_blocking(move || a.registry.replace_from(&value)).await;
            match removed {
                Ok(Ok(removed)) if !removed.is_empty() => {
                    let _ = shards[0]
                        .clone()
                        .send(ShardCmd::Revoke {
                            namespaces: removed,
                        })
                        .await;
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    eprintln!("flux: cluster: the cluster's namespace registry is unreadable: {e}")
                }
                Err(e) => eprintln!("flux: cluster: loading the namespace registry: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
