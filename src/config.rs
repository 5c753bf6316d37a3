//! Server configuration: every setting is an environment variable and an equal
//! command-line flag (a flag wins over the environment). `flux --help` lists them.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use crate::limits;

/// Durability mode of the log (`FLUX_SYNC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    Always,
    Interval { ms: u64 },
    None,
}

impl std::str::FromStr for SyncMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(SyncMode::Always),
            "none" => Ok(SyncMode::None),
            _ => match s.strip_prefix("interval:").map(str::parse::<u64>) {
                Some(Ok(ms)) if (1..=60_000).contains(&ms) => Ok(SyncMode::Interval { ms }),
                _ => Err(format!(
                    "invalid FLUX_SYNC {s:?}: expected always, none or interval:<ms> with 1..=60000 ms"
                )),
            },
        }
    }
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(format!("expected true or false, got {s:?}")),
    }
}

/// History retention: segments covered by a snapshot are deleted beyond `bytes` of
/// newer log, or when older than `age`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub bytes: u64,
    pub age: Option<std::time::Duration>,
}

fn parse_retention(s: &str) -> Result<Retention, String> {
    let mut r = Retention {
        bytes: u64::MAX,
        age: None,
    };
    let bad =
        || format!("invalid FLUX_RETENTION {s:?}: expected e.g. 1GiB, 500MiB, 7d, 12h or 1GiB,7d");
    let mut any_size = false;
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let split = part.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (num, unit) = part.split_at(split);
        let n: u64 = num.parse().map_err(|_| bad())?;
        let secs = |m: u64| Some(std::time::Duration::from_secs(n.saturating_mul(m)));
        match unit {
            "B" => (r.bytes, any_size) = (n, true),
            "KiB" => (r.bytes, any_size) = (n << 10, true),
            "MiB" => (r.bytes, any_size) = (n << 20, true),
            "GiB" => (r.bytes, any_size) = (n << 30, true),
            "TiB" => (r.bytes, any_size) = (n << 40, true),
            "s" => r.age = secs(1),
            "m" => r.age = secs(60),
            "h" => r.age = secs(3600),
            "d" => r.age = secs(86_400),
            _ => return Err(bad()),
        }
    }
    if !any_size && r.age.is_none() {
        return Err(bad());
    }
    Ok(r)
}

/// A CPU list such as `0,2-3` (a newtype so that clap takes it as one value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

fn parse_cpus(s: &str) -> Result<CpuList, String> {
    let mut cpus = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let bad = || format!("invalid CPU list {s:?}: expected e.g. 0,2-3");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a > b {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().map_err(|_| bad())?),
        }
    }
    if cpus.is_empty() {
        return Err("empty CPU list".into());
    }
    Ok(CpuList(cpus))
}

/// A secret setting: never shown by `Debug` (so never in a log line).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

/// The largest body limit a segment of `segment_bytes` allows: any request's part
/// must fit one segment.
pub fn body_limit_max(segment_bytes: u64) -> u64 {
    segment_bytes.saturating_sub(4096) / 2
}

/// Flux: an event-sourced entity state server.
///
/// Producers POST events that merge properties into entities; consumers read the latest
/// state over HTTP. Every option is also an environment variable (shown in brackets);
/// a flag wins over its variable.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "flux",
    version,
    about,
    long_about = None,
    after_help = "Operator commands (each has --help): flux backup, flux restore, flux export, flux import"
)]
pub struct Config {
    /// Address to listen on. Default 0.0.0.0:3000; when unset, `PORT` picks the port.
    #[arg(long = "listen", env = "FLUX_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Port to listen on (all interfaces) when FLUX_LISTEN is not set.
    #[arg(long = "port", env = "PORT", default_value_t = 3000)]
    pub port: u16,

    /// Data directory; each shard keeps its files under it.
    #[arg(long = "data-dir", env = "FLUX_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Number of shards (one pinned glommio executor each). Default: one per online CPU.
    #[arg(long = "shards", env = "FLUX_SHARDS")]
    pub shards: Option<usize>,

    /// CPUs to pin shards to, e.g. `0` or `0,2-3`; shard i runs on the (i mod len)-th.
    /// Default: all online CPUs in order.
    #[arg(long = "cpus", env = "FLUX_CPUS", value_parser = parse_cpus)]
    pub cpus: Option<CpuList>,

    /// Namespaces and bearer tokens: every entity id is `namespace/rest`, writes need
    /// the namespace's token (or the admin token), reads too unless FLUX_PUBLIC_READS.
    #[arg(long = "auth-enabled", env = "FLUX_AUTH_ENABLED", value_parser = parse_bool, default_value = "false", action = clap::ArgAction::Set)]
    pub auth_enabled: bool,

    /// Admin bearer token for auth mode (at least 32 characters; required there).
    #[arg(long = "admin-token", env = "FLUX_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,

    /// In auth mode, let anyone read and subscribe without a token.
    #[arg(long = "public-reads", env = "FLUX_PUBLIC_READS", value_parser = parse_bool, default_value = "false", action = clap::ArgAction::Set)]
    pub public_reads: bool,

    /// In auth mode, limit the events written to each namespace (429 past it).
    /// Changeable at run time with PUT /api/admin/config.
    #[arg(long = "rate-limit-enabled", env = "FLUX_RATE_LIMIT_ENABLED", value_parser = parse_bool, default_value = "true", action = clap::ArgAction::Set)]
    pub rate_limit_enabled: bool,

    /// Events per minute each namespace may write (a bucket of this many events that
    /// refills at this rate). 1..=2^40.
    #[arg(
        long = "rate-limit-per-minute",
        env = "FLUX_RATE_LIMIT_PER_MINUTE",
        default_value_t = 10_000
    )]
    pub rate_limit_per_minute: u64,

    /// Durability mode: always | interval:<ms> | none (takes effect with the log).
    #[arg(long = "sync", env = "FLUX_SYNC", default_value = "interval:100")]
    pub sync: SyncMode,

    /// Size of each log segment file in bytes (preallocated). At least 1 MiB and at
    /// least twice the batch body limit, so any request's part fits one segment.
    #[arg(long = "segment-bytes", env = "FLUX_SEGMENT_BYTES", default_value_t = crate::log::SEGMENT_BYTES_DEFAULT)]
    pub segment_bytes: u64,

    /// Recovery policy for corruption found before the log's tail: `strict` stops
    /// start-up; `tolerate` skips the rest of the damaged segment and goes on.
    #[arg(long = "recovery", env = "FLUX_RECOVERY", default_value = "strict", value_parser = ["strict", "tolerate"])]
    pub recovery: String,

    /// Seconds between snapshots of a shard (taken only if something was logged).
    #[arg(
        long = "snapshot-interval-s",
        env = "FLUX_SNAPSHOT_INTERVAL_S",
        default_value_t = 300
    )]
    pub snapshot_interval_s: u64,

    /// Log bytes since the last snapshot that trigger the next one early.
    #[arg(long = "snapshot-log-bytes", env = "FLUX_SNAPSHOT_LOG_BYTES", default_value_t = 512 * 1024 * 1024)]
    pub snapshot_log_bytes: u64,

    /// Log kept for history per shard beyond the newest snapshot, as a size
    /// (`1GiB`, `500MiB`), an age (`7d`, `12h`) or both (`1GiB,7d`: a segment is deleted
    /// when it is beyond the size or older than the age). Default `1GiB`.
    #[arg(long = "retention", env = "FLUX_RETENTION", default_value = "1GiB", value_parser = parse_retention)]
    pub retention: Retention,

    /// Largest body of POST /api/events in bytes (413 above).
    #[arg(long = "body-limit-single-bytes", env = "FLUX_BODY_LIMIT_SINGLE_BYTES", default_value_t = limits::BODY_SINGLE_BYTES_MAX)]
    pub body_limit_single_bytes: usize,

    /// Largest body of POST /api/events/batch in bytes (413 above).
    #[arg(long = "body-limit-batch-bytes", env = "FLUX_BODY_LIMIT_BATCH_BYTES", default_value_t = limits::BODY_BATCH_BYTES_MAX)]
    pub body_limit_batch_bytes: usize,

    /// Most properties one event may have (duplicate keys count); an event with more
    /// is a 400 and nothing of its request is applied. 1..=1000000.
    #[arg(long = "max-properties-per-event", env = "FLUX_MAX_PROPERTIES_PER_EVENT", default_value_t = limits::PROPERTIES_PER_EVENT_DEFAULT)]
    pub max_properties_per_event: usize,

    /// Open connections per shard; past it new connections get 503 and are closed.
    #[arg(long = "max-connections-per-shard", env = "FLUX_MAX_CONNECTIONS_PER_SHARD", default_value_t = limits::CONNECTIONS_PER_SHARD_MAX)]
    pub max_connections_per_shard: usize,

    /// Milliseconds allowed to send a request head (408 and close after).
    #[arg(long = "header-timeout-ms", env = "FLUX_HEADER_TIMEOUT_MS", default_value_t = limits::HEADER_READ_TIMEOUT_MS)]
    pub header_timeout_ms: u64,

    /// Milliseconds allowed for a request body once its head has arrived (408 after).
    #[arg(long = "body-timeout-ms", env = "FLUX_BODY_TIMEOUT_MS", default_value_t = limits::BODY_READ_TIMEOUT_MS)]
    pub body_timeout_ms: u64,

    /// Milliseconds a kept-alive connection may sit idle before it is closed.
    #[arg(long = "idle-timeout-ms", env = "FLUX_IDLE_TIMEOUT_MS", default_value_t = limits::IDLE_TIMEOUT_MS)]
    pub idle_timeout_ms: u64,

    /// Memory each shard's io_uring registers (locked), in KiB. All shards together
    /// must fit `ulimit -l` (see tuning.md).
    #[arg(
        long = "io-memory-kib",
        env = "FLUX_IO_MEMORY_KIB",
        default_value_t = 512
    )]
    pub io_memory_kib: usize,

    /// Milliseconds a shutdown waits for open requests before exiting.
    #[arg(
        long = "shutdown-grace-ms",
        env = "FLUX_SHUTDOWN_GRACE_MS",
        default_value_t = 5_000
    )]
    pub shutdown_grace_ms: u64,

    /// Most entities one batch delete may remove (`POST /api/state/entities/delete`);
    /// more matches are a 400 and nothing is deleted. 1..=1000000.
    #[arg(
        long = "max-batch-delete",
        env = "FLUX_MAX_BATCH_DELETE",
        default_value_t = 10_000
    )]
    pub max_batch_delete: usize,

    /// Bytes of messages a WebSocket connection may have queued; a subscriber that
    /// falls further behind is closed with 1008 `slow consumer`. 4 KiB..=1 GiB.
    #[arg(long = "ws-queue-bytes", env = "FLUX_WS_QUEUE_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub ws_queue_bytes: usize,

    /// Milliseconds between two `metrics_update` messages to every WebSocket
    /// connection. 100..=3600000.
    #[arg(
        long = "metrics-interval-ms",
        env = "FLUX_METRICS_INTERVAL_MS",
        default_value_t = 2_000
    )]
    pub metrics_interval_ms: u64,

    /// Milliseconds between server pings on each WebSocket connection; a connection
    /// that sends nothing (not even a pong) for two intervals is closed. 100..=3600000.
    #[arg(
        long = "ws-ping-interval-ms",
        env = "FLUX_WS_PING_INTERVAL_MS",
        default_value_t = 30_000
    )]
    pub ws_ping_interval_ms: u64,

    /// Cluster mode (see README "Cluster"): comma-separated `nats://[user:pass@]host:port`
    /// URLs of a NATS cluster with JetStream. Unset (the default): a single node.
    #[arg(long = "nats-url", env = "FLUX_NATS_URL")]
    pub nats_url: Option<String>,

    /// Cluster mode: this node's name, unique in the cluster and stable across restarts
    /// (letters, digits, `-`, `_`; at most 64 bytes).
    #[arg(long = "node-id", env = "FLUX_NODE_ID")]
    pub node_id: Option<String>,

    /// Cluster mode: the `http://host:port` other nodes use to reach this node.
    /// Default: `http://127.0.0.1:PORT`.
    #[arg(long = "advertise-url", env = "FLUX_ADVERTISE_URL")]
    pub advertise_url: Option<String>,

    /// Cluster mode: replicas of each JetStream stream and bucket (1..=5; NATS caps it
    /// at the cluster's size).
    #[arg(long = "replicas", env = "FLUX_REPLICAS", default_value_t = 3)]
    pub replicas: usize,

    /// Cluster mode: milliseconds a group's ownership lease lasts without renewal; a
    /// dead node's groups move after about this long (renewed every third of it).
    /// 1000..=60000.
    #[arg(long = "lease-ms", env = "FLUX_LEASE_MS", default_value_t = 6_000)]
    pub lease_ms: u64,

    /// Cluster mode: partition groups (the unit of ownership, one JetStream stream
    /// each). Fixed when the cluster is created; a multiple of FLUX_SHARDS, 1..=256.
    #[arg(long = "groups", env = "FLUX_GROUPS", default_value_t = 16)]
    pub groups: usize,

    /// Cluster mode: milliseconds between two snapshots of a changed group in the
    /// JetStream object store `flux-snapshots` (a node taking the group over loads the
    /// snapshot, then replays the stream after it). 1000..=3600000.
    #[arg(
        long = "group-snapshot-ms",
        env = "FLUX_GROUP_SNAPSHOT_MS",
        default_value_t = 30_000
    )]
    pub group_snapshot_ms: u64,
}

impl Config {
    pub fn recovery_mode(&self) -> crate::log::scan::RecoveryMode {
        match self.recovery.as_str() {
            "tolerate" => crate::log::scan::RecoveryMode::Tolerate,
            _ => crate::log::scan::RecoveryMode::Strict,
        }
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], self.port)))
    }

    pub fn shard_count(&self) -> usize {
        self.shards.unwrap_or_else(online_cpus)
    }

    /// CPU for shard `i`.
    pub fn cpu_for(&self, i: usize) -> usize {
        match &self.cpus {
            Some(CpuList(list)) => list[i % list.len()],
            None => i % online_cpus(),
        }
    }

    /// Checks relations between settings; the message is printed as is.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.shard_count();
        if n == 0 || n > limits::SHARDS_MAX {
            return Err(format!(
                "FLUX_SHARDS must be 1..={}, got {n}",
                limits::SHARDS_MAX
            ));
        }
        if self.auth_enabled {
            match &self.admin_token {
                None => {
                    return Err(
                        "FLUX_AUTH_ENABLED=true needs FLUX_ADMIN_TOKEN (at least 32 \
                                characters, e.g. `openssl rand -hex 32`)"
                            .into(),
                    )
                }
                Some(t) if t.0.chars().count() < 32 => {
                    return Err(format!(
                        "FLUX_ADMIN_TOKEN is {} characters long; auth mode needs at least 32",
                        t.0.chars().count()
                    ))
                }
                Some(t) if !crate::http::is_b64token(t.0.as_bytes()) => {
                    return Err(
                        "FLUX_ADMIN_TOKEN may hold only letters, digits and -._~+/= \
                                (it is sent as a bearer token)"
                            .into(),
                    )
                }
                Some(_) => {}
            }
        }
        if !(1..=limits::RATE_LIMIT_PER_MINUTE_MAX).contains(&self.rate_limit_per_minute) {
            return Err("FLUX_RATE_LIMIT_PER_MINUTE must be 1..=2^40".into());
        }
        if self.body_limit_single_bytes == 0 || self.body_limit_batch_bytes == 0 {
            return Err("body limits must be at least 1 byte".into());
        }
        if !(1..=limits::PROPERTIES_PER_EVENT_MAX).contains(&self.max_properties_per_event) {
            return Err("FLUX_MAX_PROPERTIES_PER_EVENT must be 1..=1000000".into());
        }
        if self.max_connections_per_shard == 0 {
            return Err("FLUX_MAX_CONNECTIONS_PER_SHARD must be at least 1".into());
        }
        if self.segment_bytes < crate::log::SEGMENT_BYTES_MIN
            || self.segment_bytes < 2 * self.body_limit_batch_bytes as u64 + 4096
            || self.segment_bytes < 2 * self.body_limit_single_bytes as u64 + 4096
        {
            return Err(format!(
                "FLUX_SEGMENT_BYTES must be at least 1 MiB and at least twice the larger body \
                 limit plus 4 KiB ({} bytes)",
                2 * self
                    .body_limit_batch_bytes
                    .max(self.body_limit_single_bytes) as u64
                    + 4096
            ));
        }
        if self.io_memory_kib < 64 {
            return Err("FLUX_IO_MEMORY_KIB must be at least 64".into());
        }
        self.validate_ws()?;
        self.validate_cluster()?;
        Ok(())
    }
}

impl Config {
    /// The bounds of the deletion, WebSocket and metrics settings.
    /// Whether cluster mode is on (`FLUX_NATS_URL` is set).
    pub fn cluster(&self) -> bool {
        self.nats_url.is_some()
    }

    /// This node's URL for the other nodes.
    pub fn advertise(&self) -> String {
        self.advertise_url
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{}", self.listen_addr().port()))
    }

    fn validate_cluster(&self) -> Result<(), String> {
        let Some(urls) = &self.nats_url else {
            return Ok(());
        };
        if urls.split(',').any(|u| u.trim().is_empty()) {
            return Err("FLUX_NATS_URL must be a comma-separated list of nats://host:port".into());
        }
        match &self.node_id {
            None => return Err("cluster mode (FLUX_NATS_URL) needs FLUX_NODE_ID".into()),
            Some(id)
                if id.is_empty()
                    || id.len() > 64
                    || !id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                return Err("FLUX_NODE_ID must be 1..=64 letters, digits, '-' or '_'".into())
            }
            Some(_) => {}
        }
        if let Some(u) = &self.advertise_url {
            if !u.starts_with("http://") || u.len() <= "http://".len() {
                return Err("FLUX_ADVERTISE_URL must look like http://host:port".into());
            }
        }
        if !(1..=5).contains(&self.replicas) {
            return Err("FLUX_REPLICAS must be 1..=5".into());
        }
        if !(1000..=3_600_000).contains(&self.group_snapshot_ms) {
            return Err("FLUX_GROUP_SNAPSHOT_MS must be 1000..=3600000".into());
        }
        if !(1000..=60_000).contains(&self.lease_ms) {
            return Err("FLUX_LEASE_MS must be 1000..=60000".into());
        }
        let shards = self.shard_count();
        if !(1..=256).contains(&self.groups) || self.groups % shards != 0 {
            return Err(format!(
                "FLUX_GROUPS must be 1..=256 and a multiple of FLUX_SHARDS ({shards}), got {}",
                self.groups
            ));
        }
        Ok(())
    }

    fn validate_ws(&self) -> Result<(), String> {
        if !(1..=1_000_000).contains(&self.max_batch_delete) {
            return Err("FLUX_MAX_BATCH_DELETE must be 1..=1000000".into());
        }
        if !(4096..=1 << 30).contains(&self.ws_queue_bytes) {
            return Err("FLUX_WS_QUEUE_BYTES must be 4096..=1073741824".into());
        }
        if !(100..=3_600_000).contains(&self.metrics_interval_ms) {
            return Err("FLUX_METRICS_INTERVAL_MS must be 100..=3600000".into());
        }
        if !(100..=3_600_000).contains(&self.ws_ping_interval_ms) {
            return Err("FLUX_WS_PING_INTERVAL_MS must be 100..=3600000".into());
        }
        Ok(())
    }
}

pub fn online_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("flux").chain(args.iter().copied()))
    }

    #[test]
    fn retention_forms() {
        assert_eq!(
            parse_retention("1GiB"),
            Ok(Retention {
                bytes: 1 << 30,
                age: None
            })
        );
        assert_eq!(
            parse_retention("500MiB,7d"),
            Ok(Retention {
                bytes: 500 << 20,
                age: Some(std::time::Duration::from_secs(7 * 86_400))
            })
        );
        assert_eq!(parse_retention("12h").unwrap().bytes, u64::MAX);
        for bad in ["", "7", "1GB", "x", "1GiB,"] {
            let r = parse_retention(bad);
            assert!(bad == "1GiB," || r.is_err(), "{bad}");
        }
    }

    #[test]
    fn sync_modes() {
        assert_eq!("always".parse::<SyncMode>(), Ok(SyncMode::Always));
        assert_eq!("none".parse::<SyncMode>(), Ok(SyncMode::None));
        assert_eq!(
            "interval:50".parse::<SyncMode>(),
            Ok(SyncMode::Interval { ms: 50 })
        );
        assert!("interval:0".parse::<SyncMode>().is_err());
        assert!("sometimes".parse::<SyncMode>().is_err());
    }

    #[test]
    fn flags_parse() {
        let c = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "3",
            "--cpus",
            "0,2-3",
        ])
        .unwrap();
        assert_eq!(c.listen_addr().to_string(), "127.0.0.1:0");
        assert_eq!(c.shard_count(), 3);
        assert_eq!(c.cpus, Some(CpuList(vec![0, 2, 3])));
        assert_eq!(c.cpu_for(4), 2);
        assert!(parse(&["--cpus", "3-1"]).is_err());
        assert!(parse(&["--auth-enabled", "maybe"]).is_err());
    }

    #[test]
    fn port_is_used_without_listen() {
        let c = parse(&["--port", "4000"]).unwrap();
        assert_eq!(c.listen_addr().to_string(), "0.0.0.0:4000");
    }

    #[test]
    fn auth_mode_needs_a_long_admin_token() {
        let err = |args: &[&str]| parse(args).unwrap().validate().unwrap_err();
        assert!(err(&["--auth-enabled", "true"]).contains("needs FLUX_ADMIN_TOKEN"));
        assert!(err(&["--auth-enabled", "true", "--admin-token", "short"]).contains("at least 32"));
        let spaced = "x".repeat(20) + " " + &"y".repeat(20);
        assert!(err(&["--auth-enabled", "true", "--admin-token", &spaced]).contains("only"));
        let good = "a".repeat(32);
        let c = parse(&["--auth-enabled", "true", "--admin-token", &good]).unwrap();
        assert_eq!(c.validate(), Ok(()));
        // The token never shows in a debug rendering of the configuration.
        assert!(!format!("{c:?}").contains(&good));
        // Without auth mode a missing token is fine.
        assert_eq!(parse(&[]).unwrap().validate(), Ok(()));
    }

    #[test]
    fn validate_rejects_zero_shards() {
        let c = parse(&["--shards", "0"]).unwrap();
        assert!(c.validate().is_err());
    }
}
