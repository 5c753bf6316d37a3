//! `POST /api/admin/backup`: an online backup of the whole server into a directory on
//! the server's host (`shard::backup`). Admin only in auth mode. Body:
//! `{"to":"/absolute/dir"}` (absent or empty), optionally `"history":false` (leave
//! out the log before each snapshot's replay point: what only `GET /api/events` reads)
//! and `"max_rate_mib_s":N` (pace the copy). The answer comes when the backup is
//! complete: its directory, per-shard cut LSNs, files, bytes, how long cross-shard
//! batches waited at the gate and how long it took.

use simd_json::prelude::*;

use super::Request;
use crate::http::respond;
use crate::json;
use crate::shard::backup::{self, BackupError};
use crate::shard::Shard;

/// The target directory and options named by the body:
/// `{"to":"/abs/dir","history":true,"max_rate_mib_s":0}` (the last two optional).
fn parse_body(body: &[u8]) -> Result<(std::path::PathBuf, backup::Options), String> {
    let mut copy = body.to_vec();
    let v = simd_json::to_borrowed_value(&mut copy)
        .map_err(|_| "the body must be a JSON object: {\"to\":\"/absolute/dir\"}".to_string())?;
    let obj = v
        .as_object()
        .ok_or("the body must be a JSON object: {\"to\":\"/absolute/dir\"}")?;
    let mut to = None;
    let mut opts = backup::Options::default();
    for (k, val) in obj.iter() {
        match k.as_ref() {
            "to" => to = Some(val.as_str().ok_or("\"to\" must be a string")?),
            "history" => opts.history = val.as_bool().ok_or("\"history\" must be true or false")?,
            "max_rate_mib_s" => {
                let mib = val
                    .as_u64()
                    .filter(|_| val.is_u64() || val.is_i64())
                    .ok_or("\"max_rate_mib_s\" must be a non-negative integer")?;
                opts.max_bytes_per_s = mib.saturating_mul(1 << 20);
            }
            other => {
                return Err(format!(
                    "unknown field {other:?}; known: to, history, max_rate_mib_s"
                ))
            }
        }
    }
    let to = to.ok_or("the body must name the backup directory: {\"to\":\"/absolute/dir\"}")?;
    Ok((std::path::PathBuf::from(to), opts))
}

pub async fn post_backup(shard: &Shard, req: &Request<'_>, out: &mut Vec<u8>, body: &mut Vec<u8>) {
    if let Err(d) = req.principal.admin() {
        return super::denied(shard, out, req, d);
    }
    let (to, opts) = match parse_body(req.body) {
        Ok(parsed) => parsed,
        Err(msg) => return respond::error(out, 400, req.persist, b"", &msg),
    };
    match backup::take(shard, to, opts).await {
        Ok(r) => {
            body.clear();
            body.extend_from_slice(b"{\"dir\":");
            json::write_str(body, r.dir.to_string_lossy().as_bytes());
            body.extend_from_slice(b",\"shards\":");
            json::write_u64(body, u64::from(r.manifest.shards));
            body.extend_from_slice(b",\"shard_cuts\":[");
            for (i, lsn) in r.manifest.shard_cuts.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                json::write_u64(body, *lsn);
            }
            body.extend_from_slice(b"],\"files\":");
            json::write_u64(body, r.manifest.files.len() as u64);
            body.extend_from_slice(b",\"bytes\":");
            json::write_u64(body, r.bytes);
            body.extend_from_slice(b",\"gate_us\":");
            json::write_u64(body, r.gate.as_micros() as u64);
            body.extend_from_slice(b",\"took_ms\":");
            json::write_u64(body, r.took.as_millis() as u64);
            body.push(b'}');
            eprintln!(
                "flux: backup into {}: {} files, {} bytes in {} ms (cross-shard batches held {} us)",
                r.dir.display(),
                r.manifest.files.len(),
                r.bytes,
                r.took.as_millis(),
                r.gate.as_micros()
            );
            respond::json(out, 200, req.persist, b"", body);
        }
        Err(BackupError::Busy) => respond::error(
            out,
            409,
            req.persist,
            b"",
            "a backup is already running; try again when it has finished",
        ),
        Err(BackupError::Target(msg)) => respond::error(out, 400, req.persist, b"", &msg),
        Err(BackupError::Failed(msg)) => {
            eprintln!("flux: backup failed: {msg}");
            respond::error(out, 500, req.persist, b"", &format!("backup failed: {msg}"))
        }
    }
}
