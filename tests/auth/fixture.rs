//! Shared fixture of the auth tests: a server in auth mode, tokens, requests as each
//! kind of caller, and the checks the sections share.

pub(crate) use std::collections::BTreeSet;
pub(crate) use std::thread;
pub(crate) use std::time::{Duration, Instant};

pub(crate) use super::common::*;
pub(crate) use serde_json::{json, Value};

/// At least 32 characters of the bearer-token alphabet.
pub(crate) const ADMIN: &str = "flux-test-admin-token-0123456789abcdef";
pub(crate) const T: Duration = Duration::from_secs(5);

pub(crate) fn auth_env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![("FLUX_AUTH_ENABLED", "true"), ("FLUX_ADMIN_TOKEN", ADMIN)];
    env.extend_from_slice(extra);
    env
}

/// A server in auth mode (2 shards) with `extra` settings.
pub(crate) fn auth_server(extra: &[(&str, &str)]) -> Server {
    Server::start_with(&auth_env(extra))
}

pub(crate) fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// One request on a fresh connection with an optional `Authorization` value.
pub(crate) fn call(
    srv: &Server,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<&str>,
) -> Response {
    let mut headers = Vec::new();
    if let Some(a) = auth {
        headers.push(("Authorization", a));
    }
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    srv.request(method, path, &headers, body.map(str::as_bytes))
}

pub(crate) fn as_token(
    srv: &Server,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Response {
    call(srv, method, path, Some(&bearer(token)), body)
}

pub(crate) fn as_admin(srv: &Server, method: &str, path: &str, body: Option<&str>) -> Response {
    as_token(srv, ADMIN, method, path, body)
}

/// Asserts the status; errors must have the JSON error shape, and a 401 must say
/// which scheme to use (`WWW-Authenticate: Bearer …`).
pub(crate) fn expect(r: &Response, want: u16, what: &str) {
    assert_eq!(
        r.status,
        want,
        "{what}: expected {want}, got {}: {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    if want >= 400 {
        assert_json_error(r);
    }
    if want == 401 {
        assert!(
            r.header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")),
            "{what}: a 401 needs WWW-Authenticate: Bearer; headers {:?}",
            r.headers
        );
    }
}

/// Registers `name` with the admin token; returns its token.
/// A 204 answer: no body, no Content-Length, no Content-Type.
pub(crate) fn expect_no_content(r: &Response, what: &str) {
    expect(r, 204, what);
    assert!(r.body.is_empty(), "{what}: a 204 with a body: {}", r.text());
    assert_eq!(r.header("content-length"), None, "{what}: {:?}", r.headers);
    assert_eq!(r.header("content-type"), None, "{what}: {:?}", r.headers);
}

/// `entityCount` of a namespace, as the admin sees it.
pub(crate) fn entity_count(srv: &Server, name: &str) -> Value {
    let r = as_admin(srv, "GET", &format!("/api/namespaces/{name}"), None);
    expect(&r, 200, &format!("GET {name}"));
    r.json()["entityCount"].clone()
}

pub(crate) fn register(srv: &Server, name: &str) -> String {
    let body = json!({ "name": name }).to_string();
    let r = as_admin(srv, "POST", "/api/namespaces", Some(&body));
    assert_eq!(r.status, 201, "register {name}: {}", r.text());
    r.json()["token"].as_str().expect("token").to_string()
}

pub(crate) fn write_as(srv: &Server, token: &str, id: &str, props: &str) -> Response {
    as_token(srv, token, "POST", "/api/events", Some(&event(id, props)))
}

pub(crate) fn write_ok(srv: &Server, token: &str, id: &str, props: &str) {
    let r = write_as(srv, token, id, props);
    assert_eq!(r.status, 200, "write {id}: {}", r.text());
}

pub(crate) fn batch_as(srv: &Server, token: &str, events: &[String]) -> Response {
    as_token(
        srv,
        token,
        "POST",
        "/api/events/batch",
        Some(&batch_body(events)),
    )
}

/// The entity as the admin sees it; None on 404.
pub(crate) fn admin_entity(srv: &Server, id: &str) -> Option<Value> {
    let r = as_admin(srv, "GET", &entity_path(id), None);
    match r.status {
        200 => Some(r.json()),
        404 => None,
        s => panic!("admin GET {id}: {s} {}", r.text()),
    }
}

pub(crate) fn exists(srv: &Server, id: &str) -> bool {
    admin_entity(srv, id).is_some()
}

/// Ids of the listing for `query` as `auth` sees it (asserts 200).
pub(crate) fn listing(srv: &Server, auth: Option<&str>, query: &str) -> Vec<String> {
    let path = format!("/api/state/entities?{query}");
    let r = call(srv, "GET", &path, auth, None);
    assert_eq!(r.status, 200, "GET {path} as {auth:?}: {}", r.text());
    r.json()
        .as_array()
        .expect("listing is an array")
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_string())
        .collect()
}

/// Names in a `{"namespaces":[…]}` answer (asserts 200).
pub(crate) fn namespace_names(r: &Response) -> Vec<String> {
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    v["namespaces"]
        .as_array()
        .unwrap_or_else(|| panic!("no namespaces array: {v}"))
        .iter()
        .map(|n| {
            assert!(n.get("token").is_none(), "a listing shows a token: {n}");
            n["name"].as_str().expect("name").to_string()
        })
        .collect()
}

/// `n` (at least 2) ids `<prefix><i>`, half of them owned by each of the 2 shards.
pub(crate) fn spanning(prefix: &str, n: usize) -> Vec<String> {
    let mut v = on_shard(prefix, 0, n.div_ceil(2));
    v.extend(on_shard(prefix, 1, n / 2));
    assert_spans_two_shards(v.iter().map(String::as_str));
    v
}

/// `n` ids `<prefix><i>` owned by shard `shard` of 2.
pub(crate) fn on_shard(prefix: &str, shard: u64, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .filter(|id| owner_shard(id, 2) == shard)
        .take(n)
        .collect()
}

pub(crate) fn retry_after(r: &Response) -> u64 {
    let v = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("429 without Retry-After: {:?}", r.headers));
    let secs: u64 = v
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After {v:?} is not an integer number of seconds"));
    assert!(secs >= 1, "Retry-After {secs}");
    secs
}

pub(crate) fn expect_429(r: &Response, what: &str) -> u64 {
    expect(r, 429, what);
    retry_after(r)
}

/// The raw upgrade request for `path` (which may carry `?token=`).
pub(crate) fn ws_request(path: &str, key: &str, auth: Option<&str>) -> String {
    let mut s = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    if let Some(a) = auth {
        s.push_str(&format!("Authorization: {a}\r\n"));
    }
    s.push_str("\r\n");
    s
}

pub(crate) fn ws_try(srv: &Server, path: &str, auth: Option<&str>) -> Result<WsClient, Response> {
    let key = ws_key(unique() ^ 0xa17);
    WsClient::upgrade_with(srv.port(), ws_request(path, &key, auth).as_bytes(), &key)
}

pub(crate) fn ws_connect(srv: &Server, path: &str, auth: Option<&str>) -> WsClient {
    ws_try(srv, path, auth).unwrap_or_else(|r| {
        panic!(
            "upgrade {path} refused: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        )
    })
}

pub(crate) fn ws_refused(srv: &Server, path: &str, auth: Option<&str>, what: &str) -> Response {
    match ws_try(srv, path, auth) {
        Ok(_) => panic!("{what}: the upgrade was accepted"),
        Err(r) => {
            expect(&r, 401, what);
            r
        }
    }
}

/// Entity ids of the `state_update` messages in `msgs`.
pub(crate) fn updated_ids(msgs: &[Value]) -> BTreeSet<String> {
    msgs.iter()
        .filter(|m| m["type"] == "state_update")
        .map(|m| m["entity_id"].as_str().expect("entity_id").to_string())
        .collect()
}

/// Reads messages until a `state_update` of every id in `want` arrived (or `T`).
pub(crate) fn collect_updates_of(c: &mut WsClient, want: &BTreeSet<String>) -> Vec<Value> {
    c.collect(T, false, |got| updated_ids(got).is_superset(want))
}

/// Who sends a request in the matrix tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Who {
    /// No `Authorization` header.
    Nobody,
    /// A well-formed bearer token that nobody holds.
    Unknown,
    /// Another scheme.
    Malformed,
    /// The other namespace's (`bravo`) token.
    Other,
    /// The target namespace's (`alpha`) token.
    Own,
    Admin,
}
pub(crate) use Who::*;

pub(crate) const EVERYONE: [Who; 6] = [Nobody, Unknown, Malformed, Other, Own, Admin];

/// A server in auth mode with the namespaces `alpha` (own) and `bravo` (other).
pub(crate) struct Fixture {
    pub(crate) srv: Server,
    pub(crate) alpha: String,
    pub(crate) bravo: String,
}

impl Fixture {
    pub(crate) fn start(extra: &[(&str, &str)]) -> Fixture {
        let srv = auth_server(extra);
        let alpha = register(&srv, "alpha");
        let bravo = register(&srv, "bravo");
        Fixture { srv, alpha, bravo }
    }

    pub(crate) fn auth(&self, who: Who) -> Option<String> {
        match who {
            Nobody => None,
            Unknown => Some(bearer(&format!("flux_{}", "0".repeat(64)))),
            Malformed => Some("Basic YWxwaGE6c2VjcmV0".to_string()),
            Other => Some(bearer(&self.bravo)),
            Own => Some(bearer(&self.alpha)),
            Admin => Some(bearer(ADMIN)),
        }
    }

    pub(crate) fn call(&self, who: Who, method: &str, path: &str, body: Option<&str>) -> Response {
        call(&self.srv, method, path, self.auth(who).as_deref(), body)
    }

    /// Sends the request as everyone and checks the statuses (in `EVERYONE` order).
    pub(crate) fn matrix(&self, method: &str, path: &str, body: Option<&str>, want: [u16; 6]) {
        for (who, want) in EVERYONE.into_iter().zip(want) {
            let r = self.call(who, method, path, body);
            expect(&r, want, &format!("{method} {path} as {who:?}"));
        }
    }
}

/// 401 for no, unknown and malformed tokens, 403 for a namespace's token writing
/// elsewhere, 200 for its own and the admin's.
pub(crate) fn write_status(who: Who) -> u16 {
    match who {
        Nobody | Unknown | Malformed => 401,
        Other => 403,
        Own | Admin => 200,
    }
}

/// Writes single events to `alpha/<tag>-<i>` on fresh connections until one is
/// refused; returns how many were accepted and the refusal.
pub(crate) fn write_until_refused(
    srv: &Server,
    token: &str,
    tag: &str,
    max: usize,
) -> (usize, Response) {
    for i in 0..max {
        let id = format!("alpha/{tag}-{i}");
        let r = write_as(srv, token, &id, r#"{"r":1}"#);
        match r.status {
            200 => {}
            429 => {
                assert!(!exists(srv, &id), "{id} was refused but applied");
                return (i, r);
            }
            s => panic!("write {id}: {s} {}", r.text()),
        }
    }
    panic!("no 429 after {max} events");
}
