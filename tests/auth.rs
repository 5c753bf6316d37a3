//! Black-box tests of auth mode (DECISIONS.md "Namespaces and auth"): registering,
//! reading and deleting namespaces; writes, deletes and reads per token (no token, an
//! unknown or malformed one, another namespace's, the namespace's own, the admin's) with
//! the default token-scoped reads and with `FLUX_PUBLIC_READS=true`; WebSocket
//! subscriptions confined to a namespace; per-namespace rate limits enforced across
//! shards; `/api/admin/config` applied on every shard at once; tokens never leaking;
//! the registry across restarts, kill -9 and damage; start-up checks; open mode.
//!
//! The shared conformance suite covers auth with public reads on; these tests cover
//! the default (reads need a token) and one server with public reads.

mod common;

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// At least 32 characters of the bearer-token alphabet.
const ADMIN: &str = "flux-test-admin-token-0123456789abcdef";
const T: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------

fn auth_env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![("FLUX_AUTH_ENABLED", "true"), ("FLUX_ADMIN_TOKEN", ADMIN)];
    env.extend_from_slice(extra);
    env
}

/// A server in auth mode (2 shards) with `extra` settings.
fn auth_server(extra: &[(&str, &str)]) -> Server {
    Server::start_with(&auth_env(extra))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// One request on a fresh connection with an optional `Authorization` value.
fn call(
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

fn as_token(srv: &Server, token: &str, method: &str, path: &str, body: Option<&str>) -> Response {
    call(srv, method, path, Some(&bearer(token)), body)
}

fn as_admin(srv: &Server, method: &str, path: &str, body: Option<&str>) -> Response {
    as_token(srv, ADMIN, method, path, body)
}

/// Asserts the status; errors must have the JSON error shape, and a 401 must say
/// which scheme to use (`WWW-Authenticate: Bearer …`).
fn expect(r: &Response, want: u16, what: &str) {
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
fn expect_no_content(r: &Response, what: &str) {
    expect(r, 204, what);
    assert!(r.body.is_empty(), "{what}: a 204 with a body: {}", r.text());
    assert_eq!(r.header("content-length"), None, "{what}: {:?}", r.headers);
    assert_eq!(r.header("content-type"), None, "{what}: {:?}", r.headers);
}

/// `entityCount` of a namespace, as the admin sees it.
fn entity_count(srv: &Server, name: &str) -> Value {
    let r = as_admin(srv, "GET", &format!("/api/namespaces/{name}"), None);
    expect(&r, 200, &format!("GET {name}"));
    r.json()["entityCount"].clone()
}

fn register(srv: &Server, name: &str) -> String {
    let body = json!({ "name": name }).to_string();
    let r = as_admin(srv, "POST", "/api/namespaces", Some(&body));
    assert_eq!(r.status, 201, "register {name}: {}", r.text());
    r.json()["token"].as_str().expect("token").to_string()
}

fn write_as(srv: &Server, token: &str, id: &str, props: &str) -> Response {
    as_token(srv, token, "POST", "/api/events", Some(&event(id, props)))
}

fn write_ok(srv: &Server, token: &str, id: &str, props: &str) {
    let r = write_as(srv, token, id, props);
    assert_eq!(r.status, 200, "write {id}: {}", r.text());
}

fn batch_as(srv: &Server, token: &str, events: &[String]) -> Response {
    as_token(
        srv,
        token,
        "POST",
        "/api/events/batch",
        Some(&batch_body(events)),
    )
}

/// The entity as the admin sees it; None on 404.
fn admin_entity(srv: &Server, id: &str) -> Option<Value> {
    let r = as_admin(srv, "GET", &entity_path(id), None);
    match r.status {
        200 => Some(r.json()),
        404 => None,
        s => panic!("admin GET {id}: {s} {}", r.text()),
    }
}

fn exists(srv: &Server, id: &str) -> bool {
    admin_entity(srv, id).is_some()
}

/// Ids of the listing for `query` as `auth` sees it (asserts 200).
fn listing(srv: &Server, auth: Option<&str>, query: &str) -> Vec<String> {
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
fn namespace_names(r: &Response) -> Vec<String> {
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
fn spanning(prefix: &str, n: usize) -> Vec<String> {
    let mut v = on_shard(prefix, 0, n.div_ceil(2));
    v.extend(on_shard(prefix, 1, n / 2));
    assert_spans_two_shards(v.iter().map(String::as_str));
    v
}

/// `n` ids `<prefix><i>` owned by shard `shard` of 2.
fn on_shard(prefix: &str, shard: u64, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .filter(|id| owner_shard(id, 2) == shard)
        .take(n)
        .collect()
}

fn retry_after(r: &Response) -> u64 {
    let v = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("429 without Retry-After: {:?}", r.headers));
    let secs: u64 = v
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After {v:?} is not an integer number of seconds"));
    assert!(secs >= 1, "Retry-After {secs}");
    secs
}

fn expect_429(r: &Response, what: &str) -> u64 {
    expect(r, 429, what);
    retry_after(r)
}

/// The raw upgrade request for `path` (which may carry `?token=`).
fn ws_request(path: &str, key: &str, auth: Option<&str>) -> String {
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

fn ws_try(srv: &Server, path: &str, auth: Option<&str>) -> Result<WsClient, Response> {
    let key = ws_key(unique() ^ 0xa17);
    WsClient::upgrade_with(srv.port(), ws_request(path, &key, auth).as_bytes(), &key)
}

fn ws_connect(srv: &Server, path: &str, auth: Option<&str>) -> WsClient {
    ws_try(srv, path, auth).unwrap_or_else(|r| {
        panic!(
            "upgrade {path} refused: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        )
    })
}

fn ws_refused(srv: &Server, path: &str, auth: Option<&str>, what: &str) -> Response {
    match ws_try(srv, path, auth) {
        Ok(_) => panic!("{what}: the upgrade was accepted"),
        Err(r) => {
            expect(&r, 401, what);
            r
        }
    }
}

/// Entity ids of the `state_update` messages in `msgs`.
fn updated_ids(msgs: &[Value]) -> BTreeSet<String> {
    msgs.iter()
        .filter(|m| m["type"] == "state_update")
        .map(|m| m["entity_id"].as_str().expect("entity_id").to_string())
        .collect()
}

/// Reads messages until a `state_update` of every id in `want` arrived (or `T`).
fn collect_updates_of(c: &mut WsClient, want: &BTreeSet<String>) -> Vec<Value> {
    c.collect(T, false, |got| updated_ids(got).is_superset(want))
}

/// Who sends a request in the matrix tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
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
use Who::*;

const EVERYONE: [Who; 6] = [Nobody, Unknown, Malformed, Other, Own, Admin];

/// A server in auth mode with the namespaces `alpha` (own) and `bravo` (other).
struct Fixture {
    srv: Server,
    alpha: String,
    bravo: String,
}

impl Fixture {
    fn start(extra: &[(&str, &str)]) -> Fixture {
        let srv = auth_server(extra);
        let alpha = register(&srv, "alpha");
        let bravo = register(&srv, "bravo");
        Fixture { srv, alpha, bravo }
    }

    fn auth(&self, who: Who) -> Option<String> {
        match who {
            Nobody => None,
            Unknown => Some(bearer(&format!("flux_{}", "0".repeat(64)))),
            Malformed => Some("Basic YWxwaGE6c2VjcmV0".to_string()),
            Other => Some(bearer(&self.bravo)),
            Own => Some(bearer(&self.alpha)),
            Admin => Some(bearer(ADMIN)),
        }
    }

    fn call(&self, who: Who, method: &str, path: &str, body: Option<&str>) -> Response {
        call(&self.srv, method, path, self.auth(who).as_deref(), body)
    }

    /// Sends the request as everyone and checks the statuses (in `EVERYONE` order).
    fn matrix(&self, method: &str, path: &str, body: Option<&str>, want: [u16; 6]) {
        for (who, want) in EVERYONE.into_iter().zip(want) {
            let r = self.call(who, method, path, body);
            expect(&r, want, &format!("{method} {path} as {who:?}"));
        }
    }
}

/// 401 for no, unknown and malformed tokens, 403 for a namespace's token writing
/// elsewhere, 200 for its own and the admin's.
fn write_status(who: Who) -> u16 {
    match who {
        Nobody | Unknown | Malformed => 401,
        Other => 403,
        Own | Admin => 200,
    }
}

// ---------------------------------------------------------------------------------
// namespaces
// ---------------------------------------------------------------------------------

#[test]
fn registration_answers_the_token_once_and_needs_the_admin_token() {
    let srv = auth_server(&[]);
    let t0 = now_ms();
    let r = as_admin(&srv, "POST", "/api/namespaces", Some(r#"{"name":"alpha"}"#));
    expect(&r, 201, "register alpha");
    assert_eq!(
        r.header("cache-control"),
        Some("no-store"),
        "{:?}",
        r.headers
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    let mut keys: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["createdAt", "name", "namespaceId", "token"], "{v}");
    assert_eq!(v["name"], "alpha");
    let ns_id = v["namespaceId"].as_str().expect("namespaceId").to_string();
    assert_eq!(ns_id.len(), 36, "{ns_id}");
    assert_eq!(ns_id.as_bytes()[14], b'7', "a UUIDv7: {ns_id}");
    let created = v["createdAt"].as_str().expect("createdAt").to_string();
    let created_ms = parse_rfc3339_ms(&created).expect("createdAt is RFC 3339 with ms");
    assert!(created_ms.abs_diff(t0) < 60_000, "{created}");
    let alpha = v["token"].as_str().expect("token").to_string();
    // 256 random bits need at least 43 characters (base64); only b64token characters.
    assert!(
        alpha.len() >= 43,
        "token too short: {} characters",
        alpha.len()
    );
    assert!(
        alpha
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)),
        "token is not a b64token"
    );
    let bravo = register(&srv, "bravo");
    assert_ne!(alpha, bravo);
    assert_ne!(alpha[..alpha.len() / 2], bravo[..bravo.len() / 2]);

    // The namespace as GET shows it: the same fields, without the token, with the
    // number of its entities.
    let g = as_admin(&srv, "GET", "/api/namespaces/alpha", None);
    expect(&g, 200, "GET alpha");
    assert_eq!(
        g.json(),
        json!({"namespaceId": ns_id, "name": "alpha", "createdAt": created, "entityCount": 0})
    );
    write_ok(&srv, &alpha, "alpha/first", r#"{"ok":true}"#);

    // Names: 3-32 characters of a-z 0-9 _ -.
    let long = "x".repeat(33);
    for name in [
        "ab",
        long.as_str(),
        "Upper",
        "has space",
        "bad/slash",
        "bad.dot",
        "",
    ] {
        let body = json!({ "name": name }).to_string();
        let r = as_admin(&srv, "POST", "/api/namespaces", Some(&body));
        expect(&r, 400, &format!("register {name:?}"));
    }
    for body in [r#"{"name":5}"#, r#"{"nom":"abcd"}"#, "not json", "[]", "{}"] {
        let r = as_admin(&srv, "POST", "/api/namespaces", Some(body));
        expect(&r, 400, &format!("register with {body}"));
    }
    let longest = "z".repeat(32);
    for name in ["abc", "a-b_c9", longest.as_str()] {
        register(&srv, name);
    }
    for name in ["alpha", "abc"] {
        let body = json!({ "name": name }).to_string();
        let r = as_admin(&srv, "POST", "/api/namespaces", Some(&body));
        expect(&r, 409, &format!("register {name} again"));
    }
    // The duplicate did not replace the first token.
    write_ok(&srv, &alpha, "alpha/second", r#"{"ok":true}"#);

    // Only the admin registers.
    let fx = Fixture { srv, alpha, bravo };
    for who in [Nobody, Unknown, Malformed, Other, Own] {
        let r = fx.call(
            who,
            "POST",
            "/api/namespaces",
            Some(r#"{"name":"charlie"}"#),
        );
        let want = if matches!(who, Other | Own) { 403 } else { 401 };
        expect(&r, want, &format!("register as {who:?}"));
    }
    let r = as_admin(&fx.srv, "GET", "/api/namespaces/charlie", None);
    expect(&r, 404, "charlie was never registered");
    let names = namespace_names(&as_admin(&fx.srv, "GET", "/api/state/namespaces", None));
    assert_eq!(names, ["a-b_c9", "abc", "alpha", "bravo", longest.as_str()]);
}

#[test]
fn namespaces_are_visible_to_the_admin_and_their_own_token_only() {
    let fx = Fixture::start(&[]);
    // GET /api/namespaces/alpha.
    fx.matrix(
        "GET",
        "/api/namespaces/alpha",
        None,
        [401, 401, 401, 404, 200, 200],
    );
    for who in [Own, Admin] {
        let r = fx.call(who, "GET", "/api/namespaces/alpha", None);
        assert_eq!(r.json()["name"], "alpha");
        assert!(r.json().get("token").is_none(), "{}", r.text());
    }
    // Another namespace looks exactly like one that does not exist.
    let other = fx.call(Own, "GET", "/api/namespaces/bravo", None);
    let missing = fx.call(Own, "GET", "/api/namespaces/nosuch", None);
    expect(&other, 404, "bravo as alpha");
    expect(&missing, 404, "nosuch as alpha");
    assert_eq!(other.body, missing.body);
    expect(
        &fx.call(Admin, "GET", "/api/namespaces/nosuch", None),
        404,
        "nosuch as admin",
    );
    expect(
        &fx.call(Admin, "GET", "/api/namespaces/alpha%2Fx", None),
        404,
        "a name with a slash",
    );

    // The listing: everything for the admin, its own for a namespace token.
    for path in ["/api/state/namespaces", "/api/namespaces"] {
        for who in EVERYONE {
            let r = fx.call(who, "GET", path, None);
            let want: &[&str] = match who {
                Nobody | Unknown | Malformed => {
                    expect(&r, 401, &format!("GET {path} as {who:?}"));
                    continue;
                }
                Other => &["bravo"],
                Own => &["alpha"],
                Admin => &["alpha", "bravo"],
            };
            assert_eq!(namespace_names(&r), want, "GET {path} as {who:?}");
        }
    }

    // Deleting needs the admin token; refused attempts change nothing.
    for who in [Nobody, Unknown, Malformed, Other, Own] {
        let r = fx.call(who, "DELETE", "/api/namespaces/alpha", None);
        let want = if matches!(who, Other | Own) { 403 } else { 401 };
        expect(&r, want, &format!("DELETE alpha as {who:?}"));
    }
    expect(
        &fx.call(Admin, "GET", "/api/namespaces/alpha", None),
        200,
        "alpha after refused deletions",
    );
    write_ok(&fx.srv, &fx.alpha, "alpha/still", r#"{"ok":true}"#);
    expect(
        &fx.call(Admin, "DELETE", "/api/namespaces/nosuch", None),
        404,
        "DELETE an unknown namespace",
    );
}

#[test]
fn namespace_deletion_removes_its_entities_and_token_and_frees_the_name() {
    let fx = Fixture::start(&[]);
    let srv = &fx.srv;
    let alpha_ids = spanning("alpha/e-", 12);
    let bravo_ids = spanning("bravo/e-", 4);
    let events: Vec<String> = alpha_ids.iter().map(|id| event(id, r#"{"a":1}"#)).collect();
    assert_eq!(batch_as(srv, &fx.alpha, &events).status, 200);
    let events: Vec<String> = bravo_ids.iter().map(|id| event(id, r#"{"b":1}"#)).collect();
    assert_eq!(batch_as(srv, &fx.bravo, &events).status, 200);
    // One entity deleted before: not counted again.
    let r = as_token(srv, &fx.alpha, "DELETE", &entity_path(&alpha_ids[0]), None);
    expect(&r, 200, "delete one alpha entity");
    let mut watcher = ws_connect(srv, "/api/ws", Some(&bearer(ADMIN)));
    watcher.subscribe("*");

    let r = as_admin(srv, "GET", "/api/namespaces/alpha", None);
    assert_eq!(r.json()["entityCount"], 11, "{}", r.text());
    let r = as_admin(srv, "DELETE", "/api/namespaces/alpha", None);
    expect_no_content(&r, "DELETE alpha");
    // Tombstones, like any deletion: subscribers see them.
    let got = watcher.collect(T, false, |g| g.len() >= 11);
    assert!(got.iter().all(|m| m["type"] == "entity_deleted"), "{got:?}");
    let deleted: BTreeSet<&str> = got
        .iter()
        .map(|m| m["entity_id"].as_str().unwrap())
        .collect();
    let want: BTreeSet<&str> = alpha_ids[1..].iter().map(String::as_str).collect();
    assert_eq!(deleted, want);

    for id in &alpha_ids {
        assert!(!exists(srv, id), "{id} survived its namespace");
        let r = as_admin(srv, "GET", &format!("/api/events?entity={}", pct(id)), None);
        expect(&r, 404, "history of a deleted namespace's entity");
    }
    assert!(listing(srv, Some(&bearer(ADMIN)), "prefix=alpha%2F").is_empty());
    // The token is dead everywhere.
    let old = fx.alpha.clone();
    expect(
        &write_as(srv, &old, "alpha/after", "{}"),
        401,
        "write with a dead token",
    );
    expect(
        &as_token(srv, &old, "GET", &entity_path(&alpha_ids[1]), None),
        401,
        "read with a dead token",
    );
    expect(
        &as_token(srv, &old, "GET", "/api/state/namespaces", None),
        401,
        "list with a dead token",
    );
    ws_refused(
        srv,
        &format!("/api/ws?token={old}"),
        None,
        "WS with a dead token",
    );
    // The admin can no longer write there either: the namespace is not registered.
    expect(
        &write_as(srv, ADMIN, "alpha/after", "{}"),
        400,
        "admin write to a deleted namespace",
    );
    expect(
        &as_admin(srv, "GET", "/api/namespaces/alpha", None),
        404,
        "GET deleted",
    );
    expect(
        &as_admin(srv, "DELETE", "/api/namespaces/alpha", None),
        404,
        "DELETE twice",
    );
    let names = namespace_names(&as_admin(srv, "GET", "/api/state/namespaces", None));
    assert_eq!(names, ["bravo"]);
    // bravo is untouched.
    for id in &bravo_ids {
        assert!(exists(srv, id), "{id} lost with another namespace");
    }
    write_ok(srv, &fx.bravo, "bravo/after", "{}");

    // The name is free again and starts empty, with a new token.
    let fresh = register(srv, "alpha");
    assert_ne!(fresh, old);
    assert!(listing(srv, Some(&bearer(&fresh)), "").is_empty());
    expect(
        &as_token(srv, &fresh, "GET", &entity_path(&alpha_ids[1]), None),
        404,
        "old entity under the new namespace",
    );
    write_ok(srv, &fresh, "alpha/reborn", r#"{"n":2}"#);
    let e = admin_entity(srv, "alpha/reborn").expect("written");
    assert_eq!(e["properties"], json!({"n": 2}));
    expect(
        &write_as(srv, &old, "alpha/x", "{}"),
        401,
        "the old token stays dead",
    );
}

#[test]
fn a_namespace_counts_its_entities_on_every_shard() {
    let fx = Fixture::start(&[]);
    let srv = &fx.srv;
    // Names that share a prefix with alpha (`alphabet`, `alpha0` sorts right after
    // `alpha/`) must not be counted with it, nor must bravo.
    let alphabet = register(srv, "alphabet");
    let alpha0 = register(srv, "alpha0");
    let alpha_ids = spanning("alpha/c-", 40);
    let events: Vec<String> = alpha_ids.iter().map(|id| event(id, r#"{"a":1}"#)).collect();
    assert_eq!(batch_as(srv, &fx.alpha, &events).status, 200);
    // Ids with more slashes are the namespace's too; writing one again adds nothing.
    write_ok(srv, &fx.alpha, "alpha/deep/er/id", "{}");
    write_ok(srv, &fx.alpha, &alpha_ids[0], r#"{"again":true}"#);
    for (token, prefix, n) in [
        (&fx.bravo, "bravo/c-", 7),
        (&alphabet, "alphabet/c-", 5),
        (&alpha0, "alpha0/c-", 3),
    ] {
        let events: Vec<String> = spanning(prefix, n)
            .iter()
            .map(|id| event(id, "{}"))
            .collect();
        assert_eq!(batch_as(srv, token, &events).status, 200);
    }
    assert_eq!(entity_count(srv, "alpha"), 41);
    assert_eq!(entity_count(srv, "bravo"), 7);
    assert_eq!(entity_count(srv, "alphabet"), 5);
    assert_eq!(entity_count(srv, "alpha0"), 3);
    // The namespace's own token sees the same count.
    let r = fx.call(Own, "GET", "/api/namespaces/alpha", None);
    assert_eq!(r.json()["entityCount"], 41, "{}", r.text());
    // Deletions on both shards count down.
    let r = as_token(
        srv,
        &fx.alpha,
        "POST",
        "/api/state/entities/delete",
        Some(&json!({ "entity_ids": &alpha_ids[..10] }).to_string()),
    );
    assert_eq!(r.json()["deleted"], 10, "{}", r.text());
    assert_eq!(entity_count(srv, "alpha"), 31);
    assert_eq!(
        entity_count(srv, "alpha"),
        listing(srv, Some(&bearer(&fx.alpha)), "").len()
    );
    // Deleting the namespace: 204, then it is gone and the others keep their counts.
    expect_no_content(
        &as_admin(srv, "DELETE", "/api/namespaces/alpha", None),
        "DELETE alpha",
    );
    expect(
        &as_admin(srv, "GET", "/api/namespaces/alpha", None),
        404,
        "GET deleted alpha",
    );
    assert_eq!(entity_count(srv, "alphabet"), 5);
    assert_eq!(entity_count(srv, "alpha0"), 3);
    register(srv, "alpha");
    assert_eq!(entity_count(srv, "alpha"), 0);
}

#[test]
fn an_open_subscription_of_a_deleted_namespace_gets_nothing_of_its_successor() {
    let srv = auth_server(&[]);
    let old = register(&srv, "alpha");
    let mut stale = ws_connect(&srv, "/api/ws", Some(&bearer(&old)));
    stale.subscribe("*");
    let mut by_query = ws_connect(&srv, &format!("/api/ws?token={old}"), None);
    by_query.subscribe("alpha/*");
    write_ok(&srv, &old, "alpha/mine", r#"{"v":1}"#);
    let want: BTreeSet<String> = ["alpha/mine".to_string()].into();
    for c in [&mut stale, &mut by_query] {
        let got = collect_updates_of(c, &want);
        assert_eq!(updated_ids(&got), want);
    }

    expect_no_content(
        &as_admin(&srv, "DELETE", "/api/namespaces/alpha", None),
        "DELETE alpha",
    );
    let fresh = register(&srv, "alpha");
    let mut admin = ws_connect(&srv, "/api/ws", Some(&bearer(ADMIN)));
    admin.subscribe("*");
    let secret = spanning("alpha/secret-", 6);
    let events: Vec<String> = secret.iter().map(|id| event(id, r#"{"s":1}"#)).collect();
    assert_eq!(batch_as(&srv, &fresh, &events).status, 200);
    let want: BTreeSet<String> = secret.iter().cloned().collect();
    let got = collect_updates_of(&mut admin, &want);
    assert_eq!(updated_ids(&got), want, "the admin sees the new namespace");
    // The old token's connections may be closed or stay quiet, but must never see the
    // new owner's entities.
    for (name, c) in [("header", &mut stale), ("?token=", &mut by_query)] {
        let got = c.collect(Duration::from_millis(500), false, |_| false);
        let leaked: Vec<&Value> = got
            .iter()
            .filter(|m| {
                m["type"] == "state_update"
                    && m["entity_id"]
                        .as_str()
                        .is_some_and(|id| id.starts_with("alpha/secret-"))
            })
            .collect();
        assert!(
            leaked.is_empty(),
            "a connection of the deleted namespace's token ({name}) received the new \
             namespace's updates: {leaked:?}"
        );
    }
}

// ---------------------------------------------------------------------------------
// writes
// ---------------------------------------------------------------------------------

#[test]
fn writes_by_token() {
    let fx = Fixture::start(&[]);
    let srv = &fx.srv;
    for who in EVERYONE {
        let want = write_status(who);
        let ok = want == 200;
        let tag = format!("{who:?}").to_lowercase();

        let id = format!("alpha/single-{tag}");
        let r = fx.call(who, "POST", "/api/events", Some(&event(&id, r#"{"v":1}"#)));
        expect(&r, want, &format!("POST /api/events as {who:?}"));
        if ok {
            assert!(r.json()["eventId"].is_string(), "{}", r.text());
        }
        assert_eq!(exists(srv, &id), ok, "{id} as {who:?}");

        let ids = spanning(&format!("alpha/batch-{tag}-"), 6);
        let events: Vec<String> = ids.iter().map(|id| event(id, r#"{"v":1}"#)).collect();
        let r = fx.call(who, "POST", "/api/events/batch", Some(&batch_body(&events)));
        expect(&r, want, &format!("POST /api/events/batch as {who:?}"));
        if ok {
            assert_eq!(r.json()["successful"], 6, "{}", r.text());
        }
        for id in &ids {
            assert_eq!(exists(srv, id), ok, "{id} as {who:?}");
        }

        // DELETE of one entity (percent-encoded id), created by the admin.
        let id = format!("alpha/del-{tag}");
        write_ok(srv, ADMIN, &id, r#"{"v":1}"#);
        let r = fx.call(who, "DELETE", &entity_path(&id), None);
        expect(&r, want, &format!("DELETE {id} as {who:?}"));
        if ok {
            assert_eq!(r.json()["entity_id"], id.as_str());
        }
        assert_eq!(exists(srv, &id), !ok, "{id} after DELETE as {who:?}");

        // Batch delete by ids on both shards.
        let ids = spanning(&format!("alpha/bdel-{tag}-"), 4);
        let events: Vec<String> = ids.iter().map(|id| event(id, r#"{"v":1}"#)).collect();
        assert_eq!(batch_as(srv, ADMIN, &events).status, 200);
        let body = json!({ "entity_ids": ids }).to_string();
        let r = fx.call(who, "POST", "/api/state/entities/delete", Some(&body));
        expect(&r, want, &format!("batch delete as {who:?}"));
        if ok {
            assert_eq!(r.json()["deleted"], 4, "{}", r.text());
        }
        for id in &ids {
            assert_eq!(exists(srv, id), !ok, "{id} after batch delete as {who:?}");
        }
    }

    // Authorization values that are no bearer token, or no token of anybody's.
    let alpha = &fx.alpha;
    let malformed = [
        "Bearer".to_string(),
        "Bearer ".to_string(),
        "token".to_string(),
        "Bearer a b".to_string(),
        format!("Basic {alpha}"),
        alpha.clone(),
        format!("Bearer {alpha}x"),
        format!("Bearer {}", &alpha[..alpha.len() - 1]),
        format!("Bearer \"{alpha}\""),
    ];
    for (i, header) in malformed.iter().enumerate() {
        let id = format!("alpha/malformed-{i}");
        let r = call(
            srv,
            "POST",
            "/api/events",
            Some(header),
            Some(&event(&id, "{}")),
        );
        expect(&r, 401, &format!("Authorization: {header:?}"));
        assert!(!exists(srv, &id), "written with {header:?}");
    }
    // The scheme is case-insensitive (RFC 6750 / RFC 9110).
    for (i, scheme) in ["bearer", "BEARER"].iter().enumerate() {
        let id = format!("alpha/scheme-{i}");
        let header = format!("{scheme} {alpha}");
        let r = call(
            srv,
            "POST",
            "/api/events",
            Some(&header),
            Some(&event(&id, "{}")),
        );
        expect(&r, 200, &format!("scheme {scheme}"));
    }
}

#[test]
fn writes_outside_the_tokens_namespace_are_refused_and_nothing_is_applied() {
    let fx = Fixture::start(&[]);
    let srv = &fx.srv;
    let (alpha, bravo) = (&fx.alpha, &fx.bravo);

    expect(
        &write_as(srv, alpha, "bravo/x", "{}"),
        403,
        "alpha writes bravo",
    );
    assert!(!exists(srv, "bravo/x"));
    expect(&write_as(srv, alpha, "plain", "{}"), 400, "no namespace");
    expect(
        &write_as(srv, ADMIN, "plain", "{}"),
        400,
        "admin, no namespace",
    );
    assert!(!exists(srv, "plain"));
    expect(
        &write_as(srv, ADMIN, "zulu/x", "{}"),
        400,
        "admin, unregistered",
    );
    expect(
        &write_as(srv, alpha, "zulu/x", "{}"),
        403,
        "alpha, unregistered",
    );
    assert!(!exists(srv, "zulu/x"));
    // The admin writes to any registered namespace.
    write_ok(srv, ADMIN, "bravo/by-admin", r#"{"a":1}"#);
    write_ok(srv, ADMIN, "alpha/by-admin", r#"{"a":1}"#);

    // A batch with one foreign event is refused whole.
    let own = spanning("alpha/mixed-", 6);
    let mut events: Vec<String> = own.iter().map(|id| event(id, r#"{"v":1}"#)).collect();
    events.insert(3, event("bravo/smuggled", r#"{"v":1}"#));
    let r = batch_as(srv, alpha, &events);
    expect(&r, 403, "batch with a foreign event");
    assert_eq!(r.json()["successful"], 0, "{}", r.text());
    for id in own.iter().map(String::as_str).chain(["bravo/smuggled"]) {
        assert!(!exists(srv, id), "{id} applied from a refused batch");
    }
    // With an id without namespace: 400, nothing applied.
    let mut events: Vec<String> = own.iter().map(|id| event(id, r#"{"v":1}"#)).collect();
    events.push(event("plain", "{}"));
    expect(
        &batch_as(srv, alpha, &events),
        400,
        "batch with an un-namespaced id",
    );
    // The admin's batch over namespaces: one unregistered namespace refuses all.
    let events = vec![
        event("alpha/adm-1", "{}"),
        event("bravo/adm-1", "{}"),
        event("zulu/adm-1", "{}"),
    ];
    expect(
        &batch_as(srv, ADMIN, &events),
        400,
        "admin batch, one unregistered",
    );
    for id in own
        .iter()
        .map(String::as_str)
        .chain(["alpha/adm-1", "bravo/adm-1"])
    {
        assert!(!exists(srv, id), "{id} applied from a refused batch");
    }
    let r = batch_as(srv, ADMIN, &events[..2]);
    expect(&r, 200, "admin batch over two namespaces");
    assert!(exists(srv, "alpha/adm-1") && exists(srv, "bravo/adm-1"));

    // Single deletes of another namespace's entity.
    write_ok(srv, bravo, "bravo/keep", r#"{"k":1}"#);
    let r = as_token(srv, alpha, "DELETE", &entity_path("bravo/keep"), None);
    expect(&r, 403, "alpha deletes bravo's entity");
    let r = as_token(srv, alpha, "DELETE", "/api/state/entities/bravo/keep", None);
    expect(&r, 403, "alpha deletes bravo's entity, raw slash");
    assert!(exists(srv, "bravo/keep"));

    // Batch deletes reaching outside the namespace.
    write_ok(srv, alpha, "alpha/keep", r#"{"k":1}"#);
    let ids = json!({"entity_ids": ["alpha/keep", "bravo/keep"]}).to_string();
    for body in [
        ids.as_str(),
        r#"{"entity_ids":["bravo/keep"]}"#,
        r#"{"namespace":"bravo"}"#,
        r#"{"prefix":"bravo/"}"#,
        r#"{"prefix":"b"}"#,
        r#"{"prefix":"alphabet"}"#,
    ] {
        let r = as_token(srv, alpha, "POST", "/api/state/entities/delete", Some(body));
        expect(&r, 403, &format!("alpha batch-deletes {body}"));
    }
    assert!(exists(srv, "alpha/keep") && exists(srv, "bravo/keep"));
    let r = as_token(
        srv,
        alpha,
        "POST",
        "/api/state/entities/delete",
        Some(r#"{"prefix":""}"#),
    );
    expect(&r, 400, "empty prefix");
}

#[test]
fn deletes_check_ids_like_writes() {
    // Writes: an id without a namespace is a 400 whoever sends it, an unregistered
    // namespace a 400 for the admin and a 403 for a namespace token (it may write
    // only its own). Deletes: a namespace token may delete only its own namespace's
    // ids (403 for any other, namespaced or not); the admin may delete any id, and
    // one that does not exist is a 404.
    let fx = Fixture::start(&[]);
    let srv = &fx.srv;
    for (who, id, write, delete) in [
        (Own, "plain", 400, 403),
        (Admin, "plain", 400, 404),
        (Admin, "zulu/x", 400, 404),
        (Own, "zulu/x", 403, 403),
    ] {
        let r = fx.call(who, "POST", "/api/events", Some(&event(id, "{}")));
        expect(&r, write, &format!("write {id} as {who:?}"));
        assert!(!exists(srv, id), "{id} written");
        let r = fx.call(who, "DELETE", &entity_path(id), None);
        expect(&r, delete, &format!("DELETE {id} as {who:?}"));
    }
}

#[test]
fn a_namespace_tokens_batch_delete_is_confined_to_its_namespace() {
    let fx = Fixture::start(&[]);
    let srv = &fx.srv;
    // Namespaces whose names extend "al" and "alpha" must survive alpha's deletes.
    let alpine = register(srv, "alpine");
    let alphabet = register(srv, "alphabet");
    let mine = spanning("alpha/c-", 8);
    let events: Vec<String> = mine.iter().map(|id| event(id, "{}")).collect();
    assert_eq!(batch_as(srv, &fx.alpha, &events).status, 200);
    write_ok(srv, &alpine, "alpine/x", "{}");
    write_ok(srv, &alphabet, "alphabet/x", "{}");
    write_ok(srv, &fx.bravo, "bravo/x", "{}");

    // A prefix that the namespace extends is narrowed to the namespace.
    let r = as_token(
        srv,
        &fx.alpha,
        "POST",
        "/api/state/entities/delete",
        Some(r#"{"prefix":"al"}"#),
    );
    expect(&r, 200, "prefix al as alpha");
    assert_eq!(r.json()["deleted"], 8, "{}", r.text());
    for id in &mine {
        assert!(!exists(srv, id), "{id}");
    }
    for id in ["alpine/x", "alphabet/x", "bravo/x"] {
        assert!(exists(srv, id), "{id} deleted through alpha's token");
    }
    // By namespace and by a prefix inside it.
    let events: Vec<String> = mine.iter().map(|id| event(id, "{}")).collect();
    assert_eq!(batch_as(srv, &fx.alpha, &events).status, 200);
    let inside = mine.iter().filter(|id| id.starts_with(&mine[0])).count();
    assert!(inside < mine.len(), "{mine:?}");
    let r = as_token(
        srv,
        &fx.alpha,
        "POST",
        "/api/state/entities/delete",
        Some(&json!({ "prefix": mine[0] }).to_string()),
    );
    expect(&r, 200, "prefix inside");
    assert_eq!(r.json()["deleted"], inside, "{}", r.text());
    let r = as_token(
        srv,
        &fx.alpha,
        "POST",
        "/api/state/entities/delete",
        Some(r#"{"namespace":"alpha"}"#),
    );
    expect(&r, 200, "own namespace");
    assert_eq!(r.json()["deleted"], mine.len() - inside, "{}", r.text());
    for id in ["alpine/x", "alphabet/x", "bravo/x"] {
        assert!(exists(srv, id), "{id} deleted through alpha's token");
    }
    // The admin's batch delete reaches any namespace.
    let r = as_admin(
        srv,
        "POST",
        "/api/state/entities/delete",
        Some(r#"{"prefix":"al"}"#),
    );
    expect(&r, 200, "admin prefix al");
    assert_eq!(r.json()["deleted"], 2, "{}", r.text());
    assert!(exists(srv, "bravo/x"));
}

// ---------------------------------------------------------------------------------
// reads
// ---------------------------------------------------------------------------------

#[test]
fn reads_need_a_token_and_a_namespace_token_sees_only_its_namespace() {
    let fx = Fixture::start(&[]);
    let srv = &fx.srv;
    let alpha_ids = spanning("alpha/r-", 6);
    let bravo_ids = spanning("bravo/r-", 6);
    for (token, ids) in [(&fx.alpha, &alpha_ids), (&fx.bravo, &bravo_ids)] {
        let events: Vec<String> = ids.iter().map(|id| event(id, r#"{"x":1}"#)).collect();
        assert_eq!(batch_as(srv, token, &events).status, 200);
    }
    let target = &alpha_ids[0];
    let reads = [401, 401, 401, 404, 200, 200];
    fx.matrix("GET", &entity_path(target), None, reads);
    fx.matrix(
        "GET",
        &format!("/api/events?entity={}", pct(target)),
        None,
        reads,
    );
    fx.matrix("GET", "/metrics", None, [401, 401, 401, 403, 403, 200]);
    fx.matrix("GET", "/health", None, [200; 6]);

    // Another namespace's entity looks exactly like one that does not exist.
    let foreign = fx.call(Own, "GET", &entity_path(&bravo_ids[0]), None);
    let missing = fx.call(Own, "GET", &entity_path("bravo/never-written"), None);
    expect(&foreign, 404, "bravo's entity as alpha");
    assert_eq!(foreign.body, missing.body);
    let foreign = fx.call(
        Own,
        "GET",
        &format!("/api/events?entity={}", pct(&bravo_ids[0])),
        None,
    );
    expect(&foreign, 404, "bravo's history as alpha");

    // Dot segments are no way out of the namespace: an id is taken literally.
    for path in [
        format!("/api/state/entities/alpha%2F..%2F{}", pct(&bravo_ids[0])),
        format!("/api/state/entities/alpha/../{}", bravo_ids[0]),
        format!("/api/events?entity=alpha%2F..%2F{}", pct(&bravo_ids[0])),
    ] {
        let r = fx.call(Own, "GET", &path, None);
        assert!(
            r.status == 404 || r.status == 400,
            "GET {path} as alpha: {} {}",
            r.status,
            r.text()
        );
        assert!(!r.text().contains("\"x\":1"), "GET {path}: {}", r.text());
    }

    // Listings.
    let all: Vec<String> = alpha_ids.iter().chain(&bravo_ids).cloned().collect();
    let sorted = |v: &[String]| -> Vec<String> {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    for who in EVERYONE {
        let auth = fx.auth(who);
        let want: Vec<String> = match who {
            Nobody | Unknown | Malformed => {
                let r = call(srv, "GET", "/api/state/entities", auth.as_deref(), None);
                expect(&r, 401, &format!("listing as {who:?}"));
                continue;
            }
            Other => sorted(&bravo_ids),
            Own => sorted(&alpha_ids),
            Admin => sorted(&all),
        };
        assert_eq!(
            listing(srv, auth.as_deref(), ""),
            want,
            "listing as {who:?}"
        );
    }
    let alpha_auth = fx.auth(Own);
    let a = alpha_auth.as_deref();
    for query in [
        "prefix=bravo%2F",
        "prefix=bravo/",
        "namespace=bravo",
        "prefix=b",
        "prefix=alphabet",
        "namespace=alpha&prefix=bravo",
        "prefix=zulu",
    ] {
        assert!(
            listing(srv, a, query).is_empty(),
            "alpha listing {query} shows other namespaces"
        );
    }
    for query in [
        "prefix=al",
        "prefix=alpha%2F",
        "namespace=alpha",
        "prefix=a&limit=100",
    ] {
        assert_eq!(listing(srv, a, query), sorted(&alpha_ids), "alpha {query}");
    }
    assert_eq!(listing(srv, a, "limit=2"), sorted(&alpha_ids)[..2]);
    let admin = Some(bearer(ADMIN));
    assert_eq!(
        listing(srv, admin.as_deref(), "namespace=bravo"),
        sorted(&bravo_ids)
    );
}

#[test]
fn public_reads_open_reads_and_subscriptions_but_not_writes() {
    let fx = Fixture::start(&[("FLUX_PUBLIC_READS", "true")]);
    let srv = &fx.srv;
    write_ok(srv, &fx.alpha, "alpha/p", r#"{"p":1}"#);
    write_ok(srv, &fx.bravo, "bravo/p", r#"{"p":2}"#);
    // Reads: everyone, whatever token (or none) they send.
    for who in EVERYONE {
        for path in [
            entity_path("alpha/p"),
            entity_path("bravo/p"),
            "/api/events?entity=alpha%2Fp".to_string(),
            "/metrics".to_string(),
            "/api/namespaces/alpha".to_string(),
        ] {
            expect(
                &fx.call(who, "GET", &path, None),
                200,
                &format!("GET {path} as {who:?}"),
            );
        }
        let r = fx.call(who, "GET", "/api/state/namespaces", None);
        assert_eq!(namespace_names(&r), ["alpha", "bravo"], "as {who:?}");
        let ids = listing(srv, fx.auth(who).as_deref(), "");
        assert_eq!(ids, ["alpha/p", "bravo/p"], "listing as {who:?}");
    }
    // Writes and admin endpoints still need their tokens.
    for who in EVERYONE {
        let id = format!("alpha/pw-{}", format!("{who:?}").to_lowercase());
        let r = fx.call(who, "POST", "/api/events", Some(&event(&id, "{}")));
        expect(&r, write_status(who), &format!("write as {who:?}"));
    }
    fx.matrix(
        "POST",
        "/api/namespaces",
        Some(r#"{"name":"charlie"}"#),
        [401, 401, 401, 403, 403, 201],
    );
    fx.matrix(
        "GET",
        "/api/admin/config",
        None,
        [401, 401, 401, 403, 403, 200],
    );
    // Anonymous subscriptions see every namespace.
    let mut anon = ws_connect(srv, "/api/ws", None);
    anon.subscribe("*");
    write_ok(srv, &fx.alpha, "alpha/live", r#"{"l":1}"#);
    write_ok(srv, &fx.bravo, "bravo/live", r#"{"l":1}"#);
    let want: BTreeSet<String> = ["alpha/live", "bravo/live"].map(String::from).into();
    let got = collect_updates_of(&mut anon, &want);
    assert_eq!(updated_ids(&got), want);
}

// ---------------------------------------------------------------------------------
// WebSocket
// ---------------------------------------------------------------------------------

#[test]
fn websocket_upgrades_need_a_valid_token() {
    let fx = Fixture::start(&[]);
    let srv = &fx.srv;
    let unknown = format!("flux_{}", "1".repeat(64));
    ws_refused(srv, "/api/ws", None, "no token");
    ws_refused(srv, "/api/ws", Some(&bearer(&unknown)), "unknown token");
    ws_refused(
        srv,
        &format!("/api/ws?token={unknown}"),
        None,
        "unknown ?token=",
    );
    ws_refused(srv, "/api/ws?token=", None, "empty ?token=");
    ws_refused(srv, "/api/ws", Some("Basic YWxwaGE6c2VjcmV0"), "Basic");
    // A malformed header is not overridden by a valid ?token=.
    ws_refused(
        srv,
        &format!("/api/ws?token={}", fx.alpha),
        Some("Bearer"),
        "malformed header with ?token=",
    );
    // Valid: by header, by ?token= (also percent-encoded, among other parameters).
    for (path, auth) in [
        ("/api/ws".to_string(), Some(bearer(&fx.alpha))),
        (format!("/api/ws?token={}", fx.alpha), None),
        (format!("/api/ws?x=1&token={}", pct(&fx.alpha)), None),
        ("/api/ws".to_string(), Some(bearer(ADMIN))),
        (format!("/api/ws?token={ADMIN}"), None),
    ] {
        let mut c = ws_connect(srv, &path, auth.as_deref());
        c.subscribe("alpha/x");
    }
}

#[test]
fn a_namespace_tokens_subscriptions_see_only_its_namespace() {
    let fx = Fixture::start(&[]);
    let srv = &fx.srv;
    let mut by_header = ws_connect(srv, "/api/ws", Some(&bearer(&fx.alpha)));
    let mut by_query = ws_connect(srv, &format!("/api/ws?token={}", fx.alpha), None);
    let mut admin = ws_connect(srv, "/api/ws", Some(&bearer(ADMIN)));
    let mut bravo = ws_connect(srv, "/api/ws", Some(&bearer(&fx.bravo)));
    for c in [&mut by_header, &mut by_query, &mut admin, &mut bravo] {
        c.subscribe("*");
    }
    // Per shard, bravo's write goes first, so on that shard it would be delivered before
    // alpha's; writes to both shards.
    let mut alpha_ids = Vec::new();
    let mut bravo_ids = Vec::new();
    for shard in 0..2 {
        for id in on_shard("bravo/w-", shard, 3) {
            write_ok(srv, &fx.bravo, &id, r#"{"b":1}"#);
            bravo_ids.push(id);
        }
        for id in on_shard("alpha/w-", shard, 3) {
            write_ok(srv, &fx.alpha, &id, r#"{"a":1}"#);
            alpha_ids.push(id);
        }
    }
    let alpha_set: BTreeSet<String> = alpha_ids.iter().cloned().collect();
    let bravo_set: BTreeSet<String> = bravo_ids.iter().cloned().collect();
    for (name, c, want) in [
        ("alpha by header", &mut by_header, &alpha_set),
        ("alpha by ?token=", &mut by_query, &alpha_set),
        ("bravo", &mut bravo, &bravo_set),
    ] {
        let mut got = collect_updates_of(c, want);
        got.extend(c.collect(Duration::from_millis(300), false, |_| false));
        assert_eq!(&updated_ids(&got), want, "{name}: {got:?}");
        assert!(
            got.iter().all(|m| m["type"] == "state_update"),
            "{name}: {got:?}"
        );
    }
    let all: BTreeSet<String> = alpha_set.union(&bravo_set).cloned().collect();
    let got = collect_updates_of(&mut admin, &all);
    assert_eq!(updated_ids(&got), all, "the admin sees everything");
    // bravo's deletions do not reach alpha's connections either.
    let r = as_token(srv, &fx.bravo, "DELETE", &entity_path(&bravo_ids[0]), None);
    expect(&r, 200, "bravo deletes");
    write_ok(srv, &fx.alpha, &alpha_ids[0], r#"{"a":2}"#);
    let got = by_header.collect(T, false, |g| !g.is_empty());
    assert_eq!(updated_ids(&got), [alpha_ids[0].clone()].into(), "{got:?}");
    by_header.assert_no_updates(Duration::from_millis(300));
}

#[test]
fn subscribing_outside_the_namespace_is_an_error_and_delivers_nothing() {
    let fx = Fixture::start(&[]);
    let srv = &fx.srv;
    register(srv, "alphabet");
    let mut c = ws_connect(srv, &format!("/api/ws?token={}", fx.alpha), None);
    for pattern in [
        "bravo/x",
        "bravo/*",
        "b*",
        "zulu/x",
        "alphabet/*",
        "plain",
        "alpha/",
    ] {
        let msg = json!({"type": "subscribe", "entity_id": pattern});
        c.send_text(&msg.to_string());
        let m = c.wait_for("error", T);
        assert!(
            m["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{pattern}: {m}"
        );
        assert!(
            c.backlog.iter().all(|m| m["type"] != "subscribed"),
            "{pattern} acknowledged: {:?}",
            c.backlog
        );
    }
    // The connection stays usable; a prefix the namespace extends is narrowed to it.
    c.subscribe("al*");
    // Unsubscribing something never subscribed is harmless.
    c.unsubscribe("bravo/x");
    for id in ["bravo/x", "bravo/y", "alphabet/x"] {
        write_ok(srv, ADMIN, id, r#"{"no":1}"#);
    }
    write_ok(srv, ADMIN, "alpha/x", r#"{"yes":1}"#);
    let got = c.collect(T, false, |g| !updated_ids(g).is_empty());
    assert_eq!(updated_ids(&got), ["alpha/x".to_string()].into(), "{got:?}");
    c.assert_no_updates(Duration::from_millis(300));
    c.unsubscribe("al*");
    write_ok(srv, ADMIN, "alpha/y", r#"{"yes":2}"#);
    c.assert_no_updates(Duration::from_millis(300));
    // "*" means the namespace.
    c.subscribe("*");
    write_ok(srv, ADMIN, "bravo/z", r#"{"no":2}"#);
    write_ok(srv, ADMIN, "alpha/z", r#"{"yes":3}"#);
    let got = c.collect(T, false, |g| !updated_ids(g).is_empty());
    assert_eq!(updated_ids(&got), ["alpha/z".to_string()].into(), "{got:?}");
    c.assert_no_updates(Duration::from_millis(300));
    c.unsubscribe("*");
    write_ok(srv, ADMIN, "alpha/z", r#"{"yes":4}"#);
    c.assert_no_updates(Duration::from_millis(300));
}

// ---------------------------------------------------------------------------------
// rate limits
// ---------------------------------------------------------------------------------

/// Writes single events to `alpha/<tag>-<i>` on fresh connections until one is
/// refused; returns how many were accepted and the refusal.
fn write_until_refused(srv: &Server, token: &str, tag: &str, max: usize) -> (usize, Response) {
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

#[test]
fn the_rate_limit_answers_429_with_retry_after_per_namespace() {
    let fx = Fixture::start(&[("FLUX_RATE_LIMIT_PER_MINUTE", "60")]);
    let srv = &fx.srv;
    let t0 = Instant::now();
    let (accepted, r) = write_until_refused(srv, &fx.alpha, "rl", 200);
    let refill = (t0.elapsed().as_secs_f64()).ceil() as usize;
    // A bucket of 60; each of the 2 shards may hold a lease of 1 unspent.
    assert!(
        (58..=60 + refill).contains(&accepted),
        "accepted {accepted} of a limit of 60"
    );
    let secs = expect_429(&r, "over the limit");
    assert!(secs <= 60, "Retry-After {secs}");
    assert!(
        r.json()["error"].as_str().unwrap().contains("alpha"),
        "{}",
        r.text()
    );
    // Once spent, a batch needs more than any shard's lease (at most 1) and the refill
    // of the last seconds (1 per second).
    let five: Vec<String> = (0..5)
        .map(|i| event(&format!("alpha/b-{i}"), "{}"))
        .collect();
    expect_429(&batch_as(srv, &fx.alpha, &five), "batch over the limit");
    assert!(!exists(srv, "alpha/b-0"));
    // Other namespaces are not affected.
    for i in 0..10 {
        write_ok(srv, &fx.bravo, &format!("bravo/free-{i}"), "{}");
    }
    write_ok(srv, ADMIN, "bravo/by-admin", "{}");
    // A batch larger than the whole limit can never pass.
    let big: Vec<String> = (0..61)
        .map(|i| event(&format!("bravo/big-{i}"), "{}"))
        .collect();
    let r = batch_as(srv, &fx.bravo, &big);
    expect_429(&r, "batch of 61 under a limit of 60");
    assert!(!exists(srv, "bravo/big-0") && !exists(srv, "bravo/big-60"));
    let r = batch_as(srv, &fx.bravo, &big[..5]);
    expect(&r, 200, "a small batch of bravo");

    // The admin's writes count against the namespace they write to: a batch of the
    // whole limit by the admin leaves nothing for charlie's own token.
    let charlie = register(srv, "charlie");
    let sixty: Vec<String> = (0..60)
        .map(|i| event(&format!("charlie/a-{i}"), "{}"))
        .collect();
    expect(&batch_as(srv, ADMIN, &sixty), 200, "admin batch of 60");
    let r = write_as(srv, &charlie, "charlie/own", "{}");
    expect_429(&r, "charlie after the admin spent its limit");
    assert!(
        r.json()["error"].as_str().unwrap().contains("charlie"),
        "{}",
        r.text()
    );
    expect_429(
        &write_as(srv, ADMIN, "charlie/adm", "{}"),
        "admin to charlie",
    );

    // After Retry-After seconds a write passes again.
    let refused = (0..10)
        .map(|i| write_as(srv, &fx.alpha, &format!("alpha/wait-{i}"), "{}"))
        .find(|r| r.status == 429)
        .expect("alpha is still over its limit");
    let secs = expect_429(&refused, "still over");
    assert!(secs <= 2, "Retry-After {secs} at 1 event per second");
    thread::sleep(Duration::from_secs(secs));
    let r = write_as(srv, &fx.alpha, "alpha/after-wait", r#"{"w":1}"#);
    expect(&r, 200, "after waiting Retry-After");
    assert!(exists(srv, "alpha/after-wait"));

    // Refusals are counted in /metrics: every 429 above, and at least the one 401.
    expect(
        &call(srv, "GET", "/metrics", None, None),
        401,
        "metrics without a token",
    );
    let m = as_token(srv, ADMIN, "GET", "/metrics", None);
    expect(&m, 200, "metrics as admin");
    let counter = |name: &str| -> u64 {
        m.text()
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics"))
    };
    assert!(counter("flux_rate_limited_total ") >= 4, "{}", m.text());
    assert!(counter("flux_auth_denied_total ") >= 1, "{}", m.text());
}

#[test]
fn a_refused_batch_costs_no_namespace_anything_on_any_shard() {
    // An admin batch over two namespaces, refused for the second (more events than its
    // whole limit), must leave the first namespace's budget usable from every shard:
    // afterwards a batch of half the limit passes whichever shard takes it. Several
    // namespaces, so that the follow-up lands on the other shard for some of them.
    const NAMESPACES: usize = 8;
    let srv = auth_server(&[("FLUX_RATE_LIMIT_PER_MINUTE", "60")]);
    register(&srv, "alpha");
    let too_many: Vec<String> = (0..61)
        .map(|i| event(&format!("alpha/t-{i}"), "{}"))
        .collect();
    for n in 0..NAMESPACES {
        let name = format!("ns{n}");
        let token = register(&srv, &name);
        let mut events: Vec<String> = (0..30)
            .map(|i| event(&format!("{name}/refused-{i}"), "{}"))
            .collect();
        events.extend(too_many.iter().cloned());
        let r = batch_as(&srv, ADMIN, &events);
        expect_429(&r, &format!("{name} + 61 events of alpha"));
        assert!(!exists(&srv, &format!("{name}/refused-0")));
        let half: Vec<String> = (0..30)
            .map(|i| event(&format!("{name}/half-{i}"), "{}"))
            .collect();
        let r = batch_as(&srv, &token, &half);
        expect(
            &r,
            200,
            &format!("{name}: 30 events after a refused batch charged it"),
        );
        let rest: Vec<String> = (0..29)
            .map(|i| event(&format!("{name}/rest-{i}"), "{}"))
            .collect();
        let r = batch_as(&srv, &token, &rest);
        expect(&r, 200, &format!("{name}: 29 more"));
    }
}

#[test]
fn concurrent_registrations_are_visible_on_every_shard_at_once() {
    let srv = auth_server(&[]);
    // One name, many registrations at once: exactly one wins.
    let statuses: Vec<u16> = thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    as_admin(&srv, "POST", "/api/namespaces", Some(r#"{"name":"race"}"#)).status
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        7,
        "{statuses:?}"
    );
    // Many names at once; each token works at once on fresh connections (both shards).
    let tokens: Vec<(String, String)> = thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let srv = &srv;
                s.spawn(move || {
                    let name = format!("par{i}");
                    let token = register(srv, &name);
                    for j in 0..8 {
                        write_ok(srv, &token, &format!("{name}/w-{j}"), "{}");
                    }
                    (name, token)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let distinct: BTreeSet<&str> = tokens.iter().map(|t| t.1.as_str()).collect();
    assert_eq!(distinct.len(), tokens.len());
    for (name, token) in &tokens {
        let listed = listing(&srv, Some(&bearer(token)), "");
        let want: Vec<String> = (0..8).map(|j| format!("{name}/w-{j}")).collect();
        assert_eq!(listed, want, "{name}");
        let r = as_token(&srv, token, "GET", "/api/state/namespaces", None);
        assert_eq!(namespace_names(&r), [name.as_str()]);
    }
    let names = namespace_names(&as_admin(&srv, "GET", "/api/state/namespaces", None));
    assert_eq!(names.len(), 9, "{names:?}");
}

/// Tokens a shard leases at once from a namespace's bucket (DECISIONS: max(1,
/// limit / (64 * shards))): what a shard may hold unspent while another is refused.
fn lease_size(limit: usize, shards: usize) -> usize {
    (limit / (64 * shards)).max(1)
}

#[test]
fn the_rate_limit_holds_across_shards_and_connections() {
    const LIMIT: usize = 120;
    const THREADS: usize = 8;
    const PER_THREAD: usize = 30;
    let fx = Fixture::start(&[("FLUX_RATE_LIMIT_PER_MINUTE", "120")]);
    let srv = &fx.srv;
    let ids = spanning("alpha/x-", THREADS * PER_THREAD);
    let t0 = Instant::now();
    let results: Vec<(String, u16, Option<u64>)> = thread::scope(|s| {
        let handles: Vec<_> = ids
            .chunks(PER_THREAD)
            .map(|chunk| {
                let token = &fx.alpha;
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|id| {
                            let r = write_as(srv, token, id, r#"{"c":1}"#);
                            let ra = (r.status == 429).then(|| retry_after(&r));
                            if r.status == 429 {
                                assert_json_error(&r);
                            }
                            (id.clone(), r.status, ra)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("writer"))
            .collect()
    });
    let elapsed = t0.elapsed();
    let accepted: BTreeSet<&str> = results
        .iter()
        .filter(|r| r.1 == 200)
        .map(|r| r.0.as_str())
        .collect();
    let others: Vec<&(String, u16, Option<u64>)> = results.iter().filter(|r| r.1 != 200).collect();
    assert!(others.iter().all(|r| r.1 == 429), "{others:?}");
    // 2 events per second come back while the test runs.
    let refill = (elapsed.as_secs_f64() * LIMIT as f64 / 60.0).ceil() as usize;
    let lease = lease_size(LIMIT, 2);
    assert!(
        accepted.len() <= LIMIT + refill,
        "{} accepted under a limit of {LIMIT} in {elapsed:?}",
        accepted.len()
    );
    assert!(
        accepted.len() >= LIMIT - 2 * lease,
        "only {} accepted under a limit of {LIMIT}",
        accepted.len()
    );
    // Exactly the accepted events were applied.
    let listed = listing(srv, Some(&bearer(&fx.alpha)), "");
    let listed: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
    assert_eq!(listed, accepted);
}

// ---------------------------------------------------------------------------------
// runtime configuration
// ---------------------------------------------------------------------------------

fn config(srv: &Server) -> Value {
    let r = as_admin(srv, "GET", "/api/admin/config", None);
    expect(&r, 200, "GET config");
    r.json()
}

fn put_config(srv: &Server, body: &str) -> Response {
    as_admin(srv, "PUT", "/api/admin/config", Some(body))
}

fn put_config_ok(srv: &Server, body: &str) -> Value {
    let r = put_config(srv, body);
    expect(&r, 200, &format!("PUT {body}"));
    r.json()
}

#[test]
fn admin_config_needs_the_admin_token_and_checks_every_field() {
    let fx = Fixture::start(&[
        ("FLUX_RATE_LIMIT_PER_MINUTE", "600"),
        ("FLUX_BODY_LIMIT_SINGLE_BYTES", "65536"),
        ("FLUX_BODY_LIMIT_BATCH_BYTES", "1048576"),
        ("FLUX_MAX_BATCH_DELETE", "500"),
    ]);
    let srv = &fx.srv;
    fx.matrix(
        "GET",
        "/api/admin/config",
        None,
        [401, 401, 401, 403, 403, 200],
    );
    fx.matrix(
        "PUT",
        "/api/admin/config",
        Some(r#"{"max_batch_delete":7}"#),
        [401, 401, 401, 403, 403, 200],
    );
    put_config_ok(srv, r#"{"max_batch_delete":500}"#);
    let initial = json!({
        "rate_limit_enabled": true,
        "rate_limit_per_namespace_per_minute": 600,
        "body_size_limit_single_bytes": 65536,
        "body_size_limit_batch_bytes": 1048576,
        "max_batch_delete": 500,
    });
    assert_eq!(config(srv), initial);

    // A partial update answers the whole configuration.
    let v = put_config_ok(srv, r#"{"max_batch_delete":9}"#);
    let mut want = initial.clone();
    want["max_batch_delete"] = json!(9);
    assert_eq!(v, want);
    let v = put_config_ok(
        srv,
        r#"{"rate_limit_enabled":false,"rate_limit_per_namespace_per_minute":1234,
            "body_size_limit_single_bytes":4096,"body_size_limit_batch_bytes":8192}"#,
    );
    want = json!({
        "rate_limit_enabled": false,
        "rate_limit_per_namespace_per_minute": 1234,
        "body_size_limit_single_bytes": 4096,
        "body_size_limit_batch_bytes": 8192,
        "max_batch_delete": 9,
    });
    assert_eq!(v, want);
    assert_eq!(config(srv), want);
    assert_eq!(
        put_config_ok(srv, "{}"),
        want,
        "an empty update changes nothing"
    );

    // Anything wrong: 400, and nothing of the update is applied.
    for bad in [
        r#"{"nope":1}"#,
        r#"{"max_batch_delete":3,"nope":1}"#,
        r#"{"rate_limit_enabled":1}"#,
        r#"{"rate_limit_enabled":"true"}"#,
        r#"{"max_batch_delete":"5"}"#,
        r#"{"max_batch_delete":1.5}"#,
        r#"{"max_batch_delete":-1}"#,
        r#"{"max_batch_delete":0}"#,
        r#"{"max_batch_delete":1000001}"#,
        r#"{"max_batch_delete":null}"#,
        r#"{"rate_limit_per_namespace_per_minute":0}"#,
        r#"{"rate_limit_per_namespace_per_minute":2000000000000}"#,
        r#"{"body_size_limit_single_bytes":0}"#,
        r#"{"body_size_limit_batch_bytes":0}"#,
        r#"{"body_size_limit_single_bytes":1000000000}"#,
        r#"{"max_batch_delete":3,"body_size_limit_batch_bytes":0}"#,
        r#"{"rate_limit_enabled":true,"max_batch_delete":0}"#,
        "[]",
        "7",
        "not json",
        "{",
    ] {
        let r = put_config(srv, bad);
        expect(&r, 400, &format!("PUT {bad}"));
        assert_eq!(config(srv), want, "after PUT {bad}");
    }
}

#[test]
fn config_changes_apply_on_every_shard_at_once() {
    // More connections than shards, each fresh, so every shard answers some.
    const CONNS: usize = 16;
    let fx = Fixture::start(&[]);
    let srv = &fx.srv;
    let alpha = &fx.alpha;
    let padded = |id: &str, len: usize| {
        let base = event(id, r#"{"p":""}"#);
        let pad = "p".repeat(len - base.len());
        let body = event(id, &format!(r#"{{"p":"{pad}"}}"#));
        assert_eq!(body.len(), len);
        body
    };

    put_config_ok(srv, r#"{"body_size_limit_single_bytes":300}"#);
    for i in 0..CONNS {
        let big = padded(&format!("alpha/big-{i}"), 301);
        let r = as_token(srv, alpha, "POST", "/api/events", Some(&big));
        expect(&r, 413, &format!("301 bytes, connection {i}"));
        let small = padded(&format!("alpha/small-{i}"), 300);
        let r = as_token(srv, alpha, "POST", "/api/events", Some(&small));
        expect(&r, 200, &format!("300 bytes, connection {i}"));
    }
    put_config_ok(srv, r#"{"body_size_limit_single_bytes":65536}"#);
    for i in 0..CONNS {
        let big = padded(&format!("alpha/big-{i}"), 301);
        let r = as_token(srv, alpha, "POST", "/api/events", Some(&big));
        expect(&r, 200, &format!("301 bytes after raising, connection {i}"));
    }

    put_config_ok(srv, r#"{"body_size_limit_batch_bytes":400}"#);
    let events: Vec<String> = (0..8)
        .map(|i| event(&format!("alpha/bb-{i}"), "{}"))
        .collect();
    let body = batch_body(&events);
    assert!(body.len() > 400, "{}", body.len());
    for i in 0..CONNS {
        let r = as_token(srv, alpha, "POST", "/api/events/batch", Some(&body));
        expect(&r, 413, &format!("batch over the limit, connection {i}"));
        let r = batch_as(srv, alpha, &events[..2]);
        expect(&r, 200, &format!("small batch, connection {i}"));
    }
    put_config_ok(srv, r#"{"body_size_limit_batch_bytes":1048576}"#);

    put_config_ok(srv, r#"{"max_batch_delete":2}"#);
    let ids = spanning("alpha/md-", 3);
    let events: Vec<String> = ids.iter().map(|id| event(id, "{}")).collect();
    assert_eq!(batch_as(srv, alpha, &events).status, 200);
    let three = json!({ "entity_ids": ids }).to_string();
    for i in 0..CONNS {
        let r = as_token(
            srv,
            alpha,
            "POST",
            "/api/state/entities/delete",
            Some(&three),
        );
        expect(&r, 400, &format!("3 ids over a limit of 2, connection {i}"));
        let r = as_token(
            srv,
            alpha,
            "POST",
            "/api/state/entities/delete",
            Some(r#"{"prefix":"alpha/md-"}"#),
        );
        expect(
            &r,
            400,
            &format!("3 matches over a limit of 2, connection {i}"),
        );
    }
    assert!(
        ids.iter().all(|id| exists(srv, id)),
        "deleted over the limit"
    );
    put_config_ok(srv, r#"{"max_batch_delete":3}"#);
    let r = as_token(
        srv,
        alpha,
        "POST",
        "/api/state/entities/delete",
        Some(&three),
    );
    expect(&r, 200, "3 ids under a limit of 3");
    assert_eq!(r.json()["deleted"], 3);
}

#[test]
fn the_rate_limit_can_be_switched_off_raised_lowered_and_switched_on_at_run_time() {
    let fx = Fixture::start(&[("FLUX_RATE_LIMIT_PER_MINUTE", "60")]);
    let srv = &fx.srv;
    let (_, r) = write_until_refused(srv, &fx.alpha, "a", 200);
    expect_429(&r, "over 60");

    // Off: nothing is refused, on any shard.
    let v = put_config_ok(srv, r#"{"rate_limit_enabled":false}"#);
    assert_eq!(v["rate_limit_enabled"], false);
    for i in 0..40 {
        write_ok(srv, &fx.alpha, &format!("alpha/off-{i}"), "{}");
    }
    let big: Vec<String> = (0..100)
        .map(|i| event(&format!("alpha/offb-{i}"), "{}"))
        .collect();
    expect(
        &batch_as(srv, &fx.alpha, &big),
        200,
        "a batch of 100 with the limit off",
    );

    // On again: the namespace's bucket is still spent.
    put_config_ok(srv, r#"{"rate_limit_enabled":true}"#);
    let refused = (0..5)
        .map(|i| write_as(srv, &fx.alpha, &format!("alpha/on-{i}"), "{}"))
        .find(|r| r.status == 429);
    let r = refused.expect("429s resume when the limit is switched on again");
    expect_429(&r, "switched on");

    // Raised to 10,000 per second: the bucket refills at the new rate at once.
    put_config_ok(srv, r#"{"rate_limit_per_namespace_per_minute":600000}"#);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let r = write_as(srv, &fx.alpha, "alpha/raised", "{}");
        if r.status == 200 {
            break;
        }
        expect_429(&r, "raised");
        assert!(
            Instant::now() < deadline,
            "still refused after raising the limit"
        );
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(50));
    let many: Vec<String> = (0..200)
        .map(|i| event(&format!("alpha/many-{i}"), "{}"))
        .collect();
    expect(
        &batch_as(srv, &fx.alpha, &many),
        200,
        "200 events at the raised limit",
    );

    // Lowered: a batch over the new limit can never pass; a namespace that has written
    // nothing gets the new, smaller bucket.
    put_config_ok(srv, r#"{"rate_limit_per_namespace_per_minute":30}"#);
    let forty: Vec<String> = (0..40)
        .map(|i| event(&format!("bravo/f-{i}"), "{}"))
        .collect();
    expect_429(
        &batch_as(srv, &fx.bravo, &forty),
        "40 events under a limit of 30",
    );
    let t0 = Instant::now();
    let mut accepted = 0;
    let refusal = loop {
        let r = write_as(srv, &fx.bravo, &format!("bravo/low-{accepted}"), "{}");
        if r.status != 200 {
            break r;
        }
        accepted += 1;
        assert!(accepted <= 100, "no 429 under a limit of 30");
    };
    expect_429(&refusal, "over 30");
    let refill = (t0.elapsed().as_secs_f64() / 2.0).ceil() as usize;
    assert!(
        (28..=30 + refill).contains(&accepted),
        "{accepted} accepted under a limit of 30"
    );
}

#[test]
fn admin_config_stays_reachable_after_lowering_the_single_body_limit() {
    let srv = auth_server(&[]);
    // Smaller than any PUT body: the limit is for events, not for the admin's own
    // requests, which must be able to raise it again.
    put_config_ok(&srv, r#"{"body_size_limit_single_bytes":16}"#);
    let r = put_config(&srv, r#"{"body_size_limit_single_bytes":65536}"#);
    expect(&r, 200, "raising the single body limit again");
    assert_eq!(config(&srv)["body_size_limit_single_bytes"], 65536);
}

// ---------------------------------------------------------------------------------
// token secrecy
// ---------------------------------------------------------------------------------

#[test]
fn tokens_appear_only_in_the_registration_answer() {
    let mut fx = Fixture::start(&[("FLUX_RATE_LIMIT_PER_MINUTE", "60")]);
    let charlie = register(&fx.srv, "charlie");
    let secrets = [
        ADMIN,
        fx.alpha.as_str(),
        fx.bravo.as_str(),
        charlie.as_str(),
    ]
    .map(String::from);
    let mut seen: Vec<(String, Response)> = Vec::new();
    {
        let srv = &fx.srv;
        let (alpha, bravo) = (&fx.alpha, &fx.bravo);
        let mut keep = |what: &str, r: Response| seen.push((what.to_string(), r));
        keep("write", write_as(srv, alpha, "alpha/s", r#"{"s":1}"#));
        keep("foreign write", write_as(srv, alpha, "bravo/s", "{}"));
        keep("no namespace", write_as(srv, alpha, "plain", "{}"));
        keep(
            "foreign batch",
            batch_as(
                srv,
                alpha,
                &[event("alpha/t", "{}"), event("bravo/t", "{}")],
            ),
        );
        keep(
            "read",
            as_token(srv, alpha, "GET", &entity_path("alpha/s"), None),
        );
        keep(
            "foreign read",
            as_token(srv, alpha, "GET", &entity_path("bravo/s"), None),
        );
        keep(
            "listing",
            as_token(srv, alpha, "GET", "/api/state/entities", None),
        );
        keep(
            "history",
            as_token(srv, alpha, "GET", "/api/events?entity=alpha%2Fs", None),
        );
        keep(
            "namespaces",
            as_admin(srv, "GET", "/api/state/namespaces", None),
        );
        keep(
            "own namespaces",
            as_token(srv, alpha, "GET", "/api/state/namespaces", None),
        );
        keep(
            "namespace",
            as_admin(srv, "GET", "/api/namespaces/alpha", None),
        );
        keep(
            "own namespace",
            as_token(srv, alpha, "GET", "/api/namespaces/alpha", None),
        );
        keep("metrics", as_token(srv, alpha, "GET", "/metrics", None));
        keep("admin metrics", as_admin(srv, "GET", "/metrics", None));
        keep("config", as_admin(srv, "GET", "/api/admin/config", None));
        keep(
            "config as alpha",
            as_token(srv, alpha, "GET", "/api/admin/config", None),
        );
        keep(
            "register as alpha",
            as_token(
                srv,
                alpha,
                "POST",
                "/api/namespaces",
                Some(r#"{"name":"delta"}"#),
            ),
        );
        keep(
            "duplicate",
            as_admin(srv, "POST", "/api/namespaces", Some(r#"{"name":"alpha"}"#)),
        );
        keep(
            "token as the name",
            as_admin(
                srv,
                "POST",
                "/api/namespaces",
                Some(&json!({ "name": alpha }).to_string()),
            ),
        );
        keep(
            "longer token",
            write_as(srv, &format!("{alpha}0"), "alpha/u", "{}"),
        );
        keep(
            "Basic",
            call(
                srv,
                "GET",
                "/api/state/entities",
                Some(&format!("Basic {alpha}")),
                None,
            ),
        );
        keep(
            "token as the entity id",
            write_as(srv, alpha, &format!("bravo/{alpha}"), "{}"),
        );
        keep(
            "delete foreign",
            as_token(srv, alpha, "DELETE", &entity_path("bravo/s"), None),
        );
        // Over the rate limit.
        let over: Vec<String> = (0..61)
            .map(|i| event(&format!("alpha/o-{i}"), "{}"))
            .collect();
        keep("too large a batch", batch_as(srv, alpha, &over));
        // WebSockets by header and ?token=, with an error message and a refusal.
        let mut c = ws_connect(srv, &format!("/api/ws?token={alpha}"), None);
        c.subscribe("*");
        c.send_text(&json!({"type": "subscribe", "entity_id": "bravo/s"}).to_string());
        let err = c.wait_for("error", T);
        let mut h = ws_connect(srv, "/api/ws", Some(&bearer(bravo)));
        h.subscribe("bravo/*");
        write_ok(srv, bravo, "bravo/ws", r#"{"w":1}"#);
        let upd = h.wait_for("state_update", T);
        for (what, v) in [("ws error", err), ("ws update", upd)] {
            let text = v.to_string();
            for s in &secrets {
                assert!(!text.contains(s.as_str()), "{what} shows a token: {text}");
            }
        }
        keep(
            "ws refused",
            ws_try(srv, &format!("/api/ws?token={alpha}x"), None)
                .err()
                .expect("refused"),
        );
        // A deleted namespace's token.
        keep(
            "delete charlie",
            as_admin(srv, "DELETE", "/api/namespaces/charlie", None),
        );
        keep("dead token", write_as(srv, &charlie, "charlie/x", "{}"));
    }
    for (what, r) in &seen {
        let mut text = String::from_utf8_lossy(&r.body).into_owned();
        for (k, v) in &r.headers {
            text.push_str(&format!("\n{k}: {v}"));
        }
        for s in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "{what} ({}) shows a token:\n{text}",
                r.status
            );
        }
    }
    // Nor in the server's output, while it runs and after it stopped.
    let check_log = |log: &str, when: &str| {
        for s in &secrets {
            assert!(
                !log.contains(s.as_str()),
                "the log {when} shows a token:\n{log}"
            );
        }
    };
    check_log(&fx.srv.log(), "while running");
    // Nor in the registry file: only hashes are stored.
    let file = std::fs::read(fx.srv.data_dir().join("namespaces")).expect("registry file");
    let file = String::from_utf8_lossy(&file);
    for s in &secrets {
        assert!(
            !file.contains(s.as_str()),
            "the registry file holds a token"
        );
    }
    fx.srv.stop();
    check_log(&fx.srv.log(), "after stopping");
}

// ---------------------------------------------------------------------------------
// persistence, start-up, open mode
// ---------------------------------------------------------------------------------

/// Everything a restart must keep: tokens write and read, the entities are there, the
/// namespaces look the same.
fn assert_kept(srv: &Server, tokens: &[(&str, &str)], ids: &[String], infos: &Value, round: &str) {
    for (name, token) in tokens {
        let r = as_token(srv, token, "GET", &format!("/api/namespaces/{name}"), None);
        expect(&r, 200, &format!("{round}: GET {name} with its token"));
        let mut info = r.json();
        let count = info
            .as_object_mut()
            .and_then(|o| o.remove("entityCount"))
            .expect("entityCount");
        assert_eq!(&info, &infos[name], "{round}");
        let mine: Vec<&String> = ids
            .iter()
            .filter(|id| id.starts_with(&format!("{name}/")))
            .collect();
        let listed = listing(srv, Some(&bearer(token)), "");
        assert_eq!(count, listed.len(), "{round}: {name}'s entities counted");
        write_ok(srv, token, &format!("{name}/{round}"), r#"{"after":true}"#);
        for id in mine {
            let r = as_token(srv, token, "GET", &entity_path(id), None);
            expect(&r, 200, &format!("{round}: {id}"));
            assert_eq!(r.json()["properties"], json!({"v": id}), "{round}");
            assert!(listed.contains(id), "{round}: {id} not listed");
        }
    }
}

#[test]
fn the_registry_survives_clean_restarts_and_kill9() {
    let mut srv = auth_server(&[]);
    let alpha = register(&srv, "alpha");
    let bravo = register(&srv, "bravo");
    let mut ids = Vec::new();
    for (name, token) in [("alpha", &alpha), ("bravo", &bravo)] {
        for id in spanning(&format!("{name}/p-"), 6) {
            write_ok(&srv, token, &id, &json!({ "v": id }).to_string());
            ids.push(id);
        }
    }
    let mut infos = json!({});
    for name in ["alpha", "bravo"] {
        let mut info = as_admin(&srv, "GET", &format!("/api/namespaces/{name}"), None).json();
        assert_eq!(info["entityCount"], 6, "{info}");
        info.as_object_mut().unwrap().remove("entityCount");
        infos[name] = info;
    }
    let tokens = [("alpha", alpha.as_str()), ("bravo", bravo.as_str())];

    srv.stop();
    srv.restart();
    assert_kept(&srv, &tokens, &ids, &infos, "sigterm");
    srv.kill9();
    srv.restart();
    assert_kept(&srv, &tokens, &ids, &infos, "kill9");

    // A registration is durable once answered.
    let charlie = register(&srv, "charlie");
    srv.kill9();
    srv.restart();
    write_ok(&srv, &charlie, "charlie/x", "{}");
    // So is a deletion.
    expect_no_content(
        &as_admin(&srv, "DELETE", "/api/namespaces/bravo", None),
        "DELETE bravo",
    );
    srv.kill9();
    srv.restart();
    expect(
        &write_as(&srv, &bravo, "bravo/x", "{}"),
        401,
        "bravo's token after kill -9",
    );
    assert!(listing(&srv, Some(&bearer(ADMIN)), "namespace=bravo").is_empty());
    let names = namespace_names(&as_admin(&srv, "GET", "/api/state/namespaces", None));
    assert_eq!(names, ["alpha", "charlie"]);
    assert_kept(&srv, &tokens[..1], &ids, &infos, "after-delete");

    // A registration interrupted before its rename leaves `namespaces.tmp`: ignored.
    srv.stop();
    let registry = std::fs::read(srv.data_dir().join("namespaces")).expect("registry");
    let tmp = srv.data_dir().join("namespaces.tmp");
    std::fs::write(&tmp, "flux-namespaces 1\nzulu 0190 half-written").expect("plant tmp");
    srv.restart();
    assert_kept(&srv, &tokens[..1], &ids, &infos, "with-tmp");
    write_ok(&srv, &charlie, "charlie/y", "{}");
    expect(
        &write_as(&srv, ADMIN, "zulu/x", "{}"),
        400,
        "zulu was never registered",
    );
    srv.stop();
    assert!(!tmp.exists(), "the leftover namespaces.tmp is still there");
    let after = std::fs::read(srv.data_dir().join("namespaces")).expect("registry");
    assert_eq!(
        after, registry,
        "the registry changed without a registration"
    );
}

#[test]
fn a_damaged_registry_stops_startup_naming_the_file() {
    let mut srv = auth_server(&[]);
    let alpha = register(&srv, "alpha");
    register(&srv, "bravo");
    write_ok(&srv, &alpha, "alpha/x", r#"{"v":1}"#);
    srv.stop();
    let path = srv.data_dir().join("namespaces");
    let good = std::fs::read(&path).expect("registry");
    let mut flipped = good.clone();
    let mid = good.len() / 2;
    flipped[mid] ^= 0x01;
    let truncated = good[..good.len() - 10].to_vec();
    for (what, bad) in [("a flipped byte", flipped), ("a truncation", truncated)] {
        std::fs::write(&path, &bad).expect("damage");
        srv.respawn_with(&auth_env(&[]));
        let status = srv
            .wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{what}: flux started on a damaged registry"));
        assert!(!status.success(), "{what}: exit {status:?}");
        let log = srv.log();
        assert!(
            log.contains(&path.display().to_string()),
            "{what}: the message must name {}:\n{log}",
            path.display()
        );
        assert!(!log.contains(" listening on "), "{what}: {log}");
    }
    // The intact file starts again, with every token.
    std::fs::write(&path, &good).expect("restore");
    srv.restart();
    let r = as_token(&srv, &alpha, "GET", &entity_path("alpha/x"), None);
    expect(&r, 200, "alpha after the repair");
}

#[test]
fn auth_mode_refuses_to_start_without_a_long_admin_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spaced = format!("{} {}", "a".repeat(20), "b".repeat(20));
    let short = "short-admin-token-31-characters";
    assert_eq!(short.len(), 31);
    for token in [None, Some(""), Some(short), Some(spaced.as_str())] {
        let mut cmd = flux_command();
        cmd.env("FLUX_AUTH_ENABLED", "true")
            .env("FLUX_SHARDS", "2")
            .env("FLUX_DATA_DIR", dir.path().join("data"))
            .env("FLUX_LISTEN", format!("127.0.0.1:{}", free_port()));
        if let Some(t) = token {
            cmd.env("FLUX_ADMIN_TOKEN", t);
        }
        let (status, stderr) = run_bounded(&mut cmd, Duration::from_secs(10));
        let status = status.unwrap_or_else(|| panic!("{token:?}: flux did not exit"));
        assert!(!status.success(), "{token:?}: exit {status:?}");
        assert!(
            stderr.contains("FLUX_ADMIN_TOKEN"),
            "{token:?}: the message must name FLUX_ADMIN_TOKEN: {stderr}"
        );
        if let Some(t) = token.filter(|t| !t.is_empty()) {
            assert!(!stderr.contains(t), "the message shows the token: {stderr}");
        }
    }
    // Exactly 32 characters is enough.
    let token = "exactly-32-characters-admin-tok0";
    assert_eq!(token.len(), 32);
    let srv = Server::start_with(&[("FLUX_AUTH_ENABLED", "true"), ("FLUX_ADMIN_TOKEN", token)]);
    let r = as_token(&srv, token, "GET", "/api/admin/config", None);
    expect(&r, 200, "config with a 32-character admin token");
    assert!(!srv.log().contains(token), "the log shows the admin token");
}

#[test]
fn open_mode_has_no_namespaces_and_an_open_admin_config() {
    let srv = Server::start();
    for (method, path, body) in [
        ("POST", "/api/namespaces", Some(r#"{"name":"alpha"}"#)),
        ("GET", "/api/namespaces", None),
        ("GET", "/api/state/namespaces", None),
        ("GET", "/api/namespaces/alpha", None),
        ("DELETE", "/api/namespaces/alpha", None),
    ] {
        for auth in [None, Some(bearer(ADMIN))] {
            let r = call(&srv, method, path, auth.as_deref(), body);
            let msg = assert_error(&r, 404);
            assert!(msg.contains("auth mode"), "{method} {path}: {msg}");
        }
    }
    // The admin configuration is open like everything else; tokens are ignored.
    for auth in [
        None,
        Some("Bearer whatever".to_string()),
        Some("Basic x".into()),
    ] {
        let r = call(&srv, "GET", "/api/admin/config", auth.as_deref(), None);
        expect(&r, 200, "GET config in open mode");
        assert_eq!(r.json()["rate_limit_enabled"], false);
    }
    let before = srv.get("/api/admin/config").json();
    let r = call(
        &srv,
        "PUT",
        "/api/admin/config",
        None,
        Some(r#"{"rate_limit_enabled":true}"#),
    );
    let msg = assert_error(&r, 400);
    assert!(msg.contains("auth"), "{msg}");
    let r = call(
        &srv,
        "PUT",
        "/api/admin/config",
        None,
        Some(r#"{"rate_limit_enabled":true,"max_batch_delete":5}"#),
    );
    assert_error(&r, 400);
    assert_eq!(srv.get("/api/admin/config").json(), before);
    let r = call(
        &srv,
        "PUT",
        "/api/admin/config",
        None,
        Some(r#"{"rate_limit_enabled":false,"max_batch_delete":5}"#),
    );
    expect(&r, 200, "PUT in open mode");
    assert_eq!(r.json()["max_batch_delete"], 5);
    // Un-namespaced ids without a token, reads without a token.
    srv.assert_healthy();
    expect(&srv.get("/metrics"), 200, "metrics in open mode");
    let _ws = WsClient::connect(srv.port());
}
