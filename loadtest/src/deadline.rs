//! Request timeouts without a timer per read.
//!
//! A socket read timeout (as glommio has, which the tool used before `rt`)
//! inserts a timer on every read that has to wait, and removes it when the
//! read completes: two ordered map operations per
//! response on the hot path. Instead each connection keeps
//! a [`Deadline`] (a time and a waker in cells), and one [`Watchdog`] task per
//! worker thread looks at all of them every [`tick`] and wakes the
//! connections whose deadline has passed. A timeout is then noticed up to one
//! tick late, which is a few percent of `--timeout`.

use crate::schedule::Nanos;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// No deadline.
const NEVER: Nanos = Nanos::MAX;
/// The watchdog's period, as a fraction of the timeout, within bounds.
const TICKS_PER_TIMEOUT: u32 = 20;
const TICK_MIN: Duration = Duration::from_millis(1);
const TICK_MAX: Duration = Duration::from_millis(50);

/// How often the watchdog of a run with this `--timeout` looks.
pub fn tick(timeout: Duration) -> Duration {
    (timeout / TICKS_PER_TIMEOUT).clamp(TICK_MIN, TICK_MAX)
}

/// One connection's deadline.
#[derive(Debug)]
pub struct Deadline {
    at: Cell<Nanos>,
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Deadline {
    /// Expire at `at` (run time), replacing any earlier setting.
    pub fn arm(&self, at: Nanos) {
        self.at.set(at);
        self.fired.set(false);
    }

    pub fn disarm(&self) {
        self.arm(NEVER);
    }

    /// Completes once the watchdog found the deadline passed.
    pub fn expired(&self) -> Expired<'_> {
        Expired(self)
    }
}

pub struct Expired<'a>(&'a Deadline);

impl Future for Expired<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let d = self.0;
        if d.fired.get() {
            return Poll::Ready(());
        }
        let mut w = d.waker.borrow_mut();
        if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *w = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// The deadlines of one worker thread's connections.
#[derive(Debug, Default)]
pub struct Watchdog {
    deadlines: RefCell<Vec<Rc<Deadline>>>,
}

impl Watchdog {
    pub fn register(&self) -> Rc<Deadline> {
        let d = Rc::new(Deadline {
            at: Cell::new(NEVER),
            fired: Cell::new(false),
            waker: RefCell::new(None),
        });
        self.deadlines.borrow_mut().push(d.clone());
        d
    }

    /// Fires every deadline at or before `now`; returns how many fired.
    pub fn check(&self, now: Nanos) -> usize {
        let mut fired = 0;
        for d in self.deadlines.borrow().iter() {
            if d.at.get() <= now && !d.fired.get() {
                d.fired.set(true);
                if let Some(w) = d.waker.borrow_mut().take() {
                    w.wake();
                }
                fired += 1;
            }
        }
        fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn fires_once_at_the_deadline_and_wakes() {
        let wd = Watchdog::default();
        let (a, b) = (wd.register(), wd.register());
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        a.arm(100);
        let mut fut = a.expired();
        assert!(Pin::new(&mut fut).poll(&mut cx).is_pending());
        assert_eq!(wd.check(99), 0);
        assert_eq!(wd.check(100), 1);
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        assert!(Pin::new(&mut fut).poll(&mut cx).is_ready());
        // Fired deadlines do not fire again; disarmed ones never fire.
        assert_eq!(wd.check(1_000), 0);
        b.disarm();
        a.disarm();
        assert_eq!(wd.check(Nanos::MAX - 1), 0);
        // Re-arming clears the fired state.
        a.arm(5);
        assert!(Pin::new(&mut a.expired()).poll(&mut cx).is_pending());
        assert_eq!(wd.check(5), 1);
    }

    #[test]
    fn tick_is_a_small_part_of_the_timeout() {
        assert_eq!(tick(Duration::from_secs(5)), Duration::from_millis(50));
        assert_eq!(tick(Duration::from_millis(100)), Duration::from_millis(5));
        assert_eq!(tick(Duration::from_micros(10)), Duration::from_millis(1));
    }
}
