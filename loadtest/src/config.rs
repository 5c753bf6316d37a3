//! Flags (clap) and their validation into a [`Config`] that the workers share.

use crate::parse::{
    check_rate, parse_cpus, parse_dist, parse_duration, parse_mix, parse_stages, parse_subscribe,
    parse_url,
};
use crate::rng::KeyDist;
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

/// Entity ids are written into JSON and URLs without escaping, so the parts the
/// user chooses (prefix, namespace) are limited to these bytes.
const ID_PART_CHARSET: &str = "a-z A-Z 0-9 - _ . :";

/// Upper bounds on flags, so that a typo cannot exhaust memory or descriptors.
pub const CONNECTIONS_MAX: usize = 10_000;
pub const PIPELINE_MAX: usize = 1_024;
pub const BATCH_MAX: usize = 10_000;
pub const PROPS_MAX: usize = 1_000;
pub const VALUE_SIZE_MAX: usize = 1 << 20;
pub const ENTITIES_MAX: u64 = 1 << 32;
pub const SUBSCRIBERS_MAX: usize = 10_000;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "flux-loadtest",
    version,
    about = "Load tester that speaks the Flux API: events, batches, queries, subscriptions",
    long_about = "Load tester that speaks the Flux API.\n\nClosed loop by default \
        (--connections x --pipeline requests in flight); --rate or --stages switch to an \
        open loop whose latencies are measured from each request's intended send time. \
        See loadtest/README.md."
)]
pub struct Args {
    /// Server base URL (http only); several, comma-separated, for a cluster: the
    /// connections and subscribers are spread over them round robin (connection `i`
    /// goes to URL `i % n`), and `--verify`/`--verify-from` read through the first.
    #[arg(long, env = "FLUX_URL", default_value = "http://localhost:3000")]
    pub url: String,

    /// Bearer token sent as `Authorization: Bearer <token>` (auth mode).
    #[arg(long)]
    pub token: Option<String>,

    /// TCP connections (each writes its own share of the entities).
    #[arg(short = 'c', long, default_value_t = 16)]
    pub connections: usize,

    /// Requests in flight per connection (HTTP/1.1 pipelining).
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,

    /// Worker threads, one epoll loop each [default: number of CPUs].
    #[arg(long)]
    pub threads: Option<usize>,

    /// Pin worker threads to these CPUs, round robin (e.g. `1`, `0,2`, `2-3`).
    #[arg(long)]
    pub cpus: Option<String>,

    /// Measured duration (`30s`, `2m`, `500ms`); replaced by the sum of --stages.
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Load before measuring starts (not counted in the results).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// Open loop: target events per second (a batch request counts its events,
    /// a read counts 1).
    #[arg(long)]
    pub rate: Option<f64>,

    /// Open loop in steps: `10s@1000,10s@5000` (duration@events-per-second).
    #[arg(long)]
    pub stages: Option<String>,

    /// Open loop: a request that could not be sent within this much of its
    /// intended time is dropped (counted, not sent).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub max_lag: Duration,

    /// A response not received within this time is a timeout error (the
    /// connection is then closed and reopened).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Operation mix: `ingest=90,get=10`; ops are ingest, batch, get, list
    /// [default: ingest=100, or batch=100 with --batch].
    #[arg(long)]
    pub mix: Option<String>,

    /// Events per batch request (the `batch` op).
    #[arg(long)]
    pub batch: Option<usize>,

    /// Number of distinct entities.
    #[arg(long, default_value_t = 10_000)]
    pub entities: u64,

    /// Properties written per event.
    #[arg(long, default_value_t = 4)]
    pub props: usize,

    /// Bytes of each string property value.
    #[arg(long, default_value_t = 16)]
    pub value_size: usize,

    /// Number of streams (`loadtest`, or `loadtest-0` ... when more than one).
    #[arg(long, default_value_t = 1)]
    pub streams: usize,

    /// Number of sources (`lt-0`, `lt-1`, ...).
    #[arg(long, default_value_t = 4)]
    pub sources: usize,

    /// Key distribution: `uniform`, `zipf` (exponent 1.0) or `zipf:1.2`.
    #[arg(long, default_value = "uniform", value_parser = parse_dist)]
    pub dist: KeyDist,

    /// Entity id prefix.
    #[arg(long, default_value = "lt-")]
    pub prefix: String,

    /// Namespaces (comma separated); entity ids become `ns/<prefix>NNNNNN`,
    /// entities spread round robin over them.
    #[arg(long, value_delimiter = ',')]
    pub namespace: Vec<String>,

    /// `limit` of the `list` op (`GET /api/state/entities?prefix=..&limit=N`).
    #[arg(long, default_value_t = 100)]
    pub list_limit: u32,

    /// Seed of the workload generator (same seed, same requests).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// WebSocket subscribers measuring publish -> state_update latency.
    #[arg(long, default_value_t = 0)]
    pub subscribers: usize,

    /// What subscribers subscribe to: `*`, `prefix` (`<ns/><prefix>*`),
    /// `ids:N` (the first N entities) or a pattern ending in `*` (`lt-00*`).
    #[arg(long, default_value = "*")]
    pub subscribe: String,

    /// After the load, how long subscribers wait for trailing updates.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub ws_grace: Duration,

    /// Write every figure as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,

    /// Write the latency histogram as a percentile distribution (HdrHistogram text).
    #[arg(long)]
    pub hdr: Option<PathBuf>,

    /// Exit 1 when errors + drops exceed this percentage of requests.
    #[arg(long)]
    pub max_error_rate: Option<f64>,

    /// Exit 1 when the p99 latency exceeds this duration (`20ms`).
    #[arg(long, value_parser = parse_duration)]
    pub max_p99: Option<Duration>,

    /// After the run, read every written entity back and check it holds its
    /// last acknowledged write.
    #[arg(long)]
    pub verify: bool,

    /// Append every write (sent, acknowledged, failed) to this file as it happens.
    #[arg(long)]
    pub record: Option<PathBuf>,

    /// Do not run load: check a file written by --record against the server.
    #[arg(long)]
    pub verify_from: Option<PathBuf>,

    /// No live progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// One operation of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Ingest,
    Batch,
    Get,
    List,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::Ingest, Op::Batch, Op::Get, Op::List];

    pub fn name(self) -> &'static str {
        match self {
            Op::Ingest => "ingest",
            Op::Batch => "batch",
            Op::Get => "get",
            Op::List => "list",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn writes(self) -> bool {
        matches!(self, Op::Ingest | Op::Batch)
    }
}

/// A step of the open-loop schedule: `rate` events/s held for `duration`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    pub duration: Duration,
    pub rate: f64,
}

/// Which entities a subscriber asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum SubscribeTo {
    All,
    /// `<first namespace/><prefix>*`
    Prefix,
    /// The first N entity ids, one subscribe message each.
    Ids(u64),
    /// Any other pattern ending in `*` (`lt-00*`): ids starting with the rest.
    Pattern(String),
}

impl std::fmt::Display for SubscribeTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubscribeTo::All => write!(f, "*"),
            SubscribeTo::Prefix => write!(f, "prefix"),
            SubscribeTo::Ids(n) => write!(f, "ids:{n}"),
            SubscribeTo::Pattern(p) => write!(f, "{p}"),
        }
    }
}

/// A parsed `http://host:port/base` target.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// `host:port` as sent in the `Host` header.
    pub authority: String,
    /// Path prefix without trailing slash ("" for the root).
    pub base_path: String,
}

/// Validated settings shared by every worker.
#[derive(Debug, Clone)]
pub struct Config {
    /// The first of `targets`: verification reads, the record's header.
    pub target: Target,
    /// Every `--url`, in order (at least one; all with the same base path).
    pub targets: Vec<Target>,
    pub token: Option<String>,
    pub connections: usize,
    pub pipeline: usize,
    pub threads: usize,
    pub cpus: Option<Vec<usize>>,
    pub warmup: Duration,
    pub duration: Duration,
    /// Open loop when set: the steps after the warmup (the warmup runs at the
    /// first step's rate).
    pub stages: Option<Vec<Stage>>,
    pub max_lag: Duration,
    pub timeout: Duration,
    /// Weights indexed by `Op::index`.
    pub mix: [u32; 4],
    pub batch: usize,
    pub entities: u64,
    pub props: usize,
    pub value_size: usize,
    pub streams: usize,
    pub sources: usize,
    pub dist: KeyDist,
    pub prefix: String,
    pub namespaces: Vec<String>,
    pub list_limit: u32,
    pub seed: u64,
    pub subscribers: usize,
    pub subscribe: SubscribeTo,
    pub ws_grace: Duration,
    pub verify: bool,
    pub record: Option<PathBuf>,
    pub json: Option<PathBuf>,
    pub hdr: Option<PathBuf>,
    /// Percent of attempts.
    pub max_error_rate: Option<f64>,
    pub max_p99: Option<Duration>,
    pub quiet: bool,
}

impl Config {
    pub fn from_args(a: &Args) -> Result<Config, String> {
        let targets = a
            .url
            .split(',')
            .map(|u| parse_url(u.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        let target = targets[0].clone();
        if let Some(t) = targets.iter().find(|t| t.base_path != target.base_path) {
            return Err(format!(
                "--url: every URL must have the same base path ({:?} and {:?})",
                target.base_path, t.base_path
            ));
        }
        check_range("--connections", a.connections, 1, CONNECTIONS_MAX)?;
        check_range("--pipeline", a.pipeline, 1, PIPELINE_MAX)?;
        check_range("--props", a.props, 0, PROPS_MAX)?;
        check_range("--value-size", a.value_size, 1, VALUE_SIZE_MAX)?;
        check_range("--streams", a.streams, 1, 10_000)?;
        check_range("--sources", a.sources, 1, 10_000)?;
        check_range("--subscribers", a.subscribers, 0, SUBSCRIBERS_MAX)?;
        if a.entities == 0 || a.entities > ENTITIES_MAX {
            return Err(format!("--entities must be in 1..={ENTITIES_MAX}"));
        }
        if a.entities < a.connections as u64 {
            return Err(format!(
                "--entities ({}) must be at least --connections ({}): each connection writes its own entities",
                a.entities, a.connections
            ));
        }
        let threads = match a.threads {
            Some(t) => t,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        check_range("--threads", threads, 1, 1024)?;
        let cpus = a.cpus.as_deref().map(parse_cpus).transpose()?;
        check_id_part("--prefix", &a.prefix, true)?;
        for ns in &a.namespace {
            check_id_part("--namespace", ns, false)?;
        }
        if let Some(b) = a.batch {
            check_range("--batch", b, 1, BATCH_MAX)?;
        }
        let mix = match &a.mix {
            Some(m) => parse_mix(m)?,
            None if a.batch.is_some() => [0, 1, 0, 0],
            None => [1, 0, 0, 0],
        };
        if mix[Op::Batch.index()] > 0 && a.batch.is_none() {
            return Err("the batch op needs --batch N (events per request)".into());
        }
        let stages = match (&a.rate, &a.stages) {
            (Some(_), Some(_)) => return Err("use --rate or --stages, not both".into()),
            (Some(r), None) => {
                check_rate(*r)?;
                Some(vec![Stage {
                    duration: a.duration,
                    rate: *r,
                }])
            }
            (None, Some(s)) => Some(parse_stages(s)?),
            (None, None) => None,
        };
        let duration = match &stages {
            Some(st) => st.iter().map(|s| s.duration).sum(),
            None => a.duration,
        };
        if duration.is_zero() {
            return Err("the run has no duration".into());
        }
        let subscribe = parse_subscribe(&a.subscribe)?;
        if a.timeout.is_zero() {
            return Err("--timeout must be > 0".into());
        }
        if let Some(e) = a.max_error_rate {
            if !(0.0..=100.0).contains(&e) {
                return Err("--max-error-rate is a percentage in 0..=100".into());
            }
        }
        Ok(Config {
            target,
            targets,
            token: a.token.clone(),
            connections: a.connections,
            pipeline: a.pipeline,
            threads: threads.min(a.connections.max(a.subscribers).max(1)),
            cpus,
            warmup: a.warmup,
            duration,
            stages,
            max_lag: a.max_lag,
            timeout: a.timeout,
            mix,
            batch: a.batch.unwrap_or(1),
            entities: a.entities,
            props: a.props,
            value_size: a.value_size,
            streams: a.streams,
            sources: a.sources,
            dist: a.dist,
            prefix: a.prefix.clone(),
            namespaces: a.namespace.clone(),
            list_limit: a.list_limit,
            seed: a.seed,
            subscribers: a.subscribers,
            subscribe,
            ws_grace: a.ws_grace,
            verify: a.verify,
            record: a.record.clone(),
            json: a.json.clone(),
            hdr: a.hdr.clone(),
            max_error_rate: a.max_error_rate,
            max_p99: a.max_p99,
            quiet: a.quiet,
        })
    }

    pub fn open_loop(&self) -> bool {
        self.stages.is_some()
    }

    /// The whole run: warmup then the measured part.
    pub fn total(&self) -> Duration {
        self.warmup + self.duration
    }

    /// Whether write acknowledgements must be tracked per entity.
    pub fn tracks_writes(&self) -> bool {
        self.verify || self.record.is_some()
    }

    /// Whether events carry `_lt_sent_us` for subscriber latency.
    pub fn embeds_send_time(&self) -> bool {
        self.subscribers > 0
    }
}

fn check_range(flag: &str, v: usize, lo: usize, hi: usize) -> Result<(), String> {
    if v < lo || v > hi {
        return Err(format!("{flag} must be in {lo}..={hi}, got {v}"));
    }
    Ok(())
}

fn check_id_part(flag: &str, s: &str, may_be_empty: bool) -> Result<(), String> {
    if s.is_empty() && !may_be_empty {
        return Err(format!("{flag} must not be empty"));
    }
    if s.len() > 200
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err(format!(
            "{flag} {s:?}: use at most 200 of [{ID_PART_CHARSET}]"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["flux-loadtest", "--url", "http://127.0.0.1:3000"];
        v.extend_from_slice(extra);
        Args::try_parse_from(v).unwrap()
    }

    #[test]
    fn config_defaults_and_conflicts() {
        let c = Config::from_args(&args(&[])).unwrap();
        assert!(!c.open_loop());
        assert_eq!(c.mix, [1, 0, 0, 0]);
        let c = Config::from_args(&args(&["--batch", "50"])).unwrap();
        assert_eq!((c.mix, c.batch), ([0, 1, 0, 0], 50));
        let c = Config::from_args(&args(&["--rate", "100", "-d", "3s", "--warmup", "1s"])).unwrap();
        assert!(c.open_loop());
        assert_eq!(c.total(), Duration::from_secs(4));
        let c = Config::from_args(&args(&["--stages", "1s@10,2s@20"])).unwrap();
        assert_eq!(c.duration, Duration::from_secs(3));
        assert!(Config::from_args(&args(&["--rate", "1", "--stages", "1s@1"])).is_err());
        assert!(Config::from_args(&args(&["--mix", "batch=1"])).is_err());
        assert!(Config::from_args(&args(&["--prefix", "a\"b"])).is_err());
        assert!(Config::from_args(&args(&["--entities", "2", "-c", "4"])).is_err());
    }
}
