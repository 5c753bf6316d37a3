//! The namespace registry over HTTP (auth mode only; with auth off these paths answer
//! 404 saying so):
//!
//! - `POST /api/namespaces {"name"}` (admin): 201 `{"namespaceId","name","token",
//!   "createdAt"}`; the token is in this answer and nowhere else, ever.
//! - `GET /api/namespaces/:name`: `{"namespaceId","name","createdAt","entityCount"}`
//!   for the admin, the namespace's own token, or anyone with public reads; 404
//!   otherwise. `entityCount` counts the ids under `name/` on every shard (each walks
//!   its ordered id set between two bounds, in steps, all shards at once).
//! - `GET /api/state/namespaces`: `{"namespaces":[…]}`, the namespaces the token may
//!   see (all for the admin and with public reads, its own for a namespace token).
//! - `DELETE /api/namespaces/:name` (admin): the namespace stops accepting anything at
//!   once, its entities are deleted (tombstones, like any deletion), then it leaves
//!   the registry and its token stops working; 204 with no body. A crash part way
//!   leaves it registered; repeating the request finishes the job.

use std::sync::Arc;

use simd_json::prelude::*;

use super::Request;
use crate::auth::registry::{self, Namespace, RegisterError};
use crate::auth::ReadScope;
use crate::http::respond;
use crate::http::route::NAMESPACE_PREFIX;
use crate::json;
use crate::shard::mesh::Unavailable;
use crate::shard::{Shard, ShardId};
use crate::time;

const AUTH_OFF: &str = "namespaces exist only in auth mode (FLUX_AUTH_ENABLED=true)";

fn write_namespace(body: &mut Vec<u8>, ns: &Namespace) {
    body.extend_from_slice(b"{\"namespaceId\":");
    json::write_str(body, ns.id.as_bytes());
    body.extend_from_slice(b",\"name\":");
    json::write_str(body, ns.name.as_bytes());
    body.extend_from_slice(b",\"createdAt\":\"");
    time::write_rfc3339_ms(body, ns.created_ms);
    body.extend_from_slice(b"\"}");
}

fn parse_name(body: &[u8]) -> Result<String, &'static str> {
    const USAGE: &str = "the body must be {\"name\": \"...\"} with 3-32 characters of a-z 0-9 _ -";
    let mut copy = body.to_vec();
    let v = simd_json::to_borrowed_value(&mut copy).map_err(|_| USAGE)?;
    let name = v.get("name").and_then(|n| n.as_str()).ok_or(USAGE)?;
    if !registry::valid_name(name) {
        return Err(USAGE);
    }
    Ok(name.to_string())
}

pub async fn register(shard: &Shard, req: &Request<'_>, out: &mut Vec<u8>, body: &mut Vec<u8>) {
    if !crate::auth::local(shard).enabled() {
        return respond::error(out, 404, req.persist, b"", AUTH_OFF);
    }
    if let Err(d) = req.principal.admin() {
        return super::denied(shard, out, req, d);
    }
    let name = match parse_name(req.body) {
        Ok(n) => n,
        Err(msg) => return respond::error(out, 400, req.persist, b"", msg),
    };
    let now = time::now_ms();
    let mut id_buf = [0u8; 36];
    let id =
        String::from_utf8_lossy(shard.ids.borrow_mut().next_str(now, &mut id_buf)).into_owned();
    let auth = crate::auth::local(shard).shared().clone();
    // Writing and fsyncing the registry file must not stall this shard's event loop.
    let result = glommio::executor()
        .spawn_blocking(move || auth.registry.register(&name, id, now))
        .await;
    match result {
        Ok((ns, token)) => {
            if let Err(e) = crate::cluster::publish_registry(shard).await {
                let msg = format!(
                    "the namespace was registered on this node but the other cluster nodes \
                     could not be told ({e}); delete it and register it again"
                );
                return respond::error(out, 503, req.persist, b"Retry-After: 1\r\n", &msg);
            }
            body.clear();
            write_namespace(body, &ns);
            body.pop();
            body.extend_from_slice(b",\"token\":");
            json::write_str(body, token.as_bytes());
            body.push(b'}');
            // The only response that carries a token: no cache may keep it.
            respond::json(out, 201, req.persist, b"Cache-Control: no-store\r\n", body);
        }
        Err(RegisterError::Exists) => respond::error(
            out,
            409,
            req.persist,
            b"",
            "a namespace with this name exists",
        ),
        Err(RegisterError::Storage(msg)) => {
            let msg = format!("the namespace was not registered: {msg}");
            respond::error(out, 503, req.persist, b"Retry-After: 1\r\n", &msg)
        }
    }
}

/// Whether `scope` may see `ns` (one being deleted is seen by nobody).
fn sees(scope: &ReadScope, ns: &Arc<Namespace>) -> bool {
    !ns.deleting.load(std::sync::atomic::Ordering::Acquire)
        && match scope {
            ReadScope::All => true,
            ReadScope::Own(own) => Arc::ptr_eq(&own.ns, ns),
        }
}

/// The namespaces `scope` may see, in name order.
fn visible(shard: &Shard, scope: &ReadScope) -> Vec<Arc<Namespace>> {
    let all = crate::auth::local(shard).shared().registry.snapshot().1;
    all.into_iter().filter(|ns| sees(scope, ns)).collect()
}

pub fn list(shard: &Shard, req: &Request<'_>, out: &mut Vec<u8>, body: &mut Vec<u8>) {
    if !crate::auth::local(shard).enabled() {
        return respond::error(out, 404, req.persist, b"", AUTH_OFF);
    }
    let Some(scope) = super::read_scope(shard, req, out) else {
        return;
    };
    body.clear();
    body.extend_from_slice(b"{\"namespaces\":[");
    for (i, ns) in visible(shard, &scope).iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        write_namespace(body, ns);
    }
    body.extend_from_slice(b"]}");
    respond::json(out, 200, req.persist, b"", body);
}

pub async fn get(shard: &Shard, req: &Request<'_>, out: &mut Vec<u8>, body: &mut Vec<u8>) {
    if !crate::auth::local(shard).enabled() {
        return respond::error(out, 404, req.persist, b"", AUTH_OFF);
    }
    let Some(scope) = super::read_scope(shard, req, out) else {
        return;
    };
    let found = std::str::from_utf8(&req.path[NAMESPACE_PREFIX.len()..])
        .ok()
        .and_then(|name| crate::auth::local(shard).shared().registry.get(name))
        .filter(|ns| sees(&scope, ns));
    let Some(ns) = found else {
        return respond::error(out, 404, req.persist, b"", "namespace not found");
    };
    let Ok(mut count) = entity_count(shard, &ns).await else {
        return super::unavailable(out);
    };
    // Cluster mode: every node counts the groups it serves.
    match super::cluster::ask_others(shard, req, "GET", req.path, b"").await {
        Ok(bodies) => {
            for b in bodies {
                count += super::cluster::number_after(&b, b"\"entityCount\":").unwrap_or(0);
            }
        }
        Err(e) => {
            let msg = format!("the entity count needs every node: {e}");
            return respond::error(out, 503, req.persist, b"Retry-After: 1\r\n", &msg);
        }
    }
    body.clear();
    write_namespace(body, &ns);
    body.pop();
    body.extend_from_slice(b",\"entityCount\":");
    json::write_u64(body, count);
    body.push(b'}');
    respond::json(out, 200, req.persist, b"", body);
}

/// Entities of `ns` (ids under `name/`) on every shard, counted by all at once.
async fn entity_count(shard: &Shard, ns: &Namespace) -> Result<u64, Unavailable> {
    let mut prefix = ns.name.as_bytes().to_vec();
    prefix.push(b'/');
    let counts = (0..shard.count).map(|i| shard.count_prefix_on(ShardId(i as u16), &prefix));
    let counts = crate::shard::join_all(counts.collect()).await;
    counts.into_iter().sum()
}

pub async fn delete(shard: &Shard, req: &Request<'_>, out: &mut Vec<u8>, _body: &mut Vec<u8>) {
    if !crate::auth::local(shard).enabled() {
        return respond::error(out, 404, req.persist, b"", AUTH_OFF);
    }
    if let Err(d) = req.principal.admin() {
        return super::denied(shard, out, req, d);
    }
    let Ok(name) = std::str::from_utf8(&req.path[NAMESPACE_PREFIX.len()..]) else {
        return respond::error(out, 404, req.persist, b"", "namespace not found");
    };
    let registry = &crate::auth::local(shard).shared().registry;
    if registry.get(name).is_none() {
        return respond::error(out, 404, req.persist, b"", "namespace not found");
    }
    if !registry.begin_delete(name) {
        return respond::error(
            out,
            409,
            req.persist,
            b"",
            "this namespace is being deleted by another request",
        );
    }
    // Its connections go first: once the name is free again, a successor's entities
    // must never reach them.
    if let Some(ns) = registry.get(name) {
        crate::ws::revoke_everywhere(shard, &ns).await;
    }
    let mut prefix = name.as_bytes().to_vec();
    prefix.push(b'/');
    // Tombstones are acknowledged durably: the registry entry goes only after them.
    if let Err(e) = super::delete::delete_prefix_all(shard, &prefix, true).await {
        registry.abort_delete(name);
        return super::apply_failed(out, req, &e);
    }
    let auth = crate::auth::local(shard).shared().clone();
    let owned = name.to_string();
    let removed = glommio::executor()
        .spawn_blocking(move || auth.registry.finish_delete(&owned))
        .await;
    if let Err(msg) = removed {
        registry.abort_delete(name);
        let msg = format!("the namespace's entities were deleted but it stays registered: {msg}");
        return respond::error(out, 503, req.persist, b"Retry-After: 1\r\n", &msg);
    }
    if let Err(e) = crate::cluster::publish_registry(shard).await {
        let msg = format!(
            "the namespace was deleted on this node but the other cluster nodes could not \
             be told yet ({e}); they learn it at the next change"
        );
        return respond::error(out, 503, req.persist, b"Retry-After: 1\r\n", &msg);
    }
    respond::no_content(out, req.persist);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_bodies() {
        assert_eq!(parse_name(br#"{"name":"abc"}"#), Ok("abc".to_string()));
        for bad in [
            &br#"{"name":"ab"}"#[..],
            br#"{"name":5}"#,
            br#"{"nom":"abc"}"#,
            br#"{"name":"A-b"}"#,
            b"abc",
            b"",
        ] {
            assert!(parse_name(bad).is_err());
        }
    }
}
