//! Writing one request's events on their owning shards, and the protocol that makes a
//! batch spanning several shards atomic and its answer truthful.
//!
//! A 200 means every event is applied (visible to reads and subscribers) and logged
//! per `FLUX_SYNC`; an error means none of it is visible, now or after any restart.
//! The single exception is a failed fdatasync (`NotDurable`): the events are applied
//! but their durability is unknown, and the shard fails (see `log::durable`).
//!
//! The coordinator is the shard that parsed the batch. Its steps, what can fail at
//! each, and what the client and a recovery then see:
//!
//! | step | what happens | a failure here | client gets | after a crash here |
//! |---|---|---|---|---|
//! | 1 hold | room for each other owner's part is held against the log room that shard publishes (`Shared::log_room`: what its active segment has left, or a whole segment when a spare is ready; 0 once its log failed), a compare-and-swap on `Shared::log_held`, no message; only when the room is short is the shard asked to make some (`Request::Hold`: a spare now) or say why it cannot; nothing is written or applied | a participant's log failed, disk full, the part too large, the shard unreachable | 503, abandoned: holds given back | absent (nothing logged) |
//! | 2 commit | the coordinator appends the *intent* (every part) and applies its own part | the append fails (disk full, log failed) | 503, abandoned: holds given back | absent if the intent is not in the log, complete if it is (recovery re-applies missing parts from it) |
//! | 3 parts | each owner appends its part (a `FRAME_PART` tagged with the txn) and applies it | cannot fail for lack of room (held); if the log failed since the hold, the part is applied in memory and that shard fails (its redo at recovery comes from the intent) | 200 | complete (parts missing from a log are re-applied from the intent) |
//! | 4 done | once every part is durable, the coordinator appends `FRAME_DONE` | (best effort) | 200 | complete; with DONE recovery re-applies nothing |
//!
//! With `FLUX_SYNC=always` (or `X-Flux-Sync: always`) step 3 waits for every owner's
//! sync, and the coordinator's intent is synced before the answer. DONE is what lets
//! recovery skip a batch's parts, so it is written only once every part is durable:
//! at once with `always`, after the participants' next interval syncs with
//! `interval` (`pending_done`, checked after each of the coordinator's syncs), at once
//! with `none` (which promises nothing across a power loss).
//!
//! Recovery's rules (the intent decides) are in `log::txn`; the failure points are
//! tested in `tests/txn.rs` with the failpoints `txn-abort:<step>`,
//! `txn-intent-fails`, `txn-unavailable:<shard>`, `txn-part-append-fails:<shard>`
//! and `enospc-marker`.

use std::sync::atomic::Ordering;

use super::{ApplyError, FrameShape, Shard, ShardId};
use crate::config::SyncMode;
use crate::event::EventBatch;
use crate::log::frame::frame_len;
use crate::log::txn as txnlog;
use crate::log::FRAME_DONE;

/// A coordinated batch whose DONE waits for its parts to be durable.
pub struct PendingDone {
    txn: u64,
    /// (participant, LSN just past its part).
    parts: Vec<(ShardId, u64)>,
}

/// Test hook: the process aborts at `step` of a cross-shard batch, like `kill -9`.
fn abort_at(step: &str) {
    if crate::failpoint::on_with("txn-abort", step) {
        eprintln!("flux: failpoint txn-abort:{step}");
        std::process::abort();
    }
}

/// Applies one request's parts (`batches[i]` for shard `i`) on their owning shards.
/// A single owner takes one frame there; several owners go through the protocol in
/// the module doc.
pub async fn apply_batch(
    shard: &Shard,
    batches: &mut [EventBatch],
    sync: bool,
) -> Result<(), ApplyError> {
    let owners: Vec<usize> = (0..batches.len())
        .filter(|&i| !batches[i].is_empty())
        .collect();
    match owners[..] {
        [] => Ok(()),
        [only] => apply_single(shard, ShardId(only as u16), &mut batches[only], sync).await,
        _ => apply_across(shard, batches, &owners, sync).await,
    }
}

/// Every event belongs to `owner`: one frame there.
pub async fn apply_single(
    shard: &Shard,
    owner: ShardId,
    batch: &mut EventBatch,
    sync: bool,
) -> Result<(), ApplyError> {
    if owner == shard.id {
        let end = shard.apply_local(batch)?;
        if sync {
            shard.sync_to(end).await?;
        }
        return Ok(());
    }
    match shard
        .mesh
        .send_apply(owner, std::mem::take(batch), sync)
        .await
    {
        Ok(rx) => rx.await.unwrap_or(Err(ApplyError::Unavailable)).map(|_| ()),
        Err(_) => Err(ApplyError::Unavailable),
    }
}

/// Room held for a batch's parts on their shards (`Shared::log_held`), given back when
/// dropped: at once if the batch is abandoned, once the parts are appended if it
/// commits.
struct Holds<'a> {
    shared: &'a super::Shared,
    granted: Vec<(ShardId, u64)>,
}

impl Holds<'_> {
    /// Holds `need` frame bytes on `to` if its published room allows (no message).
    fn try_hold(&mut self, to: ShardId, need: u64) -> bool {
        let held = &self.shared.log_held[to.index()];
        let room = &self.shared.log_room[to.index()];
        let mut h = held.load(Ordering::Acquire);
        // Bound: each failed exchange means another coordinator's hold or release went in.
        loop {
            if h + need > room.load(Ordering::Acquire) {
                return false;
            }
            match held.compare_exchange_weak(h, h + need, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.granted.push((to, need));
                    return true;
                }
                Err(now) => h = now,
            }
        }
    }
}

impl Drop for Holds<'_> {
    fn drop(&mut self) {
        for (to, need) in self.granted.drain(..) {
            self.shared.log_held[to.index()].fetch_sub(need, Ordering::AcqRel);
        }
    }
}

async fn apply_across(
    shard: &Shard,
    batches: &mut [EventBatch],
    owners: &[usize],
    sync: bool,
) -> Result<(), ApplyError> {
    let me = shard.id.index();
    // Held from before the intent until every part is applied: a backup's cut never
    // falls inside the batch (`backup`).
    let _inside = shard.shared.backup_gate.enter().await;
    // Every part carries the ingest time in the intent, for a redo at recovery.
    let now = crate::time::now_ms();
    for &i in owners {
        batches[i].stamp_ingest(now);
    }
    let seq = shard.txn_seq.get() + 1;
    shard.txn_seq.set(seq);
    let txn = txnlog::txn_id(shard.id.0, seq);
    let participants: Vec<ShardId> = owners
        .iter()
        .filter(|&&i| i != me)
        .map(|&i| ShardId(i as u16))
        .collect();

    // 1. Holds: room for every other owner's part, against the room that shard
    // published. Usually no message is needed; a shard whose published room is short
    // is asked to make room (a spare segment) and answers why not if it cannot.
    let mut holds = Holds {
        shared: &shard.shared,
        granted: Vec::with_capacity(participants.len()),
    };
    let mut refused: Option<ApplyError> = None;
    let mut short = Vec::new();
    for &to in &participants {
        if crate::failpoint::arg("txn-unavailable")
            .is_some_and(|a| a.is_empty() || a == to.0.to_string())
        {
            refused.get_or_insert(ApplyError::Unavailable);
            continue;
        }
        // The part's frame at most: `Shard::log_and_apply` reserves the same bound.
        let len = FrameShape::Part { txn: 0 }.payload_bound(&batches[to.index()]);
        let need = frame_len(len) as u64;
        if !holds.try_hold(to, need) {
            match shard.mesh.send_hold(to, len).await {
                Ok(rx) => short.push((to, need, rx)),
                Err(_) => {
                    refused.get_or_insert(ApplyError::Unavailable);
                }
            }
        }
    }
    for (to, need, rx) in short {
        match rx.await.unwrap_or(Err(ApplyError::Unavailable)) {
            Ok(()) if holds.try_hold(to, need) => {}
            Ok(()) => {
                refused.get_or_insert(ApplyError::Storage(format!(
                    "shard {}: too many cross-shard parts wait for its log room; try again",
                    to.0
                )));
            }
            Err(e) => {
                refused.get_or_insert(refused_by(to, e));
            }
        }
    }
    if let Some(e) = refused {
        return Err(e); // `holds` gives back what was granted
    }
    abort_at("after-holds");

    // 2. Commit: the intent, and our own part applied from it.
    let mut own = std::mem::take(&mut batches[me]);
    let others: Vec<(u16, &EventBatch)> = participants
        .iter()
        .map(|to| (to.0, &batches[to.index()]))
        .collect();
    let own_end = shard.apply_intent(txn, &mut own, &others)?;
    abort_at("after-intent");

    // 3. Parts: cannot be refused for room; every owner applies its part.
    let mut pending = Vec::with_capacity(participants.len());
    let mut undelivered = None;
    for &to in &participants {
        let mut part = std::mem::take(&mut batches[to.index()]);
        part.txn = Some(txn);
        match shard.mesh.send_apply(to, part, sync).await {
            Ok(rx) => pending.push((to, rx)),
            // Peers serve requests until every shard has drained, and this one has
            // not: unreachable in practice, answered truthfully all the same.
            Err(_) => undelivered = Some(to),
        }
    }
    let mut result = Ok(());
    if sync {
        result = shard.sync_to(own_end).await;
    }
    let mut parts = Vec::with_capacity(pending.len());
    let mut all_logged = true;
    for (to, rx) in pending {
        match rx.await {
            Ok(Ok(applied)) => {
                all_logged &= applied.logged;
                parts.push((to, applied.end_lsn));
            }
            // Applied (a part is never refused) but the sync failed there: that shard
            // has failed; our intent holds the part, durable if our own sync was.
            Ok(Err(_)) => all_logged = false,
            Err(_) => undelivered = Some(to),
        }
    }
    // Every part is appended (or will never be): the room held for them goes back.
    drop(holds);
    if let Some(to) = undelivered {
        return Err(ApplyError::Incomplete(format!(
            "the batch is committed but shard {} did not confirm its part; the next start \
             completes it from the batch's intent",
            to.0
        )));
    }
    abort_at("after-parts");

    // 4. DONE, once every part is durable.
    if all_logged && result.is_ok() {
        finish(shard, txn, parts, sync);
    }
    abort_at("after-done");
    result
}

/// Names the shard in a refusal of its hold.
fn refused_by(to: ShardId, e: ApplyError) -> ApplyError {
    match e {
        ApplyError::Storage(m) => ApplyError::Storage(format!("shard {}: {m}", to.0)),
        ApplyError::Failed(m) => ApplyError::Failed(format!("shard {}: {m}", to.0)),
        e => e,
    }
}

/// Writes DONE for `txn` now if its parts are durable (or need not be), else queues it
/// for `flush_done`.
fn finish(shard: &Shard, txn: u64, parts: Vec<(ShardId, u64)>, synced: bool) {
    let wait = matches!(shard.config.sync, SyncMode::Interval { .. }) && !synced;
    if wait && !all_durable(shard, &parts) {
        shard
            .pending_done
            .borrow_mut()
            .push(PendingDone { txn, parts });
        return;
    }
    write_done(shard, txn);
}

fn all_durable(shard: &Shard, parts: &[(ShardId, u64)]) -> bool {
    parts.iter().all(|(to, end)| {
        shard.shared.durable_lsn[to.index()].load(std::sync::atomic::Ordering::Acquire) >= *end
    })
}

/// Writes the DONE frames whose parts have become durable (called after each of this
/// shard's interval syncs).
pub fn flush_done(shard: &Shard) {
    let ready: Vec<u64> = {
        let mut pending = shard.pending_done.borrow_mut();
        let mut ready = Vec::new();
        pending.retain(|p| {
            let durable = all_durable(shard, &p.parts);
            if durable {
                ready.push(p.txn);
            }
            !durable
        });
        ready
    };
    for txn in ready {
        write_done(shard, txn);
    }
}

/// Appends `FRAME_DONE` for `txn` and closes its intent (a snapshot's replay point may
/// then pass it). Best effort: without it, recovery checks the parts instead.
fn write_done(shard: &Shard, txn: u64) {
    {
        let mut log = shard.log.borrow_mut();
        let Some(log) = log.as_mut() else { return };
        if log.reserve(txnlog::TXN_BYTES).is_ok() {
            log.append(FRAME_DONE, &txn.to_le_bytes());
            shard.open_intents.borrow_mut().remove(&txn);
        }
    }
    shard.note_rolls();
}
