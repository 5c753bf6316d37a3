//! Connection handling under abuse: slow heads and bodies (408), idle keep-alive
//! sockets, floods of idle connections, clients that stop reading, and the per-shard
//! connection cap (503). Every test ends by checking that the server still serves.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn slow_head_gets_408_and_close() {
    let srv = Server::start_with(&[("FLUX_HEADER_TIMEOUT_MS", "500")]);
    let mut c = srv.connect();
    let head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: a-very-slow-client\r\n\r\n";
    // One byte every 200 ms: the head would take 15 s. Each wait for an answer is
    // the pause between two bytes.
    c.set_timeout(Duration::from_millis(200));
    let start = Instant::now();
    let mut answered = false;
    for &b in head.iter() {
        if c.try_send(&[b]).is_err() {
            break;
        }
        let mut probe = [0u8; 1];
        match c.stream().peek(&mut probe) {
            Ok(_) => {
                answered = true;
                break;
            }
            Err(_) => continue,
        }
    }
    assert!(
        answered,
        "no answer to a slow head after {:?}",
        start.elapsed()
    );
    let elapsed = start.elapsed();
    c.set_timeout(IO_TIMEOUT);
    let r = c.read_response();
    assert_eq!(r.status, 408, "{}", r.text());
    assert_json_error(&r);
    assert!(r.says_close());
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_millis(2000),
        "408 after {elapsed:?}"
    );
    c.assert_closed();
    srv.assert_healthy();
}

/// A partial head that arrived together with a complete request must be timed by the
/// header timeout like any other head, not by the (much longer) idle timeout.
#[test]
fn partial_pipelined_head_gets_the_header_timeout() {
    let srv = Server::start_with(&[
        ("FLUX_HEADER_TIMEOUT_MS", "500"),
        ("FLUX_IDLE_TIMEOUT_MS", "4000"),
    ]);
    let mut c = srv.connect();
    let start = Instant::now();
    c.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /hea");
    assert_eq!(c.read_response().status, 200);
    c.set_timeout(Duration::from_millis(2500));
    let r = c.try_read_response();
    let elapsed = start.elapsed();
    match r {
        Ok(r) => {
            assert_eq!(r.status, 408, "{}", r.text());
            assert!(
                elapsed < Duration::from_millis(2000),
                "408 after {elapsed:?}"
            );
        }
        Err(e) => {
            panic!("no 408 for a partial head within {elapsed:?} (header timeout 500 ms): {e}")
        }
    }
    c.assert_closed();
    srv.assert_healthy();
}

#[test]
fn slow_body_gets_408_and_close() {
    let srv = Server::start_with(&[("FLUX_BODY_TIMEOUT_MS", "500")]);
    let mut c = srv.connect();
    let start = Instant::now();
    c.send(b"POST /api/events HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"stream\":");
    let r = c.read_response();
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(r.says_close());
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_millis(2000),
        "408 after {elapsed:?}"
    );
    c.assert_closed();
    srv.assert_healthy();
}

#[test]
fn idle_connections_are_closed_after_the_idle_timeout() {
    let srv = Server::start_with(&[("FLUX_IDLE_TIMEOUT_MS", "500")]);
    // After a request.
    let mut c = srv.connect();
    assert_eq!(c.exchange(&get_request("/health")).status, 200);
    let t = Instant::now();
    assert_eq!(
        c.wait_closed(Duration::from_secs(2)),
        CloseWait::Closed,
        "idle keep-alive socket left open"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "closed after only {:?}",
        t.elapsed()
    );
    // Before any request.
    let mut c = srv.connect();
    assert_eq!(
        c.wait_closed(Duration::from_secs(2)),
        CloseWait::Closed,
        "silent socket left open"
    );
    // A connection in steady use is not cut: the timer restarts after each request.
    let mut c = srv.connect();
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(c.exchange(&get_request("/health")).status, 200);
    }
    srv.assert_healthy();
}

#[test]
fn many_idle_connections_do_not_block_service() {
    let srv = Server::start();
    let idle: Vec<Conn> = (0..500).map(|_| srv.connect()).collect();
    let t = Instant::now();
    srv.assert_healthy();
    let events: Vec<String> = (0..50)
        .map(|i| event(&format!("flood-{i}"), "{}"))
        .collect();
    srv.batch_ok(&events);
    assert_eq!(srv.list_ids("prefix=flood-").len(), 50);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "slow with idle sockets: {:?}",
        t.elapsed()
    );
    // The idle ones are still open and usable.
    let mut idle = idle;
    for c in idle.iter_mut().step_by(50) {
        assert_eq!(c.exchange(&get_request("/health")).status, 200);
    }
    drop(idle);
    srv.assert_healthy();
}

#[test]
fn a_client_that_does_not_read_its_listing_blocks_nobody() {
    let srv = Server::start();
    // About 12 MiB of listing: more than the socket buffers hold, so the server's
    // write to the non-reading client blocks part-way.
    let pad = "z".repeat(10 * 1024);
    for part in 0..2 {
        let events: Vec<String> = (0..600)
            .map(|n| {
                event(
                    &format!("unread-{part}-{n}"),
                    &format!(r#"{{"pad":"{pad}"}}"#),
                )
            })
            .collect();
        srv.batch_ok(&events);
    }
    let mut stuck = srv.connect();
    stuck.send(&get_request("/api/state/entities"));
    std::thread::sleep(Duration::from_millis(300));
    // Everyone else, including writes to both shards while the listing is suspended,
    // is served promptly.
    let t = Instant::now();
    let events: Vec<String> = (0..20)
        .map(|n| event(&format!("unread-new-{n}"), "{}"))
        .collect();
    srv.batch_ok(&events);
    srv.assert_healthy();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "blocked by a non-reading client: {:?}",
        t.elapsed()
    );
    drop(stuck);
    srv.assert_healthy();
}

#[test]
fn connection_cap_answers_503_and_recovers() {
    let srv = Server::start_with(&[
        ("FLUX_SHARDS", "1"),
        ("FLUX_MAX_CONNECTIONS_PER_SHARD", "5"),
    ]);
    // A served request proves that the server counts the connection. A 503 here can
    // only mean that the start-up health check's connection is not reaped yet.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut open: Vec<Conn> = Vec::new();
    while open.len() < 5 {
        let mut c = srv.connect();
        match c.try_exchange(&get_request("/health")).map(|r| r.status) {
            Ok(200) => open.push(c),
            // 503, or a reset because the 503 came before the request was read.
            Ok(503) | Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            other => panic!("connection {} of 5: {other:?}", open.len() + 1),
        }
    }
    let mut extra = srv.connect();
    let r = extra
        .try_read_response()
        .expect("the 6th connection gets an answer without asking");
    assert_error(&r, 503);
    assert!(r.says_close());
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    extra.assert_closed();
    // The open ones still work.
    assert_eq!(open[0].exchange(&get_request("/health")).status, 200);
    drop(open);
    // Once they are gone, new connections are served again.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut c = srv.connect();
        match c.try_exchange(&get_request("/health")).map(|r| r.status) {
            Ok(200) => break,
            Ok(503) | Err(_) if Instant::now() < deadline => {}
            other => panic!("after closing the idle connections: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    srv.assert_healthy();
}
