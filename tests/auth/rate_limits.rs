//! Auth mode: rate limits.

use super::fixture::*;

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
