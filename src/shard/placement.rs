//! Starts one pinned glommio executor per shard, joins them into a channel mesh, and
//! waits for SIGINT/SIGTERM.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};

use super::mesh::{self, Mesh, Request};
use super::{Shard, ShardId, Shared};
use crate::config::Config;
use crate::limits::MESH_CHANNEL_CAPACITY;
use crate::net::listener;

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

fn wait_for_signal(set: &libc::sigset_t) -> i32 {
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` is a valid, initialised signal set; sigwait writes `sig`.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
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
    let sigset = block_signals();
    let shared = Arc::new(Shared::default());
    let mesh_builder = MeshBuilder::<Request, _>::full(count, MESH_CHANNEL_CAPACITY);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<ShardId, String>>();

    let mut handles = Vec::with_capacity(count);
    for i in 0..count {
        let cfg2 = cfg.clone();
        let shared2 = shared.clone();
        let mesh_builder = mesh_builder.clone();
        let ready = ready_tx.clone();
        let builder = LocalExecutorBuilder::new(Placement::Fixed(cfg.cpu_for(i)))
            .name(&format!("flux-shard-{i}"))
            .io_memory(cfg.io_memory_kib * 1024)
            .preempt_timer(Duration::from_millis(10));
        let handle = builder
            .spawn(move || async move {
                let (senders, mut receivers) = match mesh_builder.join().await {
                    Ok(x) => x,
                    Err(e) => {
                        let _ = ready
                            .send(Err(format!("shard {i}: cannot join the channel mesh: {e}")));
                        return;
                    }
                };
                let id = ShardId(senders.peer_id() as u16);
                let shard = Shard::new(id, count, cfg2, shared2, Mesh::new(senders));
                for (_peer, rx) in mesh::streams(&mut receivers) {
                    let shard = shard.clone();
                    glommio::spawn_local(async move {
                        while let Some(req) = rx.recv().await {
                            shard.handle(req);
                        }
                    })
                    .detach();
                }
                listener::serve(Rc::clone(&shard), ready).await;
                shard.mesh.close();
            })
            .map_err(|e| StartError(explain_executor_error(&e, &cfg)))?;
        handles.push(handle);
    }
    drop(ready_tx);

    for _ in 0..count {
        match ready_rx.recv() {
            Ok(Ok(_)) => {}
            Ok(Err(msg)) => return Err(StartError(msg)),
            Err(_) => {
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
    println!(
        "flux {} listening on http://{} with {count} shard{} (CPUs {}), data in {}",
        env!("CARGO_PKG_VERSION"),
        cfg.listen_addr(),
        if count == 1 { "" } else { "s" },
        (0..count)
            .map(|i| cfg.cpu_for(i).to_string())
            .collect::<Vec<_>>()
            .join(","),
        cfg.data_dir.display()
    );

    let sig = wait_for_signal(&sigset);
    eprintln!("flux: signal {sig} received, shutting down");
    shared.shutting_down.store(true, Ordering::SeqCst);
    for h in handles {
        let _ = h.join();
    }
    eprintln!("flux: stopped");
    Ok(())
}
