//! `GET /api/admin/config` and `PUT /api/admin/config`: the limits changeable at run
//! time (`runtime::RuntimeLimits`). With auth on they need the admin token; with auth
//! off they are open like every endpoint. A `PUT` names any subset of the fields;
//! all are checked before any is applied, and the answer is the whole configuration.

use simd_json::prelude::*;

use super::Request;
use crate::http::respond;
use crate::json;
use crate::runtime::{Update, Values};
use crate::shard::Shard;

pub const RATE_LIMIT_ENABLED: &str = "rate_limit_enabled";
pub const RATE_LIMIT_PER_MINUTE: &str = "rate_limit_per_namespace_per_minute";
pub const BODY_SINGLE: &str = "body_size_limit_single_bytes";
pub const BODY_BATCH: &str = "body_size_limit_batch_bytes";
pub const MAX_BATCH_DELETE: &str = "max_batch_delete";

fn render(v: &Values, body: &mut Vec<u8>) {
    body.clear();
    body.extend_from_slice(b"{\"");
    body.extend_from_slice(RATE_LIMIT_ENABLED.as_bytes());
    body.extend_from_slice(if v.rate_limit_enabled {
        b"\":true"
    } else {
        b"\":false"
    });
    for (name, n) in [
        (RATE_LIMIT_PER_MINUTE, v.rate_limit_per_minute),
        (BODY_SINGLE, v.body_single),
        (BODY_BATCH, v.body_batch),
        (MAX_BATCH_DELETE, v.max_batch_delete),
    ] {
        body.extend_from_slice(b",\"");
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(b"\":");
        json::write_u64(body, n);
    }
    body.push(b'}');
}

/// Parses a `PUT` body: a JSON object of known fields with the right types.
pub fn parse_update(body: &[u8]) -> Result<Update, String> {
    let mut copy = body.to_vec();
    let v = simd_json::to_borrowed_value(&mut copy)
        .map_err(|_| "the body must be a JSON object of configuration fields".to_string())?;
    let obj = v
        .as_object()
        .ok_or("the body must be a JSON object of configuration fields")?;
    let mut u = Update::default();
    for (k, v) in obj.iter() {
        let int = || {
            v.as_u64()
                .filter(|_| v.is_u64() || v.is_i64())
                .ok_or_else(|| format!("{k} must be a positive integer"))
        };
        match k.as_ref() {
            RATE_LIMIT_ENABLED => {
                u.rate_limit_enabled = Some(
                    v.as_bool()
                        .ok_or_else(|| format!("{k} must be true or false"))?,
                )
            }
            RATE_LIMIT_PER_MINUTE => u.rate_limit_per_minute = Some(int()?),
            BODY_SINGLE => u.body_single = Some(int()?),
            BODY_BATCH => u.body_batch = Some(int()?),
            MAX_BATCH_DELETE => u.max_batch_delete = Some(int()?),
            other => {
                return Err(format!(
                    "unknown configuration field {other:?}; known: {RATE_LIMIT_ENABLED}, \
                     {RATE_LIMIT_PER_MINUTE}, {BODY_SINGLE}, {BODY_BATCH}, {MAX_BATCH_DELETE}"
                ))
            }
        }
    }
    Ok(u)
}

pub fn get_config(shard: &Shard, req: &Request<'_>, out: &mut Vec<u8>, body: &mut Vec<u8>) {
    if let Err(d) = req.principal.admin() {
        return super::denied(shard, out, req, d);
    }
    render(&shard.shared.limits.values(), body);
    respond::json(out, 200, req.persist, b"", body);
}

pub fn put_config(shard: &Shard, req: &Request<'_>, out: &mut Vec<u8>, body: &mut Vec<u8>) {
    if let Err(d) = req.principal.admin() {
        return super::denied(shard, out, req, d);
    }
    let applied = parse_update(req.body).and_then(|u| shard.shared.limits.apply(&u));
    match applied {
        Ok(values) => {
            render(&values, body);
            respond::json(out, 200, req.persist, b"", body);
        }
        Err(msg) => respond::error(out, 400, req.persist, b"", &msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_parse_and_check_types() {
        let u = parse_update(
            br#"{"rate_limit_enabled":false,"rate_limit_per_namespace_per_minute":60,
                "body_size_limit_single_bytes":1000,"body_size_limit_batch_bytes":2000,
                "max_batch_delete":5}"#,
        )
        .unwrap();
        assert_eq!(
            u,
            Update {
                rate_limit_enabled: Some(false),
                rate_limit_per_minute: Some(60),
                body_single: Some(1000),
                body_batch: Some(2000),
                max_batch_delete: Some(5),
            }
        );
        assert_eq!(parse_update(b"{}").unwrap(), Update::default());
        for bad in [
            &br#"{"rate_limit_enabled":1}"#[..],
            br#"{"max_batch_delete":-1}"#,
            br#"{"max_batch_delete":1.5}"#,
            br#"{"max_batch_delete":"5"}"#,
            br#"{"nope":1}"#,
            b"[]",
            b"",
            b"{",
        ] {
            assert!(
                parse_update(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn rendering_is_json_with_every_field() {
        let mut body = Vec::new();
        render(
            &Values {
                rate_limit_enabled: true,
                rate_limit_per_minute: 10_000,
                body_single: 1,
                body_batch: 2,
                max_batch_delete: 3,
            },
            &mut body,
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"rate_limit_enabled": true,
                "rate_limit_per_namespace_per_minute": 10000,
                "body_size_limit_single_bytes": 1, "body_size_limit_batch_bytes": 2,
                "max_batch_delete": 3})
        );
    }
}
