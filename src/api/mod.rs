//! Endpoint handlers. A handler gets the parsed request and queues its response into
//! the connection's output buffer; listings stream (see `list`), and so do history
//! answers longer than a page (see `history`).

pub mod admin;
pub mod backup;
pub mod cluster;
pub mod delete;
pub mod entities;
pub mod events;
pub mod history;
pub mod list;
pub mod namespaces;

use crate::auth::{Denied, Principal, ReadScope};
use crate::http::respond::{self, Persist};
use crate::http::route::{Endpoint, Route};
use crate::shard::{ApplyError, Shard};

/// A request as handlers see it; everything borrows from the connection's buffers.
pub struct Request<'a> {
    /// Who sent it (`Principal::Open` with auth off).
    pub principal: Principal,
    pub route: Route,
    /// Percent-decoded path.
    pub path: &'a [u8],
    /// Raw query string (without `?`).
    pub query: Option<&'a [u8]>,
    pub body: &'a [u8],
    pub persist: Persist,
    pub http10: bool,
    /// The If-None-Match header value (conditional GET of the console's assets).
    pub if_none_match: Option<&'a [u8]>,
    /// `X-Flux-Sync: always`: this request's writes are acknowledged only once durable.
    pub sync_always: bool,
    /// Sent by another cluster node (`X-Flux-Forwarded`): answered from this node's
    /// own groups, never forwarded again.
    pub forwarded: bool,
    /// The raw `Authorization` header (forwarded as is to the node that owns an
    /// entity in cluster mode).
    pub authorization: Option<&'a [u8]>,
}

/// What the connection does after the handler returns.
pub enum Reply {
    /// The response is queued in the output buffer.
    Done,
    /// A listing to stream to the socket.
    Stream(list::ListQuery),
    /// A history answer longer than one page, to stream to the socket.
    History(history::Continuation),
}

pub async fn dispatch(
    shard: &Shard,
    req: &Request<'_>,
    out: &mut Vec<u8>,
    body: &mut Vec<u8>,
    results: &mut Vec<u8>,
) -> Reply {
    let endpoint = match req.route {
        Route::Found(e) => e,
        Route::MethodNotAllowed(allow) => {
            respond::error(out, 405, req.persist, allow, "method not allowed");
            return Reply::Done;
        }
        Route::NotFound => {
            respond::error(out, 404, req.persist, b"", "not found");
            return Reply::Done;
        }
    };
    // The console is static: it loads while the logs replay and shows /health's progress.
    if !shard.ready() && endpoint != Endpoint::Console {
        recovering(shard, endpoint, req, out);
        return Reply::Done;
    }
    match endpoint {
        Endpoint::Health => {
            health(shard, req, out);
            Reply::Done
        }
        Endpoint::PostEvent => {
            events::post_event(shard, req, out, body).await;
            Reply::Done
        }
        Endpoint::PostBatch => {
            events::post_batch(shard, req, out, body, results).await;
            Reply::Done
        }
        Endpoint::History => {
            let Some(scope) = read_scope(shard, req, out) else {
                return Reply::Done;
            };
            if let Some(id) = history::entity_param(req.query) {
                match cluster::owner_elsewhere(shard, req, &id, out).await {
                    Ok(Some(url)) => {
                        cluster::forward(shard, req, "GET", &url, out).await;
                        return Reply::Done;
                    }
                    Ok(None) => {}
                    Err(()) => return Reply::Done,
                }
            }
            match history::get_history(shard, req, &scope, out, body).await {
                Some(rest) => Reply::History(rest),
                None => Reply::Done,
            }
        }
        Endpoint::GetEntity => {
            if let Some(scope) = read_scope(shard, req, out) {
                let id = &req.path[crate::http::route::ENTITY_PREFIX.len()..];
                match cluster::owner_elsewhere(shard, req, id, out).await {
                    Ok(Some(url)) => cluster::forward(shard, req, "GET", &url, out).await,
                    Ok(None) => entities::get_entity(shard, req, &scope, out, body).await,
                    Err(()) => {}
                }
            }
            Reply::Done
        }
        Endpoint::DeleteEntity => {
            let id = &req.path[crate::http::route::ENTITY_PREFIX.len()..];
            match cluster::owner_elsewhere(shard, req, id, out).await {
                Ok(Some(url)) => cluster::forward(shard, req, "DELETE", &url, out).await,
                Ok(None) => delete::delete_entity(shard, req, out, body).await,
                Err(()) => {}
            }
            Reply::Done
        }
        Endpoint::ClusterStatus => {
            cluster::status(shard, req, out, body);
            Reply::Done
        }
        Endpoint::InternalPart => {
            cluster::internal_part(shard, req, out).await;
            Reply::Done
        }
        Endpoint::InternalPage => {
            cluster::internal_page(shard, req, out, body).await;
            Reply::Done
        }
        Endpoint::BatchDelete => {
            delete::batch_delete(shard, req, out, body).await;
            Reply::Done
        }
        Endpoint::Metrics => {
            // Totals over every namespace: for the admin token or public reads.
            match read_scope(shard, req, out) {
                Some(ReadScope::All) => get_metrics(shard, req, out).await,
                Some(ReadScope::Own(_)) => denied(
                    shard,
                    out,
                    req,
                    Denied(
                        403,
                        "metrics cover every namespace: they need the admin token",
                    ),
                ),
                None => {}
            }
            Reply::Done
        }
        Endpoint::RegisterNamespace => {
            match cluster::group_elsewhere(shard, req, 0, out).await {
                Ok(Some(url)) => cluster::forward(shard, req, "POST", &url, out).await,
                Ok(None) => namespaces::register(shard, req, out, body).await,
                Err(()) => {}
            }
            Reply::Done
        }
        Endpoint::ListNamespaces => {
            namespaces::list(shard, req, out, body);
            Reply::Done
        }
        Endpoint::GetNamespace => {
            namespaces::get(shard, req, out, body).await;
            Reply::Done
        }
        Endpoint::DeleteNamespace => {
            match cluster::group_elsewhere(shard, req, 0, out).await {
                Ok(Some(url)) => cluster::forward(shard, req, "DELETE", &url, out).await,
                Ok(None) => namespaces::delete(shard, req, out, body).await,
                Err(()) => {}
            }
            Reply::Done
        }
        Endpoint::GetConfig => {
            admin::get_config(shard, req, out, body);
            Reply::Done
        }
        Endpoint::PutConfig => {
            admin::put_config(shard, req, out, body);
            Reply::Done
        }
        Endpoint::Backup => {
            backup::post_backup(shard, req, out, body).await;
            Reply::Done
        }
        Endpoint::Console => {
            crate::ui::serve(req.path, req.if_none_match, req.persist, out);
            Reply::Done
        }
        // Upgrades are answered by the connection (`net::conn`), which owns the socket.
        Endpoint::WebSocket => {
            respond::error(
                out,
                426,
                Persist::Close,
                b"Upgrade: websocket\r\n",
                "use a WebSocket upgrade",
            );
            Reply::Done
        }
        Endpoint::ListEntities => {
            let Some(scope) = read_scope(shard, req, out) else {
                return Reply::Done;
            };
            match list::ListQuery::parse(req.query) {
                Ok(mut q) => {
                    if let Some(prefix) = scope.prefix() {
                        q.restrict(prefix);
                    }
                    if let Err(msg) = list::check_sources(shard, req.forwarded) {
                        respond::error(out, 503, req.persist, b"Retry-After: 1\r\n", &msg);
                        return Reply::Done;
                    }
                    Reply::Stream(q)
                }
                Err(msg) => {
                    respond::error(out, 400, req.persist, b"", msg);
                    Reply::Done
                }
            }
        }
    }
}

/// Answers a refusal; a 401 says which scheme to use (RFC 6750 §3).
#[cold]
pub fn denied(shard: &Shard, out: &mut Vec<u8>, req: &Request<'_>, d: Denied) {
    crate::metrics::ShardCounters::bump(
        &crate::metrics::registry(shard).shard(shard.id).auth_denied,
        1,
    );
    let extra: &[u8] = if d.0 == 401 {
        crate::auth::WWW_AUTHENTICATE
    } else {
        b""
    };
    respond::error(out, d.0, req.persist, extra, d.1);
}

/// What the request may read, or `None` once the refusal is queued.
#[inline]
pub fn read_scope(shard: &Shard, req: &Request<'_>, out: &mut Vec<u8>) -> Option<ReadScope> {
    match req
        .principal
        .read_scope(crate::auth::local(shard).shared().public_reads)
    {
        Ok(scope) => Some(scope),
        Err(d) => {
            denied(shard, out, req, d);
            None
        }
    }
}

/// The answer to writes that could not be applied.
#[cold]
pub fn apply_failed(out: &mut Vec<u8>, req: &Request<'_>, e: &ApplyError) {
    match e {
        ApplyError::Unavailable => unavailable(out),
        ApplyError::Storage(msg) => {
            let msg = format!("storage unavailable, the write was not applied: {msg}");
            respond::error(out, 503, req.persist, b"Retry-After: 1\r\n", &msg);
        }
        ApplyError::Failed(msg) => {
            let msg = format!("the write was not applied: {msg}");
            respond::error(out, 503, req.persist, b"", &msg);
        }
        ApplyError::NotDurable(msg) => {
            let msg = format!(
                "the write was applied but could not be made durable ({msg}); the shard has \
                 failed and refuses writes until restarted, and whether this write survives \
                 the restart is unknown"
            );
            // Applied: not 503, which tells a client "not applied".
            respond::error(out, 500, req.persist, b"", &msg);
        }
        // Committed or maybe applied: not 503, which tells a client "not applied".
        ApplyError::Incomplete(msg) | ApplyError::Unknown(msg) => {
            respond::error(out, 504, req.persist, b"", msg);
        }
        ApplyError::TooLarge(msg) => respond::error(out, 413, req.persist, b"", msg),
    }
}

/// 503 for a shard that is going away mid-request.
#[cold]
pub fn unavailable(out: &mut Vec<u8>) {
    respond::error(
        out,
        503,
        Persist::Close,
        b"Retry-After: 1\r\n",
        "shutting down",
    );
}

/// `GET /health`: 200 `{"status":"ok"}`, or 503 `{"status":"failed"|"stalled",
/// "failed_shards":[{"shard","error"}],"stalled_shards":[{"shard","silent_ms"}]}` once
/// a shard's log failed (it refuses writes until restart; reads go on) or while a
/// shard's executor is stalled (its heartbeat is older than `SHARD_STALL_MS`).
fn health(shard: &Shard, req: &Request<'_>, out: &mut Vec<u8>) {
    // This shard is running a task: it is not stalled, whatever the watch last saw
    // (a long step of work ended just before this request ran).
    shard.shared.beat(shard.id.index());
    let failed = shard.shared.failed_shards();
    let stalled = shard.shared.stalled_shards();
    if failed.is_empty() && stalled.is_empty() {
        respond::json(out, 200, req.persist, b"", b"{\"status\":\"ok\"}");
        return;
    }
    let mut body = if failed.is_empty() {
        b"{\"status\":\"stalled\",\"failed_shards\":[".to_vec()
    } else {
        b"{\"status\":\"failed\",\"failed_shards\":[".to_vec()
    };
    for (n, (i, cause)) in failed.iter().enumerate() {
        if n > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b"{\"shard\":");
        crate::json::write_u64(&mut body, *i as u64);
        body.extend_from_slice(b",\"error\":");
        crate::json::write_str(&mut body, cause.as_bytes());
        body.push(b'}');
    }
    body.extend_from_slice(b"],\"stalled_shards\":[");
    for (n, (i, silent)) in stalled.iter().enumerate() {
        if n > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b"{\"shard\":");
        crate::json::write_u64(&mut body, *i as u64);
        body.extend_from_slice(b",\"silent_ms\":");
        crate::json::write_u64(&mut body, *silent);
        body.push(b'}');
    }
    body.extend_from_slice(b"]}");
    respond::json(out, 503, req.persist, b"", &body);
}

/// 503 while shards recover; `/health` reports progress.
#[cold]
fn recovering(shard: &Shard, endpoint: Endpoint, req: &Request<'_>, out: &mut Vec<u8>) {
    use std::sync::atomic::Ordering;
    let done = shard.shared.recovered.load(Ordering::Acquire);
    let replayed = shard.shared.replayed.load(Ordering::Relaxed);
    if endpoint == Endpoint::Health {
        let body = format!(
            "{{\"status\":\"recovering\",\"shards_recovered\":{done},\"shards\":{},\"records_replayed\":{replayed}}}",
            shard.count
        );
        respond::json(
            out,
            503,
            req.persist,
            b"Retry-After: 1\r\n",
            body.as_bytes(),
        );
    } else {
        let msg = format!("recovering: {done} of {} shards ready", shard.count);
        respond::error(out, 503, req.persist, b"Retry-After: 1\r\n", &msg);
    }
}

/// This shard's histograms and the gauges it computes when asked.
fn metrics_snapshot(shard: &Shard) -> crate::metrics::Snapshot {
    let mut s = crate::metrics::local(shard).hist.borrow().clone();
    s.ws_queue_bytes = crate::ws::hub(shard).queue_memory() as u64;
    s
}

/// `GET /metrics`: every shard's histograms gathered over the mesh (but a stalled
/// shard's), the totals.
/// Cluster mode, a request not forwarded: totals over every node that answered (each
/// reports the groups it serves), and how many answered.
async fn cluster_totals(
    shard: &Shard,
    req: &Request<'_>,
    t: &crate::metrics::Totals,
    body: &mut String,
) {
    use std::fmt::Write;
    if crate::cluster::local(shard).is_none() || req.forwarded {
        return;
    }
    let (mut entities, mut events, mut nodes) = (t.entities, t.events, 1u64);
    if let Ok(others) = cluster::ask_others(shard, req, "GET", b"/metrics", b"").await {
        for b in others {
            entities += cluster::number_after(&b, b"\nflux_entities ").unwrap_or(0);
            events += cluster::number_after(&b, b"\nflux_events_total ").unwrap_or(0);
            nodes += 1;
        }
    }
    let _ = write!(
        body,
        "# HELP flux_cluster_entities Entities over every node that answered (cluster mode).\n\
         # TYPE flux_cluster_entities gauge\nflux_cluster_entities {entities}\n\
         # HELP flux_cluster_events_total Events applied over every node that answered, \
         since each started.\n# TYPE flux_cluster_events_total counter\n\
         flux_cluster_events_total {events}\n\
         # HELP flux_cluster_nodes_answered Nodes in these totals, this one included.\n\
         # TYPE flux_cluster_nodes_answered gauge\nflux_cluster_nodes_answered {nodes}\n"
    );
}

async fn get_metrics(shard: &Shard, req: &Request<'_>, out: &mut Vec<u8>) {
    let mut all = metrics_snapshot(shard);
    for i in 0..shard.count {
        let from = crate::shard::ShardId(i as u16);
        // A stalled shard would not answer: its histograms are left out (the
        // counters, atomics, still count it), and `flux_shards_stalled` says why.
        if from == shard.id || shard.shared.stalled[i].load(std::sync::atomic::Ordering::Acquire) {
            continue;
        }
        match shard.mesh.ask(from, |s| metrics_snapshot(s)).await {
            Ok(s) => all.add(&s),
            Err(_) => return unavailable(out),
        }
    }
    let (t, rate) = crate::metrics::current(shard);
    let shards = crate::metrics::per_shard(shard);
    let mut body = crate::metrics::prom::render(&t, rate, &all, &shards);
    cluster_totals(shard, req, &t, &mut body).await;
    respond::body(
        out,
        200,
        req.persist,
        b"text/plain; version=0.0.4; charset=utf-8",
        body.as_bytes(),
    );
}
