//! Cluster mode against real processes: 3 `nats-server` (JetStream, one NATS
//! cluster) and 3 Flux nodes with 2 shards each, started by
//! `deploy/local-cluster.sh` on free loopback ports (nats-server comes from
//! `deploy/install-nats-server.sh`, the hash-pinned official binary). No mocks.
//!
//! One cluster serves the scenarios in order (starting one takes ~20 s): writes
//! through one node read through the others; subscriptions on one node see writes
//! made through the others; a batch spanning every node is atomic; a node paused
//! past its lease is fenced; kill -9 of a Flux node under load (its groups served
//! elsewhere within 15 s, every acknowledged write there, checked with the load
//! tester's `--record`/`--verify-from`); kill -9 of a NATS server under load; all
//! processes restarted, state intact. Then: a node killed with -9 and started again
//! restores its groups from its own log; auth mode across nodes.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;

const TOOL: &str = env!("CARGO_BIN_EXE_flux-loadtest");

/// One cluster at a time: each is 6 processes whose leases and takeovers are timed,
/// and this machine has 2 cores (`cargo test` runs a binary's tests in parallel).
fn one_cluster_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn nats_server() -> PathBuf {
    let out = Command::new("sh")
        .arg(workspace().join("deploy/install-nats-server.sh"))
        .arg(workspace().join("target/nats"))
        .stderr(Stdio::inherit())
        .output()
        .expect("sh");
    assert!(out.status.success(), "deploy/install-nats-server.sh failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

struct Node {
    url: String,
    port: u16,
    pid: i32,
}

struct Cluster {
    dir: Option<tempfile::TempDir>,
    nodes: Vec<Node>,
    nats: PathBuf,
}

impl Cluster {
    fn up(dir: tempfile::TempDir, nats: PathBuf, env: &[(&str, &str)]) -> Cluster {
        let mut cmd = Command::new("sh");
        cmd.arg(workspace().join("deploy/local-cluster.sh"))
            .arg("up")
            .arg(dir.path())
            .current_dir(workspace())
            .env("FLUX_BIN", support::server_binary())
            .env("NATS_SERVER", &nats)
            .env("FLUX_LEASE_MS", "3000")
            .env("FLUX_GROUP_SNAPSHOT_MS", "1000")
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("sh");
        if !out.status.success() {
            for f in std::fs::read_dir(dir.path()).unwrap().flatten() {
                if f.path().extension().is_some_and(|e| e == "log") {
                    eprintln!("== {}", f.path().display());
                    eprintln!("{}", std::fs::read_to_string(f.path()).unwrap_or_default());
                }
            }
            panic!("local-cluster.sh up failed");
        }
        let nodes = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let (url, pid) = l.split_once(' ').expect("URL PID");
                Node {
                    url: url.to_string(),
                    port: url.rsplit(':').next().unwrap().parse().unwrap(),
                    pid: pid.parse().unwrap(),
                }
            })
            .collect::<Vec<_>>();
        assert_eq!(nodes.len(), 3, "one line per Flux node");
        Cluster {
            dir: Some(dir),
            nodes,
            nats,
        }
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().expect("running").path()
    }

    fn down(&self) {
        if let Some(d) = &self.dir {
            let _ = Command::new("sh")
                .arg(workspace().join("deploy/local-cluster.sh"))
                .arg("down")
                .arg(d.path())
                .status();
        }
    }

    /// Stops every process and starts them again on the same directories.
    fn restart(mut self) -> Cluster {
        self.down();
        let dir = self.dir.take().expect("running");
        Cluster::up(dir, self.nats.clone(), &[])
    }

    /// Which node serves each group, as node `i` sees it.
    fn owners(&self, i: usize) -> Vec<(String, bool)> {
        let r = http(self.nodes[i].port, "GET", "/api/cluster", "", None);
        assert_eq!(r.0, 200, "{}", r.1);
        let v: Value = serde_json::from_str(&r.1).unwrap();
        v["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                (
                    g["node"].as_str().unwrap_or("").to_string(),
                    g["servedHere"].as_bool().unwrap(),
                )
            })
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.down();
        if std::thread::panicking() {
            if let Some(d) = self.dir.take() {
                let kept = d.keep();
                eprintln!("cluster logs kept in {}", kept.display());
            }
        }
    }
}

/// One request on a fresh connection: (status, body).
fn http(port: u16, method: &str, path: &str, body: &str, token: Option<&str>) -> (u16, String) {
    try_http(port, method, path, body, token).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn try_http(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {text:?}")))?;
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    // Chunked answers are not used by the endpoints read here.
    Ok((status, body.to_string()))
}

/// The body of a chunked answer, chunks joined (listings are streamed).
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    // Bound: every turn consumes a chunk or ends.
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_string(); // not chunked
        };
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}

fn event(id: &str, props: &str) -> String {
    format!(
        r#"{{"stream":"s","source":"cluster-test","payload":{{"entity_id":"{id}","properties":{props}}}}}"#
    )
}

fn entity(port: u16, id: &str) -> Option<Value> {
    let (status, body) = http(port, "GET", &format!("/api/state/entities/{id}"), "", None);
    match status {
        200 => Some(serde_json::from_str(&body).unwrap()),
        404 => None,
        s => panic!("GET {id}: {s} {body}"),
    }
}

/// A WebSocket subscriber (raw frames, client side from flux-devclient).
struct Ws {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Ws {
    fn connect(port: u16, patterns: &[&str]) -> Ws {
        use flux_devclient::ws;
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let key = ws::key_from_seed(port as u64);
        s.write_all(&ws::upgrade_request("t", "", &key, None))
            .unwrap();
        let mut buf = Vec::new();
        let accept = ws::accept_key(&key);
        let deadline = Instant::now() + Duration::from_secs(10);
        let head_len = loop {
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk) {
                Ok(0) => panic!("closed during the upgrade"),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(_) => assert!(Instant::now() < deadline, "no upgrade answer"),
            }
            match ws::parse_upgrade(&buf, &accept).unwrap() {
                Some(ws::Upgrade::Accepted { head_len }) => break head_len,
                Some(other) => panic!("upgrade refused: {other:?}"),
                None => {}
            }
        };
        buf.drain(..head_len);
        let mut w = Ws { s, buf };
        for p in patterns {
            let mut f = Vec::new();
            let msg = format!(r#"{{"type":"subscribe","entity_id":"{p}"}}"#);
            ws::encode_client_frame(&mut f, true, 1, msg.as_bytes(), [1, 2, 3, 4]);
            w.s.write_all(&f).unwrap();
        }
        w
    }

    /// Text messages received within `d`.
    fn messages(&mut self, d: Duration) -> Vec<Value> {
        use flux_devclient::ws;
        let deadline = Instant::now() + d;
        let mut out = Vec::new();
        while Instant::now() < deadline {
            let mut chunk = [0u8; 65536];
            if let Ok(n) = self.s.read(&mut chunk) {
                self.buf.extend_from_slice(&chunk[..n]);
            }
            while let Some(h) = ws::frame_header(&self.buf).unwrap() {
                if self.buf.len() < h.end() {
                    break;
                }
                if h.opcode == 1 {
                    let v: Value =
                        serde_json::from_slice(&self.buf[h.payload_at..h.end()]).unwrap();
                    out.push(v);
                }
                self.buf.drain(..h.end());
            }
        }
        out
    }
}

fn tool(args: &[&str]) -> (bool, String) {
    let out = Command::new(TOOL)
        .args(args)
        .output()
        .expect("flux-loadtest");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Waits until every group is served and none by a node named in `gone`; returns
/// how long it took.
fn wait_served(c: &Cluster, via: usize, gone: &[&str], within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let owners = c.owners(via);
        let ok = owners
            .iter()
            .all(|(n, _)| !n.is_empty() && !gone.contains(&n.as_str()));
        if ok {
            // ... and each group's owner says it serves it.
            let mut serving = vec![false; owners.len()];
            for (i, node) in c.nodes.iter().enumerate() {
                if gone.contains(&format!("node-{}", i + 1).as_str()) {
                    continue;
                }
                if let Ok((200, body)) = try_http(node.port, "GET", "/api/cluster", "", None) {
                    let v: Value = serde_json::from_str(&body).unwrap();
                    for (g, s) in v["groups"].as_array().unwrap().iter().enumerate() {
                        serving[g] |= s["servedHere"].as_bool().unwrap();
                    }
                }
            }
            if serving.iter().all(|s| *s) {
                return started.elapsed();
            }
        }
        assert!(
            started.elapsed() < within,
            "groups not all served within {within:?}: {owners:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// POSTs `events` (JSON events) as one batch.
fn post_batch(port: u16, events: &[String]) -> (u16, String) {
    let body = format!(r#"{{"events":[{}]}}"#, events.join(","));
    http(port, "POST", "/api/events/batch", &body, None)
}

/// The ids of a listing's entities (200 asserted).
fn listed_ids(port: u16, path: &str) -> Vec<String> {
    let (s, b) = http(port, "GET", path, "", None);
    assert_eq!(s, 200, "{b}");
    serde_json::from_str::<Value>(&dechunk(&b))
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn three_nodes_on_three_nats_servers() {
    let _serial = one_cluster_at_a_time();
    let nats = nats_server();
    // The failpoint acts only while a node's data directory has `.fanout-drop`.
    let c = Cluster::up(
        tempfile::tempdir().unwrap(),
        nats,
        &[("FLUX_FAILPOINT", "cluster-fanout-drop")],
    );
    let ports: Vec<u16> = c.nodes.iter().map(|n| n.port).collect();
    let owners = c.owners(0);
    for i in 1..=3 {
        assert!(
            owners.iter().any(|(n, _)| *n == format!("node-{i}")),
            "node-{i} owns no group: {owners:?}"
        );
    }

    // Subscriptions on C: `*`, a prefix and an id, opened before the writes.
    let mut all = Ws::connect(ports[2], &["*"]);
    let mut some = Ws::connect(ports[2], &["w-1*", "w-20"]);
    std::thread::sleep(Duration::from_millis(300));

    // Writes through A and B (ids spread over every group), read through B and C.
    for i in 0..40 {
        let via = ports[i % 2];
        let (s, b) = http(
            via,
            "POST",
            "/api/events",
            &event(&format!("w-{i}"), &format!(r#"{{"n":{i},"t":"x{i}"}}"#)),
            None,
        );
        assert_eq!(s, 200, "{b}");
    }
    for i in 0..40 {
        for &p in &ports[1..] {
            let e = entity(p, &format!("w-{i}")).unwrap_or_else(|| panic!("w-{i} missing on {p}"));
            assert_eq!(e["properties"]["n"], i, "{e}");
            assert_eq!(e["properties"]["t"], format!("x{i}"), "{e}");
        }
    }
    let got_all = all.messages(Duration::from_secs(3));
    let ids = |msgs: &[Value]| {
        let mut v: Vec<String> = msgs
            .iter()
            .filter(|m| m["type"] == "state_update" && m["property"] == "n")
            .map(|m| m["entity_id"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let mut want: Vec<String> = (0..40).map(|i| format!("w-{i}")).collect();
    want.sort();
    assert_eq!(
        ids(&got_all),
        want,
        "`*` on C sees every write through A and B"
    );
    let got_some = some.messages(Duration::from_secs(1));
    let mut want_some: Vec<String> = (0..40)
        .map(|i| format!("w-{i}"))
        .filter(|id| id.starts_with("w-1") || id == "w-20")
        .collect();
    want_some.sort();
    assert_eq!(
        ids(&got_some),
        want_some,
        "prefix and id subscriptions on C"
    );

    // A fan-out message lost on the way (core NATS is at most once) shows as a gap in
    // the group's sequence at the next one (or at the owner's next tick); the
    // receiving node reads the gap from the stream and delivers it first, in order.
    let owner: usize = owner_of(&c, "gap-1")
        .strip_prefix("node-")
        .and_then(|n| n.parse::<usize>().ok())
        .expect("an owner")
        - 1;
    let other = (owner + 1) % 3;
    let mut gap_sub = Ws::connect(ports[other], &["gap-1"]);
    std::thread::sleep(Duration::from_millis(300));
    let marker = c.path().join(format!("flux-{}/.fanout-drop", owner + 1));
    // Writes v through the owner, its fan-out dropped if `lost`.
    let write_gap = |v: i64, lost: bool| {
        if lost {
            std::fs::write(&marker, b"").unwrap();
        }
        let (s, b) = http(
            ports[owner],
            "POST",
            "/api/events",
            &event("gap-1", &format!(r#"{{"v":{v}}}"#)),
            None,
        );
        assert_eq!(s, 200, "{b}");
        if lost {
            std::fs::remove_file(&marker).unwrap();
        }
    };
    write_gap(1, true);
    let values = |msgs: &[Value]| -> Vec<i64> {
        msgs.iter()
            .filter(|m| m["type"] == "state_update" && m["property"] == "v")
            .map(|m| m["value"].as_i64().unwrap())
            .collect()
    };
    let owner_log = c.path().join(format!("flux-{}.log", owner + 1));
    assert!(
        std::fs::read_to_string(&owner_log)
            .unwrap()
            .contains("failpoint: the fan-out of group"),
        "the failpoint dropped the fan-out (a build without the failpoints feature \
         cannot run this test: cargo test --workspace --all-features)"
    );
    // (The owner's tick may announce the gap before the next message does; either
    // way the lost update comes first.)
    write_gap(2, false);
    assert_eq!(
        values(&gap_sub.messages(Duration::from_secs(2))),
        vec![1, 2],
        "the lost update is read back from the stream and delivered before the next"
    );
    // Lost at the end of a burst (no later message in its group): the owner's tick
    // announces the sequence within a second or so, and the gap is read back.
    write_gap(3, true);
    assert_eq!(
        values(&gap_sub.messages(Duration::from_secs(4))),
        vec![3],
        "the last update of a burst, lost on the way, arrives after the owner's tick"
    );

    // History and delete through a node that does not own the entity.
    let (s, b) = http(ports[2], "GET", "/api/events?entity=w-3", "", None);
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        serde_json::from_str::<Value>(&b)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // A client's retry with the same eventId (after a timeout, say) is applied once,
    // through whichever node it arrives: JetStream drops the duplicate message.
    let dup = r#"{"eventId":"0190f0f0-0000-7000-8000-00000000d00d","stream":"s","source":"t","payload":{"entity_id":"dup-1","properties":{"v":1}}}"#;
    for &p in &ports {
        let (s, b) = http(p, "POST", "/api/events", dup, None);
        assert_eq!(s, 200, "{b}");
    }
    let (s, b) = http(ports[0], "GET", "/api/events?entity=dup-1", "", None);
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        serde_json::from_str::<Value>(&b)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1,
        "a retried eventId is applied once: {b}"
    );
    let (s, b) = http(ports[1], "DELETE", "/api/state/entities/w-3", "", None);
    assert_eq!(s, 200, "{b}");
    for &p in &ports {
        assert!(entity(p, "w-3").is_none(), "w-3 deleted everywhere");
    }
    let deleted = all.messages(Duration::from_secs(2));
    assert!(
        deleted
            .iter()
            .any(|m| m["type"] == "entity_deleted" && m["entity_id"] == "w-3"),
        "the deletion reaches C's subscriber: {deleted:?}"
    );

    // /metrics: each node's own figures plus totals over the cluster (no writes now).
    let sample = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing"))
            .trim()
            .parse()
            .unwrap()
    };
    let own: u64 = ports
        .iter()
        .map(|&p| sample(&http(p, "GET", "/metrics", "", None).1, "flux_entities"))
        .sum();
    assert!(own > 0);
    for &p in &ports {
        let (s, m) = http(p, "GET", "/metrics", "", None);
        assert_eq!(s, 200);
        assert_eq!(sample(&m, "flux_cluster_entities"), own, "through {p}");
        assert_eq!(sample(&m, "flux_cluster_nodes_answered"), 3, "through {p}");
    }

    // A batch spanning every node: all applied; with one invalid event: none.
    let evs: Vec<String> = (0..64)
        .map(|i| event(&format!("b-{i}"), r#"{"v":1}"#))
        .collect();
    let (s, b) = post_batch(ports[0], &evs);
    assert_eq!(s, 200, "{b}");
    for i in 0..64 {
        assert!(entity(ports[2], &format!("b-{i}")).is_some(), "b-{i}");
    }
    let mut bad: Vec<String> = (0..64)
        .map(|i| event(&format!("x-{i}"), r#"{"v":1}"#))
        .collect();
    bad.push(r#"{"stream":"s","source":"t","payload":{"properties":{}}}"#.into());
    let (s, _) = post_batch(ports[1], &bad);
    assert_eq!(s, 400);
    for i in 0..64 {
        assert!(
            entity(ports[0], &format!("x-{i}")).is_none(),
            "x-{i} of a refused batch"
        );
    }
    // A batch larger than one NATS message (max_payload, 1 MiB by default): 413 with
    // a clear reason, nothing applied (not a 503 after retrying in vain).
    let big = "z".repeat(1000);
    let huge: Vec<String> = (0..2000)
        .map(|i| event(&format!("h-{i}"), &format!(r#"{{"v":"{big}"}}"#)))
        .collect();
    let (s, b) = post_batch(ports[0], &huge);
    assert_eq!(s, 413, "{b}");
    assert!(b.contains("max_payload"), "{b}");
    for i in (0..2000).step_by(97) {
        assert!(entity(ports[1], &format!("h-{i}")).is_none(), "h-{i}");
    }

    // A listing through any node merges every node's entities, sorted and paged.
    let mut want: Vec<String> = (0..64).map(|i| format!("b-{i}")).collect();
    want.sort();
    for &p in &ports {
        let got = listed_ids(p, "/api/state/entities?prefix=b-");
        assert_eq!(got, want, "listing through {p}");
        // Paged: limit and after.
        let mut paged = Vec::new();
        let mut after = String::new();
        loop {
            let path = format!("/api/state/entities?prefix=b-&limit=10&after={after}");
            let page = listed_ids(p, &path);
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 10);
            after = page.last().unwrap().clone();
            paged.extend(page);
        }
        assert_eq!(paged, want, "paged listing through {p}");
    }

    // Batch deletes through one node reach every node's entities.
    let ids: Vec<String> = (0..8).map(|i| format!("\"b-{i}\"")).collect();
    let (s, b) = http(
        ports[2],
        "POST",
        "/api/state/entities/delete",
        &format!(r#"{{"entity_ids":[{},"nope-1"]}}"#, ids.join(",")),
        None,
    );
    assert_eq!(s, 200, "{b}");
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["deleted"], 8, "{v}");
    assert_eq!(v["failed"], 1, "{v}");
    assert_eq!(v["errors"][0]["entity_id"], "nope-1", "{v}");
    for i in 0..8 {
        assert!(
            entity(ports[0], &format!("b-{i}")).is_none(),
            "b-{i} deleted"
        );
    }
    let (s, b) = http(
        ports[0],
        "POST",
        "/api/state/entities/delete",
        r#"{"prefix":"b-"}"#,
        None,
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        serde_json::from_str::<Value>(&b).unwrap()["deleted"],
        56,
        "{b}"
    );
    let (_, b) = http(ports[1], "GET", "/api/state/entities?prefix=b-", "", None);
    assert_eq!(dechunk(&b), "[]");

    // Fencing: pause node C past its lease; its groups move; once it runs again it
    // must not get a write accepted for a group it lost, nor answer a stale read.
    let victim_groups: Vec<usize> = c
        .owners(0)
        .iter()
        .enumerate()
        .filter(|(_, (n, _))| n == "node-3")
        .map(|(g, _)| g)
        .collect();
    let probe = (0..10_000)
        .map(|i| format!("f-{i}"))
        .find(|id| owner_of(&c, id) == "node-3")
        .expect("an id of node-3");
    let (st, b) = http(
        ports[0],
        "POST",
        "/api/events",
        &event(&probe, r#"{"v":1}"#),
        None,
    );
    assert_eq!(st, 200, "{b}");
    assert!(!victim_groups.is_empty());
    unsafe { libc_kill(c.nodes[2].pid, 19) }; // SIGSTOP
    wait_served(&c, 0, &["node-3"], Duration::from_secs(15));
    let (s, b) = http(
        ports[0],
        "POST",
        "/api/events",
        &event(&probe, r#"{"v":2}"#),
        None,
    );
    assert_eq!(s, 200, "write through A to the new owner: {b}");
    unsafe { libc_kill(c.nodes[2].pid, 18) }; // SIGCONT
    let (s, b) = http(
        ports[2],
        "POST",
        "/api/events",
        &event(&probe, r#"{"v":3}"#),
        None,
    );
    let read = entity(ports[0], &probe).unwrap();
    if s == 200 {
        assert_eq!(
            read["properties"]["v"], 3,
            "an accepted write is the owner's: {read}"
        );
    } else {
        assert_eq!(
            read["properties"]["v"], 2,
            "the fenced node's refused write is nowhere: {read} ({s} {b})"
        );
    }
    let (s, b) = http(
        ports[2],
        "GET",
        &format!("/api/state/entities/{probe}"),
        "",
        None,
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        serde_json::from_str::<Value>(&b).unwrap()["properties"]["v"],
        read["properties"]["v"],
        "the resumed node answers what the owner has"
    );
    wait_served(&c, 2, &[], Duration::from_secs(30));

    // kill -9 of a Flux node under steady load through the other two.
    let rec = c.path().join("record.jsonl");
    let rec_s = rec.to_str().unwrap().to_string();
    let urls = format!("{},{}", c.nodes[0].url, c.nodes[1].url);
    let load = std::thread::spawn({
        let urls = urls.clone();
        let rec_s = rec_s.clone();
        move || {
            tool(&[
                "--url",
                &urls,
                "-c",
                "8",
                "-d",
                "12s",
                "--entities",
                "2000",
                "--mix",
                "ingest=80,batch=20",
                "--batch",
                "20",
                "--record",
                &rec_s,
                "--max-error-rate",
                "60",
                "--quiet",
            ])
        }
    });
    std::thread::sleep(Duration::from_secs(3));
    let victim = &c.nodes[1];
    unsafe { libc_kill(victim.pid, 9) };
    let took = wait_served(&c, 0, &["node-2"], Duration::from_secs(15));
    eprintln!("groups of the killed node served elsewhere after {took:?}");
    let (ok, out) = load.join().unwrap();
    assert!(ok, "load run: {out}");
    // The takeover loaded the groups' snapshots from JetStream (stored every second
    // here) rather than replaying their whole streams.
    let logs: String = [1, 3]
        .iter()
        .map(|i| {
            std::fs::read_to_string(c.path().join(format!("flux-{i}.log"))).unwrap_or_default()
        })
        .collect();
    assert!(
        logs.contains("snapshot loaded from JetStream"),
        "no takeover from a snapshot"
    );
    let (ok, out) = tool(&["--url", &c.nodes[0].url, "--verify-from", &rec_s]);
    assert!(
        ok,
        "every acknowledged write is there after the kill: {out}"
    );
    assert!(
        out.contains("0 mismatches") || !out.contains("mismatch"),
        "{out}"
    );

    // kill -9 of a NATS server (it leads some of the 16 streams) under load.
    let nats1 = std::fs::read_to_string(c.path().join("nats-1.pid")).unwrap();
    let rec2 = c.path().join("record2.jsonl");
    let rec2_s = rec2.to_str().unwrap().to_string();
    let load = std::thread::spawn({
        let url = c.nodes[0].url.clone();
        let rec2_s = rec2_s.clone();
        move || {
            tool(&[
                "--url",
                &url,
                "-c",
                "4",
                "-d",
                "10s",
                "--entities",
                "2000",
                "--mix",
                "ingest=80,batch=20",
                "--batch",
                "20",
                "--record",
                &rec2_s,
                "--max-error-rate",
                "60",
                "--quiet",
            ])
        }
    });
    std::thread::sleep(Duration::from_secs(3));
    unsafe { libc_kill(nats1.trim().parse().unwrap(), 9) };
    let (ok, out) = load.join().unwrap();
    assert!(ok, "load run across the NATS kill: {out}");
    // Writes continue after a short pause.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, _) = http(
            ports[0],
            "POST",
            "/api/events",
            &event("after-nats-kill", r#"{"v":1}"#),
            None,
        );
        if s == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writes did not resume after a NATS server died"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_served(&c, 0, &["node-2"], Duration::from_secs(30));
    let (ok, out) = tool(&["--url", &c.nodes[0].url, "--verify-from", &rec2_s]);
    assert!(
        ok,
        "every acknowledged write is there after the NATS kill: {out}"
    );

    // Restart every process on the same directories: state intact.
    let c = c.restart();
    for i in 0..40 {
        if i == 3 {
            continue;
        }
        let e = entity(c.nodes[2].port, &format!("w-{i}"))
            .unwrap_or_else(|| panic!("w-{i} after restart"));
        assert_eq!(e["properties"]["n"], i);
    }
    assert!(
        entity(c.nodes[0].port, "w-3").is_none(),
        "a deletion survives the restart"
    );
    let (ok, out) = tool(&["--url", &c.nodes[1].url, "--verify-from", &rec2_s]);
    assert!(ok, "acknowledged writes after restarting everything: {out}");
    // The restarted nodes took their groups back from their own logs (then the
    // streams after them), not over the network.
    let logs: String = (1..=3)
        .map(|i| {
            std::fs::read_to_string(c.path().join(format!("flux-{i}.log"))).unwrap_or_default()
        })
        .collect();
    assert!(
        logs.contains("restored from this node's log"),
        "no restart from a node's own log"
    );
}

/// The node that serves `id`'s group: a request marked as forwarded is answered only
/// by the group's owner (200 or 404); the other nodes answer 503.
fn owner_of(c: &Cluster, id: &str) -> String {
    for (i, n) in c.nodes.iter().enumerate() {
        let mut s = TcpStream::connect(("127.0.0.1", n.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET /api/state/entities/{id} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Flux-Forwarded: test\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        if out.starts_with("HTTP/1.1 200") || out.starts_with("HTTP/1.1 404") {
            return format!("node-{}", i + 1);
        }
    }
    String::new()
}

unsafe fn libc_kill(pid: i32, sig: i32) {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    kill(pid, sig);
}

/// Auth mode across nodes: a namespace registered through one node works on every
/// node; tokens are checked wherever a request lands and where it is forwarded.
#[test]
fn auth_mode_across_nodes() {
    let _serial = one_cluster_at_a_time();
    let admin = "cluster-test-admin-token-0123456789abcdef";
    let nats = nats_server();
    let c = Cluster::up(
        tempfile::tempdir().unwrap(),
        nats,
        &[("FLUX_AUTH_ENABLED", "true"), ("FLUX_ADMIN_TOKEN", admin)],
    );
    let ports: Vec<u16> = c.nodes.iter().map(|n| n.port).collect();
    let (s, b) = http(
        ports[1],
        "POST",
        "/api/namespaces",
        r#"{"name":"acme"}"#,
        Some(admin),
    );
    assert_eq!(s, 201, "{b}");
    let token = serde_json::from_str::<Value>(&b).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    // Every node learns the namespace (through the cluster's registry bucket).
    let deadline = Instant::now() + Duration::from_secs(10);
    for &p in &ports {
        loop {
            let (s, _) = http(p, "GET", "/api/namespaces/acme", "", Some(admin));
            if s == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {p} does not know the namespace"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // The namespace's token writes through every node, into its own ids only.
    for i in 0..30 {
        let p = ports[i % 3];
        let (s, b) = http(
            p,
            "POST",
            "/api/events",
            &event(&format!("acme/e{i}"), r#"{"v":1}"#),
            Some(&token),
        );
        assert_eq!(s, 200, "{b}");
    }
    let (s, _) = http(
        ports[0],
        "POST",
        "/api/events",
        &event("other/e", r#"{"v":1}"#),
        Some(&token),
    );
    assert_eq!(s, 403);
    // Reads: forwarded with the caller's token; anonymous and foreign reads refused.
    for i in 0..30 {
        let p = ports[(i + 1) % 3];
        let (s, b) = http(
            p,
            "GET",
            &format!("/api/state/entities/acme/e{i}"),
            "",
            Some(&token),
        );
        assert_eq!(s, 200, "{b}");
        let (s, _) = http(
            p,
            "GET",
            &format!("/api/state/entities/acme/e{i}"),
            "",
            None,
        );
        assert_eq!(s, 401);
    }
    let (s, b) = http(ports[2], "GET", "/api/state/entities", "", Some(&token));
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        serde_json::from_str::<Value>(&dechunk(&b))
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        30
    );
    // The namespace's entity count sums every node's groups, through any node.
    for &p in &ports {
        let (s, b) = http(p, "GET", "/api/namespaces/acme", "", Some(admin));
        assert_eq!(s, 200, "{b}");
        let n = serde_json::from_str::<Value>(&b).unwrap()["entityCount"].clone();
        assert_eq!(n, 30, "entityCount through {p}: {b}");
    }
    // The internal endpoints take only the admin token.
    let (s, _) = http(ports[0], "GET", "/api/internal/page", "", Some(&token));
    assert_eq!(s, 403);
    let (s, _) = http(ports[0], "GET", "/api/internal/page", "", None);
    assert!(s == 401 || s == 403, "{s}");
    // Deleting the namespace through another node removes its entities everywhere and
    // its token stops working everywhere.
    let (s, b) = http(ports[2], "DELETE", "/api/namespaces/acme", "", Some(admin));
    assert_eq!(s, 204, "{b}");
    let deadline = Instant::now() + Duration::from_secs(10);
    for &p in &ports {
        loop {
            let (s, _) = http(p, "GET", "/api/state/entities/acme/e1", "", Some(&token));
            if s == 401 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {p} still takes the deleted token ({s})"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let (s, b) = http(
        ports[0],
        "GET",
        "/api/state/entities?prefix=acme/",
        "",
        Some(admin),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(dechunk(&b), "[]");
}

/// A node killed with -9 and started again restores its groups from its own log (the
/// shard snapshot and the frames after it, each with its stream sequence) and reads
/// only the rest from JetStream. No group snapshot exists here (their interval is
/// longer than the test), so anything else would replay whole streams, and the lease
/// outlasts the restart, so the node takes its own groups back.
#[test]
fn a_restarted_node_restores_its_groups_from_its_own_log() {
    let _serial = one_cluster_at_a_time();
    let nats = nats_server();
    let mut c = Cluster::up(
        tempfile::tempdir().unwrap(),
        nats,
        &[
            ("FLUX_LEASE_MS", "20000"),
            ("FLUX_GROUP_SNAPSHOT_MS", "600000"),
            ("FLUX_SNAPSHOT_INTERVAL_S", "1"),
        ],
    );
    let ports: Vec<u16> = c.nodes.iter().map(|n| n.port).collect();
    // Writes through node 1 to every group (batches span groups: their parts carry
    // their intent), then time for a shard snapshot (its note lists the groups) ...
    let ids: Vec<String> = (0..300).map(|i| format!("r-{i}")).collect();
    for chunk in ids.chunks(50) {
        let events: Vec<String> = chunk.iter().map(|id| event(id, r#"{"v":1}"#)).collect();
        let (s, b) = post_batch(ports[0], &events);
        assert_eq!(s, 200, "{b}");
    }
    std::thread::sleep(Duration::from_secs(3));
    // ... then writes after it: frames the restart replays from the log.
    for id in &ids[..150] {
        let (s, b) = http(
            ports[0],
            "POST",
            "/api/events",
            &event(id, r#"{"v":2}"#),
            None,
        );
        assert_eq!(s, 200, "{b}");
    }
    let (s, b) = http(ports[0], "DELETE", "/api/state/entities/r-7", "", None);
    assert!(s == 200 || s == 204, "{s} {b}");

    // kill -9 node 2 and start it again at once, with the same settings.
    let victim = c.nodes[1].pid;
    let served_before: Vec<usize> = c
        .owners(1)
        .iter()
        .enumerate()
        .filter(|(_, (_, here))| *here)
        .map(|(g, _)| g)
        .collect();
    assert!(!served_before.is_empty(), "node 2 serves no group");
    let environ = std::fs::read(format!("/proc/{victim}/environ")).unwrap();
    unsafe { libc_kill(victim, 9) };
    // Its sockets are closed once every thread has exited: until the port is free.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpListener::bind(("127.0.0.1", ports[1])).is_err() {
        assert!(Instant::now() < deadline, "node 2's port stays taken");
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = c.path().join("flux-2-restarted.log");
    let mut cmd = Command::new(support::server_binary());
    cmd.env_clear()
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::options().append(true).open(&log).unwrap());
    for kv in environ.split(|b| *b == 0).filter(|kv| !kv.is_empty()) {
        let kv = String::from_utf8_lossy(kv);
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let mut child = cmd.spawn().expect("flux");
    c.nodes[1].pid = child.id() as i32;
    std::fs::write(c.path().join("flux-2.pid"), format!("{}\n", child.id())).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(try_http(ports[1], "GET", "/health", "", None), Ok((200, _))) {
        assert!(Instant::now() < deadline, "node 2 did not start again");
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_served(&c, 1, &[], Duration::from_secs(60));
    let text = std::fs::read_to_string(&log).unwrap();
    for g in &served_before {
        assert!(
            text.contains(&format!("group {g} restored from this node's log")),
            "group {g} was not restored from node 2's log:\n{text}"
        );
    }
    assert!(
        !text.contains("snapshot loaded"),
        "a group snapshot was loaded:\n{text}"
    );
    // Every write is there, read through every node.
    for (i, id) in ids.iter().enumerate() {
        for port in &ports {
            let e = entity(*port, id);
            if id == "r-7" {
                assert!(e.is_none(), "the deletion survives the restart");
                continue;
            }
            let e = e.unwrap_or_else(|| panic!("{id} after the restart"));
            let v = if i < 150 { 2 } else { 1 };
            assert_eq!(e["properties"]["v"], v, "{id}");
        }
    }
    // And the restored groups take new writes.
    for id in &ids[..50] {
        let (s, b) = http(
            ports[1],
            "POST",
            "/api/events",
            &event(id, r#"{"v":3}"#),
            None,
        );
        assert_eq!(s, 200, "{b}");
        assert_eq!(entity(ports[2], id).unwrap()["properties"]["v"], 3);
    }
    // `down` stops the restarted node by its pid file; it is our child: reap it.
    drop(c);
    let _ = child.wait();
}
