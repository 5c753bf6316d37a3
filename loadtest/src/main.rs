//! `flux-loadtest`: the load tester that speaks the Flux API (events,
//! batches, reads, listings, WebSocket subscriptions), measures latency
//! honestly (open loop from intended send times) and checks that nothing
//! acknowledged was lost (`--verify`, `--record`, `--verify-from`).
//!
//! Module map, from flags to bytes and back to the report:
//! - `config`   flags (clap) → validated [`config::Config`]
//! - `parse`    parsers of flag values (durations, mixes, stages, URLs)
//! - `rng`      seeded generator, uniform and zipf key sampling
//! - `workload` op mix, entity partitioning, request rendering
//! - `template` event bodies compiled once, rendered field by field
//! - `schedule` open-loop intended send times, drops (coordinated omission)
//! - `http`     request bytes, incremental response decoder, read buffer
//! - `head`     the response head parser of the load path
//! - `conn`     one load connection (pipelining, pacing)
//! - `rt`       the threads' epoll loop, executor and timers (mio)
//! - `deadline` request timeouts: one watchdog per thread, no timer per read
//! - `ws`       WebSocket subscribers: handshake, read loop, latency
//! - `wsproto`  WebSocket frames, upgrade bytes, the message scanner
//! - `worker`   one pinned epoll loop per thread, reporting to the main thread
//! - `stats`    counters and hdr histograms, merged per interval
//! - `ledger`   acknowledged writes per entity, the `--record` file
//! - `verify`   reading entities back and comparing
//! - `report`   progress line, summary, `--json`, `--hdr`

mod config;
mod conn;
mod deadline;
mod http;
mod ledger;
mod parse;
mod report;
mod rng;
mod rt;
mod schedule;
mod stats;
mod template;
mod verify;
mod worker;
mod workload;
mod ws;
mod wsproto;

use clap::Parser;
use config::{Args, Config, Target};
use ledger::Ledger;
use schedule::Schedule;
use stats::Stats;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use worker::{Plan, ToMain};
use workload::Workload;

/// Exit codes.
const EXIT_OK: i32 = 0;
/// A threshold was crossed or verification found a mismatch.
const EXIT_FAILED: i32 = 1;
/// Bad flags, unreachable server, refused WebSocket upgrade.
const EXIT_SETUP: i32 = 2;
/// Workers did not finish within the run's hard deadline.
const EXIT_STUCK: i32 = 3;

/// Head start given to workers so that they all begin at the same `t0`; with
/// subscribers, also time for the server to register their subscriptions.
const START_LEAD: Duration = Duration::from_millis(20);
const START_LEAD_SUBSCRIBERS: Duration = Duration::from_millis(300);
/// How long after an interval's end its progress line is printed.
const PROGRESS_DELAY: Duration = Duration::from_millis(150);
/// Slack on top of the run's own bounds before the tool gives up on workers.
const HARD_DEADLINE_SLACK: Duration = Duration::from_secs(10);

fn main() {
    std::process::exit(run());
}

fn run() -> i32 {
    let args = Args::parse();
    let result = match &args.verify_from {
        Some(path) => verify_from(&args, path),
        None => Config::from_args(&args).and_then(load),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("flux-loadtest: {e}");
            EXIT_SETUP
        }
    }
}

/// Resolves the target and checks that something listens there.
fn probe(target: &Target, url: &str, timeout: Duration) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {url}: {e}"))?
        .collect();
    let mut last = String::from("no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(_) => return Ok(a),
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    Err(format!(
        "cannot connect to {url} ({last}); is the server running?"
    ))
}

fn load(cfg: Config) -> Result<i32, String> {
    let urls: Vec<String> = cfg
        .targets
        .iter()
        .map(|t| format!("http://{}{}", t.authority, t.base_path))
        .collect();
    let addrs = cfg
        .targets
        .iter()
        .zip(&urls)
        .map(|(t, u)| probe(t, u, cfg.timeout))
        .collect::<Result<Vec<_>, _>>()?;
    let (url, addr) = (urls.join(","), addrs[0]);
    let cfg = Arc::new(cfg);
    let workload = Arc::new(Workload::new(&cfg));
    let schedule = cfg
        .stages
        .as_ref()
        .map(|st| Arc::new(Schedule::new(cfg.warmup, st)));
    if let Some(path) = &cfg.record {
        let mut rec = ledger::Recorder::open(path)
            .map_err(|e| format!("--record {}: {e}", path.display()))?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        rec.header(&url, now_ms)
            .map_err(|e| format!("--record {}: {e}", path.display()))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let plan = Plan {
        cfg: cfg.clone(),
        workload: workload.clone(),
        schedule: schedule.clone(),
        addrs,
        stop_subscribers: stop.clone(),
    };
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    let mut starts = Vec::new();
    for w in 0..cfg.threads {
        let (start_tx, start_rx) = mpsc::channel();
        match worker::spawn(plan.clone(), w, tx.clone(), start_rx) {
            Ok(h) => handles.push(h),
            Err(e) => {
                abort(starts, handles);
                return Err(e);
            }
        }
        starts.push(start_tx);
    }
    drop(tx);

    // Every worker connected its subscribers (or one failed: stop here).
    let setup_deadline = Instant::now() + cfg.timeout + HARD_DEADLINE_SLACK;
    let mut ready = 0;
    while ready < cfg.threads {
        let wait = setup_deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(ToMain::Ready) => ready += 1,
            Ok(ToMain::SetupFailed(e)) => {
                abort(starts, handles);
                return Err(e);
            }
            Ok(_) => {}
            Err(_) => {
                abort(starts, handles);
                return Err("worker threads did not start in time".into());
            }
        }
    }
    let lead = if cfg.subscribers > 0 {
        START_LEAD_SUBSCRIBERS
    } else {
        START_LEAD
    };
    let t0 = Instant::now() + lead;
    // One clock for every thread: a send time stamped by a publisher on one
    // thread is converted back by subscribers on others.
    let clock = conn::Clock::new(t0);
    for s in &starts {
        let _ = s.send(Some(clock));
    }

    let collected = collect(&cfg, &rx, t0, schedule.as_deref(), &stop);
    let Some((total, ledger)) = collected else {
        // Joining a stuck worker would hang here too: leave it (the
        // process exits with the code).
        eprintln!("flux-loadtest: workers did not finish in time (server hung?); giving up");
        return Ok(EXIT_STUCK);
    };
    for h in handles {
        let _ = h.join();
    }
    finish(&cfg, &url, addr, &workload, total, ledger)
}

fn abort(
    starts: Vec<mpsc::Sender<Option<conn::Clock>>>,
    handles: Vec<std::thread::JoinHandle<()>>,
) {
    for s in starts {
        let _ = s.send(None);
    }
    for h in handles {
        let _ = h.join();
    }
}

/// Merges worker reports, prints the progress line, stops subscribers after
/// the grace period. `None` if the workers overran the hard deadline.
fn collect(
    cfg: &Config,
    rx: &mpsc::Receiver<ToMain>,
    t0: Instant,
    schedule: Option<&Schedule>,
    stop: &AtomicBool,
) -> Option<(Stats, Ledger)> {
    let mut total = Stats::new();
    let mut window = Stats::new();
    let mut ledger = Ledger::default();
    let (mut load_done, mut finished) = (0, 0);
    let mut grace_until: Option<Instant> = None;
    // Workers report at t0 + k s; print a little later, once their reports
    // for interval k are in.
    let mut tick = 1u32;
    let mut next_tick = t0 + worker::REPORT_INTERVAL + PROGRESS_DELAY;
    let hard_deadline = t0 + cfg.total() + 2 * cfg.timeout + cfg.ws_grace + HARD_DEADLINE_SLACK;
    while finished < cfg.threads {
        let now = Instant::now();
        let wake = next_tick
            .min(grace_until.unwrap_or(hard_deadline))
            .min(hard_deadline);
        let mut absorb = |s: &Stats| {
            total.merge(s);
            window.merge(s);
        };
        match rx.recv_timeout(wake.saturating_duration_since(now)) {
            Ok(ToMain::Interval(s)) => absorb(&s),
            Ok(ToMain::LoadDone(s, l)) => {
                absorb(&s);
                ledger.absorb(l);
                load_done += 1;
                if load_done == cfg.threads {
                    let grace = if cfg.subscribers > 0 {
                        cfg.ws_grace
                    } else {
                        Duration::ZERO
                    };
                    grace_until = Some(Instant::now() + grace);
                }
            }
            Ok(ToMain::Finished(s)) => {
                absorb(&s);
                finished += 1;
            }
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let now = Instant::now();
        let all_done = finished == cfg.threads;
        let window_used = window.attempts() + window.warmup_requests + window.ws.updates > 0;
        if now >= next_tick || (all_done && window_used) {
            if !cfg.quiet {
                let elapsed = worker::REPORT_INTERVAL * tick;
                let mid = elapsed - worker::REPORT_INTERVAL / 2;
                let target = schedule.map(|s| s.rate_at(mid.as_nanos() as u64));
                eprintln!("{}", report::progress_line(elapsed, cfg, &window, target));
            }
            window = Stats::new();
            tick += 1;
            next_tick += worker::REPORT_INTERVAL;
        }
        if grace_until.is_some_and(|g| now >= g) {
            stop.store(true, Ordering::Release);
        }
        if now >= hard_deadline {
            return None;
        }
    }
    Some((total, ledger))
}

fn finish(
    cfg: &Config,
    url: &str,
    addr: SocketAddr,
    workload: &Workload,
    total: Stats,
    ledger: Ledger,
) -> Result<i32, String> {
    let verified = cfg.verify.then(|| {
        let (exps, skipped) = verify::from_ledger(workload, &ledger);
        let threads = cfg.threads.max(2);
        let r = verify::verify(
            &cfg.target,
            addr,
            cfg.token.as_deref(),
            threads,
            cfg.timeout,
            &exps,
        );
        (r, skipped)
    });
    let mut violations = Vec::new();
    if total.ok == 0 {
        // Nothing worked: a broken setup, whatever the thresholds say.
        violations.push(format!(
            "no successful response out of {} requests",
            total.attempts()
        ));
    }
    if let Some(max) = cfg.max_error_rate {
        if total.error_rate_pct() > max {
            violations.push(format!(
                "error rate {:.3}% above --max-error-rate {max}%",
                total.error_rate_pct()
            ));
        }
    }
    if let Some(max) = cfg.max_p99 {
        let max_us = max.as_micros() as u64;
        if total.latency.is_empty() {
            violations.push("no latency samples to hold against --max-p99".into());
        } else if total.latency.value_at_quantile(0.99) > max_us {
            violations.push(format!(
                "p99 {} above --max-p99 {}",
                report::ms(total.latency.value_at_quantile(0.99)),
                report::ms(max_us)
            ));
        }
    }
    if let Some((v, _)) = &verified {
        if !v.passed() {
            violations.push(format!(
                "verify: {} mismatches, {} read errors",
                v.mismatches.len(),
                v.read_errors.len()
            ));
        }
    }
    let ws_expected = total.acked_subscribed;
    let summary = report::Summary {
        cfg,
        url,
        stats: &total,
        ws_expected_per_subscriber: ws_expected,
        verify: verified.as_ref().map(|(v, s)| (v, *s)),
        violations: &violations,
    };
    print!("{}", report::summary_text(&summary));
    write_outputs(&summary)?;
    Ok(if violations.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILED
    })
}

fn write_outputs(s: &report::Summary) -> Result<(), String> {
    if let Some(path) = &s.cfg.json {
        let text = serde_json::to_string_pretty(&report::summary_json(s)).expect("JSON report");
        std::fs::write(path, text + "\n").map_err(|e| format!("--json {}: {e}", path.display()))?;
    }
    if let Some(path) = &s.cfg.hdr {
        std::fs::write(path, report::percentile_distribution(&s.stats.latency))
            .map_err(|e| format!("--hdr {}: {e}", path.display()))?;
    }
    Ok(())
}

/// `--verify-from FILE`: no load, check a record against the server.
fn verify_from(args: &Args, path: &Path) -> Result<i32, String> {
    // Several URLs (a cluster): any node answers reads, the first is used.
    let first = args.url.split(',').next().unwrap_or_default().trim();
    let target = parse::parse_url(first)?;
    let url = format!("http://{}{}", target.authority, target.base_path);
    let addr = probe(&target, &url, args.timeout)?;
    let (exps, skipped) = verify::from_record(path)?;
    let threads = args.threads.unwrap_or(2).max(1);
    let r = verify::verify(
        &target,
        addr,
        args.token.as_deref(),
        threads,
        args.timeout,
        &exps,
    );
    println!(
        "verify-from {}: {} entities checked, {} ok ({} matched a write whose ack was lost), {} mismatches, {} read errors, {} skipped (never acknowledged)",
        path.display(),
        r.checked,
        r.ok,
        r.ok_unacknowledged,
        r.mismatches.len(),
        r.read_errors.len(),
        skipped
    );
    for m in &r.mismatches {
        println!("  MISMATCH {}: {}", m.id, m.detail);
    }
    for (id, e) in &r.read_errors {
        println!("  READ ERROR {id}: {e}");
    }
    if let Some(json_path) = &args.json {
        let j = serde_json::json!({
            "verify": {
                "record": path.display().to_string(),
                "checked": r.checked,
                "ok": r.ok,
                "ok_unacknowledged": r.ok_unacknowledged,
                "skipped": skipped,
                "passed": r.passed(),
                "mismatches": r.mismatches.iter().map(|m| serde_json::json!({
                    "id": m.id, "detail": m.detail, "expected": m.expected, "actual": m.actual,
                })).collect::<Vec<_>>(),
                "read_errors": r.read_errors.iter().map(|(id, e)| serde_json::json!({"id": id, "error": e})).collect::<Vec<_>>(),
            }
        });
        std::fs::write(
            json_path,
            serde_json::to_string_pretty(&j).expect("JSON") + "\n",
        )
        .map_err(|e| format!("--json {}: {e}", json_path.display()))?;
    }
    Ok(if r.passed() { EXIT_OK } else { EXIT_FAILED })
}
