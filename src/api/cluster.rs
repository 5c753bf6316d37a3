//! Cluster mode's endpoints and the forwarding of a request to the node that owns
//! its entity: `GET /api/cluster` (the groups and their owners), `POST
//! /api/internal/part` (a group's part, from the node that parsed it to the owner),
//! and [`forward`].

use std::time::Duration;

use super::Request;
use crate::auth::Principal;
use crate::cluster::owner::{batch_from_records, WriteError};
use crate::cluster::{self, group_of, peer, Route};
use crate::http::query;
use crate::http::respond;
use crate::json;
use crate::shard::Shard;

/// How long a read waits for a group being taken over here.
const LOADING_WAIT: Duration = Duration::from_secs(20);

/// Where a request about entity `id` is answered, in cluster mode: `None` here (on
/// a single node, for a forwarded request, or when this node serves the group),
/// else the owner's URL; an error answer when nobody serves it.
pub async fn owner_elsewhere(
    shard: &Shard,
    req: &Request<'_>,
    id: &[u8],
    out: &mut Vec<u8>,
) -> Result<Option<std::sync::Arc<str>>, ()> {
    let Some(l) = cluster::local(shard) else {
        return Ok(None);
    };
    group_elsewhere(shard, req, group_of(id, l.cluster.groups), out).await
}

/// Where a request about group `g` is answered (see [`owner_elsewhere`]). Namespace
/// changes go to the node serving group 0 (the registry node).
pub async fn group_elsewhere(
    shard: &Shard,
    req: &Request<'_>,
    g: u16,
    out: &mut Vec<u8>,
) -> Result<Option<std::sync::Arc<str>>, ()> {
    let Some(l) = cluster::local(shard) else {
        return Ok(None);
    };
    let c = &l.cluster;
    let started = std::time::Instant::now();
    // Bound: every turn answers or waits 20 ms within LOADING_WAIT.
    loop {
        match c.route(g) {
            Route::Here if c.serving(g) => return Ok(None),
            Route::Node(url) if !req.forwarded => return Ok(Some(url)),
            _ if started.elapsed() < LOADING_WAIT && !req.forwarded => {}
            _ => {
                respond::error(
                    out,
                    503,
                    req.persist,
                    b"Retry-After: 1\r\n",
                    &format!("no node serves group {g} of this entity right now; retry"),
                );
                return Err(());
            }
        }
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `req` to the node at `url` and relays its answer (status and JSON body).
pub async fn forward(shard: &Shard, req: &Request<'_>, method: &str, url: &str, out: &mut Vec<u8>) {
    let l = cluster::local(shard).expect("cluster mode");
    let mut target = Vec::with_capacity(req.path.len() + 64);
    for seg in req.path.split(|b| *b == b'/').enumerate() {
        if seg.0 > 0 {
            target.push(b'/');
        }
        peer::encode_component(&mut target, seg.1);
    }
    if let Some(q) = req.query {
        target.push(b'?');
        target.extend_from_slice(q);
    }
    let mut headers = peer::headers(&l.cluster.node, req.authorization);
    if req.sync_always {
        headers.push(("X-Flux-Sync", b"always"));
    }
    match l
        .peers
        .request(url, method, &target, &headers, req.body)
        .await
    {
        Ok(a) => respond::json(out, a.status, req.persist, b"", &a.body),
        Err(e) => respond::error(
            out,
            503,
            req.persist,
            b"Retry-After: 1\r\n",
            &format!("the node that owns this entity did not answer: {e}"),
        ),
    }
}

/// The internal routes serve other nodes only: the admin token in auth mode (every
/// node has the same). Answers 403 otherwise.
fn internal_allowed(req: &Request<'_>, out: &mut Vec<u8>) -> bool {
    let ok = matches!(req.principal, Principal::Open | Principal::Admin);
    if !ok {
        respond::error(
            out,
            403,
            req.persist,
            b"",
            "only other nodes (the admin token)",
        );
    }
    ok
}

/// `POST /api/internal/part?group=G[&txn=T][&ids=client]`: a group's part from
/// another node (`ids=client`: it carries client event ids, see
/// `EventBatch::client_ids`).
/// Answers 200 once applied, 409 when this node does not serve the group.
pub async fn internal_part(shard: &Shard, req: &Request<'_>, out: &mut Vec<u8>) {
    let Some(l) = cluster::local(shard) else {
        return respond::error(out, 404, req.persist, b"", "not in cluster mode");
    };
    if !internal_allowed(req, out) {
        return;
    }
    let c = l.cluster.clone();
    let mut group: Option<u16> = None;
    let mut txn: Option<u64> = None;
    let mut client_ids = false;
    for (k, v) in query::query_pairs(req.query.unwrap_or_default()) {
        let v = std::str::from_utf8(v).ok();
        match k {
            b"group" => group = v.and_then(|v| v.parse().ok()),
            b"txn" => txn = v.and_then(|v| v.parse().ok()),
            b"ids" => client_ids = v == Some("client"),
            _ => {}
        }
    }
    let Some(g) = group.filter(|g| (*g as usize) < c.groups) else {
        return respond::error(out, 400, req.persist, b"", "group missing or out of range");
    };
    let Some(mut batch) = batch_from_records(req.body.to_vec(), g, c.groups) else {
        return respond::error(
            out,
            400,
            req.persist,
            b"",
            "malformed records for this group",
        );
    };
    batch.client_ids = client_ids;
    match cluster::write::apply_on_owner_shard(shard, &c, g, batch, txn).await {
        Ok(()) => respond::json(out, 200, req.persist, b"", b"{}"),
        Err(WriteError::NotOwner) => respond::error(out, 409, req.persist, b"", "not the owner"),
        Err(WriteError::Unavailable(m)) => respond::error(out, 503, req.persist, b"", &m),
        Err(WriteError::Unknown(m)) => respond::error(out, 504, req.persist, b"", &m),
    }
}

/// `GET /api/cluster`: this node, and every group's owner as this node sees it.
pub fn status(shard: &Shard, req: &Request<'_>, out: &mut Vec<u8>, body: &mut Vec<u8>) {
    let Some(l) = cluster::local(shard) else {
        return respond::error(
            out,
            404,
            req.persist,
            b"",
            "not in cluster mode (FLUX_NATS_URL)",
        );
    };
    let c = &l.cluster;
    body.clear();
    body.extend_from_slice(b"{\"node\":");
    json::write_str(body, c.node.as_bytes());
    body.extend_from_slice(b",\"url\":");
    json::write_str(body, c.url.as_bytes());
    body.extend_from_slice(b",\"groups\":[");
    let mut served = 0u64;
    for (i, (g, owner, here)) in c.owners().into_iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b"{\"group\":");
        json::write_u64(body, g as u64);
        body.extend_from_slice(b",\"node\":");
        match &owner {
            Some((n, _)) => json::write_str(body, n.as_bytes()),
            None => body.extend_from_slice(b"null"),
        }
        body.extend_from_slice(b",\"url\":");
        match &owner {
            Some((_, u)) => json::write_str(body, u.as_bytes()),
            None => body.extend_from_slice(b"null"),
        }
        body.extend_from_slice(b",\"servedHere\":");
        body.extend_from_slice(if here { b"true" } else { b"false" });
        body.push(b'}');
        if owner.is_some() {
            served += 1;
        }
    }
    body.extend_from_slice(b"],\"groupsOwned\":");
    json::write_u64(body, served);
    body.extend_from_slice(b",\"groupCount\":");
    json::write_u64(body, c.groups as u64);
    body.push(b'}');
    respond::json(out, 200, req.persist, b"", body);
}

/// Every other node that serves a group (listings ask each for its entities); an
/// error when some group has no owner (a listing would miss it).
pub fn other_nodes(shard: &Shard) -> Result<Vec<std::sync::Arc<str>>, String> {
    let Some(l) = cluster::local(shard) else {
        return Ok(Vec::new());
    };
    let mut urls: Vec<std::sync::Arc<str>> = Vec::new();
    for g in 0..l.cluster.groups as u16 {
        match l.cluster.route(g) {
            Route::Here => {}
            Route::Node(url) => {
                if !urls.contains(&url) {
                    urls.push(url);
                }
            }
            Route::Nobody => {
                return Err(format!(
                    "no node serves group {g} right now (it is being taken over); retry"
                ))
            }
        }
    }
    Ok(urls)
}

/// The same request (`method`, `path`, `body`, with the client's authorization)
/// answered by every other node for its own groups only (marked forwarded): their
/// bodies, for answers that sum over the cluster. Empty on a single node or for a
/// request already forwarded; an error if a node does not answer 200.
pub async fn ask_others(
    shard: &Shard,
    req: &Request<'_>,
    method: &str,
    path: &[u8],
    body: &[u8],
) -> Result<Vec<Vec<u8>>, String> {
    let Some(l) = cluster::local(shard) else {
        return Ok(Vec::new());
    };
    if req.forwarded {
        return Ok(Vec::new());
    }
    let headers = peer::headers(&l.cluster.node, req.authorization);
    let mut bodies = Vec::new();
    for url in other_nodes(shard)? {
        let a = l.peers.request(&url, method, path, &headers, body).await?;
        if a.status != 200 {
            return Err(format!(
                "node {url} answered {}: {}",
                a.status,
                String::from_utf8_lossy(&a.body)
            ));
        }
        bodies.push(a.body);
    }
    Ok(bodies)
}

/// The number after `key` in `body` (a JSON field or a Prometheus sample line).
pub fn number_after(body: &[u8], key: &[u8]) -> Option<u64> {
    let at = body.windows(key.len()).position(|w| w == key)? + key.len();
    let digits: Vec<u8> = body[at..]
        .iter()
        .skip_while(|b| **b == b' ')
        .take_while(|b| b.is_ascii_digit())
        .copied()
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// One page of `url`'s own entities (`/api/internal/page`).
pub async fn remote_page(
    shard: &Shard,
    url: &str,
    q: &crate::state::PageQuery,
) -> Result<crate::state::Page, String> {
    let l = cluster::local(shard).expect("cluster mode");
    let mut target = b"/api/internal/page?max=".to_vec();
    target.extend_from_slice(q.max_entities.to_string().as_bytes());
    target.extend_from_slice(b"&prefix=");
    peer::encode_component(&mut target, &q.prefix);
    if let Some(a) = &q.after {
        target.extend_from_slice(b"&after=");
        peer::encode_component(&mut target, a);
    }
    let headers = peer::headers(
        &l.cluster.node,
        l.cluster.peer_auth.as_deref().map(str::as_bytes),
    );
    let a = l.peers.request(url, "GET", &target, &headers, b"").await?;
    if a.status != 200 {
        return Err(format!(
            "node {url} answered {} to a listing page: {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        ));
    }
    crate::state::Page::decode(&a.body).ok_or_else(|| format!("node {url} sent a malformed page"))
}

/// `GET /api/internal/page?prefix=&after=&max=`: a page of this node's entities.
pub async fn internal_page(
    shard: &Shard,
    req: &Request<'_>,
    out: &mut Vec<u8>,
    body: &mut Vec<u8>,
) {
    if cluster::local(shard).is_none() {
        return respond::error(out, 404, req.persist, b"", "not in cluster mode");
    }
    if !internal_allowed(req, out) {
        return;
    }
    let mut q = crate::state::PageQuery {
        prefix: Vec::new(),
        after: None,
        max_entities: crate::limits::LIST_PAGE_ENTITIES,
        max_bytes: crate::limits::LIST_PAGE_BYTES,
    };
    for (k, v) in query::query_pairs(req.query.unwrap_or_default()) {
        let mut val = Vec::new();
        if query::percent_decode(v, true, &mut val).is_err() {
            return respond::error(out, 400, req.persist, b"", "invalid percent-encoding");
        }
        match k {
            b"prefix" => q.prefix = val,
            b"after" => q.after = Some(val),
            b"max" => match std::str::from_utf8(&val).ok().and_then(|v| v.parse().ok()) {
                Some(n) => q.max_entities = n,
                None => {
                    return respond::error(out, 400, req.persist, b"", "max must be an integer")
                }
            },
            _ => {}
        }
    }
    match super::list::local_page(shard, q).await {
        Ok(page) => {
            body.clear();
            page.encode(body);
            respond::body(out, 200, req.persist, b"application/octet-stream", body);
        }
        Err(e) => respond::error(out, 503, req.persist, b"", &e.to_string()),
    }
}

/// What the other nodes answered to a batch delete.
#[derive(Default)]
pub struct Elsewhere {
    pub deleted: usize,
    pub failed: usize,
    /// Their `errors` items, comma-separated (JSON objects).
    pub errors: Vec<u8>,
}

/// Cluster mode, a client's batch delete: the same request to every other node that
/// serves a group (each deletes and reports its own groups' entities).
pub async fn batch_delete_elsewhere(shard: &Shard, req: &Request<'_>) -> Result<Elsewhere, String> {
    let mut total = Elsewhere::default();
    let answers = ask_others(shard, req, "POST", b"/api/state/entities/delete", req.body)
        .await
        .map_err(|e| format!("the batch delete: {e}"))?;
    for body in answers {
        let part = parse_delete_answer(&body)
            .ok_or("another node sent a malformed batch delete answer")?;
        total.deleted += part.deleted;
        total.failed += part.failed;
        if !part.errors.is_empty() {
            if !total.errors.is_empty() {
                total.errors.push(b',');
            }
            total.errors.extend_from_slice(&part.errors);
        }
    }
    Ok(total)
}

/// Reads `{"deleted":N,"failed":M,"errors":[…]}` as written by `api::delete`.
fn parse_delete_answer(b: &[u8]) -> Option<Elsewhere> {
    let deleted = number_after(b, b"\"deleted\":")? as usize;
    let failed = number_after(b, b"\"failed\":")? as usize;
    let key = b"\"errors\":[";
    let start = b.windows(key.len()).position(|w| w == key)? + key.len();
    let end = b
        .len()
        .checked_sub(2)
        .filter(|e| *e >= start && &b[*e..] == b"]}")?;
    Some(Elsewhere {
        deleted,
        failed,
        errors: b[start..end].to_vec(),
    })
}

/// Cluster mode: deletes every entity under `prefix` on the other nodes (a namespace's
/// deletion), in rounds of one batch delete each until a round deletes nothing.
pub async fn delete_prefix_elsewhere(shard: &Shard, prefix: &[u8]) -> Result<usize, String> {
    let Some(l) = cluster::local(shard) else {
        return Ok(0);
    };
    let mut body = b"{\"prefix\":".to_vec();
    json::write_str(&mut body, prefix);
    body.push(b'}');
    let mut deleted = 0;
    for url in other_nodes(shard)? {
        // Bound: each round deletes at least one entity or ends the loop; entities
        // written under the prefix meanwhile may keep it going, as on one node.
        loop {
            let auth = l.cluster.peer_auth.as_deref().map(str::as_bytes);
            let headers = peer::headers(&l.cluster.node, auth);
            let a = l
                .peers
                .request(&url, "POST", b"/api/state/entities/delete", &headers, &body)
                .await?;
            let part = (a.status == 200)
                .then(|| parse_delete_answer(&a.body))
                .flatten()
                .ok_or_else(|| {
                    format!(
                        "node {url} answered {} to a prefix delete: {}",
                        a.status,
                        String::from_utf8_lossy(&a.body)
                    )
                })?;
            deleted += part.deleted;
            if part.deleted == 0 {
                break;
            }
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_a_batch_delete_answer() {
        let e = super::parse_delete_answer(
            br#"{"deleted":3,"failed":1,"errors":[{"entity_id":"x","error":"entity not found"}]}"#,
        )
        .unwrap();
        assert_eq!((e.deleted, e.failed), (3, 1));
        assert_eq!(e.errors, br#"{"entity_id":"x","error":"entity not found"}"#);
        let e = super::parse_delete_answer(br#"{"deleted":0,"failed":0,"errors":[]}"#).unwrap();
        assert!(e.errors.is_empty());
        assert!(super::parse_delete_answer(br#"{"deleted":1}"#).is_none());
    }
}
