//! Regression test for the glommio start-up stall (vendor/glommio/VENDORED.md): an
//! executor whose preempt timer expired before it ran a task used to park with that
//! task queued; a task woken by its timer then never ran again. A 20 µs preempt timer
//! makes the expiry before the first task near-certain on every wake-up: without the
//! fix every executor here hangs at once; with it, each finishes in well under a second.

use glommio::{LocalExecutorBuilder, Placement};
use std::time::Duration;

#[test]
fn an_executor_preempted_before_running_still_runs_its_woken_tasks() {
    const EXECUTORS: usize = 3;
    for i in 0..EXECUTORS {
        let (tx, rx) = std::sync::mpsc::channel();
        let _handle = LocalExecutorBuilder::new(Placement::Unbound)
            .preempt_timer(Duration::from_micros(20))
            .spawn(move || async move {
                for _ in 0..2000 {
                    glommio::timer::sleep(Duration::from_micros(100)).await;
                }
                tx.send(()).expect("test waits");
            })
            .expect("executor");
        // A hang is forever (the thread is left asleep); 20 s leaves room for a loaded machine.
        assert!(
            rx.recv_timeout(Duration::from_secs(20)).is_ok(),
            "executor {i}: a task woken by its timer never ran (parked with runnable tasks)"
        );
    }
}
