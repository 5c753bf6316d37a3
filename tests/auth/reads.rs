//! Auth mode: reads.

use super::fixture::*;

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
