//! `POST /api/events` and `POST /api/events/batch`.
//!
//! The routing shard parses and validates, gives every event its id, and encodes the
//! events into one `EventBatch` per owning shard. Local events are applied in place;
//! each other shard gets one message per request, never one per event. The response
//! goes out only after every owning shard has applied its part (read your writes).

use super::Request;
use crate::auth::rate::Refused;
use crate::auth::{self, Denied, IdVerdict, LocalNs, Tally, WriteScope};
use crate::event::EventBatch;
use crate::http::respond;
use crate::ingest::decode::{DecodeError, EventRef};
use crate::json;
use crate::limits::{BATCH_EVENTS_MAX, BATCH_YIELD_BYTES_MIN};
use crate::shard::Shard;
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
    let scope = match req.principal.write_scope() {
        Ok(s) => s,
        Err(d) => return super::denied(shard, out, req, d),
    };
    body.clear();
    let now = time::now_ms();
    let mut batch = EventBatch::default();
    let decoded = shard.decoder.borrow_mut().decode_single(req.body, |ev| {
        let id = ev.entity_id.as_bytes();
        let charged = crate::auth::local(shard).check_write(&scope, id)?;
        let mut id_buf = [0u8; 36];
        let event_id = event_id(shard, ev, now, &mut id_buf);
        write_ack(body, event_id, ev.stream);
        batch.buf.reserve(req.body.len() + 64);
        batch.push_event(ev, event_id, ev.timestamp_ms.unwrap_or(now));
        batch.client_ids = ev.event_id.is_some();
        Ok((shard.owner(id), charged))
    });
    let (owner, charged) = match decoded {
        Ok(Ok(v)) => v,
        Ok(Err(verdict)) => return id_refused(shard, out, req, verdict),
        Err(e) => {
            respond::error(out, 400, req.persist, b"", decode_error_message(&e));
            return;
        }
    };
    if let Some(ns) = charged.as_ref().or(match &scope {
        WriteScope::Own(ns) => Some(ns),
        _ => None,
    }) {
        if let Err(r) = crate::auth::local(shard).spend(&shard.shared.limits, shard.count, ns, 1) {
            return rate_limited(out, shard, req, r, ns, 1);
        }
    }
    let sync = shard.sync_always() || req.sync_always;
    let result = crate::cluster::write::apply_single(shard, owner, &mut batch, sync).await;
    match result {
        Ok(()) => respond::json(out, 200, req.persist, b"", body),
        Err(e) => super::apply_failed(out, req, &e),
    }
}

/// 400 or 403 for an event whose entity id the token may not write.
#[cold]
fn id_refused(shard: &Shard, out: &mut Vec<u8>, req: &Request<'_>, verdict: IdVerdict) {
    match verdict {
        IdVerdict::Forbidden => super::denied(shard, out, req, Denied(403, auth::FORBIDDEN_WRITE)),
        IdVerdict::Invalid(msg) => respond::error(out, 400, req.persist, b"", msg),
        IdVerdict::Ok => unreachable!("not a refusal"),
    }
}

/// 429 with `Retry-After`.
#[cold]
pub fn rate_limited(
    out: &mut Vec<u8>,
    shard: &Shard,
    req: &Request<'_>,
    r: Refused,
    ns: &LocalNs,
    n: u64,
) {
    crate::metrics::ShardCounters::bump(
        &crate::metrics::registry(shard).shard(shard.id).rate_limited,
        1,
    );
    let per_minute = shard.shared.limits.rate_limit().unwrap_or(0);
    let (secs, msg) = match r {
        Refused::RetryAfter(s) => (
            s,
            format!(
                "namespace {} is over its rate limit of {per_minute} events per minute; \
                 nothing was applied",
                ns.name()
            ),
        ),
        Refused::TooLarge => (
            60,
            format!(
                "{n} events for namespace {} exceed its whole rate limit of {per_minute} \
                 events per minute; send smaller batches",
                ns.name()
            ),
        ),
    };
    let extra = format!("Retry-After: {secs}\r\n");
    respond::error(out, 429, req.persist, extra.as_bytes(), &msg);
}

pub async fn post_batch(
    shard: &Shard,
    req: &Request<'_>,
    out: &mut Vec<u8>,
    body: &mut Vec<u8>,
    results: &mut Vec<u8>,
) {
    let scope = match req.principal.write_scope() {
        Ok(s) => s,
        Err(d) => return super::denied(shard, out, req, d),
    };
    let now = time::now_ms();
    let mut batches: Vec<EventBatch> = (0..shard.count).map(|_| EventBatch::default()).collect();
    results.clear();
    let mut failed = 0usize;
    let mut forbidden = 0usize;
    let mut first_error: Option<String> = None;
    let mut tally = Tally::default();
    let decoded = shard
        .decoder
        .borrow_mut()
        .decode_batch(req.body, |idx, ev| {
            if idx > 0 {
                results.push(b',');
            }
            let checked = ev.and_then(|ev| {
                match crate::auth::local(shard).check_write(&scope, ev.entity_id.as_bytes()) {
                    Ok(charged) => Ok((ev, charged)),
                    Err(IdVerdict::Invalid(msg)) => Err(msg),
                    Err(_) => {
                        forbidden += 1;
                        Err(auth::FORBIDDEN_WRITE)
                    }
                }
            });
            match checked {
                Ok((ev, charged)) => {
                    if let Some(ns) = &charged {
                        tally.add(ns, 1);
                    }
                    let mut id_buf = [0u8; 36];
                    let id = event_id(shard, ev, now, &mut id_buf);
                    write_ack(results, id, ev.stream);
                    let owner = shard.owner(ev.entity_id.as_bytes());
                    let part = &mut batches[owner.index()];
                    if part.buf.capacity() == 0 {
                        // Records take about 1.2x the request's bytes of an event (the
                        // id and fixed fields added, JSON syntax dropped): room for
                        // this shard's share, so the buffer does not grow by copying.
                        part.buf.reserve(req.body.len() / shard.count * 3 / 2 + 256);
                    }
                    part.push_event(ev, id, ev.timestamp_ms.unwrap_or(now));
                    part.client_ids |= ev.event_id.is_some();
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
        let status = if forbidden > 0 { 403 } else { 400 };
        let msg = if forbidden > 0 {
            format!(
                "{forbidden} of {total} events write outside this token's namespace, \
                 nothing was applied"
            )
        } else {
            format!(
                "{failed} of {total} events are invalid, nothing was applied; first: {}",
                first_error.as_deref().unwrap_or("")
            )
        };
        body.extend_from_slice(b"{\"error\":");
        json::write_str(body, msg.as_bytes());
        body.extend_from_slice(b",\"successful\":0,\"failed\":");
        json::write_u64(body, failed as u64);
        body.extend_from_slice(b",\"results\":[");
        body.extend_from_slice(results);
        body.extend_from_slice(b"]}");
        respond::json(out, status, req.persist, b"", body);
        return;
    }
    if let WriteScope::Own(ns) = &scope {
        tally.add(ns, total as u64);
    }
    if !tally.is_empty() {
        if let Err((r, ns)) =
            crate::auth::local(shard).spend_all(&shard.shared.limits, shard.count, &tally)
        {
            let n = tally.count(&ns);
            return rate_limited(out, shard, req, r, &ns, n);
        }
    }

    if req.body.len() >= BATCH_YIELD_BYTES_MIN && glommio::executor().need_preempt() {
        // Decoding a large batch held the shard past its time slice: let requests that
        // arrived meanwhile run before it is applied. Nothing of the batch is visible
        // yet, and applying stays one step per owner, so it stays atomic. Two yields:
        // the first lets the executor poll for I/O, which queues the tasks it wakes
        // behind this one; the second puts this one behind them.
        glommio::yield_if_needed().await;
        futures_lite::future::yield_now().await;
    }
    let sync = shard.sync_always() || req.sync_always;
    let result = crate::cluster::write::apply_batch(shard, &mut batches, sync).await;
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
