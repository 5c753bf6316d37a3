//! Black-box tests of what one WebSocket connection may cost the server
//! (DECISIONS.md "WebSocket", ARCHITECTURE.md "WebSocket fan-out"):
//! - a slow consumer: when its queue overflows, the updates still queued for it are
//!   dropped, the 1008 `slow consumer` close frame is the next frame it receives, its
//!   queue memory is released at once, and a close handshake that does not finish in
//!   time ends with the TCP connection dropped;
//! - subscriptions: bounded in count and in memory (long ids, prefix patterns), with
//!   an error message past either bound and the connection kept open.

mod common;

use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(5);
/// The subscriber's socket receive buffer: the kernel takes this as a hint and
/// doubles it, so the server sees a window of a few KiB.
const TINY_RCVBUF: usize = 4096;
/// The server's per-connection queue bound in these tests.
const QUEUE_BYTES: usize = 256 * 1024;
/// The server's close handshake deadline (`ws::session::CLOSE_HANDSHAKE_TIMEOUT`).
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(3);
/// Slack for a loaded machine on top of a server deadline.
const SLACK: Duration = Duration::from_millis(1500);

fn queue_server() -> Server {
    let queue = QUEUE_BYTES.to_string();
    Server::start_with(&[("FLUX_WS_QUEUE_BYTES", &queue)])
}

/// One batch of 50 events with ~2 KB of padding each: ~105 KB of updates for every
/// `*` subscriber.
fn publish_round(conn: &mut Conn, round: usize) {
    let pad = "x".repeat(2000);
    let batch: Vec<String> = (0..50)
        .map(|i| {
            event(
                &format!("slow-{i}"),
                &format!(r#"{{"seq":{round},"pad":"{pad}"}}"#),
            )
        })
        .collect();
    let r = conn.exchange(&post_request("/api/events/batch", &batch_body(&batch)));
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Publishes rounds until the server has closed a slow consumer.
fn publish_until_slow_close(srv: &Server, conn: &mut Conn, first_round: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for round in first_round.. {
        publish_round(conn, round);
        if metric(srv, "flux_ws_slow_consumer_closes_total") >= 1.0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no slow consumer after {round} rounds"
        );
    }
}

/// Polls `series` until it is at most `max` (panics after `within`); returns the value.
fn wait_metric_at_most(srv: &Server, series: &str, max: f64, within: Duration) -> f64 {
    let deadline = Instant::now() + within;
    loop {
        let v = metric(srv, series);
        if v <= max {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{series} is {v}, expected at most {max} within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `*` subscriber with a tiny receive buffer that does not read until the server
/// closes it as a slow consumer. Returns it with the queue memory seen while it was
/// still being filled.
fn overflowed_subscriber(srv: &Server) -> (WsClient, f64) {
    let mut slow = WsClient::connect_with_rcvbuf(srv.port(), TINY_RCVBUF);
    slow.subscribe("*");
    let mut conn = srv.connect();
    // Two rounds (~210 KB) fit in the queue beside what the socket takes.
    publish_round(&mut conn, 0);
    publish_round(&mut conn, 1);
    let filling = metric(srv, "flux_ws_queue_bytes");
    publish_until_slow_close(srv, &mut conn, 2);
    (slow, filling)
}

#[test]
fn a_slow_consumer_gets_the_close_frame_next_and_its_queue_memory_is_released() {
    let srv = queue_server();
    let (mut slow, filling) = overflowed_subscriber(&srv);
    assert!(
        filling >= 50_000.0,
        "the queue gauge shows the queued updates: {filling}"
    );
    // Released at once: the connection is still open (its close handshake has not
    // even started on the wire), but its queue is gone. What remains is at most the
    // rest of a partly written update and the close frame.
    let left = wait_metric_at_most(
        &srv,
        "flux_ws_queue_bytes",
        16_384.0,
        Duration::from_millis(500),
    );
    assert_eq!(metric(&srv, "flux_ws_connections"), 1.0, "still open");
    eprintln!("queue memory {filling} while filling, {left} once closing");

    // Now it reads, slowly (16 KiB per read, 10 ms apart): what still comes before the
    // close frame is only what was already on its way (socket buffers), not the queue.
    let t = Instant::now();
    let (close, before) = slow.read_slowly_until_close(
        16 * 1024,
        Duration::from_millis(10),
        Duration::from_secs(60),
    );
    let took = t.elapsed();
    eprintln!("close {close:?} after {before} payload bytes and {took:?}");
    assert_eq!(close, Some((1008, "slow consumer".to_string())));
    assert!(
        took < Duration::from_secs(1),
        "the close frame took {took:?} ({before} bytes of updates came first)"
    );
    assert!(
        before < QUEUE_BYTES / 2,
        "{before} bytes of updates came before the close frame"
    );
    // Every frame before it was whole (the client parsed them all), and the close
    // handshake completes normally when the client answers.
    slow.send_close(1000, "");
    assert!(slow.eof_within(T), "closed after the handshake");
    wait_metric(&srv, "flux_ws_connections", 0.0, T);
    assert_eq!(metric(&srv, "flux_ws_queue_bytes"), 0.0);
    srv.assert_healthy();
}

#[test]
fn a_client_that_reads_the_close_frame_but_never_answers_is_disconnected() {
    let srv = queue_server();
    let (mut slow, _) = overflowed_subscriber(&srv);
    // It reads everything, close frame included, and never sends its own.
    let close = slow.read_until_close(T);
    assert_eq!(close, Some((1008, "slow consumer".to_string())));
    let t = Instant::now();
    assert!(
        slow.eof_within(CLOSE_HANDSHAKE + SLACK),
        "the server drops the TCP connection once the close handshake times out"
    );
    let took = t.elapsed();
    eprintln!("dropped {took:?} after the close frame");
    wait_metric(&srv, "flux_ws_connections", 0.0, T);
}

#[test]
fn a_slow_consumer_that_never_reads_again_is_disconnected() {
    let srv = queue_server();
    let (mut slow, _) = overflowed_subscriber(&srv);
    // The close frame cannot even be written: the client reads nothing. The server
    // gives up after the close handshake deadline and drops the connection.
    let t = Instant::now();
    wait_metric(&srv, "flux_ws_connections", 0.0, CLOSE_HANDSHAKE + SLACK);
    eprintln!("dropped {:?} after the slow-consumer close", t.elapsed());
    assert_eq!(metric(&srv, "flux_ws_queue_bytes"), 0.0);
    // The connection was reset: reading ends without a close frame after what the
    // kernel had already delivered.
    assert_eq!(slow.read_until_close(T), None);
    srv.assert_healthy();
}

/// Sends every subscribe in one go, then reads one answer per subscribe; returns how
/// many were acknowledged and the error texts.
fn subscribe_all(c: &mut WsClient, patterns: &[String]) -> (usize, Vec<String>) {
    let mut frames = Vec::new();
    for (i, p) in patterns.iter().enumerate() {
        let msg = serde_json::json!({"type": "subscribe", "entity_id": p}).to_string();
        frames.extend(client_frame(
            true,
            OP_TEXT,
            msg.as_bytes(),
            (i as u32).to_be_bytes(),
        ));
    }
    c.send_raw(&frames);
    let (mut acked, mut errors) = (0, Vec::new());
    for _ in patterns {
        let m = c
            .collect(Duration::from_secs(30), false, |got| !got.is_empty())
            .pop()
            .expect("an answer to every subscribe");
        match m["type"].as_str() {
            Some("subscribed") => acked += 1,
            Some("error") => errors.push(m["error"].as_str().unwrap().to_string()),
            _ => panic!("unexpected {m}"),
        }
    }
    (acked, errors)
}

#[test]
fn subscriptions_are_bounded_in_count_and_in_memory() {
    let srv = Server::start();
    // 10,000 subscriptions to short ids fit; one more is refused by count.
    let mut many = WsClient::connect(srv.port());
    let short: Vec<String> = (0..10_001).map(|i| format!("sensor-{i:05}")).collect();
    let t = Instant::now();
    let (acked, errors) = subscribe_all(&mut many, &short);
    eprintln!("10,001 subscribes answered in {:?}", t.elapsed());
    assert_eq!(acked, 10_000);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("too many subscriptions"), "{errors:?}");
    let short_bytes = metric(&srv, "flux_ws_subscription_bytes");
    drop(many);
    wait_metric(&srv, "flux_ws_subscription_bytes", 0.0, T);

    // 1 KiB ids: the memory bound stops them long before the count.
    let mut long = WsClient::connect(srv.port());
    let pad = "L".repeat(1000);
    let ids: Vec<String> = (0..3000).map(|i| format!("{pad}-{i:05}")).collect();
    let (acked, errors) = subscribe_all(&mut long, &ids);
    eprintln!("{acked} subscriptions to 1 KiB ids accepted");
    assert!(
        (500..3000).contains(&acked),
        "{acked} long subscriptions accepted"
    );
    assert_eq!(errors.len(), 3000 - acked);
    assert!(
        errors.iter().all(|e| e.contains("bytes of server memory")),
        "{:?}",
        errors[0]
    );
    let long_bytes = metric(&srv, "flux_ws_subscription_bytes");
    // The bound is in bytes: 10,000 short ids take less than a few hundred long ones.
    assert!(
        long_bytes > short_bytes,
        "{long_bytes} bytes for {acked} long ids, {short_bytes} for 10,000 short ones"
    );
    // Prefix patterns cost more (one registration on every shard): fewer fit.
    let mut prefixes = WsClient::connect(srv.port());
    let pats: Vec<String> = (0..3000).map(|i| format!("{pad}-{i:05}*")).collect();
    let (acked_prefix, _) = subscribe_all(&mut prefixes, &pats);
    eprintln!("{acked_prefix} prefix subscriptions of 1 KiB accepted");
    assert!(
        acked_prefix < acked,
        "{acked_prefix} prefixes vs {acked} ids"
    );

    // The connection stays open and works: unsubscribing frees room.
    long.unsubscribe(&ids[0]);
    long.subscribe(&ids[acked]);
    srv.post_ok(&event(&ids[acked], r#"{"v":1}"#));
    assert_eq!(long.updates(1, T).len(), 1);
    // Closing releases it all.
    drop(long);
    drop(prefixes);
    wait_metric(&srv, "flux_ws_subscription_bytes", 0.0, T);
    wait_metric(&srv, "flux_ws_subscriptions", 0.0, T);
}

/// Resident anonymous memory (the heap), not VmRSS, which also counts the pages of the
/// mapped log segments that the process has touched (page cache).
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("RssAnon");
    kb * 1024
}

/// The memory accounted to subscriptions (`flux_ws_subscription_bytes`, which the
/// per-connection bound applies to) covers what they really take: a fresh server's
/// RSS grows by less while one connection fills its budget, with short ids, long ids
/// and long prefix patterns. (A fresh server each time: freed memory stays in RSS.)
#[test]
fn accounted_subscription_memory_covers_what_the_server_really_uses() {
    let pad = "M".repeat(1000);
    for (kind, len, suffix) in [("short", 0, ""), ("exact", 1000, ""), ("prefix", 1000, "*")] {
        let srv = Server::start();
        let mut c = WsClient::connect(srv.port());
        c.subscribe("warm-up");
        let before = rss_bytes(srv.pid());
        let accounted_before = metric(&srv, "flux_ws_subscription_bytes");
        let pats: Vec<String> = (0..3000)
            .map(|i| format!("{kind}-{}-{i:05}{suffix}", &pad[..len]))
            .collect();
        let (acked, _) = subscribe_all(&mut c, &pats);
        let grown = rss_bytes(srv.pid()).saturating_sub(before) as f64;
        let accounted = metric(&srv, "flux_ws_subscription_bytes") - accounted_before;
        eprintln!(
            "{kind}: {acked} subscriptions, RSS grew {grown} bytes, {accounted} accounted \
             ({:.0} %)",
            100.0 * grown / accounted
        );
        assert!(accounted > 1e6, "{accounted}");
        assert!(
            grown <= accounted,
            "{kind}: RSS grew {grown} > {accounted} accounted"
        );
    }
}
