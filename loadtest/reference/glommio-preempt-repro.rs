//! An executor with a tiny preempt timer sleeping in a loop: stock glommio 0.9.0 parks
//! it for good. Run with `loadtest/reference/glommio-repro.sh stock|vendored preempt US ITERS TRIES`.
use glommio::{LocalExecutorBuilder, Placement};
use std::time::{Duration, Instant};
fn main() {
    let us: u64 = std::env::args().nth(1).map_or(5, |s| s.parse().unwrap());
    let iters: usize = std::env::args().nth(2).map_or(2000, |s| s.parse().unwrap());
    let tries: usize = std::env::args().nth(3).map_or(10, |s| s.parse().unwrap());
    let mut hangs = 0;
    let t0 = Instant::now();
    for _ in 0..tries {
        let (tx, rx) = std::sync::mpsc::channel();
        let _h = LocalExecutorBuilder::new(Placement::Unbound)
            .preempt_timer(Duration::from_micros(us))
            .spawn(move || async move {
                for _ in 0..iters {
                    glommio::timer::sleep(Duration::from_micros(100)).await;
                }
                tx.send(()).unwrap();
            })
            .unwrap();
        if rx.recv_timeout(Duration::from_secs(5)).is_err() {
            hangs += 1;
        }
    }
    println!("preempt {us} us, {iters} sleeps: {hangs} of {tries} executors hung ({:?})", t0.elapsed());
    std::process::exit(0);
}
