//! Stress: G groups × 2 pinned glommio executors, each with a 1 ms timer loop, join a
//! 2-peer channel mesh; 2 spinner threads load both CPUs. A group not joined within
//! STALL_MS is a stall: dump every thread's state, then wait to see if it recovers.
//! Run with `loadtest/reference/glommio-repro.sh stock|vendored stall ROUNDS GROUPS`.
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn dump(tag: &str) {
    let pid = std::process::id();
    eprintln!("==== STALL {tag} pid {pid}");
    for t in std::fs::read_dir("/proc/self/task").unwrap() {
        let t = t.unwrap().path();
        let rd = |f: &str| std::fs::read_to_string(t.join(f)).unwrap_or_else(|e| format!("<{e}>"));
        eprintln!(
            "-- task {} comm={} wchan={} syscall={}\n stat={}\n stack:\n{}",
            t.display(),
            rd("comm").trim(),
            rd("wchan").trim(),
            rd("syscall").trim(),
            rd("stat").trim(),
            rd("stack")
        );
    }
    for fd in std::fs::read_dir("/proc/self/fd").unwrap() {
        let fd = fd.unwrap().path();
        let link = std::fs::read_link(&fd).map(|p| p.display().to_string()).unwrap_or_default();
        if link.contains("io_uring") || link.contains("eventfd") {
            let n = fd.file_name().unwrap().to_string_lossy().to_string();
            let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{n}")).unwrap_or_default();
            eprintln!("-- fd {n} -> {link}\n{info}");
        }
    }
    if std::env::var_os("GDB").is_some() {
        let out = std::process::Command::new("gdb")
            .args(["-p", &pid.to_string(), "-batch", "-ex", "thread apply all bt"])
            .output();
        if let Ok(o) = out {
            eprintln!("{}", String::from_utf8_lossy(&o.stdout));
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args.get(1).map_or(50, |s| s.parse().unwrap());
    let groups: usize = args.get(2).map_or(8, |s| s.parse().unwrap());
    let stall_ms: u64 = std::env::var("STALL_MS").ok().map_or(3000, |s| s.parse().unwrap());
    let spinners_n: usize = std::env::var("SPINNERS").ok().map_or(2, |s| s.parse().unwrap());
    let no_timer = std::env::var_os("NO_TIMER").is_some();
    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..spinners_n)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let mut stalls = 0;
    let t0 = Instant::now();
    for round in 0..rounds {
        let joined = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for _g in 0..groups {
            let mb = MeshBuilder::<u64, _>::full(2, 64);
            for i in 0..2 {
                let mb = mb.clone();
                let joined = joined.clone();
                let h = LocalExecutorBuilder::new(Placement::Fixed(i))
                    .name(&format!("ex-{i}"))
                    .io_memory(1 << 20)
                    .preempt_timer(Duration::from_millis(10))
                    .spawn(move || async move {
                        let done = Rc::new(Cell::new(false));
                        if !no_timer {
                            let d = done.clone();
                            glommio::spawn_local(async move {
                                while !d.get() {
                                    glommio::timer::sleep(Duration::from_millis(1)).await;
                                }
                            })
                            .detach();
                        }
                        let (_s, _r) = mb.join().await.unwrap();
                        done.set(true);
                        joined.fetch_add(1, Ordering::AcqRel);
                        // wait for the peer to have joined too before dropping channels
                        glommio::timer::sleep(Duration::from_millis(5)).await;
                    })
                    .unwrap();
                handles.push(h);
            }
        }
        let start = Instant::now();
        let mut stalled = false;
        while joined.load(Ordering::Acquire) < 2 * groups {
            if !stalled && start.elapsed() > Duration::from_millis(stall_ms) {
                stalled = true;
                stalls += 1;
                dump(&format!(
                    "round {round}: {} of {} joined after {stall_ms} ms",
                    joined.load(Ordering::Acquire),
                    2 * groups
                ));
            }
            if start.elapsed() > Duration::from_secs(60) {
                eprintln!("round {round}: still stalled after 60 s; exiting");
                dump("final");
                std::process::exit(2);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if stalled {
            eprintln!("round {round}: recovered after {:?}", start.elapsed());
        }
        for h in handles {
            h.join().unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for s in spinners {
        s.join().unwrap();
    }
    println!(
        "rounds {rounds} x groups {groups}: {stalls} stalled rounds in {:?}",
        t0.elapsed()
    );
}
