//! `POST /api/events` and `POST /api/events/batch`.
//!
//! The routing shard parses and validates, gives every event its id, and encodes the
//! events into one `EventBatch` per owning shard. Local events are applied in place;
//! each other shard gets one message per request, never one per event. The response
//! goes out only after every owning shard has applied its part (read your writes).

use super::Request;
use crate::event::EventBatch;
use crate::http::respond;
use crate::ingest::decode::{DecodeError, EventRef};
use crate::json;
use crate::limits::BATCH_EVENTS_MAX;
use crate::shard::{ApplyError, Shard, ShardId};
use crate::time;

/// The id to report: the client's, or a fresh UUIDv7 written into `buf`.
#[inline]
fn event_id<'a>(
    shard: &Shard,
    ev: &'a EventRef<'_>,
    now_ms: u64,
    buf: &'a mut [u8; 36],
) -> &'a [u8] {
    match ev.event_id {
        Some(id) => id.as_bytes(),
        None => shard.ids.borrow_mut().next_str(now_ms, buf),
    }
}

/// `{"eventId":"…","stream":"…"}`
#[inline]
fn write_ack(out: &mut Vec<u8>, event_id: &[u8], stream: &str) {
    out.extend_from_slice(b"{\"eventId\":");
    json::write_str(out, event_id);
    out.extend_from_slice(b",\"stream\":");
    json::write_str(out, stream.as_bytes());
    out.push(b'}');
}

fn decode_error_message(e: &DecodeError) -> &str {
    match e {
        DecodeError::InvalidJson(m) | DecodeError::Invalid(m) => m,
    }
}

pub async fn post_event(shard: &Shard, req: &Request<'_>, out: &mut Vec<u8>, body: &mut Vec<u8>) {
    body.clear();
    let now = time::now_ms();
    let mut batch = EventBatch::default();
    let decoded = shard.decoder.borrow_mut().decode_single(req.body, |ev| {
        let mut id_buf = [0u8; 36];
        let id = event_id(shard, ev, now, &mut id_buf);
        write_ack(body, id, ev.stream);
        batch.buf.reserve(req.body.len() + 64);
        batch.push_event(ev, id, ev.timestamp_ms.unwrap_or(now));
        shard.owner(ev.entity_id.as_bytes())
    });
    let owner = match decoded {
        Ok(owner) => owner,
        Err(e) => {
            respond::error(out, 400, req.persist, b"", decode_error_message(&e));
            return;
        }
    };
    let sync = shard.sync_always() || req.sync_always;
    let result = if owner == shard.id {
        match shard.apply_local(&mut batch) {
            Ok(end) if sync => shard.sync_to(end).await,
            r => r.map(|_| ()),
        }
    } else {
        match shard.mesh.send_apply(owner, batch, sync).await {
            Ok(rx) => rx.await.unwrap_or(Err(ApplyError::Unavailable)),
            Err(_) => Err(ApplyError::Unavailable),
        }
    };
    match result {
        Ok(()) => respond::json(out, 200, req.persist, b"", body),
        Err(e) => super::apply_failed(out, req, &e),
    }
}

pub async fn post_batch(
    shard: &Shard,
    req: &Request<'_>,
    out: &mut Vec<u8>,
    body: &mut Vec<u8>,
    results: &mut Vec<u8>,
) {
    let now = time::now_ms();
    let mut batches: Vec<EventBatch> = (0..shard.count).map(|_| EventBatch::default()).collect();
    results.clear();
    let mut failed = 0usize;
    let mut first_error: Option<String> = None;
    let decoded = shard
        .decoder
        .borrow_mut()
        .decode_batch(req.body, |idx, ev| {
            if idx > 0 {
                results.push(b',');
            }
            match ev {
                Ok(ev) => {
                    let mut id_buf = [0u8; 36];
                    let id = event_id(shard, ev, now, &mut id_buf);
                    write_ack(results, id, ev.stream);
                    let owner = shard.owner(ev.entity_id.as_bytes());
                    batches[owner.index()].push_event(ev, id, ev.timestamp_ms.unwrap_or(now));
                }
                Err(msg) => {
                    failed += 1;
                    json::write_error(results, msg);
                    if first_error.is_none() {
                        first_error = Some(format!("event {idx}: {msg}"));
                    }
                }
            }
        });
    let total = match decoded {
        Ok(n) => n,
        Err(e) => {
            respond::error(out, 400, req.persist, b"", decode_error_message(&e));
            return;
        }
    };
    if total > BATCH_EVENTS_MAX {
        respond::error(
            out,
            400,
            req.persist,
            b"",
            "too many events in one batch (at most 100000)",
        );
        return;
    }
    body.clear();
    if failed > 0 {
        let msg = format!(
            "{failed} of {total} events are invalid, nothing was applied; first: {}",
            first_error.as_deref().unwrap_or("")
        );
        body.extend_from_slice(b"{\"error\":");
        json::write_str(body, msg.as_bytes());
        body.extend_from_slice(b",\"successful\":0,\"failed\":");
        json::write_u64(body, failed as u64);
        body.extend_from_slice(b",\"results\":[");
        body.extend_from_slice(results);
        body.extend_from_slice(b"]}");
        respond::json(out, 400, req.persist, b"", body);
        return;
    }

    let result = apply_parts(shard, &mut batches, shard.sync_always() || req.sync_always).await;
    if let Err(e) = result {
        super::apply_failed(out, req, &e);
        return;
    }
    body.extend_from_slice(b"{\"successful\":");
    json::write_u64(body, total as u64);
    body.extend_from_slice(b",\"failed\":0,\"results\":[");
    body.extend_from_slice(results);
    body.extend_from_slice(b"]}");
    respond::json(out, 200, req.persist, b"", body);
}

/// Applies one request's parts on their owning shards. A single owner takes one
/// frame there; several owners go through the coordinator's intent (`log::txn`), so a
/// crash leaves the batch entirely present or entirely absent.
async fn apply_parts(
    shard: &Shard,
    batches: &mut [EventBatch],
    sync: bool,
) -> Result<(), ApplyError> {
    let me = shard.id.index();
    let owners = batches.iter().filter(|b| !b.is_empty()).count();
    let mut own_end = None;
    let mut txn = None;
    if owners > 1 {
        // Every part carries the ingest time in the intent, for a redo at recovery.
        let now = crate::time::now_ms();
        for b in batches.iter_mut() {
            b.stamp_ingest(now);
        }
        let mut own = std::mem::take(&mut batches[me]);
        let others: Vec<(u16, &EventBatch)> = batches
            .iter()
            .enumerate()
            .filter(|(i, b)| *i != me && !b.is_empty())
            .map(|(i, b)| (i as u16, b))
            .collect();
        let (t, end) = shard.apply_intent(&mut own, &others)?;
        txn = Some(t);
        own_end = Some(end);
    }
    // Ship every remote part, then (single-owner case) apply the local one, then wait.
    let mut pending = Vec::new();
    let mut result: Result<(), ApplyError> = Ok(());
    for (i, batch) in batches.iter_mut().enumerate() {
        if i == me || batch.is_empty() {
            continue;
        }
        let mut part = std::mem::take(batch);
        part.txn = txn;
        match shard.mesh.send_apply(ShardId(i as u16), part, sync).await {
            Ok(rx) => pending.push(rx),
            Err(_) => result = Err(ApplyError::Unavailable),
        }
    }
    if own_end.is_none() && !batches[me].is_empty() {
        own_end = Some(shard.apply_local(&mut batches[me])?);
    }
    if let (Some(end), true) = (own_end, sync) {
        result = result.and(shard.sync_to(end).await);
    }
    for rx in pending {
        result = result.and(rx.await.unwrap_or(Err(ApplyError::Unavailable)));
    }
    if let Some(t) = txn {
        shard.close_intent(t, result.is_ok());
    }
    result
}
