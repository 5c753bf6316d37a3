//! Black-box tests of deletion (flux-api.md "Entity Deletion", DECISIONS.md
//! "Deletion"): single and batch deletes, their answers and limits, and tombstones
//! surviving a kill -9.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn delete(srv: &Server, id: &str) -> Response {
    srv.request("DELETE", &entity_path(id), &[], None)
}

fn batch_delete(srv: &Server, body: &str) -> Response {
    srv.post("/api/state/entities/delete", body)
}

fn is_uuid7(s: &str) -> bool {
    s.len() == 36 && s.as_bytes()[14] == b'7' && s.chars().filter(|c| *c == '-').count() == 4
}

#[test]
fn delete_answers_the_id_and_a_uuid7_and_the_entity_is_gone() {
    let srv = Server::start();
    for id in ["d-1", "ns/with slash", "delete"] {
        srv.post_ok(&event(id, r#"{"a":1}"#));
        let r = delete(&srv, id);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        let v = r.json();
        assert_eq!(v["entity_id"], id);
        assert!(is_uuid7(v["eventId"].as_str().unwrap()), "{v}");
        assert!(srv.entity(id).is_none(), "{id} still readable");
        assert!(srv.list_ids("").iter().all(|x| x != id));
        assert_error(&srv.get(&format!("/api/events?entity={}", pct(id))), 404);
        // Deleting again: the entity is unknown now.
        assert_error(&delete(&srv, id), 404);
    }
    // An unencoded slash works too, and GET of `/delete` is the entity named delete.
    srv.post_ok(&event("ns/raw", r#"{"a":1}"#));
    assert_eq!(
        srv.request("DELETE", "/api/state/entities/ns/raw", &[], None)
            .status,
        200
    );
    srv.post_ok(&event("delete", r#"{"b":2}"#));
    let r = srv.get("/api/state/entities/delete");
    assert_eq!(r.json()["properties"], json!({"b": 2}));
}

#[test]
fn deleting_an_unknown_entity_is_a_404() {
    let srv = Server::start();
    assert!(assert_error(&delete(&srv, "never-written"), 404).contains("not found"));
    assert_error(&delete(&srv, &"x".repeat(2000)), 404);
    // Methods other than GET/DELETE on an entity path name the allowed ones.
    let r = srv.request("PUT", "/api/state/entities/x", &[], Some(b"{}"));
    assert_error(&r, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, DELETE"));
}

#[test]
fn an_entity_written_after_its_deletion_starts_with_no_properties() {
    let srv = Server::start();
    srv.post_ok(&event("re", r#"{"old":1,"shared":"a"}"#));
    assert_eq!(delete(&srv, "re").status, 200);
    srv.post_ok(&event("re", r#"{"shared":"b"}"#));
    let e = srv.entity("re").expect("re-created").json();
    assert_eq!(e["properties"], json!({"shared": "b"}));
    // Its history starts again too: only the event after the deletion.
    let h = srv.get("/api/events?entity=re").json();
    assert_eq!(h.as_array().unwrap().len(), 1, "{h}");
}

#[test]
fn batch_delete_by_prefix_namespace_and_ids() {
    let srv = Server::start();
    let pre: Vec<String> = (0..10).map(|i| format!("bp-{i}")).collect();
    let ns: Vec<String> = (0..6).map(|i| format!("sandbox/e{i}")).collect();
    assert_spans_two_shards(pre.iter().map(String::as_str));
    assert_spans_two_shards(ns.iter().map(String::as_str));
    let others = ["bp", "sandboxed", "keep"].map(String::from);
    for id in pre.iter().chain(&ns).chain(&others) {
        srv.post_ok(&event(id, r#"{"a":1}"#));
    }
    let r = batch_delete(&srv, r#"{"prefix":"bp-"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"deleted": 10, "failed": 0, "errors": []}));
    assert!(srv.list_ids("prefix=bp-").is_empty());
    assert!(srv.entity("bp").is_some());

    let r = batch_delete(&srv, r#"{"namespace":"sandbox"}"#);
    assert_eq!(r.json(), json!({"deleted": 6, "failed": 0, "errors": []}));
    assert!(srv.entity("sandboxed").is_some());

    srv.post_ok(&event("i-1", r#"{"a":1}"#));
    srv.post_ok(&event("i-2", r#"{"a":1}"#));
    let r = batch_delete(&srv, r#"{"entity_ids":["i-1","nope","i-2","i-1",""]}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["deleted"], 2, "{v}");
    assert_eq!(v["failed"], 2, "{v}");
    let errors: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entity_id"].as_str().unwrap())
        .collect();
    assert_eq!(errors, vec!["", "nope"]);
    for e in v["errors"].as_array().unwrap() {
        assert!(!e["error"].as_str().unwrap().is_empty());
    }
    assert!(srv.entity("i-1").is_none() && srv.entity("i-2").is_none());
    assert!(srv.entity("keep").is_some());

    let r = batch_delete(&srv, r#"{"prefix":"matches-nothing-"}"#);
    assert_eq!(r.json(), json!({"deleted": 0, "failed": 0, "errors": []}));
    let r = batch_delete(&srv, r#"{"entity_ids":[]}"#);
    assert_eq!(r.json(), json!({"deleted": 0, "failed": 0, "errors": []}));
}

#[test]
fn batch_delete_filters_must_be_exactly_one_and_well_typed() {
    let srv = Server::start();
    srv.post_ok(&event("keep-me", r#"{"a":1}"#));
    for body in [
        "{}",
        r#"{"prefix":"a","entity_ids":["b"]}"#,
        r#"{"prefix":"k","namespace":"n"}"#,
        r#"{"entity_ids":"not-a-list"}"#,
        r#"{"entity_ids":[1,2]}"#,
        r#"{"prefix":5}"#,
        r#"{"prefix":""}"#,
        r#"{"namespace":null}"#,
        "prefix=x",
        "",
        "[]",
    ] {
        let r = batch_delete(&srv, body);
        assert_error(&r, 400);
    }
    assert!(srv.entity("keep-me").is_some());
    // GET of the batch path is the entity "delete"; other methods are listed.
    assert_error(&srv.get("/api/state/entities/delete"), 404);
    let r = srv.request("PUT", "/api/state/entities/delete", &[], Some(b"{}"));
    assert_error(&r, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, POST, DELETE"));
}

#[test]
fn more_matches_than_the_limit_is_a_400_and_nothing_is_deleted() {
    let srv = Server::start_with(&[("FLUX_MAX_BATCH_DELETE", "5")]);
    let ids: Vec<String> = (0..6).map(|i| format!("lim-{i}")).collect();
    for id in &ids {
        srv.post_ok(&event(id, r#"{"a":1}"#));
    }
    let msg = assert_error(&batch_delete(&srv, r#"{"prefix":"lim-"}"#), 400);
    assert!(msg.contains('5'), "{msg}");
    assert_eq!(srv.list_ids("prefix=lim-").len(), 6, "nothing deleted");
    let all: Vec<Value> = ids.iter().map(|s| json!(s)).collect();
    assert_error(
        &batch_delete(&srv, &json!({ "entity_ids": all }).to_string()),
        400,
    );
    assert_eq!(srv.list_ids("prefix=lim-").len(), 6, "nothing deleted");
    // Exactly the limit is fine.
    assert_eq!(delete(&srv, "lim-5").status, 200);
    let r = batch_delete(&srv, r#"{"prefix":"lim-"}"#);
    assert_eq!(r.json(), json!({"deleted": 5, "failed": 0, "errors": []}));
}

#[test]
fn deletions_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let mut srv = Server::start_with(&[("FLUX_DATA_DIR", data)]);
    let ids: Vec<String> = (0..12).map(|i| format!("k9-{i}")).collect();
    assert_spans_two_shards(ids.iter().map(String::as_str));
    for id in &ids {
        srv.post_ok(&event(id, r#"{"old":true,"n":1}"#));
    }
    assert_eq!(delete(&srv, &ids[0]).status, 200);
    let r = batch_delete(&srv, &json!({"entity_ids": [ids[1], ids[2]]}).to_string());
    assert_eq!(r.json()["deleted"], 2);
    srv.post_ok(&event("k9-x-1", r#"{"a":1}"#));
    srv.post_ok(&event("k9-x-2", r#"{"a":1}"#));
    assert_eq!(
        batch_delete(&srv, r#"{"prefix":"k9-x-"}"#).json()["deleted"],
        2
    );
    // Re-created after its deletion: only the new properties.
    srv.post_ok(&event(&ids[0], r#"{"new":1}"#));
    let before = srv.list("");

    srv.signal("KILL");
    srv.wait_exit(Duration::from_secs(5)).expect("killed");
    let srv = Server::start_with(&[("FLUX_DATA_DIR", data)]);
    assert_eq!(srv.list(""), before);
    assert!(srv.entity(&ids[1]).is_none());
    assert!(srv.entity(&ids[2]).is_none());
    assert!(srv.entity("k9-x-1").is_none());
    assert_eq!(
        srv.entity(&ids[0]).unwrap().json()["properties"],
        json!({"new": 1})
    );
    assert_eq!(srv.list_ids("prefix=k9-").len(), 10);
    // Deleting after the restart works on recovered state.
    assert_eq!(delete(&srv, &ids[3]).status, 200);
    assert_error(&delete(&srv, &ids[1]), 404);
}

#[test]
fn deletes_work_with_synchronous_durability() {
    let srv = Server::start_with(&[("FLUX_SYNC", "always")]);
    srv.post_ok(&event("s-1", r#"{"a":1}"#));
    srv.post_ok(&event("s-2", r#"{"a":1}"#));
    assert_eq!(delete(&srv, "s-1").status, 200);
    let r = batch_delete(&srv, r#"{"entity_ids":["s-2","s-3"]}"#);
    assert_eq!(r.json()["deleted"], 1);
    assert_eq!(r.json()["failed"], 1);
}
