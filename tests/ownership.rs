//! One server per data directory and one per address: a second server refuses to
//! start, says why, and touches nothing; the lock goes with the process however it
//! ends (SIGTERM or kill -9), so the next start succeeds.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::*;

/// Every file under `dir` with its length and modification time.
fn files(dir: &Path) -> BTreeMap<String, (u64, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let e = e.expect("entry");
            let m = e.metadata().expect("metadata");
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.insert(
                    e.path().display().to_string(),
                    (m.len(), m.modified().expect("mtime")),
                );
            }
        }
    }
    out
}

/// Runs a second server with `env` to completion; returns (exit code, stderr).
fn second_server(env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = flux_command();
    cmd.env("FLUX_SHARDS", "2");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (status, stderr) = run_bounded(&mut cmd, Duration::from_secs(10));
    let status = status.unwrap_or_else(|| panic!("the second server kept running: {stderr}"));
    (status.code().unwrap_or(-1), stderr)
}

#[test]
fn a_second_server_on_the_same_data_directory_refuses_and_touches_nothing() {
    let srv = Server::start();
    let id = format!("own-{}", unique());
    assert_eq!(
        srv.post("/api/events", &event(&id, r#"{"a":1}"#)).status,
        200
    );
    let data = srv.data_dir();
    // The first server's log keepers prepare spare segments in the background: wait
    // until its files are still for a while.
    let mut before = files(&data);
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(300));
        let now = files(&data);
        if now == before {
            break;
        }
        before = now;
    }
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let (code, stderr) = second_server(&[
        ("FLUX_DATA_DIR", data.to_str().unwrap()),
        ("FLUX_LISTEN", &listen),
    ]);
    assert_ne!(code, 0, "the second server must fail: {stderr}");
    assert!(
        stderr.contains(&data.display().to_string()) && stderr.contains("in use"),
        "the message names the directory: {stderr}"
    );
    assert!(
        stderr.contains(&format!("PID {}", srv.pid())),
        "the message names the holder's PID {}: {stderr}",
        srv.pid()
    );
    assert_eq!(files(&data), before, "the second server changed files");
    // Nothing listens on the second server's port, and the first serves on.
    assert!(std::net::TcpStream::connect(&listen).is_err());
    let r = srv.get(&format!("/api/state/entities/{id}"));
    assert_eq!(r.status, 200);
}

#[test]
fn a_second_server_on_a_served_address_refuses() {
    let srv = Server::start();
    let other = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{}", srv.port());
    let (code, stderr) = second_server(&[
        ("FLUX_DATA_DIR", other.path().to_str().unwrap()),
        ("FLUX_LISTEN", &listen),
    ]);
    assert_ne!(code, 0, "the second server must fail: {stderr}");
    assert!(
        stderr.contains(&listen) && stderr.contains("already in use"),
        "the message names the address: {stderr}"
    );
    // The wildcard address conflicts with a served loopback address too.
    let wildcard = format!("0.0.0.0:{}", srv.port());
    let (code, stderr) = second_server(&[
        ("FLUX_DATA_DIR", other.path().to_str().unwrap()),
        ("FLUX_LISTEN", &wildcard),
    ]);
    assert_ne!(
        code, 0,
        "the second server must fail on {wildcard}: {stderr}"
    );
    // Every connection still reaches the first server: 64 fresh connections, each
    // answered by a server that knows an entity only the first one holds.
    let id = format!("own-{}", unique());
    assert_eq!(
        srv.post("/api/events", &event(&id, r#"{"a":1}"#)).status,
        200
    );
    for _ in 0..64 {
        let r = srv.get(&format!("/api/state/entities/{id}"));
        assert_eq!(r.status, 200);
    }
}

#[test]
fn the_lock_is_released_on_exit_and_after_kill_9() {
    let mut srv = Server::start();
    let id = format!("own-{}", unique());
    assert_eq!(
        srv.post("/api/events", &event(&id, r#"{"a":1}"#)).status,
        200
    );
    srv.stop();
    srv.restart();
    assert_eq!(srv.get(&format!("/api/state/entities/{id}")).status, 200);
    srv.kill9();
    srv.restart();
    assert_eq!(srv.get(&format!("/api/state/entities/{id}")).status, 200);
    // The lock file names the running server.
    let pid = std::fs::read_to_string(srv.data_dir().join("flux.lock")).expect("lock file");
    assert_eq!(pid.trim(), srv.pid().to_string());
}
