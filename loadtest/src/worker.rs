//! One worker thread: a glommio executor (optionally pinned) that runs its
//! share of the connections and subscribers and reports to the main thread.
//!
//! Protocol with the main thread (std channels, never on the request path):
//! ```text
//! worker                         main
//!   connect subscribers
//!   Ready / SetupFailed   ──▶
//!                         ◀──    start at t0 (or abort)
//!   Interval (every 1 s)  ──▶    progress line, totals
//!   LoadDone + ledger     ──▶    (all done) wait --ws-grace, set stop
//!   Finished              ──▶    summary
//! ```

use crate::config::Config;
use crate::conn::{self, Clock, Shared};
use crate::deadline::{self, Watchdog};
use crate::ledger::{Ledger, Recorder};
use crate::schedule::Schedule;
use crate::stats::Stats;
use crate::workload::Workload;
use crate::ws;
use glommio::{LocalExecutorBuilder, Placement};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Memory glommio registers with io_uring per executor. Its default (10 MiB)
/// exceeds common `ulimit -l` values (8 MiB), and the tool does no file I/O
/// through it; 1 MiB is plenty.
const IO_MEMORY_BYTES: usize = 1 << 20;
/// How often a worker hands its counters to the main thread.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

pub enum ToMain {
    Ready,
    SetupFailed(String),
    Interval(Box<Stats>),
    LoadDone(Box<Stats>, Ledger),
    Finished(Box<Stats>),
}

/// What every worker gets.
#[derive(Clone)]
pub struct Plan {
    pub cfg: Arc<Config>,
    pub workload: Arc<Workload>,
    pub schedule: Option<Arc<Schedule>>,
    pub addr: SocketAddr,
    pub stop_subscribers: Arc<AtomicBool>,
}

pub fn spawn(
    plan: Plan,
    worker: usize,
    tx: Sender<ToMain>,
    start: Receiver<Option<Clock>>,
) -> Result<glommio::ExecutorJoinHandle<()>, String> {
    let placement = match &plan.cfg.cpus {
        Some(cpus) => Placement::Fixed(cpus[worker % cpus.len()]),
        None => Placement::Unbound,
    };
    LocalExecutorBuilder::new(placement)
        .name(&format!("lt-worker-{worker}"))
        .io_memory(IO_MEMORY_BYTES)
        .spawn(move || async move { run(plan, worker, tx, start).await })
        .map_err(|e| format!("cannot start worker thread {worker}: {e}"))
}

async fn run(plan: Plan, worker: usize, tx: Sender<ToMain>, start: Receiver<Option<Clock>>) {
    let cfg = plan.cfg.clone();
    let threads = cfg.threads;
    // Subscribers first, so that they see the load from its first event.
    let subscriptions = plan.workload.subscriptions();
    let mut sockets = Vec::new();
    for _ in (worker..cfg.subscribers).step_by(threads) {
        match ws::connect(&cfg, plan.addr, &subscriptions).await {
            Ok(s) => sockets.push(s),
            Err(e) => {
                let _ = tx.send(ToMain::SetupFailed(e));
                return;
            }
        }
    }
    let recorder = match &cfg.record {
        None => None,
        Some(path) => match Recorder::open(path) {
            Ok(r) => Some(RefCell::new(r)),
            Err(e) => {
                let _ = tx.send(ToMain::SetupFailed(format!(
                    "--record {}: {e}",
                    path.display()
                )));
                return;
            }
        },
    };
    if tx.send(ToMain::Ready).is_err() {
        return;
    }
    // Blocking here is fine: nothing else runs on this executor yet.
    let Ok(Some(clock)) = start.recv() else {
        return;
    };
    let t0 = clock.t0();
    let sh = Rc::new(Shared {
        common: crate::http::common_headers(&cfg.target.authority, cfg.token.as_deref()),
        cfg: cfg.clone(),
        workload: plan.workload.clone(),
        schedule: plan.schedule.clone(),
        addr: plan.addr,
        clock,
        stats: RefCell::new(Stats::new()),
        recorder,
        watchdog: Watchdog::default(),
    });
    glommio::timer::sleep(t0.saturating_duration_since(Instant::now())).await;

    let subscribers: Vec<_> = sockets
        .into_iter()
        .map(|s| {
            let (sh, stop) = (sh.clone(), plan.stop_subscribers.clone());
            glommio::spawn_local(async move { ws::run(&sh, s, stop).await })
        })
        .collect();
    {
        let (sh, tx) = (sh.clone(), tx.clone());
        glommio::spawn_local(async move {
            let mut tick = 1u32;
            loop {
                let at = t0 + REPORT_INTERVAL * tick;
                glommio::timer::sleep(at.saturating_duration_since(Instant::now())).await;
                let stats = sh.stats.borrow_mut().take();
                if tx.send(ToMain::Interval(Box::new(stats))).is_err() {
                    break;
                }
                tick += 1;
            }
        })
        .detach();
    }
    {
        let sh = sh.clone();
        let tick = deadline::tick(cfg.timeout);
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(tick).await;
                sh.watchdog.check(sh.clock.now());
            }
        })
        .detach();
    }
    let conns: Vec<_> = (worker..cfg.connections)
        .step_by(threads)
        .map(|c| {
            let sh = sh.clone();
            glommio::spawn_local(async move { conn::run(&sh, c).await })
        })
        .collect();
    let mut ledger = Ledger::default();
    for c in conns {
        ledger.absorb(c.await);
    }
    let stats = sh.stats.borrow_mut().take();
    let _ = tx.send(ToMain::LoadDone(Box::new(stats), ledger));
    for s in subscribers {
        s.await;
    }
    let stats = sh.stats.borrow_mut().take();
    let _ = tx.send(ToMain::Finished(Box::new(stats)));
}
