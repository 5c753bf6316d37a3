//! Black-box test harness: starts the real `flux` binary on a free loopback port with
//! its own data directory, and speaks raw HTTP/1.1 bytes to it over `std::net`.
//!
//! - [`Server`] owns the child process; dropping it kills the child (by its handle).
//! - [`Conn`] is one client socket that reads exactly one response at a time
//!   (Content-Length, chunked, or close-delimited bodies), for keep-alive and
//!   pipelining tests. Every read has a timeout, so no test can hang.
//! - [`Server::request`] and friends send one request on a fresh connection.

#![allow(dead_code)]

pub mod acked;
mod client;
pub mod segfile;
mod ws;

use std::collections::HashSet;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

pub use client::*;
// Not every test binary speaks WebSocket.
#[allow(unused_imports)]
pub use ws::*;

/// How long a fresh server may take from spawn to being ready. It normally takes well
/// under a second; a start that hangs is retried (see `startup_never_hangs` in
/// lifecycle.rs).
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a restart may take: recovery replays the log first, which in a debug build
/// on a machine busy with other test binaries took 1.6–3 s for these tests' logs.
const RESTART_TIMEOUT: Duration = Duration::from_secs(20);
/// Start attempts (a port can be taken between probing and the server's bind).
const START_ATTEMPTS: usize = 5;

/// Ports handed out in this test process. The server binds with SO_REUSEPORT, so two
/// servers of one process on one port would silently share connections; never reuse one.
static USED_PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

pub fn free_port() -> u16 {
    let mut used = USED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let used = used.get_or_insert_with(HashSet::new);
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        if used.insert(port) {
            return port;
        }
    }
    panic!("no free port found");
}

/// Failpoints exist only in a build with the `failpoints` feature; a test that arms one
/// against a build without it would test nothing, so it stops here, loudly.
pub fn require_failpoints_if_armed(env: &[(&str, &str)]) {
    if env.iter().any(|(k, _)| *k == "FLUX_FAILPOINT") && !cfg!(feature = "failpoints") {
        panic!(
            "this test arms FLUX_FAILPOINT, which needs the `failpoints` feature: run \
             `cargo test --workspace --all-features` (the README's test command)"
        );
    }
}

/// A command for the flux binary without any FLUX_* (or PORT) variable inherited from
/// the environment of the test run.
pub fn flux_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flux"));
    for (k, _) in std::env::vars() {
        if k.starts_with("FLUX_") || k == "PORT" {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Runs `cmd` to completion, killing it after `timeout`; returns its exit status (None
/// when it had to be killed) and what it wrote to stderr.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> (Option<ExitStatus>, String) {
    run_bounded_to(cmd, timeout, false)
}

/// [`run_bounded`], returning what it wrote to stdout and stderr, interleaved.
pub fn run_bounded_output(cmd: &mut Command, timeout: Duration) -> (Option<ExitStatus>, String) {
    run_bounded_to(cmd, timeout, true)
}

fn run_bounded_to(
    cmd: &mut Command,
    timeout: Duration,
    stdout: bool,
) -> (Option<ExitStatus>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("stderr");
    let err = File::create(&path).expect("stderr file");
    let out = if stdout {
        Stdio::from(err.try_clone().expect("clone the output file"))
    } else {
        Stdio::null()
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        sleep(Duration::from_millis(20));
    };
    (status, std::fs::read_to_string(&path).unwrap_or_default())
}

/// A running `flux` child process. It can be stopped and started again on the same
/// data directory (a new process on a new port, with its own log file).
pub struct Server {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    exit: Option<ExitStatus>,
    /// Processes started on this data directory so far; names the current log file.
    runs: usize,
    /// The `env` of the last start, reused by [`Server::restart`].
    env: Vec<(String, String)>,
}

impl Server {
    /// Starts a server with 2 shards and default limits.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts a server; `env` overrides (or adds to) the defaults
    /// `FLUX_SHARDS=2`, `FLUX_LISTEN`, `FLUX_DATA_DIR`.
    pub fn start_with(env: &[(&str, &str)]) -> Server {
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            let Some(mut srv) = Server::spawn(env) else {
                continue;
            };
            if srv.ready_within(START_TIMEOUT) {
                return srv;
            }
            last_log = srv.log();
            // Shown with the test's output if it fails later.
            eprintln!(
                "flux on port {} did not become ready (exit: {:?}); retrying. Log:\n{last_log}",
                srv.port, srv.exit
            );
            // Drop kills it if it is still running.
        }
        panic!("flux did not start after {START_ATTEMPTS} attempts; last log:\n{last_log}");
    }

    /// Spawns a server on a free port without waiting for it; None if the port turned
    /// out to be taken.
    pub fn spawn(env: &[(&str, &str)]) -> Option<Server> {
        require_failpoints_if_armed(env);
        let port = free_port();
        // Someone else listening there would answer our health checks.
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return None;
        }
        let mut srv = Server {
            child: None,
            port,
            dir: tempfile::tempdir().expect("tempdir"),
            exit: None,
            runs: 0,
            env: env
                .iter()
                .map(|&(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        srv.launch();
        Some(srv)
    }

    /// Starts a process on `self.port` and this data directory, logging to a new file.
    fn launch(&mut self) {
        assert!(self.child.is_none(), "the previous process is still owned");
        self.runs += 1;
        let mut cmd = flux_command();
        let log = File::create(self.log_path()).expect("log file");
        cmd.env("FLUX_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("FLUX_DATA_DIR", self.data_dir())
            .env("FLUX_SHARDS", "2")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log clone"))
            .stderr(log);
        self.child = Some(cmd.spawn().expect("spawn flux"));
        self.exit = None;
    }

    fn log_path(&self) -> std::path::PathBuf {
        match self.runs {
            0 | 1 => self.dir.path().join("server.log"),
            n => self.dir.path().join(format!("server-{n}.log")),
        }
    }

    /// `FLUX_DATA_DIR` of this server (kept across restarts), unless `env` overrode it.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// Kills the process with SIGKILL (by its handle) and reaps it.
    pub fn kill9(&mut self) {
        if self.try_exit().is_none() {
            let child = self.child.as_mut().expect("child");
            child.kill().expect("kill -9 flux");
            self.exit = Some(child.wait().expect("wait for flux"));
        }
    }

    /// Stops the process with SIGTERM and asserts that it exits 0 within 10 s.
    pub fn stop(&mut self) {
        self.signal("TERM");
        let status = self
            .wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("still running 10 s after SIGTERM; log:\n{}", self.log()));
        assert!(status.success(), "exit {status:?}; log:\n{}", self.log());
    }

    /// Starts a new process on the same data directory (and a new port) without
    /// waiting for it; the previous process must have exited. `env` replaces the
    /// overrides of the previous start.
    pub fn respawn_with(&mut self, env: &[(&str, &str)]) {
        assert!(
            self.try_exit().is_some(),
            "restart while the previous process runs"
        );
        self.child = None;
        self.env = env
            .iter()
            .map(|&(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // Bound: free_port never repeats; someone listening would answer our checks.
        self.port = (0..START_ATTEMPTS)
            .map(|_| free_port())
            .find(|&p| TcpStream::connect(("127.0.0.1", p)).is_err())
            .expect("a free port");
        self.launch();
    }

    /// Starts a new process on the same data directory and the same port, with the
    /// overrides of the last start, without waiting for it; the previous process must
    /// have exited.
    pub fn respawn_on_same_port(&mut self) {
        assert!(
            self.try_exit().is_some(),
            "restart while the previous process runs"
        );
        self.child = None;
        self.launch();
    }

    /// [`Server::respawn_with`], then waits up to `timeout` until it serves; panics with
    /// its log if it exits or does not become ready. One retry when it neither exits
    /// nor becomes ready (see `RESTART_TIMEOUT`).
    pub fn restart_with_timeout(&mut self, env: &[(&str, &str)], timeout: Duration) {
        for attempt in 0..2 {
            self.respawn_with(env);
            if self.ready_within(timeout) {
                return;
            }
            if self.try_exit().is_some() || attempt == 1 {
                break;
            }
            eprintln!(
                "flux restart not ready (attempt {attempt}); log:\n{}",
                self.log()
            );
            self.kill9();
        }
        panic!(
            "flux restart failed (exit {:?}); log:\n{}",
            self.try_exit(),
            self.log()
        );
    }

    /// Restarts on the same data directory with the given overrides.
    pub fn restart_with(&mut self, env: &[(&str, &str)]) {
        self.restart_with_timeout(env, RESTART_TIMEOUT);
    }

    /// Restarts on the same data directory with the overrides of the last start.
    pub fn restart(&mut self) {
        let env = self.env.clone();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.restart_with(&env);
    }

    /// Waits until the server has announced that it listens and answers `/health` with
    /// 200; false if the process exited or the time ran out.
    pub fn ready_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.try_exit().is_some() {
                return false;
            }
            if self.log().contains(" listening on ") {
                if let Ok(mut c) = Conn::try_open(self.port, Duration::from_millis(500)) {
                    let ok = c
                        .try_exchange(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
                        .is_ok_and(|r| r.status == 200);
                    if ok {
                        return true;
                    }
                }
            }
            sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("child").id()
    }

    /// Everything the current process printed so far (stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Sends a signal by name (`TERM`, `INT`) to the child with `kill(1)`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// The exit status if the process has exited (non-blocking).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            if let Some(child) = self.child.as_mut() {
                self.exit = child.try_wait().expect("try_wait");
            }
        }
        self.exit
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_exit() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// A new client connection.
    pub fn connect(&self) -> Conn {
        Conn::open(self.port)
    }

    /// One request on a fresh connection. `body` adds a Content-Length header.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Response {
        let mut c = self.connect();
        c.send(&build_request(method, path, headers, body));
        c.read_response()
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], None)
    }

    pub fn post(&self, path: &str, body: &str) -> Response {
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
        )
    }

    /// Posts one event and asserts that it was accepted.
    pub fn post_ok(&self, body: &str) -> Value {
        let r = self.post("/api/events", body);
        assert_eq!(r.status, 200, "POST /api/events {body} -> {}", r.text());
        r.json()
    }

    /// Posts a batch and asserts that it was accepted.
    pub fn batch_ok(&self, events: &[String]) -> Value {
        let body = batch_body(events);
        let r = self.post("/api/events/batch", &body);
        assert_eq!(r.status, 200, "batch of {} -> {}", events.len(), r.text());
        r.json()
    }

    /// The entity, or None on 404 (anything else fails the test).
    pub fn entity(&self, id: &str) -> Option<Response> {
        let r = self.get(&entity_path(id));
        match r.status {
            200 => Some(r),
            404 => {
                assert_json_error(&r);
                None
            }
            s => panic!("GET entity {id:?}: unexpected {s}: {}", r.text()),
        }
    }

    /// The listing for `query` (without `?`), de-chunked and parsed.
    pub fn list(&self, query: &str) -> Vec<Value> {
        let path = if query.is_empty() {
            "/api/state/entities".to_string()
        } else {
            format!("/api/state/entities?{query}")
        };
        let r = self.get(&path);
        assert_eq!(r.status, 200, "GET {path} -> {}", r.text());
        match r.json() {
            Value::Array(items) => items,
            other => panic!("listing is not an array: {other}"),
        }
    }

    /// Ids of the listing for `query`, in response order.
    pub fn list_ids(&self, query: &str) -> Vec<String> {
        self.list(query)
            .iter()
            .map(|e| e["id"].as_str().expect("id").to_string())
            .collect()
    }

    /// Asserts that the server still serves: health, a write and reading it back, each
    /// on a fresh connection and promptly.
    pub fn assert_healthy(&self) {
        let t = Instant::now();
        let h = self.get("/health");
        assert_eq!(h.status, 200, "health: {}", h.text());
        let id = format!("healthy-{}", unique());
        self.post_ok(&event(&id, r#"{"ok":true}"#));
        let e = self
            .entity(&id)
            .expect("entity written by the health check");
        assert!(
            e.text().contains(r#""properties":{"ok":true}"#),
            "{}",
            e.text()
        );
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "server slow: {:?}",
            t.elapsed()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.exit.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// The raw body of every entity in `ids` (None for 404), over one connection.
pub fn raw_entities(srv: &Server, ids: &[String]) -> Vec<Option<Vec<u8>>> {
    let mut c = srv.connect();
    ids.iter()
        .map(|id| {
            let r = c.exchange(&get_request(&entity_path(id)));
            match r.status {
                200 => Some(r.body),
                404 => None,
                s => panic!("GET {id}: {s} {}", String::from_utf8_lossy(&r.body)),
            }
        })
        .collect()
}

/// A number unique within this test process (for ids that must not collide).
pub fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Sends `req` on a fresh connection, expects `status` with a JSON error and
/// `Connection: close`, then the server closing the socket.
pub fn rejected_and_closed(srv: &Server, req: &[u8], status: u16) {
    let mut c = srv.connect();
    c.send(req);
    let r = c
        .try_read_response()
        .unwrap_or_else(|e| panic!("no response to {:.120?}: {e}", String::from_utf8_lossy(req)));
    assert_eq!(
        r.status,
        status,
        "request {:.200?} -> {}",
        String::from_utf8_lossy(req),
        String::from_utf8_lossy(&r.body)
    );
    assert_json_error(&r);
    assert!(
        r.says_close(),
        "{status} must announce the close: {:?}",
        r.headers
    );
    c.assert_closed();
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("string to JSON")
}

/// An event for `entity_id` with `properties` (raw JSON text, sent as is).
pub fn event(entity_id: &str, properties: &str) -> String {
    format!(
        r#"{{"stream":"test","source":"integration","payload":{{"entity_id":{},"properties":{properties}}}}}"#,
        json_str(entity_id)
    )
}

/// `{"events":[...]}` from raw event texts.
pub fn batch_body(events: &[String]) -> String {
    format!(r#"{{"events":[{}]}}"#, events.join(","))
}

/// Percent-encodes everything but RFC 3986 unreserved bytes (so `/` becomes `%2F`).
pub fn pct(s: &str) -> String {
    let mut out = String::new();
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Path of an entity, the id fully percent-encoded.
pub fn entity_path(id: &str) -> String {
    format!("/api/state/entities/{}", pct(id))
}

/// The shard that owns `id` among `shards`, per the placement contract pinned in
/// `src/shard/router.rs` (FNV-1a 64, murmur3 fmix64, top 12 bits, contiguous ranges).
/// Tests use it only to check that their ids really span every shard.
pub fn owner_shard(id: &str, shards: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in id.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    (h >> 52) * shards / 4096
}

/// Asserts that `ids` are owned by both of 2 shards.
pub fn assert_spans_two_shards<'a>(ids: impl IntoIterator<Item = &'a str>) {
    let owners: HashSet<u64> = ids.into_iter().map(|id| owner_shard(id, 2)).collect();
    assert_eq!(owners.len(), 2, "test ids must be owned by both shards");
}

/// Milliseconds since the epoch of `YYYY-MM-DDTHH:MM:SS.mmmZ`; None when the text does
/// not have exactly that form.
pub fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let shape = b"dddd-dd-ddTdd:dd:dd.dddZ";
    if b.len() != shape.len() {
        return None;
    }
    for (c, p) in b.iter().zip(shape) {
        let ok = if *p == b'd' {
            c.is_ascii_digit()
        } else {
            c == p
        };
        if !ok {
            return None;
        }
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<u64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    // Days from civil (Howard Hinnant), years >= 1970 only.
    let (y, m) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y / 400;
    let yoe = y % 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec) * 1000) + ms)
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}
