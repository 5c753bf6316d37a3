//! One worker thread: an epoll loop (`rt`, optionally pinned) that runs its
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
use crate::rt::{self, Task};
use crate::schedule::Schedule;
use crate::stats::Stats;
use crate::workload::Workload;
use crate::ws;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// Every target's address, in `--url` order.
    pub addrs: Vec<SocketAddr>,
    pub stop_subscribers: Arc<AtomicBool>,
}

pub fn spawn(
    plan: Plan,
    worker: usize,
    tx: Sender<ToMain>,
    start: Receiver<Option<Clock>>,
) -> Result<std::thread::JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name(format!("lt-worker-{worker}"))
        .spawn(move || run(plan, worker, tx, start))
        .map_err(|e| format!("cannot start worker thread {worker}: {e}"))
}

fn run(plan: Plan, worker: usize, tx: Sender<ToMain>, start: Receiver<Option<Clock>>) {
    let cfg = plan.cfg.clone();
    let threads = cfg.threads;
    let setup_failed = |e: String| {
        let _ = tx.send(ToMain::SetupFailed(e));
    };
    if let Some(cpus) = &cfg.cpus {
        let cpu = cpus[worker % cpus.len()];
        if let Err(e) = rt::pin_to_cpu(cpu) {
            return setup_failed(format!(
                "cannot pin worker thread {worker} to CPU {cpu}: {e}"
            ));
        }
    }
    let mut runtime = match rt::Runtime::new() {
        Ok(r) => r,
        Err(e) => return setup_failed(format!("worker thread {worker}: epoll: {e}")),
    };
    // Subscribers first, so that they see the load from its first event.
    let sockets = Rc::new(RefCell::new(Ok(Vec::new())));
    let connect: Task = {
        let (cfg, plan, sockets) = (cfg.clone(), plan.clone(), sockets.clone());
        Box::pin(async move {
            let subscriptions = plan.workload.subscriptions();
            for i in (worker..cfg.subscribers).step_by(threads) {
                let t = i % plan.addrs.len();
                let r = ws::connect(&cfg, t, plan.addrs[t], &subscriptions).await;
                let mut sockets = sockets.borrow_mut();
                match (r, &mut *sockets) {
                    (Ok(s), Ok(v)) => v.push(s),
                    (Err(e), _) => {
                        *sockets = Err(e);
                        return;
                    }
                    (_, Err(_)) => return,
                }
            }
        })
    };
    if let Err(e) = runtime.block_on(vec![connect], vec![]) {
        return setup_failed(format!("worker thread {worker}: epoll: {e}"));
    }
    let sockets = match std::mem::replace(&mut *sockets.borrow_mut(), Ok(Vec::new())) {
        Ok(v) => v,
        Err(e) => return setup_failed(e),
    };
    let recorder = match &cfg.record {
        None => None,
        Some(path) => match Recorder::open(path) {
            Ok(r) => Some(RefCell::new(r)),
            Err(e) => return setup_failed(format!("--record {}: {e}", path.display())),
        },
    };
    if tx.send(ToMain::Ready).is_err() {
        return;
    }
    // Blocking here is fine: nothing runs on this thread yet.
    let Ok(Some(clock)) = start.recv() else {
        return;
    };
    let t0 = clock.t0();
    let sh = Rc::new(Shared {
        common: cfg
            .targets
            .iter()
            .map(|t| crate::http::common_headers(&t.authority, cfg.token.as_deref()))
            .collect(),
        cfg: cfg.clone(),
        workload: plan.workload.clone(),
        schedule: plan.schedule.clone(),
        addrs: plan.addrs.clone(),
        clock,
        stats: RefCell::new(Stats::new()),
        recorder,
        watchdog: Watchdog::default(),
    });
    std::thread::sleep(t0.saturating_duration_since(Instant::now()));

    // The last connection to finish reports the load done (subscribers go on
    // until the main thread sets `stop_subscribers`).
    let ledger = Rc::new(RefCell::new(Ledger::default()));
    let conns_left = Rc::new(Cell::new(
        (worker..cfg.connections).step_by(threads).count(),
    ));
    let load_done = {
        let (sh, tx, ledger) = (sh.clone(), tx.clone(), ledger.clone());
        move || {
            let stats = sh.stats.borrow_mut().take();
            let ledger = std::mem::take(&mut *ledger.borrow_mut());
            let _ = tx.send(ToMain::LoadDone(Box::new(stats), ledger));
        }
    };
    if conns_left.get() == 0 {
        load_done();
    }
    let mut tasks: Vec<Task> = (worker..cfg.connections)
        .step_by(threads)
        .map(|c| {
            let (sh, ledger, left) = (sh.clone(), ledger.clone(), conns_left.clone());
            let load_done = load_done.clone();
            Box::pin(async move {
                let l = conn::run(&sh, c).await;
                ledger.borrow_mut().absorb(l);
                left.set(left.get() - 1);
                if left.get() == 0 {
                    load_done();
                }
            }) as Task
        })
        .collect();
    tasks.extend(sockets.into_iter().map(|s| {
        let (sh, stop) = (sh.clone(), plan.stop_subscribers.clone());
        Box::pin(async move { ws::run(&sh, s, stop).await }) as Task
    }));
    let reporter: Task = {
        let (sh, tx) = (sh.clone(), tx.clone());
        Box::pin(async move { report(&sh, &tx, t0).await })
    };
    let watchdog: Task = {
        let sh = sh.clone();
        let tick = deadline::tick(cfg.timeout);
        Box::pin(async move {
            loop {
                rt::sleep(tick).await;
                sh.watchdog.check(sh.clock.now());
            }
        })
    };
    if let Err(e) = runtime.block_on(tasks, vec![reporter, watchdog]) {
        // What did not finish counts as not attempted.
        eprintln!("flux-loadtest: worker thread {worker}: epoll failed: {e}");
        if conns_left.get() > 0 {
            load_done();
        }
    }
    let stats = sh.stats.borrow_mut().take();
    let _ = tx.send(ToMain::Finished(Box::new(stats)));
}

/// Sends this thread's counters to the main thread every interval.
async fn report(sh: &Shared, tx: &Sender<ToMain>, t0: Instant) {
    let mut tick = 1u32;
    loop {
        rt::sleep_until(t0 + REPORT_INTERVAL * tick).await;
        let stats = sh.stats.borrow_mut().take();
        if tx.send(ToMain::Interval(Box::new(stats))).is_err() {
            break;
        }
        tick += 1;
    }
}
