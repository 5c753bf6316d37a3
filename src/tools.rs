//! Operator commands of the `flux` binary besides serving: `flux backup`,
//! `flux restore`, `flux export`, `flux import` (README "Backup and restore").
//!
//! `backup`, `export` and `import` are HTTP clients of a running server (a small
//! blocking HTTP/1.1 client below, one connection per request); `restore` works on
//! directories only (`log::backup`).
//!
//! Export format (JSON Lines, format 1), one line per entity in id order after a
//! header line:
//!
//! ```text
//! {"flux_export":1,"kind":"entities","created_unix_ms":1765000000000}
//! {"id":"s-01","properties":{"temp":22.5},"lastUpdated":"2026-02-14T12:00:00.000Z"}
//! ```
//!
//! Property values are the server's bytes (`22.50` stays `22.50`). Import turns each
//! entity line into one event (`stream` from `--stream`, `source` `flux-import`,
//! `timestamp` the entity's `lastUpdated`) and posts them in batches through
//! `POST /api/events/batch`: the normal write path, so subscribers see them and auth
//! applies. A batch is atomic; after each one the command prints the line position
//! reached, and `--skip N` resumes there.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use flux_devclient::http::Decoder;
use flux_devclient::json::{skip_ws, string_end, value_end};

use crate::log::backup;

pub const COMMANDS: &[&str] = &["backup", "restore", "export", "import"];

#[derive(Parser, Debug)]
#[command(name = "flux", about = "Flux operator commands")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Writes a consistent copy of a running server into DIR on the server's host
    /// (POST /api/admin/backup); prints the server's summary.
    Backup {
        /// The server, e.g. http://127.0.0.1:3000.
        #[arg(long, env = "FLUX_URL", default_value = "http://127.0.0.1:3000")]
        url: String,
        /// The backup directory (absent or empty; made absolute here, written by the
        /// server: on its host).
        #[arg(long)]
        to: PathBuf,
        /// The admin token (auth mode).
        #[arg(long, env = "FLUX_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Leave out the log kept only for history (before each shard's snapshot): a
        /// smaller backup whose restore has no history before the snapshot.
        #[arg(long = "no-history")]
        no_history: bool,
        /// Pace the copy to this many MiB/s (0: unpaced).
        #[arg(long = "max-rate", default_value_t = 0)]
        max_rate_mib_s: u64,
    },
    /// Checks a backup (manifest, every file's size and SHA-256) and makes a new data
    /// directory from it; start the server on it with the same FLUX_SHARDS.
    Restore {
        /// The backup directory (the one holding MANIFEST.json).
        #[arg(long)]
        from: PathBuf,
        /// The new data directory (absent or empty).
        #[arg(long = "data-dir")]
        data_dir: PathBuf,
        /// Only check the backup.
        #[arg(long)]
        check: bool,
    },
    /// Streams every entity (or those under --prefix) as JSON Lines.
    Export {
        #[arg(long, env = "FLUX_URL", default_value = "http://127.0.0.1:3000")]
        url: String,
        /// Output file (`-`: standard output).
        #[arg(long, default_value = "-")]
        to: PathBuf,
        #[arg(long)]
        prefix: Option<String>,
        #[arg(long, env = "FLUX_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Writes the entities of an export through the normal write path, in batches.
    Import {
        #[arg(long, env = "FLUX_URL", default_value = "http://127.0.0.1:3000")]
        url: String,
        /// An export file (`-`: standard input).
        #[arg(long)]
        from: PathBuf,
        /// The `stream` of the imported events.
        #[arg(long, default_value = "import")]
        stream: String,
        /// Entities per batch request.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Largest batch body in bytes (keep it under the server's
        /// FLUX_BODY_LIMIT_BATCH_BYTES).
        #[arg(long = "max-body-bytes", default_value_t = 512 * 1024)]
        max_body_bytes: usize,
        /// Entity lines to skip first: the position a previous import printed.
        #[arg(long, default_value_t = 0)]
        skip: u64,
        #[arg(long, env = "FLUX_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
}

/// Runs a command; the process exit code.
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    let cli = Cli::parse_from(args);
    let r = match cli.command {
        Command::Backup {
            url,
            to,
            token,
            no_history,
            max_rate_mib_s,
        } => run_backup(&url, to, token.as_deref(), (!no_history, max_rate_mib_s)),
        Command::Restore {
            from,
            data_dir,
            check,
        } => run_restore(&from, &data_dir, check),
        Command::Export {
            url,
            to,
            prefix,
            token,
        } => run_export(&url, &to, prefix.as_deref(), token.as_deref()),
        Command::Import {
            url,
            from,
            stream,
            batch,
            max_body_bytes,
            skip,
            token,
        } => run_import(
            &url,
            &from,
            &stream,
            (batch.max(1), max_body_bytes),
            skip,
            token.as_deref(),
        ),
    };
    match r {
        Ok(()) => 0,
        Err(msg) => {
            eprintln!("flux: {msg}");
            1
        }
    }
}

fn run_backup(
    url: &str,
    to: PathBuf,
    token: Option<&str>,
    (history, max_rate_mib_s): (bool, u64),
) -> Result<(), String> {
    let to = if to.is_absolute() {
        to
    } else {
        std::env::current_dir()
            .map_err(|e| format!("current directory: {e}"))?
            .join(to)
    };
    let mut body = Vec::new();
    body.extend_from_slice(b"{\"to\":");
    crate::json::write_str(&mut body, to.to_string_lossy().as_bytes());
    body.extend_from_slice(
        format!(",\"history\":{history},\"max_rate_mib_s\":{max_rate_mib_s}}}").as_bytes(),
    );
    let started = Instant::now();
    let r = Http::parse(url)?.request("POST", "/api/admin/backup", token, &body)?;
    if r.status != 200 {
        return Err(format!(
            "backup refused ({}): {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ));
    }
    println!("{}", String::from_utf8_lossy(&r.body));
    eprintln!(
        "flux: backup complete in {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        to.display()
    );
    Ok(())
}

fn run_restore(
    from: &std::path::Path,
    data_dir: &std::path::Path,
    check: bool,
) -> Result<(), String> {
    let started = Instant::now();
    let m = if check {
        backup::verify(from)?
    } else {
        backup::restore(from, data_dir)?
    };
    let bytes: u64 = m.files.iter().map(|f| f.bytes).sum();
    eprintln!(
        "flux: backup {} verified: {} shards, {} files, {bytes} bytes, taken at unix ms {}{} ({:.1} s)",
        from.display(),
        m.shards,
        m.files.len(),
        m.created_unix_ms,
        if check {
            String::new()
        } else {
            format!(
                "; restored into {} (start it with FLUX_SHARDS={})",
                data_dir.display(),
                m.shards
            )
        },
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Entities per listing request of an export.
const EXPORT_PAGE: usize = 10_000;

fn run_export(
    url: &str,
    to: &std::path::Path,
    prefix: Option<&str>,
    token: Option<&str>,
) -> Result<(), String> {
    let http = Http::parse(url)?;
    let mut out: Box<dyn Write> = if to.as_os_str() == "-" {
        Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
    } else {
        let f = std::fs::File::create(to).map_err(|e| format!("{}: {e}", to.display()))?;
        Box::new(std::io::BufWriter::new(f))
    };
    let io_err = |e: std::io::Error| format!("writing the export: {e}");
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    writeln!(
        out,
        "{{\"flux_export\":1,\"kind\":\"entities\",\"created_unix_ms\":{created}}}"
    )
    .map_err(io_err)?;
    let mut after: Option<String> = None;
    let mut n = 0u64;
    loop {
        let mut q = format!("/api/state/entities?limit={EXPORT_PAGE}");
        if let Some(p) = prefix {
            q.push_str("&prefix=");
            q.push_str(&percent_encode(p));
        }
        if let Some(a) = &after {
            q.push_str("&after=");
            q.push_str(&percent_encode(a));
        }
        let r = http.request("GET", &q, token, b"")?;
        if r.status != 200 {
            return Err(format!(
                "listing failed ({}): {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
        }
        let items = array_items(&r.body).ok_or("the listing is not a JSON array")?;
        let got = items.len();
        for item in items {
            let line = &r.body[item];
            let id = object_members(line)
                .and_then(|m| m.into_iter().find(|(k, _)| k == "id"))
                .and_then(|(_, v)| json_string(&line[v]))
                .ok_or("an entity without an id in the listing")?;
            out.write_all(line).map_err(io_err)?;
            out.write_all(b"\n").map_err(io_err)?;
            after = Some(id);
            n += 1;
        }
        if got < EXPORT_PAGE {
            break;
        }
    }
    out.flush().map_err(io_err)?;
    eprintln!("flux: exported {n} entities");
    Ok(())
}

fn run_import(
    url: &str,
    from: &std::path::Path,
    stream: &str,
    (batch, max_body): (usize, usize),
    skip: u64,
    token: Option<&str>,
) -> Result<(), String> {
    let http = Http::parse(url)?;
    let input: Box<dyn Read> = if from.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(from).map_err(|e| format!("{}: {e}", from.display()))?)
    };
    let lines = BufReader::new(input).lines();
    // Entity lines consumed (the header does not count): the resumable position.
    let mut pos = 0u64;
    let mut done = 0u64;
    let mut body = Vec::new();
    let mut in_batch = 0usize;
    let started = Instant::now();
    let mut last_report = Instant::now();
    let send = |body: &mut Vec<u8>, in_batch: &mut usize, pos: u64, done: &mut u64| {
        if *in_batch == 0 {
            return Ok(());
        }
        body.extend_from_slice(b"]}");
        let done_at = pos - *in_batch as u64;
        let r = http
            .request("POST", "/api/events/batch", token, body)
            .map_err(|e| {
                format!(
                    "{e}; the import is complete up to position {done_at}: resume with --skip \
                     {done_at}"
                )
            })?;
        if r.status != 200 {
            return Err(format!(
                "batch ending at line position {pos} refused ({}): {}; the import is complete up \
                 to position {}: resume with --skip {}",
                r.status,
                String::from_utf8_lossy(&r.body),
                pos - *in_batch as u64,
                pos - *in_batch as u64
            ));
        }
        *done = pos;
        *in_batch = 0;
        body.clear();
        Ok(())
    };
    let mut first = true;
    for line in lines {
        let line = line.map_err(|e| format!("reading {}: {e}", from.display()))?;
        if first {
            first = false;
            if line.starts_with("{\"flux_export\":") {
                continue;
            }
        }
        if line.trim().is_empty() {
            continue;
        }
        pos += 1;
        if pos <= skip {
            done = pos;
            continue;
        }
        let event =
            entity_event(line.as_bytes(), stream).map_err(|e| format!("entity line {pos}: {e}"))?;
        if in_batch > 0 && body.len() + event.len() + 2 > max_body {
            send(&mut body, &mut in_batch, pos - 1, &mut done)?;
        }
        if in_batch == 0 {
            body.extend_from_slice(b"{\"events\":[");
        } else {
            body.push(b',');
        }
        body.extend_from_slice(&event);
        in_batch += 1;
        if in_batch == batch {
            send(&mut body, &mut in_batch, pos, &mut done)?;
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            eprintln!("flux: import: position {done} (resume with --skip {done})");
            last_report = Instant::now();
        }
    }
    send(&mut body, &mut in_batch, pos, &mut done)?;
    eprintln!(
        "flux: imported {} entities in {:.1} s; position {done}",
        done - skip.min(done),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One export line as an event of the batch API.
fn entity_event(line: &[u8], stream: &str) -> Result<Vec<u8>, String> {
    let members = object_members(line).ok_or("not a JSON object")?;
    let get = |k: &str| {
        members
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| &line[v.clone()])
    };
    let id = get("id").and_then(json_string).ok_or("no string \"id\"")?;
    let props = get("properties")
        .filter(|p| p.first() == Some(&b'{'))
        .ok_or("no object \"properties\"")?;
    let mut ev = Vec::with_capacity(line.len() + 96);
    ev.extend_from_slice(b"{\"stream\":");
    crate::json::write_str(&mut ev, stream.as_bytes());
    ev.extend_from_slice(b",\"source\":\"flux-import\"");
    if let Some(ts) = get("lastUpdated").and_then(json_string) {
        let t = time::OffsetDateTime::parse(&ts, &time::format_description::well_known::Rfc3339)
            .map_err(|_| format!("lastUpdated {ts:?} is not RFC 3339"))?;
        let ms = t.unix_timestamp_nanos() / 1_000_000;
        // The API takes positive times only; an entity at (or before) the epoch
        // gets the import's time.
        if ms > 0 {
            ev.extend_from_slice(format!(",\"timestamp\":{ms}").as_bytes());
        }
    }
    ev.extend_from_slice(b",\"payload\":{\"entity_id\":");
    crate::json::write_str(&mut ev, id.as_bytes());
    ev.extend_from_slice(b",\"properties\":");
    ev.extend_from_slice(props);
    ev.extend_from_slice(b"}}");
    Ok(ev)
}

// --- Byte ranges of JSON values (`flux_devclient::json`), so values are copied untouched. ---

/// The items of a JSON array, as byte ranges.
fn array_items(b: &[u8]) -> Option<Vec<std::ops::Range<usize>>> {
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'[') {
        return None;
    }
    let mut out = Vec::new();
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b']') {
        return Some(out);
    }
    loop {
        let end = value_end(b, i)?;
        out.push(i..end);
        i = skip_ws(b, end);
        match b.get(i)? {
            b',' => i = skip_ws(b, i + 1),
            b']' => return Some(out),
            _ => return None,
        }
    }
}

/// The members of a JSON object: (key, value range).
fn object_members(b: &[u8]) -> Option<Vec<(String, std::ops::Range<usize>)>> {
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    let mut out = Vec::new();
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return Some(out);
    }
    loop {
        let kend = string_end(b, i)?;
        let key = json_string(&b[i..kend])?;
        i = skip_ws(b, kend);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        let end = value_end(b, i)?;
        out.push((key, i..end));
        i = skip_ws(b, end);
        match b.get(i)? {
            b',' => i = skip_ws(b, i + 1),
            b'}' => return Some(out),
            _ => return None,
        }
    }
}

/// A JSON string literal's text.
fn json_string(b: &[u8]) -> Option<String> {
    let mut copy = b.to_vec();
    let v = simd_json::to_borrowed_value(&mut copy).ok()?;
    simd_json::prelude::ValueAsScalar::as_str(&v).map(str::to_string)
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// --- A blocking HTTP/1.1 client: one request per connection. ---

struct Http {
    host: String,
}

struct Response {
    status: u16,
    body: Vec<u8>,
}

impl Http {
    fn parse(url: &str) -> Result<Http, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!("{url}: only http:// URLs are supported (put TLS in front of flux)")
        })?;
        let host = rest.split('/').next().unwrap_or_default();
        if host.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let host = if host.contains(':') {
            host.to_string()
        } else {
            format!("{host}:80")
        };
        Ok(Http { host })
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> Result<Response, String> {
        let err = |e: std::io::Error| format!("{}: {e}", self.host);
        let mut s = TcpStream::connect(&self.host).map_err(err)?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        if !body.is_empty() {
            head.push_str("Content-Type: application/json\r\n");
        }
        if let Some(t) = token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).map_err(err)?;
        // A refusal (413) may come before the body is read: keep what the server said.
        let sent = s.write_all(body);
        let mut raw = Vec::new();
        let read = s.read_to_end(&mut raw);
        if raw.is_empty() {
            sent.map_err(err)?;
            read.map_err(err)?;
        }
        parse_response(&raw).ok_or_else(|| format!("{}: malformed response", self.host))
    }
}

/// A whole response read to EOF (`Connection: close`), decoded by the client codec
/// the tests and the load tester use.
fn parse_response(raw: &[u8]) -> Option<Response> {
    let mut dec = Decoder::collecting();
    let done = match dec.decode(raw).ok()? {
        (_, Some(r)) => r,
        (_, None) => dec.eof().ok()??,
    };
    Some(Response {
        status: done.status,
        body: dec.take_body(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_span_walker_keeps_values_untouched() {
        let line = br#"{"id":"a\"b","properties":{"t":22.50,"s":"x}]","n":[1,{"q":2}]},"lastUpdated":"2026-02-14T12:00:00.000Z"}"#;
        let ev = entity_event(line, "s").unwrap();
        let text = String::from_utf8(ev).unwrap();
        assert!(text.contains(r#""entity_id":"a\"b""#), "{text}");
        assert!(
            text.contains(r#""properties":{"t":22.50,"s":"x}]","n":[1,{"q":2}]}"#),
            "{text}"
        );
        assert!(text.contains("\"timestamp\":1771070400000"), "{text}");
        let items = array_items(br#"[ {"a":[1,2]} , {"b":"]"} ]"#).unwrap();
        assert_eq!(items.len(), 2);
        assert!(entity_event(b"{\"id\":1}", "s").is_err());
        assert!(array_items(b"[1,").is_none());
    }

    #[test]
    fn chunked_and_sized_responses_parse() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!((r.status, &r.body[..]), (200, &b"abcde"[..]));
        let r = parse_response(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno").unwrap();
        assert_eq!((r.status, &r.body[..]), (404, &b"no"[..]));
    }
}
