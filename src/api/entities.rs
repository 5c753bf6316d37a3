//! `GET /api/state/entities/:id`.

use super::Request;
use crate::auth::ReadScope;
use crate::http::respond;
use crate::http::route::ENTITY_PREFIX;
use crate::shard::Shard;

pub async fn get_entity(
    shard: &Shard,
    req: &Request<'_>,
    scope: &ReadScope,
    out: &mut Vec<u8>,
    body: &mut Vec<u8>,
) {
    // The path is already percent-decoded, so `%2F` and a literal `/` both separate
    // nothing here: everything after the prefix is the id.
    let id = &req.path[ENTITY_PREFIX.len()..];
    if !scope.allows(id) {
        // Another namespace's entity does not exist for this token.
        return respond::error(out, 404, req.persist, b"", "entity not found");
    }
    body.clear();
    match shard.get_entity(shard.owner(id), id, body).await {
        Ok(true) => respond::json(out, 200, req.persist, b"", body),
        Ok(false) => respond::error(out, 404, req.persist, b"", "entity not found"),
        Err(_) => super::unavailable(out),
    }
}
