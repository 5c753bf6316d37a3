//! Auth mode: only the admin may back up (`POST /api/admin/backup`, `flux backup
//! --token`); a restored server keeps the namespace registry (its tokens work) and
//! the namespace's entities; `flux export`/`flux import` with a namespace token stay
//! within the namespace.

use super::fixture::*;

fn backup_body(to: &std::path::Path) -> String {
    json!({ "to": to.to_str().unwrap() }).to_string()
}

#[test]
fn only_the_admin_backs_up_and_the_registry_comes_back() {
    let srv = auth_server(&[]);
    let alpha = register(&srv, "alpha");
    write_ok(&srv, &alpha, "alpha/one", r#"{"v":1}"#);
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("b");

    let r = call(
        &srv,
        "POST",
        "/api/admin/backup",
        None,
        Some(&backup_body(&to)),
    );
    expect(&r, 401, "no token");
    let r = as_token(
        &srv,
        &alpha,
        "POST",
        "/api/admin/backup",
        Some(&backup_body(&to)),
    );
    expect(&r, 403, "a namespace token");
    assert!(!to.exists(), "a refused backup wrote nothing");
    // The command with a namespace token is refused too, and says so.
    let mut cmd = flux_command();
    cmd.args(["backup", "--url", &srv.base(), "--to", to.to_str().unwrap()])
        .env("FLUX_TOKEN", &alpha);
    let (status, err) = run_bounded(&mut cmd, T);
    assert!(status.is_some_and(|s| !s.success()), "{err}");
    assert!(err.contains("403"), "{err}");

    let mut cmd = flux_command();
    cmd.args(["backup", "--url", &srv.base(), "--to", to.to_str().unwrap()])
        .env("FLUX_TOKEN", ADMIN);
    let (status, err) = run_bounded(&mut cmd, T);
    assert!(status.is_some_and(|s| s.success()), "{err}");
    assert!(
        to.join("namespaces").exists(),
        "the registry is in the backup"
    );

    let data = dir.path().join("restored");
    let mut cmd = flux_command();
    cmd.args(["restore", "--from", to.to_str().unwrap(), "--data-dir"])
        .arg(&data);
    let (status, err) = run_bounded(&mut cmd, T);
    assert!(status.is_some_and(|s| s.success()), "{err}");
    let restored = auth_server(&[("FLUX_DATA_DIR", data.to_str().unwrap())]);
    let r = as_token(&restored, &alpha, "GET", &entity_path("alpha/one"), None);
    expect(
        &r,
        200,
        "alpha's entity with alpha's token after the restore",
    );
    write_ok(&restored, &alpha, "alpha/two", r#"{"v":2}"#);

    // Export with the namespace token sees only the namespace; import with it writes
    // through the normal path (and a write outside the namespace would be refused).
    let other_ns = register(&srv, "other");
    write_ok(&srv, &other_ns, "other/x", r#"{"v":3}"#);
    let file = dir.path().join("alpha.jsonl");
    let mut cmd = flux_command();
    cmd.args([
        "export",
        "--url",
        &srv.base(),
        "--to",
        file.to_str().unwrap(),
    ])
    .env("FLUX_TOKEN", &alpha);
    let (status, err) = run_bounded(&mut cmd, T);
    assert!(status.is_some_and(|s| s.success()), "{err}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.contains("alpha/one") && !text.contains("other/x"),
        "{text}"
    );
    let other = auth_server(&[]);
    let beta = register(&other, "beta");
    let mut cmd = flux_command();
    cmd.args([
        "import",
        "--url",
        &other.base(),
        "--from",
        file.to_str().unwrap(),
    ])
    .env("FLUX_TOKEN", &beta);
    let (status, err) = run_bounded(&mut cmd, T);
    assert!(
        status.is_some_and(|s| !s.success()),
        "beta wrote alpha's ids: {err}"
    );
    assert!(err.contains("resume with --skip 0"), "{err}");
}
