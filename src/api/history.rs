//! `GET /api/events?entity=ID&since=RFC3339&limit=N`: an entity's stored events,
//! newest first. The owning shard follows the entity's `prev_lsn` chain through its
//! log from the newest event, so the cost is proportional to the answer, not to the
//! log. `since` compares with the ingest time (the chain's order), which lets the walk
//! stop at the first older event.
//!
//! The owner renders the answer a page at a time (`HISTORY_PAGE_BYTES` of events, at
//! least one event), so neither shard holds more than a page of it: an answer that
//! fits one page is sent whole with a Content-Length, a longer one is streamed
//! (chunked, like a listing) while the routing shard asks the owner for the next page
//! from where the last one stopped. A walk continued from an LSN sees the chain as it
//! was: records in the log never change, and events written meanwhile are newer.

use std::io;

use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;

use super::Request;
use crate::event::{Properties, Record, KIND_EVENT};
use crate::http::query::{percent_decode, query_pairs};
use crate::http::respond::{self, Persist};
use crate::json;
use crate::limits::{HISTORY_PAGE_BYTES, WRITE_FLUSH_BYTES};
use crate::log::ShardLog;
use crate::shard::mesh::Unavailable;
use crate::shard::{Shard, ShardId};
use crate::state::Store;
use crate::time;

pub const HISTORY_LIMIT_DEFAULT: usize = 100;
pub const HISTORY_LIMIT_MAX: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    pub entity: Vec<u8>,
    pub since_ms: Option<u64>,
    /// Events still wanted.
    pub limit: usize,
    /// Where the walk goes on (the LSN of the next record of the chain); `None`: from
    /// the entity's newest event.
    pub from_lsn: Option<u64>,
}

/// Rendered events of one page: event objects separated by commas, no brackets.
#[derive(Debug, Default)]
pub struct HistoryPage {
    pub json: Vec<u8>,
    pub events: usize,
    /// Where the next page starts; `None` once the answer is complete (limit reached,
    /// chain ended, or `since` passed).
    pub next_lsn: Option<u64>,
}

impl HistoryQuery {
    pub fn parse(query: Option<&[u8]>) -> Result<Self, &'static str> {
        let mut entity = None;
        let mut since_ms = None;
        let mut limit = HISTORY_LIMIT_DEFAULT;
        let (mut key, mut val) = (Vec::new(), Vec::new());
        for (k, v) in query_pairs(query.unwrap_or(b"")) {
            let bad = |_| "invalid percent-encoding in the query";
            percent_decode(k, true, &mut key).map_err(bad)?;
            percent_decode(v, true, &mut val).map_err(bad)?;
            match &key[..] {
                b"entity" => entity = Some(val.clone()),
                b"since" => {
                    let s = std::str::from_utf8(&val).map_err(|_| "since must be RFC 3339")?;
                    since_ms = Some(
                        time::parse_rfc3339_ms(s)
                            .ok_or("since must be an RFC 3339 time such as 2026-02-14T12:00:00Z")?,
                    );
                }
                b"limit" => {
                    let s = std::str::from_utf8(&val).map_err(|_| "limit must be an integer")?;
                    let n: usize = s.parse().map_err(|_| "limit must be an integer 1..=500")?;
                    if n == 0 {
                        return Err("limit must be an integer 1..=500");
                    }
                    // Larger requests are served up to the maximum, not refused.
                    limit = n.min(HISTORY_LIMIT_MAX);
                }
                _ => {}
            }
        }
        let entity = entity
            .filter(|e| !e.is_empty())
            .ok_or("the entity query parameter is required")?;
        Ok(HistoryQuery {
            entity,
            since_ms,
            limit,
            from_lsn: None,
        })
    }
}

/// Appends one stored event as the API's event object.
fn write_event(out: &mut Vec<u8>, r: &Record<'_>) {
    out.extend_from_slice(b"{\"eventId\":");
    json::write_str(out, r.event_id);
    out.extend_from_slice(b",\"stream\":");
    json::write_str(out, r.stream);
    out.extend_from_slice(b",\"source\":");
    json::write_str(out, r.source);
    out.extend_from_slice(b",\"timestamp\":");
    json::write_u64(out, r.timestamp_ms);
    if let Some(k) = r.key {
        out.extend_from_slice(b",\"key\":");
        out.extend_from_slice(k);
    }
    if let Some(s) = r.schema {
        out.extend_from_slice(b",\"schema\":");
        out.extend_from_slice(s);
    }
    out.extend_from_slice(b",\"payload\":{\"entity_id\":");
    json::write_str(out, r.entity_id);
    out.extend_from_slice(b",\"properties\":{");
    for (i, (k, v)) in Properties(r.properties).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json::write_str(out, k);
        out.push(b':');
        out.extend_from_slice(v);
    }
    out.extend_from_slice(b"}}}");
}

/// Renders the next page of the history of `q.entity` (owned by `owner`) into
/// `page`; false if the entity does not exist.
async fn page_from(
    shard: &Shard,
    owner: ShardId,
    q: HistoryQuery,
    page: &mut HistoryPage,
) -> Result<bool, Unavailable> {
    if owner == shard.id {
        return Ok(render_local(shard, &q, page));
    }
    let found = shard
        .mesh
        .ask(owner, move |s| {
            let mut page = HistoryPage::default();
            render_local(s, &q, &mut page).then_some(page)
        })
        .await?;
    match found {
        Some(p) => {
            // The page moved through the channel, not copied.
            *page = p;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// `render` on this shard's store and log.
fn render_local(shard: &Shard, q: &HistoryQuery, page: &mut HistoryPage) -> bool {
    let log = shard.log.borrow();
    let log = log.as_ref().expect("reads arrive only after recovery");
    render(&shard.store.borrow(), log, q, page)
}

/// Renders the next page of the history of `q.entity` into `page` (cleared first);
/// `false` if the walk starts at the entity's newest event and the entity does not
/// exist. Runs on the owning shard; stops once the page holds `HISTORY_PAGE_BYTES`.
pub fn render(store: &Store, log: &ShardLog, q: &HistoryQuery, page: &mut HistoryPage) -> bool {
    page.json.clear();
    page.events = 0;
    page.next_lsn = None;
    let mut lsn = match q.from_lsn {
        Some(lsn) => lsn,
        None => match store.get(&q.entity) {
            Some(e) => e.last_lsn,
            None => return false,
        },
    };
    let mut rec = Vec::new();
    // Each step moves to a strictly smaller LSN, so the walk ends; `limit` bounds it.
    while lsn != 0 && page.events < q.limit {
        if page.json.len() >= HISTORY_PAGE_BYTES {
            page.next_lsn = Some(lsn);
            break;
        }
        rec.clear();
        if log.read_record(lsn, &mut rec).is_none() {
            break;
        }
        let Some((r, _)) = Record::parse_stored(&rec) else {
            break;
        };
        if r.kind != KIND_EVENT || r.entity_id != &q.entity[..] {
            debug_assert!(false, "history chain points at a foreign record");
            break;
        }
        if q.since_ms.is_some_and(|s| r.ingest_ms < s) {
            break;
        }
        if page.events > 0 {
            page.json.push(b',');
        }
        write_event(&mut page.json, &r);
        page.events += 1;
        if r.prev_lsn >= lsn {
            break;
        }
        lsn = r.prev_lsn;
    }
    true
}

/// The rest of a history answer that did not fit one page: streamed by the connection
/// (see `stream`).
pub struct Continuation {
    owner: ShardId,
    query: HistoryQuery,
    /// The first page, already rendered.
    first: Vec<u8>,
}

/// The entity a history request names, if the query is valid (to find its owner in
/// cluster mode).
pub fn entity_param(query: Option<&[u8]>) -> Option<Vec<u8>> {
    HistoryQuery::parse(query).ok().map(|q| q.entity.to_vec())
}

pub async fn get_history(
    shard: &Shard,
    req: &Request<'_>,
    scope: &crate::auth::ReadScope,
    out: &mut Vec<u8>,
    body: &mut Vec<u8>,
) -> Option<Continuation> {
    let mut q = match HistoryQuery::parse(req.query) {
        Ok(q) => q,
        Err(msg) => {
            respond::error(out, 400, req.persist, b"", msg);
            return None;
        }
    };
    if !scope.allows(&q.entity) {
        // Another namespace's entity does not exist for this token.
        respond::error(out, 404, req.persist, b"", "entity not found");
        return None;
    }
    let owner = shard.owner(&q.entity);
    let mut page = HistoryPage::default();
    match page_from(shard, owner, q.clone(), &mut page).await {
        Ok(true) => match page.next_lsn {
            None => {
                body.clear();
                body.reserve(page.json.len() + 2);
                body.push(b'[');
                body.extend_from_slice(&page.json);
                body.push(b']');
                respond::json(out, 200, req.persist, b"", body);
                None
            }
            Some(next) => {
                q.limit -= page.events;
                q.from_lsn = Some(next);
                Some(Continuation {
                    owner,
                    query: q,
                    first: page.json,
                })
            }
        },
        Ok(false) => {
            respond::error(out, 404, req.persist, b"", "entity not found");
            None
        }
        Err(_) => {
            super::unavailable(out);
            None
        }
    }
}

/// Streams a history answer whose first page is rendered: one chunk per page, the next
/// page asked for once the previous one is written, so memory stays one page.
pub async fn stream(
    shard: &Shard,
    c: Continuation,
    persist: Persist,
    http10: bool,
    out: &mut Vec<u8>,
    stream: &mut TcpStream,
) -> io::Result<()> {
    let chunked = !http10;
    respond::stream_head(out, persist, http10);
    respond::chunk(out, b"[", chunked);
    respond::chunk(out, &c.first, chunked);
    let mut q = c.query;
    let mut page = HistoryPage {
        json: c.first,
        ..HistoryPage::default()
    };
    loop {
        if out.len() >= WRITE_FLUSH_BYTES {
            stream.write_all(out).await?;
            out.clear();
        }
        match page_from(shard, c.owner, q.clone(), &mut page).await {
            Ok(true) => {}
            // A continued walk does not look the entity up; `false` cannot happen.
            Ok(false) | Err(_) => return Err(io::Error::other("a shard is unavailable")),
        }
        if page.events > 0 {
            respond::chunk(out, b",", chunked);
            respond::chunk(out, &page.json, chunked);
        }
        match page.next_lsn {
            Some(next) => {
                q.limit -= page.events;
                q.from_lsn = Some(next);
            }
            None => break,
        }
    }
    respond::chunk(out, b"]", chunked);
    respond::last_chunk(out, chunked);
    stream.write_all(out).await?;
    out.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_history_query() {
        let q =
            HistoryQuery::parse(Some(b"entity=ns%2Fa&limit=7&since=1970-01-01T00:00:01Z")).unwrap();
        assert_eq!(
            q,
            HistoryQuery {
                entity: b"ns/a".to_vec(),
                since_ms: Some(1000),
                limit: 7,
                from_lsn: None,
            }
        );
        assert_eq!(HistoryQuery::parse(Some(b"entity=a")).unwrap().limit, 100);
        assert_eq!(
            HistoryQuery::parse(Some(b"entity=a&limit=9000"))
                .unwrap()
                .limit,
            500
        );
        assert!(HistoryQuery::parse(Some(b"limit=5")).is_err());
        assert!(HistoryQuery::parse(None).is_err());
        assert!(HistoryQuery::parse(Some(b"entity=a&limit=0")).is_err());
        assert!(HistoryQuery::parse(Some(b"entity=a&since=yesterday")).is_err());
    }
}
