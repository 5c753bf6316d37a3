//! Endpoints of the HTTP API against the real binary: health, single events (every
//! validation error), exact storage of property values, merge semantics, atomic
//! batches, single-entity reads by id, 404 and 405.

mod common;

use common::*;
use serde_json::Value;

#[test]
fn health_is_ok_json() {
    let srv = Server::start();
    let r = srv.get("/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), serde_json::json!({"status": "ok"}));
}

#[test]
fn single_event_is_acknowledged_and_readable() {
    let srv = Server::start();
    let before = now_ms();
    let r = srv.post(
        "/api/events",
        r#"{"stream":"sensors.zone-1","source":"agent-7","timestamp":1000,
            "payload":{"entity_id":"temp-01","properties":{"temperature":22.5,"unit":"celsius"}}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let ack = r.json();
    assert_eq!(ack["stream"], "sensors.zone-1");
    let id = ack["eventId"].as_str().expect("eventId");
    // A generated id is a UUIDv7: 8-4-4-4-12 lowercase hex, version nibble 7.
    assert_eq!(id.len(), 36, "{id}");
    assert_eq!(id.as_bytes()[14], b'7', "not a v7 UUID: {id}");
    assert!(
        id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()),
        "{id}"
    );

    let e = srv.entity("temp-01").expect("entity exists after the ack");
    assert_eq!(e.header("content-type"), Some("application/json"));
    let v = e.json();
    assert_eq!(v["id"], "temp-01");
    assert_eq!(
        v["properties"],
        serde_json::json!({"temperature": 22.5, "unit": "celsius"})
    );
    // lastUpdated is the ingest time (not the event's timestamp), with milliseconds.
    assert_eq!(
        parse_rfc3339_ms("2024-02-14T12:00:00.000Z"),
        Some(1_707_912_000_000)
    );
    let last = v["lastUpdated"].as_str().expect("lastUpdated");
    let ms = parse_rfc3339_ms(last).unwrap_or_else(|| panic!("bad lastUpdated format {last:?}"));
    assert!(
        ms + 1000 >= before && ms <= now_ms() + 1000,
        "lastUpdated {last} is not the ingest time"
    );
}

#[test]
fn client_event_id_is_echoed() {
    let srv = Server::start();
    let ack = srv.post_ok(
        r#"{"eventId":"my-evt-1","stream":"s","source":"x","payload":{"entity_id":"echo","properties":{}}}"#,
    );
    assert_eq!(
        ack,
        serde_json::json!({"eventId": "my-evt-1", "stream": "s"})
    );
    // An empty eventId counts as absent: one is generated.
    let ack = srv.post_ok(r#"{"eventId":"","stream":"s","source":"x","payload":{"entity_id":"echo","properties":{}}}"#);
    assert_eq!(ack["eventId"].as_str().map(str::len), Some(36));
}

/// Each body is invalid; the entity it names (`val-<i>`) must not exist afterwards.
#[test]
fn validation_errors_are_400_json_and_apply_nothing() {
    let srv = Server::start();
    let long = |n: usize| "a".repeat(n);
    let ev = |stream: &str, source: &str, payload: &str| {
        format!(r#"{{"stream":{stream},"source":{source},"payload":{payload}}}"#)
    };
    let p = |i: usize| format!(r#"{{"entity_id":"val-{i}","properties":{{"x":1}}}}"#);
    let mut cases: Vec<String> = Vec::new();
    // stream: missing, empty, wrong type, invalid names.
    cases.push(r#"{"source":"s","payload":{"entity_id":"val-0","properties":{}}}"#.into());
    for s in [
        r#""""#,
        "5",
        "null",
        r#"["s"]"#,
        r#""Sensors""#,
        r#""has space""#,
        r#""a/b""#,
        r#"".a""#,
        r#""a.""#,
        r#""a..b""#,
        r#""caf\u00e9""#,
        &json_str(&long(256)),
    ] {
        cases.push(ev(s, r#""src""#, &p(cases.len())));
    }
    // source: missing, empty, wrong type, too long.
    cases.push(format!(r#"{{"stream":"s","payload":{}}}"#, p(cases.len())));
    for s in [r#""""#, "7", "true", &json_str(&long(256))] {
        cases.push(ev(r#""s""#, s, &p(cases.len())));
    }
    // timestamp: not a positive integer.
    for t in [
        r#""1707900000000""#,
        "0",
        "-5",
        "1.5",
        "1707900000000.0",
        "true",
        "{}",
        "1e400",
    ] {
        let i = cases.len();
        cases.push(format!(
            r#"{{"stream":"s","source":"x","timestamp":{t},"payload":{{"entity_id":"val-{i}","properties":{{}}}}}}"#
        ));
    }
    // eventId: not a string.
    for id in ["5", "{}", "true"] {
        let i = cases.len();
        cases.push(format!(
            r#"{{"eventId":{id},"stream":"s","source":"x","payload":{{"entity_id":"val-{i}","properties":{{}}}}}}"#
        ));
    }
    // payload: missing, wrong type.
    cases.push(r#"{"stream":"s","source":"x"}"#.into());
    for pl in [r#""val""#, "null", "[]", "5"] {
        cases.push(ev(r#""s""#, r#""x""#, pl));
    }
    // entity_id: missing, empty, wrong type, control characters, too long.
    for id in [
        "",
        r#","entity_id":"""#,
        r#","entity_id":5"#,
        r#","entity_id":null"#,
    ] {
        cases.push(ev(
            r#""s""#,
            r#""x""#,
            &format!(r#"{{"properties":{{}}{id}}}"#),
        ));
    }
    for id in [
        r#""val\u0001""#,
        r#""val\n""#,
        r#""val\u007f""#,
        &json_str(&format!("val-{}", long(1021))),
    ] {
        cases.push(ev(
            r#""s""#,
            r#""x""#,
            &format!(r#"{{"entity_id":{id},"properties":{{}}}}"#),
        ));
    }
    // properties: missing, wrong type.
    for props in [
        "",
        r#","properties":null"#,
        r#","properties":[1]"#,
        r#","properties":"x""#,
        r#","properties":5"#,
    ] {
        let i = cases.len();
        cases.push(ev(
            r#""s""#,
            r#""x""#,
            &format!(r#"{{"entity_id":"val-{i}"{props}}}"#),
        ));
    }
    // Not JSON, truncated, trailing data; JSON that is not an object.
    let i = cases.len();
    for body in [
        "xx",
        "",
        "{",
        r#"{"stream":"s","#,
        &format!(
            r#"{{"stream":"s","source":"x","payload":{{"entity_id":"val-{i}","properties":{{}}}}}} x"#
        ),
        &format!(
            r#"{{"stream":"s","source":"x","payload":{{"entity_id":"val-{i}","properties":{{"a":01}}}}}}"#
        ),
        &format!(
            r#"{{"stream":"s","source":"x","payload":{{"entity_id":"val-{i}","properties":{{"a":tru}}}}}}"#
        ),
        "[]",
        "[1]",
        r#""str""#,
        "42",
        "null",
    ] {
        cases.push(body.to_string());
    }
    // Invalid UTF-8 inside a string.
    let mut raw_cases: Vec<Vec<u8>> = cases.iter().map(|c| c.clone().into_bytes()).collect();
    raw_cases.push(
        b"{\"stream\":\"s\",\"source\":\"\xff\",\"payload\":{\"entity_id\":\"val-utf8\",\"properties\":{}}}".to_vec(),
    );

    for body in &raw_cases {
        let r = srv.request(
            "POST",
            "/api/events",
            &[("Content-Type", "application/json")],
            Some(body),
        );
        let shown = String::from_utf8_lossy(body);
        assert_eq!(
            r.status,
            400,
            "body {shown:.300} -> {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        assert_json_error(&r);
    }
    for i in 0..raw_cases.len() {
        assert!(
            srv.entity(&format!("val-{i}")).is_none(),
            "val-{i} was applied"
        );
    }
    assert!(srv.entity("val-utf8").is_none());
    assert!(
        srv.list("prefix=val").is_empty(),
        "an invalid event was applied"
    );
    srv.assert_healthy();
}

#[test]
fn valid_edge_values_are_accepted() {
    let srv = Server::start();
    // An event for `id` with the given envelope fields before `payload`.
    let with = |id: &str, envelope: &str| {
        format!(
            r#"{{{envelope},"payload":{{"entity_id":{},"properties":{{"a":1}},"other":true}}}}"#,
            json_str(id)
        )
    };
    let stream_255 = json_str(&format!("{}.b", "a".repeat(253)));
    let source_255 = json_str(&format!("Agent 7 / rack \u{e9} {}", "s".repeat(237)));
    let long_id = format!("edge-{}", "i".repeat(1019));
    let cases = [
        (
            "edge-stream",
            r#""stream":"a.b-c_d.0","source":"x""#.to_string(),
        ),
        (
            "edge-stream-255",
            format!(r#""stream":{stream_255},"source":"x""#),
        ),
        (
            "edge-source-255",
            format!(r#""stream":"s","source":{source_255}"#),
        ),
        (
            "edge-ts-null",
            r#""stream":"s","source":"x","timestamp":null"#.into(),
        ),
        (
            "edge-ts",
            r#""stream":"s","source":"x","timestamp":1707900000000"#.into(),
        ),
        (
            "edge-extra",
            r#""stream":"s","source":"x","key":{"k":1},"schema":"v1","x":[1]"#.into(),
        ),
        ("edge/with/slashes", r#""stream":"s","source":"x""#.into()),
        ("édge ☕ ünïcode", r#""stream":"s","source":"x""#.into()),
        (" edge spaced ", r#""stream":"s","source":"x""#.into()),
        (long_id.as_str(), r#""stream":"s","source":"x""#.into()),
    ];
    for (id, envelope) in &cases {
        srv.post_ok(&with(id, envelope));
        let e = srv
            .entity(id)
            .unwrap_or_else(|| panic!("{id:?} missing after 200"));
        assert_eq!(e.json()["id"].as_str(), Some(*id));
        assert_eq!(e.json()["properties"], serde_json::json!({"a": 1}));
    }
    // Empty properties create the entity with none.
    srv.post_ok(&event("edge-empty", "{}"));
    let e = srv.entity("edge-empty").expect("edge-empty");
    assert!(e.text().contains(r#""properties":{}"#), "{}", e.text());
}

#[test]
fn property_values_round_trip_byte_for_byte() {
    let srv = Server::start();
    let props = r#"{"t":22.50,"e":1e3,"E":-1.25E-7,"z":-0,"big":123456789012345678901234567890,"s":"\u00e9\n\"q\"\/","u":"é☕","n":{"z":1,"a":[1, 2,{"y":null,"b":true}],"m":{ "k" : "v" }},"eo":{},"ea":[],"f":false,"nul":null}"#;
    srv.post_ok(&event("rt-1", props));
    let e = srv.entity("rt-1").expect("rt-1");
    let want = format!(r#"{{"id":"rt-1","properties":{props},"lastUpdated":""#);
    assert!(
        e.text().starts_with(&want),
        "\nwant prefix {want}\ngot         {}",
        e.text()
    );
    assert!(e.text().ends_with("Z\"}"), "{}", e.text());
    // The listing renders the same bytes.
    let l = srv.get("/api/state/entities?prefix=rt-");
    assert!(l.text().contains(&want), "listing: {}", l.text());
    // And the whole thing is valid JSON.
    assert_eq!(e.json()["properties"]["n"]["a"][2]["b"], Value::Bool(true));
}

#[test]
fn merge_is_shallow_ordered_and_stores_null() {
    let srv = Server::start();
    srv.post_ok(&event("mrg", r#"{"a":1,"b":{"x":1,"y":2},"c":"keep"}"#));
    let first = srv.entity("mrg").unwrap().json()["lastUpdated"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(std::time::Duration::from_millis(5));
    srv.post_ok(&event("mrg", r#"{"b":{"z":3},"d":4,"a":null}"#));
    let e = srv.entity("mrg").unwrap();
    assert!(
        e.text().starts_with(
            r#"{"id":"mrg","properties":{"a":null,"b":{"z":3},"c":"keep","d":4},"lastUpdated":""#
        ),
        "{}",
        e.text()
    );
    let second = e.json()["lastUpdated"].as_str().unwrap().to_string();
    assert!(
        parse_rfc3339_ms(&second) > parse_rfc3339_ms(&first),
        "{first} -> {second}"
    );
    // Empty properties change nothing but the time; duplicate keys: the last one wins.
    srv.post_ok(&event("mrg", "{}"));
    srv.post_ok(&event("mrg", r#"{"c":1,"c":2.0}"#));
    let e = srv.entity("mrg").unwrap();
    assert!(
        e.text()
            .contains(r#""properties":{"a":null,"b":{"z":3},"c":2.0,"d":4}"#),
        "{}",
        e.text()
    );
}

fn batch_ids(prefix: &str, n: usize) -> Vec<String> {
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    assert_spans_two_shards(ids.iter().map(String::as_str));
    ids
}

#[test]
fn valid_batch_applies_everything_in_order() {
    let srv = Server::start();
    let ids = batch_ids("bok", 30);
    let mut events: Vec<String> = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        events.push(format!(
            r#"{{"eventId":"e-{i}","stream":"batch.n{i}","source":"x","payload":{{"entity_id":"{id}","properties":{{"i":{i}}}}}}}"#
        ));
    }
    // Several events for one entity: applied in batch order.
    for v in 1..=3 {
        events.push(event("bok-ordered", &format!(r#"{{"v":{v},"k{v}":true}}"#)));
    }
    let r = srv.batch_ok(&events);
    assert_eq!(r["successful"], 33);
    assert_eq!(r["failed"], 0);
    let results = r["results"].as_array().expect("results");
    assert_eq!(results.len(), 33);
    for (i, res) in results.iter().take(30).enumerate() {
        assert_eq!(
            res["eventId"],
            format!("e-{i}"),
            "results out of order: {res}"
        );
        assert_eq!(res["stream"], format!("batch.n{i}"));
    }
    assert!(results[30..]
        .iter()
        .all(|r| r["eventId"].as_str().map(str::len) == Some(36)));
    for (i, id) in ids.iter().enumerate() {
        let e = srv.entity(id).unwrap_or_else(|| panic!("{id} not applied"));
        assert_eq!(e.json()["properties"]["i"], i);
    }
    let e = srv.entity("bok-ordered").unwrap();
    assert!(
        e.text()
            .contains(r#""properties":{"v":3,"k1":true,"k2":true,"k3":true}"#),
        "{}",
        e.text()
    );
}

#[test]
fn batch_with_invalid_events_is_rejected_atomically() {
    let srv = Server::start();
    let ids = batch_ids("batom", 30);
    let mut events: Vec<String> = ids.iter().map(|id| event(id, r#"{"v":1}"#)).collect();
    let bad = [
        (
            5,
            r#"{"stream":"BAD","source":"x","payload":{"entity_id":"batom-bad-5","properties":{}}}"#,
        ),
        (
            17,
            r#"{"stream":"s","source":"x","payload":{"entity_id":"batom-bad-17"}}"#,
        ),
        (31, "42"),
    ];
    for (at, ev) in bad {
        events.insert(at, ev.to_string());
    }
    let r = srv.post("/api/events/batch", &batch_body(&events));
    assert_error(&r, 400);
    let v = r.json();
    assert_eq!(v["successful"], 0);
    assert_eq!(v["failed"], 3);
    let results = v["results"].as_array().expect("results");
    assert_eq!(results.len(), 33);
    for (i, res) in results.iter().enumerate() {
        if bad.iter().any(|(at, _)| *at == i) {
            assert!(
                res["error"].as_str().is_some_and(|m| !m.is_empty()),
                "results[{i}] = {res}"
            );
            assert!(res.get("eventId").is_none(), "results[{i}] = {res}");
        } else {
            assert_eq!(res["stream"], "test", "results[{i}] = {res}");
            assert!(res["eventId"].is_string(), "results[{i}] = {res}");
        }
    }
    for id in &ids {
        assert!(
            srv.entity(id).is_none(),
            "{id} applied from a rejected batch"
        );
    }
    assert!(srv.list("prefix=batom").is_empty());
    // The same events without the bad ones go through.
    let good: Vec<String> = ids.iter().map(|id| event(id, r#"{"v":2}"#)).collect();
    srv.batch_ok(&good);
    assert_eq!(srv.list("prefix=batom-").len(), 30);
}

#[test]
fn empty_batch_is_ok_and_bad_envelopes_are_400() {
    let srv = Server::start();
    let r = srv.post("/api/events/batch", r#"{"events":[]}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({"successful": 0, "failed": 0, "results": []})
    );
    for body in [
        "",
        "xx",
        "[]",
        "{}",
        r#"{"events":5}"#,
        r#"{"events":{}}"#,
        r#"{"events":null}"#,
        r#"{"events":[}"#,
    ] {
        let r = srv.post("/api/events/batch", body);
        assert_eq!(r.status, 400, "{body:?} -> {}", r.text());
        assert_json_error(&r);
    }
    srv.assert_healthy();
}

#[test]
fn get_entity_by_encoded_and_raw_ids() {
    let srv = Server::start();
    let ids = [
        "ns/sensor-1",
        "a/b/c",
        "café ☕/x",
        "100%",
        "sp ace",
        "q?x#y",
        "a+b",
    ];
    for (i, id) in ids.iter().enumerate() {
        srv.post_ok(&event(id, &format!(r#"{{"n":{i}}}"#)));
    }
    for (i, id) in ids.iter().enumerate() {
        let e = srv
            .entity(id)
            .unwrap_or_else(|| panic!("{id:?} not found by encoded path"));
        let v = e.json();
        assert_eq!(v["id"].as_str(), Some(*id));
        assert_eq!(v["properties"]["n"], i);
    }
    // Unencoded slashes, `%2F` and `%2f`, and a literal `+` in a path all work.
    for path in [
        "/api/state/entities/ns/sensor-1",
        "/api/state/entities/ns%2Fsensor-1",
        "/api/state/entities/ns%2fsensor-1",
    ] {
        let r = srv.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.json()["id"], "ns/sensor-1");
    }
    assert_eq!(srv.get("/api/state/entities/a/b%2Fc").json()["id"], "a/b/c");
    // A query string or fragment is not part of the id.
    assert_eq!(
        srv.get("/api/state/entities/ns/sensor-1?x=1").json()["id"],
        "ns/sensor-1"
    );
    assert_eq!(
        srv.get("/api/state/entities/q%3Fx%23y#frag").json()["id"],
        "q?x#y"
    );
    assert_eq!(srv.get("/api/state/entities/a+b").json()["id"], "a+b");
    assert_eq!(
        srv.get("/api/state/entities/caf%C3%A9%20%E2%98%95/x")
            .json()["id"],
        "café ☕/x"
    );
    // Unknown ids are a JSON 404; a bad escape is a 400.
    for path in [
        "/api/state/entities/nope",
        "/api/state/entities/ns/sensor-2",
        "/api/state/entities/ns",
        "/api/state/entities/",
    ] {
        assert_error(&srv.get(path), 404);
    }
    assert_error(&srv.get("/api/state/entities/%G1"), 400);
    assert_error(&srv.get("/api/state/entities/%FF"), 400);
}

#[test]
fn wrong_method_is_405_with_allow_and_unknown_path_is_404() {
    let srv = Server::start();
    let mut c = srv.connect();
    for (method, path, allowed) in [
        ("DELETE", "/health", "GET"),
        ("POST", "/health", "GET"),
        ("PUT", "/api/events", "POST"),
        ("GET", "/api/events/batch", "POST"),
        ("POST", "/api/state/entities", "GET"),
        ("PATCH", "/api/state/entities/x", "GET"),
    ] {
        let r = c.exchange(&build_request(method, path, &[], Some(b"")));
        assert_error(&r, 405);
        let allow = r
            .header("allow")
            .unwrap_or_else(|| panic!("{method} {path}: no Allow header"));
        assert!(
            allow.split(',').any(|m| m.trim() == allowed),
            "{method} {path}: Allow: {allow}"
        );
        assert!(
            !allow.split(',').any(|m| m.trim() == method),
            "{method} {path}: Allow: {allow}"
        );
    }
    // (`/` is the console: tests/console.rs.)
    for path in [
        "/ui/nope",
        "/nope",
        "/api",
        "/api/nope",
        "/health/x",
        "/api/events/batch/x",
        "/API/events",
    ] {
        assert_error(&c.exchange(&get_request(path)), 404);
    }
    // Errors like these keep the connection usable.
    assert_eq!(c.exchange(&get_request("/health")).status, 200);
}
