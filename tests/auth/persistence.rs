//! Auth mode: persistence, start-up, open mode.

use super::fixture::*;

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
