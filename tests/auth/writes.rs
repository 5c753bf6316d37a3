//! Auth mode: writes.

use super::fixture::*;

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
