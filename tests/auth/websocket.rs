//! Auth mode: WebSocket.

use super::fixture::*;

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
