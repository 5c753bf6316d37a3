//! Process lifecycle: graceful shutdown on SIGTERM/SIGINT (exit status 0, requests in
//! progress finish, no new connections), and refusing bad configuration at start.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn sigterm_finishes_the_request_in_progress_and_exits_zero() {
    let mut srv = Server::start();
    let body = event("inflight", r#"{"done":true}"#);
    let (first, second) = body.split_at(body.len() / 2);
    let mut c = srv.connect();
    c.send(
        format!(
            "POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{first}",
            body.len()
        )
        .as_bytes(),
    );
    // Make sure the head is being served before the signal: a second connection's
    // request round trip takes longer than the server needs to read ours.
    assert_eq!(srv.get("/health").status, 200);
    std::thread::sleep(Duration::from_millis(100));
    let signalled = Instant::now();
    srv.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    // No new work once shutdown has begun: a new connection is refused, or gets a 503
    // or a close instead of an answer...
    if let Ok(mut late) = Conn::try_open(srv.port(), Duration::from_millis(500)) {
        // An error means closed or reset without an answer, which is fine.
        if let Ok(r) = late.try_exchange(&get_request("/health")) {
            assert_eq!(r.status, 503, "a new request was served during shutdown");
        }
    }
    assert!(
        srv.try_exit().is_none(),
        "exited with a request in progress"
    );
    // ...but the request in progress completes.
    c.send(second.as_bytes());
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.says_close(),
        "a response during shutdown should close: {:?}",
        r.headers
    );
    assert!(r.json()["eventId"].is_string());
    c.assert_closed();
    let status = srv
        .wait_exit(Duration::from_secs(5))
        .expect("still running 5 s after SIGTERM");
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        srv.log()
    );
    assert!(signalled.elapsed() < Duration::from_secs(5));
}

#[test]
fn sigterm_with_idle_connections_exits_promptly() {
    let mut srv = Server::start();
    let mut idle: Vec<Conn> = (0..20).map(|_| srv.connect()).collect();
    for c in idle.iter_mut().take(5) {
        assert_eq!(c.exchange(&get_request("/health")).status, 200);
    }
    let t = Instant::now();
    srv.signal("TERM");
    let status = srv
        .wait_exit(Duration::from_secs(3))
        .expect("idle connections kept the server alive");
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        srv.log()
    );
    assert!(t.elapsed() < Duration::from_secs(3));
    for c in idle.iter_mut() {
        c.assert_closed();
    }
}

#[test]
fn sigint_also_shuts_down_cleanly() {
    let mut srv = Server::start();
    srv.post_ok(&event("before-int", "{}"));
    srv.signal("INT");
    let status = srv
        .wait_exit(Duration::from_secs(3))
        .expect("still running after SIGINT");
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        srv.log()
    );
}

/// Starting must not hang. On a busy machine a start sometimes never completes: both
/// shard threads sleep in io_uring, the main thread waits for their readiness forever,
/// nothing is printed, and SIGTERM is not even looked at yet. Starting several servers
/// at once supplies the CPU contention that makes it likely.
#[test]
fn startup_never_hangs() {
    const ROUNDS: usize = 5;
    const SERVERS: usize = 8;
    for round in 0..ROUNDS {
        // Two spinning threads load both CPUs while the servers start.
        let stop = Arc::new(AtomicBool::new(false));
        let spinners: Vec<_> = (0..2)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let t = Instant::now();
                    while !stop.load(Ordering::Relaxed) && t.elapsed() < Duration::from_secs(11) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        let mut servers: Vec<Server> = (0..SERVERS).filter_map(|_| Server::spawn(&[])).collect();
        // A hang is forever; 10 s leaves room for 16 shards starting on 2 loaded cores.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut hung = Vec::new();
        for srv in servers.iter_mut() {
            let left = deadline.saturating_duration_since(Instant::now());
            if !srv.ready_within(left.max(Duration::from_millis(100))) {
                hung.push((srv.pid(), srv.try_exit(), srv.log()));
            }
        }
        stop.store(true, Ordering::Relaxed);
        for s in spinners {
            s.join().expect("spinner");
        }
        assert!(
            hung.is_empty(),
            "round {round}: {} of {} servers not ready 10 s after spawn (pid, exit, log): {hung:?}",
            hung.len(),
            servers.len()
        );
    }
}

/// A start whose mesh join stalls (simulated: shard 0 never joins) fails loudly within
/// a few seconds: non-zero exit, a message naming the stall, nothing served, and no
/// second start of the process (it used to re-execute itself, hiding the stall).
#[test]
fn a_stalled_start_fails_loudly() {
    let env = [("FLUX_FAILPOINT", "mesh-join-stall")];
    require_failpoints_if_armed(&env);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = flux_command();
    cmd.env("FLUX_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("FLUX_DATA_DIR", dir.path())
        .env("FLUX_SHARDS", "2")
        .envs(env);
    let started = Instant::now();
    let (status, stderr) = run_bounded(&mut cmd, Duration::from_secs(20));
    let status = status.unwrap_or_else(|| panic!("a stalled start kept running: {stderr}"));
    assert!(!status.success(), "a stalled start exited 0: {stderr}");
    assert!(
        stderr.contains("start-up stalled: 0 of 2 shards joined the shard mesh within 3 s"),
        "{stderr}"
    );
    assert!(!stderr.contains("starting again"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn invalid_configuration_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, value) in [
        ("FLUX_SHARDS", "0"),
        ("FLUX_MAX_CONNECTIONS_PER_SHARD", "0"),
        ("FLUX_BODY_LIMIT_SINGLE_BYTES", "0"),
        ("FLUX_SYNC", "sometimes"),
        ("FLUX_LISTEN", "not-an-address"),
    ] {
        let mut cmd = flux_command();
        cmd.env("FLUX_LISTEN", "127.0.0.1:0")
            .env("FLUX_DATA_DIR", dir.path())
            .env("FLUX_SHARDS", "1")
            .env(name, value);
        let (status, stderr) = run_bounded(&mut cmd, Duration::from_secs(5));
        let status = status.unwrap_or_else(|| panic!("{name}={value}: flux started anyway"));
        assert!(!status.success(), "{name}={value} was accepted");
        assert!(!stderr.trim().is_empty(), "{name}={value}: no message");
    }
}

/// A server killed while connections are open starts again on its port at once. The
/// killed server's ends of those connections wait in FIN_WAIT2 (the clients have not
/// closed theirs) for up to a minute; they are not "another server on the port".
#[test]
fn a_killed_server_starts_again_on_its_port_at_once() {
    let mut srv = Server::start();
    let mut open: Vec<Conn> = (0..4)
        .map(|_| {
            let mut c = srv.connect();
            c.send(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_eq!(c.read_response().status, 200);
            c
        })
        .collect();
    srv.kill9();
    srv.respawn_on_same_port();
    assert!(
        srv.ready_within(Duration::from_secs(10)),
        "exit {:?}; log:\n{}",
        srv.try_exit(),
        srv.log()
    );
    srv.assert_healthy();
    open.clear();
}

#[test]
fn a_taken_port_is_reported() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = holder.local_addr().unwrap().port();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = flux_command();
    cmd.env("FLUX_LISTEN", format!("127.0.0.1:{port}"))
        .env("FLUX_DATA_DIR", dir.path())
        .env("FLUX_SHARDS", "1");
    let (status, stderr) = run_bounded(&mut cmd, Duration::from_secs(5));
    let status = status.expect("flux kept running on a port that is taken");
    assert!(!status.success());
    assert!(
        stderr.contains(&port.to_string()),
        "the message should name the address: {stderr}"
    );
    drop(holder);
}
