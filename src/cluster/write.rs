//! A request's writes in cluster mode: its parts regrouped by partition group, each
//! sent to its group's owner (this shard, another shard of this node, or another
//! node), with an intent first when they span groups (see the module doc of
//! `cluster`).

use std::time::Duration;

use super::owner::{self, WriteError};
use super::{group_of, local, shard_of_group, Cluster, Route};
use crate::event::{EventBatch, Properties, Record};
use crate::shard::{ApplyError, Shard};

/// How long a write waits for a group that nobody serves (being taken over).
const NOBODY_WAIT: Duration = Duration::from_secs(3);
/// How long a committed batch's part is sent again before the answer says
/// "committed, completed later" (the owners' redo of intents completes it).
const PART_WAIT: Duration = Duration::from_secs(20);

/// Applies one request's per-shard parts (`batches[i]` for shard `i`, as the API
/// builds them) on their owners: through the shard layer on a single node, through
/// the groups' owners and streams in cluster mode.
pub async fn apply_batch(
    shard: &Shard,
    batches: &mut [EventBatch],
    sync: bool,
) -> Result<(), ApplyError> {
    let Some(l) = local(shard) else {
        return crate::shard::txn::apply_batch(shard, batches, sync).await;
    };
    let cluster = l.cluster.clone();
    let mut parts: Vec<EventBatch> = (0..cluster.groups).map(|_| EventBatch::default()).collect();
    for b in batches.iter() {
        for r in Records::new(&b.buf) {
            let (rec, bytes) = r;
            let p = &mut parts[group_of(rec.entity_id, cluster.groups) as usize];
            p.buf.extend_from_slice(bytes);
            p.count += 1;
            p.props += Properties(rec.properties).count() as u32;
            p.client_ids |= b.client_ids;
        }
    }
    write_groups(shard, &cluster, parts).await
}

/// One owner's records (see [`apply_batch`]).
pub async fn apply_single(
    shard: &Shard,
    owner: crate::shard::ShardId,
    batch: &mut EventBatch,
    sync: bool,
) -> Result<(), ApplyError> {
    if local(shard).is_none() {
        return crate::shard::txn::apply_single(shard, owner, batch, sync).await;
    }
    apply_batch(shard, std::slice::from_mut(batch), sync).await
}

struct Records<'a>(&'a [u8]);

impl<'a> Records<'a> {
    fn new(b: &'a [u8]) -> Self {
        Records(b)
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = (Record<'a>, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let (r, len) = Record::parse(self.0)?;
        let bytes = &self.0[..len];
        self.0 = &self.0[len..];
        Some((r, bytes))
    }
}

async fn write_groups(
    shard: &Shard,
    cluster: &Cluster,
    mut parts: Vec<EventBatch>,
) -> Result<(), ApplyError> {
    let groups: Vec<usize> = (0..parts.len()).filter(|&g| !parts[g].is_empty()).collect();
    for &g in &groups {
        cluster.check_size("a group's part", parts[g].buf.len())?;
    }
    match groups[..] {
        [] => Ok(()),
        [g] => write_part(
            shard,
            cluster,
            g as u16,
            std::mem::take(&mut parts[g]),
            None,
        )
        .await
        .map_err(ApplyError::from),
        _ => {
            // The intent is the commit point: after it, every part is applied
            // (here, or by the owners' redo of intents).
            let encoded = {
                let list: Vec<(u16, &[u8])> = groups
                    .iter()
                    .map(|&g| (g as u16, &parts[g].buf[..]))
                    .collect();
                super::txn::encode(&list)
            };
            cluster.check_size("the batch", encoded.len())?;
            let (tx, rx) = futures_channel::oneshot::channel();
            cluster
                .bridge()
                .send(super::bridge::Cmd::Intent {
                    payload: encoded.into(),
                    reply: tx,
                })
                .await
                .map_err(ApplyError::Storage)?;
            let txn = rx
                .await
                .unwrap_or_else(|_| Err("the NATS bridge dropped the intent".into()))
                .map_err(|e| {
                    // It may be stored all the same: then the owners' redo of intents
                    // applies it.
                    ApplyError::Unknown(format!(
                        "the batch's intent was not acknowledged ({e}); it may or may not \
                         be applied: retry with the same eventIds"
                    ))
                })?;
            let calls: Vec<_> = groups
                .iter()
                .map(|&g| {
                    write_part(
                        shard,
                        cluster,
                        g as u16,
                        std::mem::take(&mut parts[g]),
                        Some(txn),
                    )
                })
                .collect();
            let results = crate::shard::join_all(calls).await;
            match results.into_iter().find_map(Result::err) {
                None => {
                    let _ = cluster
                        .bridge()
                        .try_send(super::bridge::Cmd::IntentDone { txn });
                    Ok(())
                }
                Some(e) => Err(ApplyError::Incomplete(format!(
                    "the batch is committed but a part is not applied yet ({}); its group's \
                     owner completes it within seconds",
                    crate::shard::describe(&ApplyError::from(e))
                ))),
            }
        }
    }
}

/// Sends group `g`'s part to its owner and waits for its answer.
async fn write_part(
    shard: &Shard,
    cluster: &Cluster,
    g: u16,
    batch: EventBatch,
    txn: Option<u64>,
) -> Result<(), WriteError> {
    let started = std::time::Instant::now();
    let wait = if txn.is_some() {
        PART_WAIT
    } else {
        NOBODY_WAIT
    };
    // Bound: every turn either answers, or waits 100 ms within `wait`.
    loop {
        match cluster.route(g) {
            Route::Here if txn.is_none() => {
                return apply_on_owner_shard(shard, cluster, g, batch, txn).await
            }
            Route::Here => {
                let again = EventBatch {
                    buf: batch.buf.clone(),
                    count: batch.count,
                    props: batch.props,
                    txn: None,
                    client_ids: batch.client_ids,
                };
                match apply_on_owner_shard(shard, cluster, g, again, txn).await {
                    Ok(()) => return Ok(()),
                    Err(e) if started.elapsed() >= wait => return Err(e),
                    Err(_) => {}
                }
            }
            Route::Node(url) => {
                let mut target = format!("/api/internal/part?group={g}");
                if let Some(t) = txn {
                    target.push_str(&format!("&txn={t}"));
                }
                if batch.client_ids {
                    target.push_str("&ids=client");
                }
                let auth = cluster.peer_auth.as_deref().map(str::as_bytes);
                let headers = super::peer::headers(&cluster.node, auth);
                let peers = &local(shard).expect("cluster mode").peers;
                match peers
                    .request(&url, "POST", target.as_bytes(), &headers, &batch.buf)
                    .await
                {
                    Ok(a) if a.status == 200 => return Ok(()),
                    Ok(a) if (a.status == 409 || a.status == 503) && started.elapsed() < wait => {}
                    Ok(a) => {
                        let why = format!(
                            "node {url} answered {}: {}",
                            a.status,
                            String::from_utf8_lossy(&a.body)
                        );
                        return Err(if a.status == 504 {
                            WriteError::Unknown(why)
                        } else {
                            WriteError::Unavailable(why)
                        });
                    }
                    Err(e) if started.elapsed() < wait => {
                        eprintln!("flux: cluster: {e}; retrying");
                    }
                    // The request may have reached the owner before its answer was lost.
                    Err(e) => {
                        return Err(WriteError::Unknown(format!(
                            "{e}; the part may or may not be applied"
                        )))
                    }
                }
            }
            Route::Nobody if started.elapsed() < wait => {}
            Route::Nobody => {
                return Err(WriteError::Unavailable(format!(
                    "no node serves group {g} right now (it is being taken over); retry"
                )))
            }
        }
        glommio::timer::sleep(Duration::from_millis(100)).await;
    }
}

/// Applies group `g`'s part on this node's shard that holds it.
pub async fn apply_on_owner_shard(
    shard: &Shard,
    cluster: &Cluster,
    g: u16,
    batch: EventBatch,
    txn: Option<u64>,
) -> Result<(), WriteError> {
    let to = shard_of_group(g, cluster.groups, cluster.shards);
    if to == shard.id {
        return owner::apply_part(shard, g, batch, txn).await;
    }
    shard
        .mesh
        .run(to, move |s, reply| {
            let s = s.clone();
            glommio::spawn_local(async move {
                let _ = reply.send(owner::apply_part(&s, g, batch, txn).await);
            })
            .detach();
        })
        .await
        .map_err(|_| WriteError::Unavailable("the shard is shutting down".into()))?
}
