//! `GET /api/state/entities`: a listing merged from both shards, sorted by id, streamed
//! with chunked encoding; `prefix`, `namespace`, `limit`, `after` and paging.

mod common;

use std::collections::HashSet;

use common::*;

/// Writes `ids` with small properties, in batches of at most 500.
fn write_all(srv: &Server, ids: &[String]) {
    for part in ids.chunks(500) {
        let events: Vec<String> = part
            .iter()
            .map(|id| event(id, &format!(r#"{{"name":{}}}"#, json_str(id))))
            .collect();
        srv.batch_ok(&events);
    }
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort(); // String order is byte order.
    ids
}

/// Asserts ids are strictly increasing in byte order (sorted, no duplicates).
fn assert_strictly_sorted(ids: &[String]) {
    for w in ids.windows(2) {
        assert!(
            w[0].as_bytes() < w[1].as_bytes(),
            "not sorted or duplicated: {:?} then {:?}",
            w[0],
            w[1]
        );
    }
}

/// 300 `lst-<n>` entities (unpadded, so byte order differs from numeric order) plus
/// decoys that share a shorter prefix.
fn listing_server() -> (Server, Vec<String>) {
    let srv = Server::start();
    let ids: Vec<String> = (0..300).map(|n| format!("lst-{n}")).collect();
    assert_spans_two_shards(ids.iter().map(String::as_str));
    let mut all = ids.clone();
    all.extend(["lst", "lss-9", "lsu-0", "ls-1", "LST-1", "alst-1"].map(String::from));
    write_all(&srv, &all);
    (srv, sorted(ids))
}

#[test]
fn prefix_listing_is_complete_sorted_and_chunked() {
    let (srv, want) = listing_server();
    let r = srv.get("/api/state/entities?prefix=lst-");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.is_chunked(), "listing must be chunked: {:?}", r.headers);
    assert!(r.header("content-length").is_none());
    let items = r.json();
    let items = items.as_array().expect("array");
    let ids: Vec<String> = items
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, want);
    for e in items {
        let id = e["id"].as_str().unwrap();
        assert_eq!(e["properties"]["name"].as_str(), Some(id));
        let last = e["lastUpdated"].as_str().expect("lastUpdated");
        assert!(parse_rfc3339_ms(last).is_some(), "bad lastUpdated {last:?}");
        assert_eq!(e.as_object().unwrap().len(), 3, "unexpected fields: {e}");
    }
    // Without a prefix: everything, decoys included, still sorted.
    let all = srv.list_ids("");
    assert_eq!(all.len(), 306);
    assert_strictly_sorted(&all);
    assert_eq!(
        srv.list_ids("prefix=ls"),
        sorted(
            [
                &want[..],
                &["lst".into(), "lss-9".into(), "lsu-0".into(), "ls-1".into()]
            ]
            .concat()
        )
    );
    // Repeated requests on one kept-alive connection agree.
    let mut c = srv.connect();
    let a = c.exchange(&get_request("/api/state/entities?prefix=lst-"));
    let b = c.exchange(&get_request("/api/state/entities?prefix=lst-"));
    assert_eq!(a.body, b.body);
    assert_eq!(a.body, r.body);
}

#[test]
fn limit_and_after() {
    let (srv, want) = listing_server();
    assert_eq!(srv.list_ids("prefix=lst-&limit=10"), want[..10]);
    assert_eq!(srv.list_ids("prefix=lst-&limit=1"), want[..1]);
    assert!(srv.list_ids("prefix=lst-&limit=0").is_empty());
    assert_eq!(srv.list_ids("prefix=lst-&limit=100000"), want);
    // `after` is exclusive, whether or not it names an existing id.
    let after5: Vec<String> = want
        .iter()
        .filter(|id| id.as_str() > "lst-5")
        .cloned()
        .collect();
    assert_eq!(srv.list_ids("prefix=lst-&after=lst-5"), after5);
    assert_eq!(srv.list_ids("prefix=lst-&after=lst-5&limit=3"), after5[..3]);
    let after_missing: Vec<String> = want
        .iter()
        .filter(|id| id.as_str() > "lst-55a")
        .cloned()
        .collect();
    assert_eq!(srv.list_ids("prefix=lst-&after=lst-55a"), after_missing);
    assert!(srv
        .list_ids(&format!("prefix=lst-&after={}", want.last().unwrap()))
        .is_empty());
    assert!(srv.list_ids("prefix=lst-&after=zzz").is_empty());
    // `after` below the prefix does not cut anything.
    assert_eq!(srv.list_ids("prefix=lst-&after=a"), want);
    assert_eq!(srv.list_ids("prefix=lst-&after=lst"), want);
}

#[test]
fn paging_with_limit_and_after_visits_each_entity_once() {
    let (srv, want) = listing_server();
    for page_size in [7, 64, 299] {
        let mut seen: Vec<String> = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..want.len() + 2 {
            let q = match &after {
                Some(a) => format!("prefix=lst-&limit={page_size}&after={}", pct(a)),
                None => format!("prefix=lst-&limit={page_size}"),
            };
            let page = srv.list_ids(&q);
            assert!(page.len() <= page_size);
            match page.last() {
                Some(last) => after = Some(last.clone()),
                None => break,
            }
            seen.extend(page);
        }
        assert_eq!(seen, want, "paging by {page_size}");
    }
}

#[test]
fn namespace_and_prefix_parameters() {
    let srv = Server::start();
    let ns1: Vec<String> = (0..40).map(|i| format!("ns1/dev-{i}")).collect();
    assert_spans_two_shards(ns1.iter().map(String::as_str));
    let mut all = ns1.clone();
    all.extend(
        [
            "ns10/x",
            "ns1x",
            "ns1",
            "ns2/dev-1",
            "ns1/b/nested",
            "ns1/b",
        ]
        .map(String::from),
    );
    write_all(&srv, &all);
    let mut want = ns1.clone();
    want.extend(["ns1/b/nested".to_string(), "ns1/b".to_string()]);
    let want = sorted(want);

    assert_eq!(srv.list_ids("namespace=ns1"), want);
    assert_eq!(srv.list_ids("prefix=ns1%2F"), want);
    assert_eq!(srv.list_ids("prefix=ns1/"), want);
    assert_eq!(
        srv.list_ids("namespace=ns1&prefix=ns1/b"),
        ["ns1/b", "ns1/b/nested"]
    );
    assert_eq!(srv.list_ids("namespace=ns1&prefix=ns"), want);
    assert!(srv.list_ids("namespace=ns1&prefix=ns2/").is_empty());
    assert_eq!(srv.list_ids("namespace=ns1&limit=5"), want[..5]);
    assert_eq!(srv.list_ids("namespace=ns2"), ["ns2/dev-1"]);
    assert!(srv.list_ids("namespace=ns3").is_empty());
    assert_eq!(srv.list_ids("prefix=ns1").len(), all.len() - 1);
}

#[test]
fn unmatched_prefix_is_an_empty_chunked_array() {
    let srv = Server::start();
    srv.post_ok(&event("present", "{}"));
    let r = srv.get("/api/state/entities?prefix=nomatch-");
    assert_eq!(r.status, 200);
    assert!(r.is_chunked());
    assert_eq!(r.text(), "[]");
    // A fresh server with nothing in it lists `[]` too.
    let empty = Server::start();
    assert_eq!(empty.get("/api/state/entities").text(), "[]");
    // Unknown parameters are ignored; `+` in a query value is a space.
    assert_eq!(srv.list_ids("foo=bar&prefix=pres"), ["present"]);
    srv.post_ok(&event("with space", "{}"));
    assert_eq!(srv.list_ids("prefix=with+sp"), ["with space"]);
    assert_eq!(srv.list_ids("prefix=with%20sp"), ["with space"]);
}

#[test]
fn bad_query_values_are_400() {
    let srv = Server::start();
    for q in [
        "limit=-1",
        "limit=x",
        "limit=1.5",
        "limit=",
        "prefix=%ZZ",
        "after=%FF",
    ] {
        let r = srv.get(&format!("/api/state/entities?{q}"));
        assert_error(&r, 400);
    }
    srv.assert_healthy();
}

#[test]
fn large_listing_streams_across_page_refills() {
    let srv = Server::start();
    // Enough entities that each shard refills its 256-entity pages several times, and
    // big enough that the body is flushed in several chunks.
    let pad = "x".repeat(100);
    let ids: Vec<String> = (0..1200).map(|n| format!("big-{n}")).collect();
    for part in ids.chunks(400) {
        let events: Vec<String> = part
            .iter()
            .map(|id| event(id, &format!(r#"{{"pad":"{pad}"}}"#)))
            .collect();
        srv.batch_ok(&events);
    }
    let want = sorted(ids);
    let r = srv.get("/api/state/entities");
    assert_eq!(r.status, 200);
    assert!(r.is_chunked());
    assert!(
        r.chunks > 1,
        "a {} byte listing came in one chunk",
        r.body.len()
    );
    let got: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got.len(), 1200);
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), 1200, "duplicates in the listing");
    assert_eq!(got, want);
    // Limits that end inside a refilled page, and paging by 500.
    assert_eq!(srv.list_ids("limit=700"), want[..700]);
    assert_eq!(srv.list_ids("prefix=big-&limit=513"), want[..513]);
    let mut seen = Vec::new();
    let mut q = "limit=500".to_string();
    loop {
        let page = srv.list_ids(&q);
        let Some(last) = page.last() else { break };
        q = format!("limit=500&after={}", pct(last));
        seen.extend(page);
        assert!(seen.len() <= 1200);
    }
    assert_eq!(seen, want);
}

#[test]
fn http10_listing_is_close_delimited() {
    let srv = Server::start();
    write_all(
        &srv,
        &(0..50).map(|n| format!("h10-{n}")).collect::<Vec<_>>(),
    );
    let mut c = srv.connect();
    c.send(b"GET /api/state/entities?prefix=h10- HTTP/1.0\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(
        !r.is_chunked(),
        "HTTP/1.0 cannot take chunked: {:?}",
        r.headers
    );
    assert_eq!(r.json().as_array().unwrap().len(), 50);
    c.assert_closed();
}

#[test]
fn sort_order_is_byte_order() {
    let srv = Server::start();
    let ids: Vec<String> = [
        "b",
        "B",
        "a",
        "é",
        "e",
        "ä",
        "~",
        "Z",
        "0",
        "a/b",
        "a-b",
        "a b",
        "ab",
        "aa",
        "€",
        "\u{1F600}",
        "A",
    ]
    .iter()
    .map(|s| format!("ord:{s}"))
    .collect();
    write_all(&srv, &ids);
    let got = srv.list_ids("prefix=ord:");
    assert_eq!(got, sorted(ids));
    // `after` compares bytes too.
    let tail: Vec<String> = got
        .iter()
        .filter(|id| id.as_bytes() > "ord:z".as_bytes())
        .cloned()
        .collect();
    assert_eq!(srv.list_ids("prefix=ord:&after=ord:z"), tail);
}

#[test]
fn listing_of_large_entities_refills_by_bytes() {
    let srv = Server::start();
    // 30 KiB per entity: a 256 KiB page holds about 8, so both shards refill often.
    let pad = "y".repeat(30 * 1024);
    let ids: Vec<String> = (0..80).map(|n| format!("fat-{n}")).collect();
    assert_spans_two_shards(ids.iter().map(String::as_str));
    for part in ids.chunks(20) {
        let events: Vec<String> = part
            .iter()
            .map(|id| event(id, &format!(r#"{{"pad":"{pad}"}}"#)))
            .collect();
        srv.batch_ok(&events);
    }
    let items = srv.list("prefix=fat-");
    let got: Vec<String> = items
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, sorted(ids.clone()));
    assert!(items
        .iter()
        .all(|e| e["properties"]["pad"].as_str() == Some(pad.as_str())));
    assert_eq!(srv.list_ids("prefix=fat-&limit=13"), sorted(ids)[..13]);
}
