//! Auth mode: runtime configuration.

use super::fixture::*;

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
