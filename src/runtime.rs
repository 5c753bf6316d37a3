//! Limits that `PUT /api/admin/config` changes while the server runs. One instance
//! in `Shared`, read by every shard with relaxed loads (the values are independent
//! numbers; a request sees each either before or after a change), so a change applies
//! to all shards at once. They start from the configuration (flags / environment) and
//! are not persisted: a restart goes back to the configured values.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use crate::config::Config;

pub use crate::limits::RATE_LIMIT_PER_MINUTE_MAX;

/// Bounds of what may be set, beyond `Config::validate`'s relations.
pub const MAX_BATCH_DELETE_MAX: u64 = 1_000_000;

pub struct RuntimeLimits {
    rate_limit_enabled: AtomicBool,
    rate_limit_per_minute: AtomicU64,
    body_single: AtomicU64,
    body_batch: AtomicU64,
    max_batch_delete: AtomicU64,
    /// Bumped by every change, so shards drop state derived from the old values
    /// (rate-limit leases).
    version: AtomicU64,
    /// Largest body that fits one log segment (from `FLUX_SEGMENT_BYTES`).
    body_max: u64,
    /// Rate limiting exists only in auth mode (it is per namespace).
    auth: bool,
    update: Mutex<()>,
}

/// A snapshot of every value, as `GET /api/admin/config` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Values {
    pub rate_limit_enabled: bool,
    pub rate_limit_per_minute: u64,
    pub body_single: u64,
    pub body_batch: u64,
    pub max_batch_delete: u64,
}

/// A partial update: the fields `PUT` named.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Update {
    pub rate_limit_enabled: Option<bool>,
    pub rate_limit_per_minute: Option<u64>,
    pub body_single: Option<u64>,
    pub body_batch: Option<u64>,
    pub max_batch_delete: Option<u64>,
}

impl RuntimeLimits {
    pub fn new(cfg: &Config) -> Self {
        RuntimeLimits {
            rate_limit_enabled: AtomicBool::new(cfg.auth_enabled && cfg.rate_limit_enabled),
            rate_limit_per_minute: AtomicU64::new(cfg.rate_limit_per_minute),
            body_single: AtomicU64::new(cfg.body_limit_single_bytes as u64),
            body_batch: AtomicU64::new(cfg.body_limit_batch_bytes as u64),
            max_batch_delete: AtomicU64::new(cfg.max_batch_delete as u64),
            version: AtomicU64::new(0),
            body_max: crate::config::body_limit_max(cfg.segment_bytes),
            auth: cfg.auth_enabled,
            update: Mutex::new(()),
        }
    }

    #[inline]
    pub fn rate_limit(&self) -> Option<u64> {
        self.rate_limit_enabled
            .load(Relaxed)
            .then(|| self.rate_limit_per_minute.load(Relaxed))
    }

    #[inline]
    pub fn body_single(&self) -> usize {
        self.body_single.load(Relaxed) as usize
    }

    #[inline]
    pub fn body_batch(&self) -> usize {
        self.body_batch.load(Relaxed) as usize
    }

    #[inline]
    pub fn max_batch_delete(&self) -> usize {
        self.max_batch_delete.load(Relaxed) as usize
    }

    #[inline]
    pub fn version(&self) -> u64 {
        self.version.load(Relaxed)
    }

    pub fn values(&self) -> Values {
        Values {
            rate_limit_enabled: self.rate_limit_enabled.load(Relaxed),
            rate_limit_per_minute: self.rate_limit_per_minute.load(Relaxed),
            body_single: self.body_single.load(Relaxed),
            body_batch: self.body_batch.load(Relaxed),
            max_batch_delete: self.max_batch_delete.load(Relaxed),
        }
    }

    /// Checks every field, then applies all of them; nothing changes on an error.
    pub fn apply(&self, u: &Update) -> Result<Values, String> {
        let _g = self.update.lock().expect("runtime limits lock");
        if u.rate_limit_enabled == Some(true) && !self.auth {
            return Err(
                "rate limiting is per namespace and needs auth mode (FLUX_AUTH_ENABLED=true)"
                    .into(),
            );
        }
        if let Some(n) = u.rate_limit_per_minute {
            if !(1..=RATE_LIMIT_PER_MINUTE_MAX).contains(&n) {
                return Err(format!(
                    "rate_limit_per_namespace_per_minute must be 1..={RATE_LIMIT_PER_MINUTE_MAX}"
                ));
            }
        }
        for (name, v) in [
            ("body_size_limit_single_bytes", u.body_single),
            ("body_size_limit_batch_bytes", u.body_batch),
        ] {
            if let Some(n) = v {
                if !(1..=self.body_max).contains(&n) {
                    return Err(format!(
                        "{name} must be 1..={} (a body must fit one log segment: at most \
                         (FLUX_SEGMENT_BYTES - 4096) / 2)",
                        self.body_max
                    ));
                }
            }
        }
        if let Some(n) = u.max_batch_delete {
            if !(1..=MAX_BATCH_DELETE_MAX).contains(&n) {
                return Err(format!(
                    "max_batch_delete must be 1..={MAX_BATCH_DELETE_MAX}"
                ));
            }
        }
        let set = |a: &AtomicU64, v: Option<u64>| {
            if let Some(v) = v {
                a.store(v, Relaxed);
            }
        };
        if let Some(b) = u.rate_limit_enabled {
            self.rate_limit_enabled.store(b, Relaxed);
        }
        set(&self.rate_limit_per_minute, u.rate_limit_per_minute);
        set(&self.body_single, u.body_single);
        set(&self.body_batch, u.body_batch);
        set(&self.max_batch_delete, u.max_batch_delete);
        self.version.fetch_add(1, Relaxed);
        Ok(self.values())
    }
}
