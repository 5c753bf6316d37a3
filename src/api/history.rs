//! `GET /api/events?entity=ID&since=RFC3339&limit=N`: an entity's stored events,
//! newest first. The owning shard follows the entity's `prev_lsn` chain through its
//! log from the newest event, so the cost is proportional to the answer, not to the
//! log. `since` compares with the ingest time (the chain's order), which lets the walk
//! stop at the first older event.

use super::Request;
use crate::event::{Properties, Record, KIND_EVENT};
use crate::http::query::{percent_decode, query_pairs};
use crate::http::respond;
use crate::json;
use crate::log::ShardLog;
use crate::state::Store;
use crate::time;

pub const HISTORY_LIMIT_DEFAULT: usize = 100;
pub const HISTORY_LIMIT_MAX: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    pub entity: Vec<u8>,
    pub since_ms: Option<u64>,
    pub limit: usize,
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

/// Renders the history of `q.entity` as a JSON array into `out`; `false` if the
/// entity does not exist. Runs on the owning shard.
pub fn render(store: &Store, log: &ShardLog, q: &HistoryQuery, out: &mut Vec<u8>) -> bool {
    let Some(e) = store.get(&q.entity) else {
        return false;
    };
    out.push(b'[');
    let mut lsn = e.last_lsn;
    let mut n = 0;
    // Each step moves to a strictly smaller LSN, so the walk ends; `limit` bounds it.
    while lsn != 0 && n < q.limit {
        let Some((r, _)) = log.bytes_at(lsn).and_then(Record::parse_stored) else {
            break;
        };
        if r.kind != KIND_EVENT || r.entity_id != &q.entity[..] {
            debug_assert!(false, "history chain points at a foreign record");
            break;
        }
        if q.since_ms.is_some_and(|s| r.ingest_ms < s) {
            break;
        }
        if n > 0 {
            out.push(b',');
        }
        write_event(out, &r);
        n += 1;
        if r.prev_lsn >= lsn {
            break;
        }
        lsn = r.prev_lsn;
    }
    out.push(b']');
    true
}

pub async fn get_history(
    shard: &crate::shard::Shard,
    req: &Request<'_>,
    scope: &crate::auth::ReadScope,
    out: &mut Vec<u8>,
    body: &mut Vec<u8>,
) {
    let q = match HistoryQuery::parse(req.query) {
        Ok(q) => q,
        Err(msg) => return respond::error(out, 400, req.persist, b"", msg),
    };
    if !scope.allows(&q.entity) {
        // Another namespace's entity does not exist for this token.
        return respond::error(out, 404, req.persist, b"", "entity not found");
    }
    body.clear();
    match shard.history(shard.owner(&q.entity), q, body).await {
        Ok(true) => respond::json(out, 200, req.persist, b"", body),
        Ok(false) => respond::error(out, 404, req.persist, b"", "entity not found"),
        Err(_) => super::unavailable(out),
    }
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
                limit: 7
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
