//! Auth mode: namespaces.

use super::fixture::*;

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
