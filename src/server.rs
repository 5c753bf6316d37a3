//! The top of the layers: starts one pinned glommio executor per shard, joins them
//! into a channel mesh, installs every feature's per-shard state and tasks on each
//! shard (`shard::Services`, the fan-out hook), and waits for SIGINT/SIGTERM.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};

use crate::auth::Auth;
use crate::config::{Config, SyncMode};
use crate::limits::MESH_CHANNEL_CAPACITY;
use crate::net::listener;
use crate::shard::mesh::{self, Mesh, Request};
use crate::shard::{keeper, recovery, snapshotter, txn, Services, Shard, ShardId, Shared};

/// Shards must have joined the mesh and bound their sockets within this (recovery
/// happens after and is reported by `/health`).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Joining the channel mesh takes milliseconds; a shard that has not joined after this
/// is stuck (see `stalled_start`).
const MESH_JOIN_STALL: Duration = Duration::from_secs(3);

/// Start-up stalled in glommio's channel-mesh handshake: a shard's executor sleeps in
/// io_uring and never resumes its join. Stock glommio 0.9 did this about once in 700
/// starts of 2-shard servers under heavy CPU contention (an executor preempted before
/// running a task parked with it queued); vendor/glommio fixes that (ARCHITECTURE.md,
/// "Start-up stall") and this check stays as a safety net. Nothing has been opened
/// for serving yet (no socket bound, no log replayed: recovery follows the join), so
/// the start fails loudly, naming the stall, and a supervisor (systemd
/// `Restart=on-failure`) or the operator starts it again; the process used to
/// re-execute itself, which hid the stall.
fn stalled_start(joined: usize, count: usize) -> StartError {
    StartError(format!(
        "start-up stalled: {joined} of {count} shards joined the shard mesh within {} s \
         (an executor asleep in glommio's channel-mesh handshake, see ARCHITECTURE.md); nothing \
         was opened for serving, start flux again",
        MESH_JOIN_STALL.as_secs()
    ))
}

/// Why the server could not start; printed as is before exiting with status 1.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Explains glommio start-up failures, which are almost always io_uring being
/// unavailable (old kernel, seccomp, `kernel.io_uring_disabled`) or too little locked
/// memory for its rings and registered buffers.
fn explain_executor_error(e: &dyn std::fmt::Display, cfg: &Config) -> String {
    let msg = e.to_string();
    let memlock = memlock_limit_kib().map_or("unknown".to_string(), |k| format!("{k} KiB"));
    format!(
        "cannot start a shard executor: {msg}\n\
         flux needs io_uring (Linux 5.8+, not disabled by sysctl kernel.io_uring_disabled or a \
         seccomp profile) and locked memory for its rings: each shard locks about \
         FLUX_IO_MEMORY_KIB={} KiB plus its rings; `ulimit -l` is {memlock}. Lower \
         FLUX_IO_MEMORY_KIB or FLUX_SHARDS, or raise the limit (LimitMEMLOCK= in systemd, \
         see tuning.md).",
        cfg.io_memory_kib
    )
}

fn memlock_limit_kib() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and has no other effects.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) };
    (rc == 0).then_some(if r.rlim_cur == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        r.rlim_cur / 1024
    })
}

/// Blocks SIGINT and SIGTERM in the calling thread (and so in every thread it spawns
/// afterwards), so that only `wait_for_signal` receives them.
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc calls on a sigset_t we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// A blocked SIGINT/SIGTERM that is pending, taking it; `None` if there is none.
fn pending_signal(set: &libc::sigset_t) -> Option<i32> {
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `set` is initialised; a null siginfo pointer is allowed.
    let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &zero) };
    (sig > 0).then_some(sig)
}

fn wait_for_signal_within(set: &libc::sigset_t, within: Duration) -> Option<i32> {
    let timeout = libc::timespec {
        tv_sec: within.as_secs() as libc::time_t,
        tv_nsec: within.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` is initialised; a null siginfo pointer is allowed.
    let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &timeout) };
    (sig > 0).then_some(sig)
}

const HEARTBEAT_CHECK: Duration = Duration::from_millis(crate::limits::HEARTBEAT_CHECK_MS);

/// The main thread's watch over the shards' heartbeats (`shard::heartbeat`): marks a
/// shard silent for more than `SHARD_STALL_MS` as stalled (`/health` 503, metrics)
/// and logs it, and logs when it runs again.
fn watch_heartbeats(shared: &Shared) {
    let now = shared.clock_ms();
    for (i, beat) in shared.heartbeat_ms.iter().enumerate() {
        let beat = beat.load(Ordering::Acquire);
        if beat == 0 {
            continue; // not beating yet (recovering)
        }
        let silent = now.saturating_sub(beat);
        let stalled = silent > crate::limits::SHARD_STALL_MS;
        if shared.stalled[i].swap(stalled, Ordering::AcqRel) != stalled {
            if stalled {
                eprintln!(
                    "flux: shard {i} has not run a task for {silent} ms: its executor is stalled \
                     (a blocked thread, a task that never yields or a lost wake-up); /health \
                     reports it until it runs again"
                );
            } else {
                eprintln!("flux: shard {i} runs again");
            }
        }
    }
}

/// The data directory remembers the shard count it was written with: the partition →
/// shard mapping depends on it, so a different count would look in the wrong logs.
/// Re-partitioning is not supported; a mismatch stops start-up naming both counts.
fn check_data_layout(dir: &std::path::Path, count: usize) -> Result<(), StartError> {
    let meta = dir.join("flux.meta");
    match std::fs::read_to_string(&meta) {
        Ok(text) => {
            let written = text
                .lines()
                .find_map(|l| l.strip_prefix("shards="))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| StartError(format!("{} is unreadable", meta.display())))?;
            if written != count {
                return Err(StartError(format!(
                    "the data in {} was written with {written} shards but FLUX_SHARDS is \
                     {count}; start with FLUX_SHARDS={written} (re-partitioning is not supported)",
                    dir.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = dir.join("flux.meta.tmp");
            let write = || -> std::io::Result<()> {
                use std::io::Write;
                let mut f = std::fs::File::create(&tmp)?;
                writeln!(f, "format=1\nshards={count}")?;
                f.sync_all()?;
                std::fs::rename(&tmp, &meta)?;
                std::fs::File::open(dir)?.sync_all()
            };
            write().map_err(|e| StartError(format!("cannot write {}: {e}", meta.display())))
        }
        Err(e) => Err(StartError(format!("cannot read {}: {e}", meta.display()))),
    }
}

/// Refuses an address that another process already serves. Every shard binds with
/// SO_REUSEPORT, which lets a second server on the same port silently take part of
/// the connections; a probe bound without it (std sets only SO_REUSEADDR, so
/// TIME_WAIT leftovers of an earlier run do not count) fails with EADDRINUSE while
/// any listener holds the address. The probe is closed before the shards bind.
///
/// A server that was just killed still holds its listeners for a moment after its
/// process is gone (io_uring closes the files of a ring's pending requests in the
/// background), so a taken address is tried again for up to `ADDRESS_WAIT`. (The
/// connections it leaves closing do not count: the listeners set SO_REUSEADDR, which
/// they pass on to accepted sockets; see vendor/glommio/VENDORED.md.)
fn check_address_free(addr: std::net::SocketAddr) -> Result<(), StartError> {
    const ADDRESS_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
    let started = std::time::Instant::now();
    // Bound: ADDRESS_WAIT.
    loop {
        match std::net::TcpListener::bind(addr) {
            Ok(_probe) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                if started.elapsed() < ADDRESS_WAIT {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    continue;
                }
                return Err(StartError(format!(
                    "the address {addr} is already in use by another process (another flux \
                     server?); stop it or choose another FLUX_LISTEN / PORT"
                )));
            }
            Err(e) => return Err(StartError(format!("cannot bind {addr}: {e}"))),
        }
    }
}

/// Runs the server until a signal stops it.
pub fn run(cfg: Config) -> Result<(), StartError> {
    let cfg = Arc::new(cfg);
    let count = cfg.shard_count();
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| {
        StartError(format!(
            "cannot create data directory {}: {e}",
            cfg.data_dir.display()
        ))
    })?;
    // Before anything in the directory is read or written: one server per directory.
    let _dir_lock = crate::dirlock::lock(&cfg.data_dir).map_err(|e| StartError(e.to_string()))?;
    check_address_free(cfg.listen_addr())?;
    check_data_layout(&cfg.data_dir, count)?;
    // Hard links left by a backup that was interrupted (they pin old segments).
    crate::shard::backup::clear_staging(&cfg.data_dir).map_err(|e| {
        StartError(format!(
            "cannot remove a stale backup staging directory: {e}"
        ))
    })?;
    let sigset = block_signals();
    let auth = Arc::new(Auth::open(&cfg).map_err(StartError)?);
    let limits = crate::runtime::RuntimeLimits::new(&cfg);
    let shared = Arc::new(Shared::new(count, limits));
    let registry = Arc::new(crate::metrics::Registry::new(count));
    let switchboard = Arc::new(crate::ws::Switchboard::new(count));
    // Cluster mode: the NATS bridge starts first (streams, buckets, leases); each
    // shard gets the receiving end of its inbox once it has recovered.
    let cluster = cfg
        .cluster()
        .then(|| Arc::new(crate::cluster::Cluster::new(&cfg)));
    let mut inboxes: Vec<
        Option<futures_channel::mpsc::Receiver<crate::cluster::bridge::ShardCmd>>,
    > = (0..count).map(|_| None).collect();
    if let Some(c) = &cluster {
        let mut senders = Vec::with_capacity(count);
        for inbox in inboxes.iter_mut() {
            let (tx, rx) = futures_channel::mpsc::channel(crate::cluster::bridge::SHARD_INBOX);
            senders.push(tx);
            *inbox = Some(rx);
        }
        let handle = crate::cluster::bridge::start(
            c.clone(),
            auth.clone(),
            cfg.nats_url.clone().unwrap_or_default(),
            cfg.replicas,
            Duration::from_millis(cfg.lease_ms),
            senders,
        )
        .map_err(StartError)?;
        c.set_bridge(handle);
        eprintln!(
            "flux: cluster mode: node {} ({}), {} groups, connected to NATS",
            c.node, c.url, c.groups
        );
    }
    let mesh_builder = MeshBuilder::<Request, _>::full(count, MESH_CHANNEL_CAPACITY);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<ShardId, String>>();

    // Shards that have joined the mesh (see `stalled_start`).
    let mut inbox_iter = inboxes.into_iter();
    let joined_count = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::with_capacity(count);
    for i in 0..count {
        let joined_count = joined_count.clone();
        let cfg2 = cfg.clone();
        let shared2 = shared.clone();
        let (auth2, registry2, switchboard2) =
            (auth.clone(), registry.clone(), switchboard.clone());
        let mesh_builder = mesh_builder.clone();
        let ready = ready_tx.clone();
        let cluster2 = cluster.clone();
        let inbox = inbox_iter.next().flatten();
        let builder = LocalExecutorBuilder::new(Placement::Fixed(cfg.cpu_for(i)))
            .name(&format!("flux-shard-{i}"))
            .io_memory(cfg.io_memory_kib * 1024)
            .preempt_timer(Duration::from_millis(10));
        let handle = builder
            .spawn(move || async move {
                // glommio's shared-channel handshake registers a "connection waker"
                // that only a reactor turn polls: a reactor asleep in io_uring with
                // nothing else to do would not turn. A 1 ms heartbeat keeps it turning
                // until the mesh is joined. (The stall once seen here despite it was
                // glommio parking with this task queued; fixed in vendor/glommio.)
                let joined = Rc::new(Cell::new(false));
                glommio::spawn_local({
                    let joined = joined.clone();
                    async move {
                        while !joined.get() {
                            glommio::timer::sleep(Duration::from_millis(1)).await;
                        }
                    }
                })
                .detach();
                // Test hook: shard 0 never joins (a stalled start).
                if i == 0 && crate::failpoint::on("mesh-join-stall") {
                    std::future::pending::<()>().await;
                }
                let mesh = mesh_builder.join().await;
                joined.set(true);
                joined_count.fetch_add(1, Ordering::AcqRel);
                let (senders, mut receivers) = match mesh {
                    Ok(x) => x,
                    Err(e) => {
                        let _ = ready
                            .send(Err(format!("shard {i}: cannot join the channel mesh: {e}")));
                        return;
                    }
                };
                let id = ShardId(senders.peer_id() as u16);
                let services = Services::default()
                    .with(crate::auth::Local::new(auth2))
                    .with(crate::metrics::Local::new(registry2))
                    .with(crate::ws::Hub::new(count, &cfg2, switchboard2));
                let services = match &cluster2 {
                    Some(c) => services.with(crate::cluster::Local::new(c.clone())),
                    None => services,
                };
                let shard = Shard::new(
                    id,
                    count,
                    cfg2,
                    shared2,
                    Mesh::new(senders),
                    services,
                    Shard::fanout,
                );
                for (_peer, rx) in mesh::streams(&mut receivers) {
                    let shard = shard.clone();
                    glommio::spawn_local(async move {
                        while let Some(req) = rx.recv().await {
                            shard.handle(req);
                        }
                    })
                    .detach();
                }
                crate::metrics::start(&shard);
                crate::ws::start(&shard);
                let serving = glommio::spawn_local(listener::serve(Rc::clone(&shard), ready));
                if let Err(msg) = recovery::recover(&shard).await {
                    eprintln!("flux: {msg}");
                    std::process::exit(1);
                }
                shard.publish_room();
                if let Some(rx) = inbox {
                    // Cluster mode: the streams are the record. The groups this log
                    // rebuilt wait out of the store until this node takes them again
                    // (`cluster::chain`); each group it takes continues from there,
                    // or from a group snapshot, with its stream
                    // (`cluster::owner::acquire`).
                    crate::cluster::chain::park(&shard);
                    shard.cut_note.set(Some(crate::cluster::chain::cut_note));
                    glommio::spawn_local(crate::cluster::chain::sweep(shard.clone())).detach();
                    glommio::spawn_local(crate::cluster::owner::inbox(shard.clone(), rx)).detach();
                    glommio::spawn_local(crate::cluster::owner::snapshots(shard.clone())).detach();
                    glommio::spawn_local(crate::cluster::owner::fanout_ticks(shard.clone()))
                        .detach();
                }
                shard.shared.recovered.fetch_add(1, Ordering::AcqRel);
                if let SyncMode::Interval { ms } = shard.config.sync {
                    let s = shard.clone();
                    glommio::spawn_local(async move {
                        while !s.shutting_down() {
                            glommio::timer::sleep(Duration::from_millis(ms)).await;
                            // A failure fails the shard (`Shard::after_sync` says so).
                            if s.sync_now().await.is_ok() {
                                txn::flush_done(&s);
                            }
                        }
                    })
                    .detach();
                }
                glommio::spawn_local(snapshotter::run(shard.clone())).detach();
                glommio::spawn_local(keeper::run(shard.clone())).detach();
                glommio::spawn_local(crate::shard::heartbeat(shard.clone())).detach();
                serving.await;
                // Clean shutdown: a snapshot (which first syncs the log), so that the
                // next start replays nothing.
                let quiescent = shard.shared.drained.load(Ordering::SeqCst) >= count;
                match snapshotter::take(&shard, quiescent).await {
                    Ok(st) => eprintln!(
                        "flux: shard {}: final snapshot of {} entities in {} ms (replay from LSN {})",
                        shard.id.0,
                        st.entities,
                        st.took.as_millis(),
                        st.replay_from_lsn
                    ),
                    Err(e) => {
                        eprintln!("flux: shard {}: final snapshot failed: {e}", shard.id.0);
                        if let Err(e) = shard.sync_now().await {
                            eprintln!("flux: shard {}: final log sync failed: {e}", shard.id.0);
                        }
                    }
                }
                shard.mesh.close();
            })
            .map_err(|e| StartError(explain_executor_error(&e, &cfg)))?;
        handles.push(handle);
    }
    drop(ready_tx);

    let started = Instant::now();
    let deadline = started + STARTUP_TIMEOUT;
    let mut ready = 0;
    while ready < count {
        let joined = joined_count.load(Ordering::Acquire);
        if joined < count && started.elapsed() > MESH_JOIN_STALL {
            return Err(stalled_start(joined, count));
        }
        // A signal during start-up stops it, as it would a running server.
        if let Some(sig) = pending_signal(&sigset) {
            return Err(StartError(format!("signal {sig} received during start-up")));
        }
        if Instant::now() > deadline {
            return Err(StartError(format!(
                "only {ready} of {count} shards started within {} s",
                STARTUP_TIMEOUT.as_secs()
            )));
        }
        match ready_rx.recv_timeout(Duration::from_millis(20)) {
            Ok(Ok(_)) => ready += 1,
            Ok(Err(msg)) => return Err(StartError(msg)),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // A shard thread ended before reporting: its executor could not be
                // built (io_uring setup happens on the shard's own thread).
                let reasons: Vec<String> = handles
                    .into_iter()
                    .filter_map(|h| h.join().err())
                    .map(|e| explain_executor_error(&e, &cfg))
                    .collect();
                return Err(StartError(
                    reasons
                        .into_iter()
                        .next()
                        .unwrap_or_else(|| "a shard stopped during start-up".to_string()),
                ));
            }
        }
    }
    let auth = if cfg.auth_enabled {
        format!(
            "auth on ({} namespaces, reads {}, rate limit {})",
            auth.registry.snapshot().1.len(),
            if cfg.public_reads {
                "public"
            } else {
                "need a token"
            },
            match shared.limits.rate_limit() {
                Some(n) => format!("{n} events/min per namespace"),
                None => "off".into(),
            }
        )
    } else {
        "auth off".to_string()
    };
    println!(
        "flux {} listening on http://{} with {count} shard{} (CPUs {}), data in {}, {auth}",
        env!("CARGO_PKG_VERSION"),
        cfg.listen_addr(),
        if count == 1 { "" } else { "s" },
        (0..count)
            .map(|i| cfg.cpu_for(i).to_string())
            .collect::<Vec<_>>()
            .join(","),
        cfg.data_dir.display()
    );

    let sig = loop {
        if let Some(sig) = wait_for_signal_within(&sigset, HEARTBEAT_CHECK) {
            break sig;
        }
        watch_heartbeats(&shared);
    };
    eprintln!("flux: signal {sig} received, shutting down");
    shared.shutting_down.store(true, Ordering::SeqCst);
    for h in handles {
        let _ = h.join();
    }
    eprintln!("flux: stopped");
    Ok(())
}
