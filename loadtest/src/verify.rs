//! `--verify` and `--verify-from`: read every written entity back
//! (`GET /api/state/entities/:id`) and check that it holds its last
//! acknowledged write or one whose outcome is unknown (see `ledger`). Properties the run never wrote are ignored (an entity may have
//! older ones).
//!
//! Off the load path: blocking sockets, one keep-alive connection per
//! thread, serde_json for bodies.

use crate::config::Target;
use crate::http::{self, ReadBuf};
use crate::ledger::Ledger;
use crate::workload::Workload;
use flux_devclient::http::Decoder;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

pub type Props = Map<String, Value>;

/// What one entity may hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    pub id: String,
    /// Properties of the last acknowledged write.
    pub acked: Props,
    /// Writes with an unknown outcome: holding one of these is fine too.
    pub candidates: Vec<Props>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    pub id: String,
    pub expected: Props,
    /// `None`: the entity is missing (404).
    pub actual: Option<Props>,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct VerifyReport {
    pub checked: u64,
    pub ok: u64,
    /// Matched a write whose acknowledgement was lost, not the last ack.
    pub ok_unacknowledged: u64,
    pub mismatches: Vec<Mismatch>,
    /// Entities that could not be read (HTTP error other than 404, I/O).
    pub read_errors: Vec<(String, String)>,
}

impl VerifyReport {
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty() && self.read_errors.is_empty()
    }
}

/// Expectations from the writes this run tracked.
pub fn from_ledger(w: &Workload, ledger: &Ledger) -> (Vec<Expectation>, u64) {
    let mut skipped = 0;
    let mut out = Vec::with_capacity(ledger.entities.len());
    let render = |wr| {
        let mut buf = Vec::new();
        w.write_properties(&mut buf, wr);
        serde_json::from_slice::<Props>(&buf).expect("rendered properties are JSON")
    };
    let mut entities: Vec<_> = ledger.entities.iter().collect();
    entities.sort_unstable_by_key(|(e, _)| **e);
    for (&e, log) in entities {
        match &log.acked {
            Some(a) if !log.overflow => out.push(Expectation {
                id: w.id(e),
                acked: render(a),
                candidates: log.unknown.iter().map(render).collect(),
            }),
            _ => skipped += 1,
        }
    }
    (out, skipped)
}

/// Expectations from a `--record` file. A torn last line (the tool was
/// killed mid-write) is ignored; any other bad line is an error.
pub fn from_record(path: &Path) -> Result<(Vec<Expectation>, u64), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    #[derive(Default)]
    struct Entity {
        acked: Option<((u64, u64), Props)>,
        /// (run, seq) → properties of sends without an outcome yet.
        pending: BTreeMap<(u64, u64), Props>,
    }
    let mut entities: HashMap<String, Entity> = HashMap::new();
    let mut run = 0u64;
    for (n, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) if n + 1 == lines.len() => break,
            Err(e) => return Err(format!("{}:{}: {e}", path.display(), n + 1)),
        };
        if v.get("flux_loadtest_record").is_some() {
            run += 1;
            continue;
        }
        let bad = || format!("{}:{}: not a record line", path.display(), n + 1);
        let op = v["op"].as_str().ok_or_else(bad)?;
        let id = v["id"].as_str().ok_or_else(bad)?;
        let key = (run, v["seq"].as_u64().ok_or_else(bad)?);
        let ent = entities.entry(id.to_string()).or_default();
        match op {
            "send" => {
                let props = v["properties"].as_object().ok_or_else(bad)?.clone();
                ent.pending.insert(key, props);
            }
            "ack" => {
                let props = ent.pending.remove(&key).ok_or_else(|| {
                    format!("{}:{}: ack of a write never sent", path.display(), n + 1)
                })?;
                // Sends before it without an outcome stay candidates: their outcome
                // is unknown, and they may be applied after this one.
                ent.acked = Some((key, props));
            }
            "rejected" => {
                ent.pending.remove(&key);
            }
            _ => return Err(bad()),
        }
    }
    let mut skipped = 0;
    let mut out = Vec::new();
    let mut ids: Vec<_> = entities.into_iter().collect();
    ids.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (id, ent) in ids {
        match ent.acked {
            Some((_, acked)) => out.push(Expectation {
                id,
                acked,
                candidates: ent.pending.into_values().collect(),
            }),
            None => skipped += 1,
        }
    }
    Ok((out, skipped))
}

/// Reads every expected entity back, on `threads` connections.
pub fn verify(
    target: &Target,
    addr: SocketAddr,
    token: Option<&str>,
    threads: usize,
    timeout: Duration,
    exps: &[Expectation],
) -> VerifyReport {
    let per = exps.len().div_ceil(threads.max(1)).max(1);
    let parts: Vec<VerifyReport> = std::thread::scope(|s| {
        let handles: Vec<_> = exps
            .chunks(per)
            .map(|chunk| s.spawn(move || verify_part(target, addr, token, timeout, chunk)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("verify thread"))
            .collect()
    });
    let mut r = VerifyReport::default();
    for p in parts {
        r.checked += p.checked;
        r.ok += p.ok;
        r.ok_unacknowledged += p.ok_unacknowledged;
        r.mismatches.extend(p.mismatches);
        r.read_errors.extend(p.read_errors);
    }
    r
}

fn verify_part(
    target: &Target,
    addr: SocketAddr,
    token: Option<&str>,
    timeout: Duration,
    exps: &[Expectation],
) -> VerifyReport {
    let mut r = VerifyReport::default();
    let mut client = Client::new(
        addr,
        http::common_headers(&target.authority, token),
        timeout,
    );
    let mut path = Vec::new();
    for e in exps {
        path.clear();
        path.extend_from_slice(target.base_path.as_bytes());
        path.extend_from_slice(b"/api/state/entities/");
        http::push_encoded(&mut path, e.id.as_bytes());
        r.checked += 1;
        let actual = match client.get(&path) {
            Ok((200, body)) => match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Object(mut o)) => match o.remove("properties") {
                    Some(Value::Object(p)) => Some(p),
                    _ => {
                        r.read_errors
                            .push((e.id.clone(), "no properties object".into()));
                        continue;
                    }
                },
                _ => {
                    r.read_errors
                        .push((e.id.clone(), "body is not a JSON object".into()));
                    continue;
                }
            },
            Ok((404, _)) => None,
            Ok((status, body)) => {
                let body = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                r.read_errors
                    .push((e.id.clone(), format!("HTTP {status} {body}")));
                continue;
            }
            Err(err) => {
                r.read_errors.push((e.id.clone(), err.to_string()));
                continue;
            }
        };
        match check(e, actual.as_ref()) {
            Check::Acked => r.ok += 1,
            Check::Candidate => {
                r.ok += 1;
                r.ok_unacknowledged += 1;
            }
            Check::Mismatch(detail) => r.mismatches.push(Mismatch {
                id: e.id.clone(),
                expected: e.acked.clone(),
                actual,
                detail,
            }),
        }
    }
    r
}

#[derive(Debug, PartialEq)]
pub enum Check {
    Acked,
    Candidate,
    Mismatch(String),
}

/// Compares an entity's properties (`None`: missing) with what it may hold.
pub fn check(e: &Expectation, actual: Option<&Props>) -> Check {
    let Some(actual) = actual else {
        return Check::Mismatch("entity missing (404)".into());
    };
    let differs = |exp: &Props| {
        exp.iter()
            .find(|(k, v)| actual.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
    };
    match differs(&e.acked) {
        None => Check::Acked,
        Some(_) if e.candidates.iter().any(|c| differs(c).is_none()) => Check::Candidate,
        Some(k) => Check::Mismatch(format!(
            "property {k:?}: expected {}, found {}",
            e.acked[&k],
            actual
                .get(&k)
                .map_or("nothing".to_string(), |v| v.to_string())
        )),
    }
}

/// A blocking keep-alive HTTP client (reconnects when the server closes).
struct Client {
    addr: SocketAddr,
    common: Vec<u8>,
    timeout: Duration,
    stream: Option<TcpStream>,
    rbuf: ReadBuf,
    dec: Decoder,
    req: Vec<u8>,
}

impl Client {
    fn new(addr: SocketAddr, common: Vec<u8>, timeout: Duration) -> Client {
        Client {
            addr,
            common,
            timeout,
            stream: None,
            rbuf: ReadBuf::new(),
            dec: Decoder::collecting(),
            req: Vec::new(),
        }
    }

    fn get(&mut self, path: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        // A keep-alive connection may have been closed by the server while
        // idle: one retry on a fresh connection.
        match self.try_get(path) {
            Ok(r) => Ok(r),
            Err(_) => {
                self.stream = None;
                self.try_get(path)
            }
        }
    }

    fn try_get(&mut self, path: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        if self.stream.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, self.timeout)?;
            s.set_read_timeout(Some(self.timeout))?;
            s.set_write_timeout(Some(self.timeout))?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
            self.rbuf.clear();
            self.dec = Decoder::collecting();
        }
        self.req.clear();
        http::write_get(&mut self.req, path, &self.common);
        let s = self.stream.as_mut().expect("connected");
        s.write_all(&self.req)?;
        loop {
            let (used, done) = self
                .dec
                .decode(self.rbuf.data())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
            self.rbuf.consume(used);
            if let Some(resp) = done {
                if resp.close {
                    self.stream = None;
                }
                return Ok((resp.status, self.dec.take_body()));
            }
            if used > 0 {
                continue;
            }
            let n = s.read(self.rbuf.spare())?;
            if n == 0 {
                if let Ok(Some(resp)) = self.dec.eof() {
                    self.stream = None;
                    return Ok((resp.status, self.dec.take_body()));
                }
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.rbuf.filled(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(v: Value) -> Props {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn check_rules() {
        let e = Expectation {
            id: "x".into(),
            acked: props(serde_json::json!({"p0": "a", "p1": 1})),
            candidates: vec![props(serde_json::json!({"p0": "b", "p1": 2}))],
        };
        let ok = props(serde_json::json!({"p0": "a", "p1": 1, "older": true}));
        assert_eq!(check(&e, Some(&ok)), Check::Acked);
        let later = props(serde_json::json!({"p0": "b", "p1": 2}));
        assert_eq!(check(&e, Some(&later)), Check::Candidate);
        let stale = props(serde_json::json!({"p0": "z", "p1": 1}));
        match check(&e, Some(&stale)) {
            Check::Mismatch(d) => assert!(d.contains("\"p0\"") && d.contains("\"z\""), "{d}"),
            c => panic!("{c:?}"),
        }
        assert!(matches!(check(&e, None), Check::Mismatch(_)));
    }

    #[test]
    fn record_file_replay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.jsonl");
        std::fs::write(
            &path,
            concat!(
                r#"{"flux_loadtest_record":1,"url":"http://x","start_unix_ms":1}"#,
                "\n",
                r#"{"op":"send","id":"a","seq":1,"properties":{"p":1}}"#,
                "\n",
                r#"{"op":"send","id":"a","seq":2,"properties":{"p":2}}"#,
                "\n",
                r#"{"op":"ack","id":"a","seq":1}"#,
                "\n",
                r#"{"op":"send","id":"b","seq":1,"properties":{"p":1}}"#,
                "\n",
                r#"{"op":"rejected","id":"b","seq":1}"#,
                "\n",
                r#"{"op":"send","id":"c","seq":1,"properties":{"p":1}}"#,
                "\n",
                r#"{"op":"ack","id":"c","seq":1}"#,
                "\n",
                r#"{"op":"send","id":"c","seq":2,"properties":{"p":2}}"#,
                "\n",
                r#"{"op":"ack","id":"c","seq":2}"#,
                "\n",
                r#"{"op":"send","id":"d","seq":1,"properties":{"p":1}}"#,
                "\n",
                r#"{"op":"send","id":"d","seq":2,"properties":{"p":2}}"#,
                "\n",
                r#"{"op":"ack","id":"d","seq":2}"#,
                "\n",
                r#"{"op":"ack","id":"c","#,
            ),
        )
        .unwrap();
        let (exps, skipped) = from_record(&path).unwrap();
        assert_eq!(skipped, 1, "b was never acknowledged");
        assert_eq!(exps.len(), 3);
        assert_eq!(exps[0].id, "a");
        assert_eq!(exps[0].acked["p"], 1);
        assert_eq!(exps[0].candidates.len(), 1, "seq 2 has an unknown outcome");
        assert_eq!(exps[1].acked["p"], 2);
        assert!(
            exps[1].candidates.is_empty(),
            "acknowledged writes are settled"
        );
        assert_eq!(exps[2].id, "d");
        assert_eq!(exps[2].acked["p"], 2);
        assert_eq!(
            exps[2].candidates.len(),
            1,
            "seq 1's outcome is unknown: it may land after seq 2"
        );
        std::fs::write(&path, "garbage\n{}\n").unwrap();
        assert!(from_record(&path).is_err());
    }
}
