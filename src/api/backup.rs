//! `POST /api/admin/backup`: an online backup of the whole server into a directory on
//! the server's host (`shard::backup`). Admin only in auth mode. Body:
//! `{"to":"/absolute/dir"}` (absent or empty). The answer comes when the backup is
//! complete: its directory, per-shard cut LSNs, files, bytes, how long cross-shard
//! batches waited at the gate and how long it took.

use simd_json::prelude::*;

use super::Request;
use crate::http::respond;
use crate::json;
use crate::shard::backup::{self, BackupError};
use crate::shard::Shard;

/// The target directory named by the body.
fn parse_target(body: &[u8]) -> Result<std::path::PathBuf, String> {
    let mut copy = body.to_vec();
    let v = simd_json::to_borrowed_value(&mut copy)
        .map_err(|_| "the body must be a JSON object: {\"to\":\"/absolute/dir\"}".to_string())?;
    let to = v
        .get("to")
        .and_then(|t| t.as_str())
        .ok_or("the body must name the backup directory: {\"to\":\"/absolute/dir\"}")?;
    Ok(std::path::PathBuf::from(to))
}

pub async fn post_backup(shard: &Shard, req: &Request<'_>, out: &mut Vec<u8>, body: &mut Vec<u8>) {
    if let Err(d) = req.principal.admin() {
        return super::denied(shard, out, req, d);
    }
    let to = match parse_target(req.body) {
        Ok(to) => to,
        Err(msg) => return respond::error(out, 400, req.persist, b"", &msg),
    };
    match backup::take(shard, to).await {
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
