//! `DELETE /api/state/entities/:id` and `POST /api/state/entities/delete`.
//!
//! A deletion is a tombstone record that takes the path of events: encoded by the
//! routing shard (`EventBatch::push_tombstone`, with a UUIDv7 event id), sent as one
//! message per owning shard, logged and applied there by `Shard::apply_local` (so it
//! survives restarts and reaches subscribers as `entity_deleted`). The owner keeps
//! only the tombstones of entities that exist, in the same synchronous step that
//! applies them, so "did it exist" and "deleted" cannot race with another request.
//!
//! Batch delete by `prefix` / `namespace` runs in two phases: every shard lists its
//! matching ids (at most limit + 1 each); over the limit the answer is 400 and nothing
//! is deleted; otherwise those ids are deleted like an `entity_ids` request. Entities
//! created between the phases are not deleted (the request deletes what matched when
//! it was listed).

use hashbrown::HashSet;
use simd_json::prelude::*;

use super::Request;
use crate::auth::{Denied, WriteScope};
use crate::event::{EventBatch, Record};
use crate::http::respond;
use crate::http::route::ENTITY_PREFIX;
use crate::ingest::validate::valid_entity_id;
use crate::json;
use crate::shard::mesh::Unavailable;
use crate::shard::{join_all, ApplyError, Shard, ShardId};
use crate::time;

impl Shard {
    /// Applies the tombstones of `batch` whose entity exists (the first of duplicates
    /// only). Returns, per tombstone, whether it deleted something, and the LSN a
    /// durable acknowledgement must wait for.
    pub fn delete_local(&self, batch: &EventBatch) -> Result<(Vec<bool>, Option<u64>), ApplyError> {
        let mut kept = EventBatch::default();
        let mut existed = Vec::with_capacity(batch.count as usize);
        {
            let store = self.store.borrow();
            let mut seen: HashSet<&[u8]> = HashSet::new();
            let mut off = 0;
            while off < batch.buf.len() {
                let (r, len) = Record::parse(&batch.buf[off..]).expect("encoded by us");
                let exists = store.contains(r.entity_id) && seen.insert(r.entity_id);
                if exists {
                    kept.buf.extend_from_slice(&batch.buf[off..off + len]);
                    kept.count += 1;
                }
                existed.push(exists);
                off += len;
            }
        }
        if kept.is_empty() {
            return Ok((existed, None));
        }
        let end = self.apply_local(&mut kept)?;
        Ok((existed, Some(end)))
    }

    fn scan_ids(&self, prefix: &[u8], max: usize) -> Vec<Box<[u8]>> {
        self.store
            .borrow()
            .range(prefix, None)
            .take(max)
            .map(|(id, _)| id.into())
            .collect()
    }
}

/// Deletes the tombstones' entities on shard `to` (all owned by it).
async fn apply_part(
    shard: &Shard,
    to: ShardId,
    batch: EventBatch,
    sync: bool,
) -> Result<Vec<bool>, ApplyError> {
    if to == shard.id {
        let (existed, end) = shard.delete_local(&batch)?;
        if let (Some(end), true) = (end, sync) {
            shard.sync_to(end).await?;
        }
        return Ok(existed);
    }
    shard
        .mesh
        .run(to, move |owner, reply| match owner.delete_local(&batch) {
            Ok((existed, Some(end))) if sync => {
                let owner = owner.clone();
                glommio::spawn_local(async move {
                    let _ = reply.send(owner.sync_to(end).await.map(|_| existed));
                })
                .detach();
            }
            result => {
                let _ = reply.send(result.map(|(existed, _)| existed));
            }
        })
        .await?
}

async fn scan(
    shard: &Shard,
    from: ShardId,
    prefix: &[u8],
    max: usize,
) -> Result<Vec<Box<[u8]>>, Unavailable> {
    if from == shard.id {
        return Ok(shard.scan_ids(prefix, max));
    }
    let prefix = prefix.to_vec();
    shard
        .mesh
        .ask(from, move |owner| owner.scan_ids(&prefix, max))
        .await
}

/// Deletes `ids` (distinct), one message per owning shard, all shards at once.
/// Returns, per id in order, whether it existed.
async fn delete_ids(shard: &Shard, ids: &[Vec<u8>], sync: bool) -> Result<Vec<bool>, ApplyError> {
    if crate::cluster::local(shard).is_some() {
        return delete_ids_cluster(shard, ids).await;
    }
    let now = time::now_ms();
    let mut parts: Vec<(EventBatch, Vec<usize>)> =
        (0..shard.count).map(|_| Default::default()).collect();
    for (i, id) in ids.iter().enumerate() {
        let (batch, positions) = &mut parts[shard.owner(id).index()];
        let mut id_buf = [0u8; 36];
        let event_id = shard.ids.borrow_mut().next_str(now, &mut id_buf).to_vec();
        batch.push_tombstone(id, &event_id, now);
        positions.push(i);
    }
    let mut calls = Vec::new();
    let mut positions = Vec::new();
    for (i, (batch, pos)) in parts.into_iter().enumerate() {
        if !batch.is_empty() {
            calls.push(apply_part(shard, ShardId(i as u16), batch, sync));
            positions.push(pos);
        }
    }
    let mut existed = vec![false; ids.len()];
    for (result, pos) in join_all(calls).await.into_iter().zip(positions) {
        for (flag, i) in result?.into_iter().zip(pos) {
            existed[i] = flag;
        }
    }
    Ok(existed)
}

/// Cluster mode: deletes those of `ids` whose group this node serves and that exist
/// (each other node answers for its own groups), with tombstones through the groups'
/// streams. Returns, per id, whether it existed here.
async fn delete_ids_cluster(shard: &Shard, ids: &[Vec<u8>]) -> Result<Vec<bool>, ApplyError> {
    let cluster = crate::cluster::local(shard)
        .expect("cluster mode")
        .cluster
        .clone();
    let mut per_shard: Vec<Vec<(usize, Vec<u8>)>> = vec![Vec::new(); shard.count];
    for (i, id) in ids.iter().enumerate() {
        if cluster.serving(crate::cluster::group_of(id, cluster.groups)) {
            per_shard[shard.owner(id).index()].push((i, id.clone()));
        }
    }
    let mut existed = vec![false; ids.len()];
    let mut batches: Vec<EventBatch> = (0..shard.count).map(|_| EventBatch::default()).collect();
    let now = time::now_ms();
    for (s, list) in per_shard.into_iter().enumerate() {
        if list.is_empty() {
            continue;
        }
        let asked: Vec<Vec<u8>> = list.iter().map(|(_, id)| id.clone()).collect();
        let flags = if s == shard.id.index() {
            existing(shard, &asked)
        } else {
            shard
                .mesh
                .ask(ShardId(s as u16), move |o| existing(o, &asked))
                .await
                .map_err(|_| ApplyError::Unavailable)?
        };
        for ((i, id), e) in list.iter().zip(flags) {
            if e {
                existed[*i] = true;
                let mut id_buf = [0u8; 36];
                let event_id = shard.ids.borrow_mut().next_str(now, &mut id_buf).to_vec();
                batches[s].push_tombstone(id, &event_id, now);
            }
        }
    }
    crate::cluster::write::apply_batch(shard, &mut batches, false).await?;
    Ok(existed)
}

/// Which of `ids` this shard's store holds.
fn existing(shard: &Shard, ids: &[Vec<u8>]) -> Vec<bool> {
    let store = shard.store.borrow();
    ids.iter().map(|id| store.contains(id)).collect()
}

/// Deletes every entity whose id starts with `prefix`, however many, in rounds of at
/// most `DELETE_ROUND` per shard, until a round finds none. Returns how many existed.
pub async fn delete_prefix_all(
    shard: &Shard,
    prefix: &[u8],
    sync: bool,
) -> Result<usize, ApplyError> {
    const DELETE_ROUND: usize = 10_000;
    let mut deleted = 0;
    loop {
        let mut ids = Vec::new();
        for i in 0..shard.count {
            let part = scan(shard, ShardId(i as u16), prefix, DELETE_ROUND)
                .await
                .map_err(|_| ApplyError::Unavailable)?;
            ids.extend(part.into_iter().map(Vec::from));
        }
        if ids.is_empty() {
            // Cluster mode: every other node deletes its own.
            let elsewhere = super::cluster::delete_prefix_elsewhere(shard, prefix)
                .await
                .map_err(ApplyError::Storage)?;
            return Ok(deleted + elsewhere);
        }
        deleted += delete_ids(shard, &ids, sync)
            .await?
            .iter()
            .filter(|e| **e)
            .count();
    }
}

/// `DELETE /api/state/entities/:id`: 200 `{"entity_id","eventId"}` or 404.
pub async fn delete_entity(
    shard: &Shard,
    req: &Request<'_>,
    out: &mut Vec<u8>,
    body: &mut Vec<u8>,
) {
    let id = &req.path[ENTITY_PREFIX.len()..];
    match req.principal.write_scope() {
        Err(d) => return super::denied(shard, out, req, d),
        Ok(WriteScope::Own(ns)) if !ns.owns(id) => {
            return super::denied(shard, out, req, Denied(403, FORBIDDEN_DELETE));
        }
        Ok(_) => {}
    }
    let Some(id_text) = std::str::from_utf8(id)
        .ok()
        .filter(|s| valid_entity_id(s).is_ok())
    else {
        // No such id can have been written.
        return respond::error(out, 404, req.persist, b"", "entity not found");
    };
    let now = time::now_ms();
    let mut id_buf = [0u8; 36];
    let event_id = shard.ids.borrow_mut().next_str(now, &mut id_buf).to_vec();
    let mut batch = EventBatch::default();
    batch.push_tombstone(id, &event_id, now);
    let applied = if crate::cluster::local(shard).is_some() {
        // Cluster mode: this node serves the entity's group (the request was sent
        // here by `api::cluster`); the tombstone goes through the group's stream.
        let mut probe = Vec::new();
        match shard.get_entity(shard.owner(id), id, &mut probe).await {
            Ok(false) => Ok(vec![false]),
            Ok(true) => {
                crate::cluster::write::apply_single(shard, shard.owner(id), &mut batch, false)
                    .await
                    .map(|()| vec![true])
            }
            Err(_) => Err(ApplyError::Unavailable),
        }
    } else {
        apply_part(
            shard,
            shard.owner(id),
            batch,
            shard.sync_always() || req.sync_always,
        )
        .await
    };
    match applied {
        Ok(existed) if existed.first() == Some(&true) => {
            body.clear();
            body.extend_from_slice(b"{\"entity_id\":");
            json::write_str(body, id_text.as_bytes());
            body.extend_from_slice(b",\"eventId\":");
            json::write_str(body, &event_id);
            body.push(b'}');
            respond::json(out, 200, req.persist, b"", body);
        }
        Ok(_) => respond::error(out, 404, req.persist, b"", "entity not found"),
        Err(e) => super::apply_failed(out, req, &e),
    }
}

/// What a batch delete selects.
#[derive(Debug, PartialEq, Eq)]
pub enum Filter {
    Prefix(Vec<u8>),
    Ids(Vec<Vec<u8>>),
}

impl Filter {
    /// Confines the filter to ids starting with `scope` (a namespace token's
    /// `name/`): a prefix that `scope` extends becomes `scope`. Returns false when
    /// the filter reaches outside it.
    pub fn confine(&mut self, scope: &[u8]) -> bool {
        match self {
            Filter::Prefix(p) if p.starts_with(scope) => true,
            Filter::Prefix(p) if scope.starts_with(p) => {
                *p = scope.to_vec();
                true
            }
            Filter::Prefix(_) => false,
            Filter::Ids(ids) => ids
                .iter()
                .all(|id| id.len() > scope.len() && id.starts_with(scope)),
        }
    }
}

pub const FORBIDDEN_DELETE: &str = "this token may delete only its own namespace's entities";

/// Parses `{"prefix"}`, `{"namespace"}` or `{"entity_ids"}` (exactly one).
pub fn parse_filter(body: &[u8], limit: usize) -> Result<Filter, String> {
    let mut copy = body.to_vec();
    let v = simd_json::to_borrowed_value(&mut copy)
        .map_err(|_| "the body must be JSON: {\"prefix\"}, {\"namespace\"} or {\"entity_ids\"}")?;
    let obj = v
        .as_object()
        .ok_or("the body must be a JSON object with one of prefix, namespace, entity_ids")?;
    let given: Vec<&str> = ["prefix", "namespace", "entity_ids"]
        .into_iter()
        .filter(|k| obj.contains_key(*k))
        .collect();
    if given.len() != 1 {
        return Err("exactly one of prefix, namespace or entity_ids is required".to_string());
    }
    let value = obj.get(given[0]).expect("present");
    match given[0] {
        "prefix" => {
            let p = value.as_str().ok_or("prefix must be a string")?;
            if p.is_empty() {
                return Err("prefix must not be empty".into());
            }
            Ok(Filter::Prefix(p.as_bytes().to_vec()))
        }
        "namespace" => {
            let ns = value.as_str().ok_or("namespace must be a string")?;
            if ns.is_empty() || ns.contains('/') {
                return Err("namespace must be a non-empty name without '/'".into());
            }
            let mut p = ns.as_bytes().to_vec();
            p.push(b'/');
            Ok(Filter::Prefix(p))
        }
        _ => {
            let list = value
                .as_array()
                .ok_or("entity_ids must be an array of strings")?;
            if list.len() > limit {
                return Err(format!(
                    "{} entity_ids given, more than the limit of {limit} per request; \
                     nothing was deleted",
                    list.len()
                ));
            }
            let mut ids = Vec::with_capacity(list.len());
            for v in list.iter() {
                let s = v.as_str().ok_or("entity_ids must be an array of strings")?;
                ids.push(s.as_bytes().to_vec());
            }
            Ok(Filter::Ids(ids))
        }
    }
}

/// `POST /api/state/entities/delete`: `{"deleted","failed","errors"}`.
pub async fn batch_delete(shard: &Shard, req: &Request<'_>, out: &mut Vec<u8>, body: &mut Vec<u8>) {
    let scope = match req.principal.write_scope() {
        Ok(s) => s,
        Err(d) => return super::denied(shard, out, req, d),
    };
    let limit = shard.shared.limits.max_batch_delete();
    let mut filter = match parse_filter(req.body, limit) {
        Ok(f) => f,
        Err(msg) => return respond::error(out, 400, req.persist, b"", &msg),
    };
    if let WriteScope::Own(ns) = &scope {
        if !filter.confine(&ns.prefix) {
            return super::denied(shard, out, req, Denied(403, FORBIDDEN_DELETE));
        }
    }
    // Cluster mode: the other nodes delete what their groups hold (asked first, so
    // that a node that cannot be reached fails the request before anything here).
    let elsewhere = match super::cluster::batch_delete_elsewhere(shard, req).await {
        Ok(e) => e,
        Err(msg) => return respond::error(out, 503, req.persist, b"Retry-After: 1\r\n", &msg),
    };
    let cluster = crate::cluster::local(shard).map(|l| l.cluster.clone());
    // Whether this node reports the ids of group `id` (each node reports its own).
    let reports = |id: &[u8]| match &cluster {
        None => true,
        Some(c) => c.serving(crate::cluster::group_of(id, c.groups)),
    };
    // (id, error) of the ids that could not be deleted, in request order.
    let mut errors: Vec<(Vec<u8>, &str)> = Vec::new();
    let deleted = match filter {
        Filter::Prefix(prefix) => {
            let mut ids = Vec::new();
            for i in 0..shard.count {
                match scan(shard, ShardId(i as u16), &prefix, limit + 1).await {
                    Ok(part) => ids.extend(part.into_iter().map(Vec::from)),
                    Err(_) => return super::unavailable(out),
                }
                if ids.len() > limit {
                    let msg = format!(
                        "more than {limit} entities match (the limit of one batch delete); \
                         nothing was deleted"
                    );
                    return respond::error(out, 400, req.persist, b"", &msg);
                }
            }
            match delete_ids(shard, &ids, shard.sync_always() || req.sync_always).await {
                Ok(existed) => existed.iter().filter(|e| **e).count(),
                Err(e) => return super::apply_failed(out, req, &e),
            }
        }
        Filter::Ids(list) => {
            let mut seen = HashSet::new();
            let mut ids = Vec::with_capacity(list.len());
            for id in list {
                let valid = std::str::from_utf8(&id)
                    .map_err(|_| "invalid UTF-8")
                    .and_then(valid_entity_id);
                match valid {
                    // Reported once, by the node the client asked.
                    Err(msg) if !req.forwarded => errors.push((id, msg)),
                    Err(_) => {}
                    // A repeated id counts once.
                    Ok(()) if !seen.insert(id.clone()) => {}
                    Ok(()) => ids.push(id),
                }
            }
            match delete_ids(shard, &ids, shard.sync_always() || req.sync_always).await {
                Ok(existed) => {
                    for (id, e) in ids.into_iter().zip(&existed) {
                        if !e && reports(&id) {
                            errors.push((id, "entity not found"));
                        }
                    }
                    existed.iter().filter(|e| **e).count()
                }
                Err(e) => return super::apply_failed(out, req, &e),
            }
        }
    };
    body.clear();
    body.extend_from_slice(b"{\"deleted\":");
    json::write_u64(body, (deleted + elsewhere.deleted) as u64);
    body.extend_from_slice(b",\"failed\":");
    json::write_u64(body, (errors.len() + elsewhere.failed) as u64);
    body.extend_from_slice(b",\"errors\":[");
    body.extend_from_slice(&elsewhere.errors);
    for (i, (id, msg)) in errors.iter().enumerate() {
        if i > 0 || !elsewhere.errors.is_empty() {
            body.push(b',');
        }
        body.extend_from_slice(b"{\"entity_id\":");
        json::write_str(body, id);
        body.extend_from_slice(b",\"error\":");
        json::write_str(body, msg.as_bytes());
        body.push(b'}');
    }
    body.extend_from_slice(b"]}");
    respond::json(out, 200, req.persist, b"", body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Filter, String> {
        parse_filter(s.as_bytes(), 3)
    }

    #[test]
    fn filters() {
        assert_eq!(
            parse(r#"{"prefix":"lt-"}"#),
            Ok(Filter::Prefix(b"lt-".to_vec()))
        );
        assert_eq!(
            parse(r#"{"namespace":"sandbox"}"#),
            Ok(Filter::Prefix(b"sandbox/".to_vec()))
        );
        assert_eq!(
            parse(r#"{"entity_ids":["a","b"],"other":1}"#),
            Ok(Filter::Ids(vec![b"a".to_vec(), b"b".to_vec()]))
        );
        assert_eq!(parse(r#"{"entity_ids":[]}"#), Ok(Filter::Ids(vec![])));
    }

    #[test]
    fn filters_confined_to_a_namespace() {
        let confine = |f: &str| {
            let mut f = parse(f).unwrap();
            let ok = f.confine(b"alpha/");
            (ok, f)
        };
        assert_eq!(
            confine(r#"{"prefix":"al"}"#),
            (true, Filter::Prefix(b"alpha/".to_vec()))
        );
        assert_eq!(
            confine(r#"{"prefix":"alpha/x"}"#),
            (true, Filter::Prefix(b"alpha/x".to_vec()))
        );
        assert!(confine(r#"{"namespace":"alpha"}"#).0);
        assert!(!confine(r#"{"namespace":"bravo"}"#).0);
        assert!(!confine(r#"{"prefix":"alphabet"}"#).0);
        assert!(confine(r#"{"entity_ids":["alpha/a","alpha/b"]}"#).0);
        assert!(!confine(r#"{"entity_ids":["alpha/a","bravo/b"]}"#).0);
        assert!(!confine(r#"{"entity_ids":["alpha/"]}"#).0);
    }

    #[test]
    fn bad_filters_are_errors() {
        for bad in [
            "",
            "prefix=x",
            "[]",
            "{}",
            r#"{"prefix":"a","namespace":"b"}"#,
            r#"{"prefix":5}"#,
            r#"{"prefix":""}"#,
            r#"{"prefix":null}"#,
            r#"{"namespace":"a/b"}"#,
            r#"{"entity_ids":"not-a-list"}"#,
            r#"{"entity_ids":[1]}"#,
            r#"{"entity_ids":["a","b","c","d"]}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse(r#"{"entity_ids":["a","b","c","d"]}"#)
            .unwrap_err()
            .contains("limit of 3"));
    }
}
