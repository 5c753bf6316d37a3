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
    let c = &l.cluster;
    let g = group_of(id, c.groups);
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
    let mut headers: Vec<(&str, &[u8])> = vec![(peer::FORWARDED, l.cluster.node.as_bytes())];
    if let Some(a) = req.authorization {
        headers.push(("Authorization", a));
    }
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

/// `POST /api/internal/part?group=G[&txn=T]`: a group's part from another node.
/// Answers 200 once applied, 409 when this node does not serve the group.
pub async fn internal_part(shard: &Shard, req: &Request<'_>, out: &mut Vec<u8>) {
    let Some(l) = cluster::local(shard) else {
        return respond::error(out, 404, req.persist, b"", "not in cluster mode");
    };
    if !matches!(req.principal, Principal::Open | Principal::Admin) {
        return respond::error(
            out,
            403,
            req.persist,
            b"",
            "only other nodes (the admin token)",
        );
    }
    let c = l.cluster.clone();
    let mut group: Option<u16> = None;
    let mut txn: Option<u64> = None;
    for (k, v) in query::query_pairs(req.query.unwrap_or_default()) {
        let v = std::str::from_utf8(v).ok();
        match k {
            b"group" => group = v.and_then(|v| v.parse().ok()),
            b"txn" => txn = v.and_then(|v| v.parse().ok()),
            _ => {}
        }
    }
    let Some(g) = group.filter(|g| (*g as usize) < c.groups) else {
        return respond::error(out, 400, req.persist, b"", "group missing or out of range");
    };
    let Some(batch) = batch_from_records(req.body.to_vec(), g, c.groups) else {
        return respond::error(
            out,
            400,
            req.persist,
            b"",
            "malformed records for this group",
        );
    };
    match cluster::write::apply_on_owner_shard(shard, &c, g, batch, txn).await {
        Ok(()) => respond::json(out, 200, req.persist, b"", b"{}"),
        Err(WriteError::NotOwner) => respond::error(out, 409, req.persist, b"", "not the owner"),
        Err(WriteError::Unavailable(m)) => respond::error(out, 503, req.persist, b"", &m),
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
