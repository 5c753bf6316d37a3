//! The worker threads' runtime: one epoll loop per thread (mio,
//! edge-triggered), a minimal executor for the connection and subscriber
//! tasks, and timers on a timerfd.
//!
//! Why not glommio (which the tool used before): glommio 0.9 reads a socket with
//! a nonblocking `recv` first, and when that finds nothing (or after any short
//! read) it arms a one-shot io_uring poll for that socket, completed and
//! removed again per response. Here every socket is registered once,
//! edge-triggered; an unpipelined request costs one `send` and one `recv`,
//! and one `epoll_wait` serves every connection that became readable
//! meanwhile. A short read clears the readiness (the socket was drained), so
//! the next read waits for the next edge instead of trying a `recv` that
//! would find nothing.
//!
//! Everything here is single-threaded: the wakers only record a task number
//! in this thread's run queue, and are never sent to another thread.

use mio::unix::SourceFd;
use mio::{Events, Interest, Registry, Token};
use std::cell::{Cell, RefCell};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::future::{poll_fn, Future};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use std::time::{Duration, Instant};

/// A task of the executor.
pub type Task = Pin<Box<dyn Future<Output = ()>>>;

/// Readiness events fetched per `epoll_wait`.
const EVENTS: usize = 1024;
/// The token of the timerfd (sockets use their slot number).
const TIMER_TOKEN: Token = Token(usize::MAX);
/// Socket operations a task may complete per poll before it yields: a
/// connection whose socket always has data (a long listing) must not starve
/// the others, or the timers.
const BUDGET: u32 = 64;

/// One thread's reactor: the registry, readiness per socket, timers and
/// the run queue.
struct Shared {
    registry: Registry,
    /// Readiness of the registered sockets, by token.
    io: RefCell<Vec<Option<Rc<IoState>>>>,
    free: RefCell<Vec<usize>>,
    timers: RefCell<BinaryHeap<Timer>>,
    timer_seq: Cell<u64>,
    ready: RefCell<VecDeque<usize>>,
    /// Whether a task is in `ready` already.
    queued: RefCell<Vec<bool>>,
    /// What is left of the running task's [`BUDGET`].
    budget: Cell<u32>,
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Shared>>> = const { RefCell::new(None) };
}

fn current() -> Rc<Shared> {
    CURRENT.with(|c| c.borrow().clone().expect("inside rt::Runtime::block_on"))
}

/// An epoll instance and a timerfd; create it where failing can still be
/// reported, run it with [`Runtime::block_on`].
pub struct Runtime {
    poll: mio::Poll,
    timerfd: OwnedFd,
    sh: Rc<Shared>,
}

impl Runtime {
    pub fn new() -> io::Result<Runtime> {
        let poll = mio::Poll::new()?;
        // SAFETY: plain syscall; the descriptor is owned right below.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        let timerfd = unsafe { OwnedFd::from_raw_fd(fd) };
        poll.registry().register(
            &mut SourceFd(&timerfd.as_raw_fd()),
            TIMER_TOKEN,
            Interest::READABLE,
        )?;
        let sh = Rc::new(Shared {
            registry: poll.registry().try_clone()?,
            io: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
            timers: RefCell::new(BinaryHeap::new()),
            timer_seq: Cell::new(0),
            ready: RefCell::new(VecDeque::new()),
            queued: RefCell::new(Vec::new()),
            budget: Cell::new(BUDGET),
        });
        Ok(Runtime { poll, timerfd, sh })
    }

    /// Runs `main` and `background` tasks until every `main` task is done;
    /// the background tasks are dropped then.
    pub fn block_on(&mut self, main: Vec<Task>, background: Vec<Task>) -> io::Result<()> {
        CURRENT.with(|c| *c.borrow_mut() = Some(self.sh.clone()));
        let n_main = main.len();
        let mut tasks: Vec<Option<Task>> = main.into_iter().chain(background).map(Some).collect();
        let sh = self.sh.clone();
        *sh.queued.borrow_mut() = vec![true; tasks.len()];
        sh.ready.borrow_mut().extend(0..tasks.len());
        let mut left = n_main;
        let mut events = Events::with_capacity(EVENTS);
        // When the timerfd is set to expire (None: disarmed).
        let mut armed: Option<Instant> = None;
        let result = loop {
            // The tasks ready now; those they wake (or that yield) run after
            // the next look at the sockets and timers.
            let round = sh.ready.borrow().len();
            for _ in 0..round {
                let next = sh.ready.borrow_mut().pop_front();
                let Some(id) = next else { break };
                sh.queued.borrow_mut()[id] = false;
                let Some(task) = tasks[id].as_mut() else {
                    continue;
                };
                let waker = task_waker(id);
                let mut cx = Context::from_waker(&waker);
                sh.budget.set(BUDGET);
                if task.as_mut().poll(&mut cx).is_ready() {
                    tasks[id] = None;
                    if id < n_main {
                        left -= 1;
                    }
                }
            }
            if left == 0 {
                break Ok(());
            }
            let now = Instant::now();
            sh.fire_timers(now);
            let timeout = if sh.ready.borrow().is_empty() {
                let next = sh.timers.borrow().peek().map(|t| t.at);
                if let Some(at) = next {
                    if armed.is_none_or(|a| a > at || a <= now) {
                        self.arm(at - now)?;
                        armed = Some(at);
                    }
                }
                None
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                break Err(e);
            }
            {
                let io = sh.io.borrow();
                for ev in events.iter() {
                    if ev.token() == TIMER_TOKEN {
                        armed = None;
                        continue;
                    }
                    let Some(Some(st)) = io.get(ev.token().0) else {
                        continue;
                    };
                    let failed = ev.is_error();
                    if ev.is_read_closed() || failed {
                        st.read_closed.set(true);
                    }
                    if ev.is_readable() || ev.is_read_closed() || failed {
                        st.readable.set(true);
                        if let Some(w) = st.reader.take() {
                            w.wake();
                        }
                    }
                    if ev.is_writable() || ev.is_write_closed() || failed {
                        st.writable.set(true);
                        if let Some(w) = st.writer.take() {
                            w.wake();
                        }
                    }
                }
            }
            sh.fire_timers(Instant::now());
        };
        // Tasks own sockets that deregister on drop.
        drop(tasks);
        CURRENT.with(|c| c.borrow_mut().take());
        result
    }

    /// Sets the timerfd to expire after `d` (relative, nanosecond precision:
    /// `epoll_wait`'s own timeout is in whole milliseconds).
    fn arm(&self, d: Duration) -> io::Result<()> {
        let d = d.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: valid descriptor and pointers; re-arming also resets the
        // expiration count, so the descriptor never needs a read.
        let r = unsafe {
            libc::timerfd_settime(self.timerfd.as_raw_fd(), 0, &spec, std::ptr::null_mut())
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Shared {
    fn schedule(&self, id: usize) {
        let mut queued = self.queued.borrow_mut();
        if let Some(q) = queued.get_mut(id) {
            if !*q {
                *q = true;
                self.ready.borrow_mut().push_back(id);
            }
        }
    }

    fn fire_timers(&self, now: Instant) {
        loop {
            let due = {
                let mut timers = self.timers.borrow_mut();
                match timers.peek() {
                    Some(t) if t.at <= now => timers.pop(),
                    _ => None,
                }
            };
            match due {
                Some(t) => t.waker.wake(),
                None => break,
            }
        }
    }
}

// A waker is a task number: no allocation, no reference count.
static VTABLE: RawWakerVTable = RawWakerVTable::new(clone_raw, wake_raw, wake_raw, drop_raw);

fn task_waker(id: usize) -> Waker {
    // SAFETY: the vtable functions treat the data pointer as a number only.
    unsafe { Waker::from_raw(RawWaker::new(id as *const (), &VTABLE)) }
}

fn clone_raw(p: *const ()) -> RawWaker {
    RawWaker::new(p, &VTABLE)
}

fn wake_raw(p: *const ()) {
    CURRENT.with(|c| {
        if let Some(sh) = c.borrow().as_ref() {
            sh.schedule(p as usize);
        }
    });
}

fn drop_raw(_: *const ()) {}

struct Timer {
    at: Instant,
    seq: u64,
    waker: Waker,
}

impl PartialEq for Timer {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Timer {}
impl PartialOrd for Timer {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Timer {
    /// Reversed: the heap's top is the earliest timer.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// Completes at `at`. Dropping it early leaves its timer in the heap, where
/// it costs one spurious wakeup of its task later.
pub struct Sleep {
    at: Instant,
    armed: bool,
}

pub fn sleep(d: Duration) -> Sleep {
    sleep_until(Instant::now() + d)
}

pub fn sleep_until(at: Instant) -> Sleep {
    Sleep { at, armed: false }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            return Poll::Ready(());
        }
        if !self.armed {
            let sh = current();
            let seq = sh.timer_seq.get();
            sh.timer_seq.set(seq + 1);
            sh.timers.borrow_mut().push(Timer {
                at: self.at,
                seq,
                waker: cx.waker().clone(),
            });
            self.armed = true;
        }
        Poll::Pending
    }
}

/// Readiness of one socket, set by events, cleared when an operation would
/// block (or a read came back short).
struct IoState {
    readable: Cell<bool>,
    /// The peer closed (or the socket failed): no edge will follow, so reads
    /// stay ready until they return 0 or the error.
    read_closed: Cell<bool>,
    writable: Cell<bool>,
    reader: Cell<Option<Waker>>,
    writer: Cell<Option<Waker>>,
}

/// A nonblocking TCP connection registered (edge-triggered) with this
/// thread's reactor.
pub struct TcpStream {
    sock: mio::net::TcpStream,
    token: usize,
    state: Rc<IoState>,
    sh: Rc<Shared>,
}

impl TcpStream {
    /// Connects within `timeout`.
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        let s = TcpStream::register(mio::net::TcpStream::connect(addr)?)?;
        let connected = async {
            poll_fn(|cx| s.poll_writable(cx)).await;
            Ok(())
        };
        let expired = async {
            sleep(timeout).await;
            Err(io::Error::from(io::ErrorKind::TimedOut))
        };
        futures_lite::future::or(connected, expired).await?;
        if let Some(e) = s.sock.take_error()? {
            return Err(e);
        }
        s.sock.peer_addr()?;
        Ok(s)
    }

    fn register(mut sock: mio::net::TcpStream) -> io::Result<TcpStream> {
        let sh = current();
        let state = Rc::new(IoState {
            readable: Cell::new(false),
            read_closed: Cell::new(false),
            writable: Cell::new(false),
            reader: Cell::new(None),
            writer: Cell::new(None),
        });
        let token = {
            let mut io = sh.io.borrow_mut();
            match sh.free.borrow_mut().pop() {
                Some(t) => {
                    io[t] = Some(state.clone());
                    t
                }
                None => {
                    io.push(Some(state.clone()));
                    io.len() - 1
                }
            }
        };
        if let Err(e) = sh.registry.register(
            &mut sock,
            Token(token),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            sh.io.borrow_mut()[token] = None;
            sh.free.borrow_mut().push(token);
            return Err(e);
        }
        Ok(TcpStream {
            sock,
            token,
            state,
            sh,
        })
    }

    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.sock.set_nodelay(on)
    }

    fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.state.writable.get() {
            return Poll::Ready(());
        }
        self.state.writer.set(Some(cx.waker().clone()));
        Poll::Pending
    }

    /// Takes one unit of the task's budget; when it is spent, reschedules
    /// the task and says to yield.
    fn spend(&self, cx: &mut Context<'_>) -> bool {
        match self.sh.budget.get() {
            0 => {
                cx.waker().wake_by_ref();
                false
            }
            b => {
                self.sh.budget.set(b - 1);
                true
            }
        }
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if !self.spend(cx) {
            return Poll::Pending;
        }
        loop {
            if !self.state.readable.get() {
                self.state.reader.set(Some(cx.waker().clone()));
                return Poll::Pending;
            }
            match (&self.sock).read(buf) {
                Ok(n) => {
                    // A short read drained the socket: whatever comes next
                    // raises a new edge (unless the peer closed already).
                    if n > 0 && n < buf.len() && !self.state.read_closed.get() {
                        self.state.readable.set(false);
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.state.readable.set(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if !self.spend(cx) {
            return Poll::Pending;
        }
        loop {
            if !self.state.writable.get() {
                self.state.writer.set(Some(cx.waker().clone()));
                return Poll::Pending;
            }
            match (&self.sock).write(buf) {
                Ok(n) => {
                    if n < buf.len() {
                        self.state.writable.set(false);
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.state.writable.set(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Reads what is there (at least one byte, or 0 at end of stream).
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_read(cx, buf)).await
    }

    pub async fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match poll_fn(|cx| self.poll_write(cx, buf)).await? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => buf = &buf[n..],
            }
        }
        Ok(())
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        let _ = self.sh.registry.deregister(&mut self.sock);
        self.sh.io.borrow_mut()[self.token] = None;
        self.sh.free.borrow_mut().push(self.token);
    }
}

/// Pins the calling thread to `cpu`.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET checks the
    // index against the set's size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_timers_and_refused_connects() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 64];
            // Echo two messages, the second one late.
            let n = s.read(&mut buf).unwrap();
            s.write_all(&buf[..n]).unwrap();
            let n = s.read(&mut buf).unwrap();
            std::thread::sleep(Duration::from_millis(30));
            s.write_all(&buf[..n]).unwrap();
        });
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let log = Rc::new(RefCell::new(Vec::new()));
        let (l1, l2, l3) = (log.clone(), log.clone(), log.clone());
        let echo: Task = Box::pin(async move {
            let mut s = TcpStream::connect(addr, Duration::from_secs(5))
                .await
                .unwrap();
            s.set_nodelay(true).unwrap();
            let mut buf = [0u8; 64];
            for msg in [&b"one"[..], b"two"] {
                s.write_all(msg).await.unwrap();
                let n = s.read(&mut buf).await.unwrap();
                assert_eq!(&buf[..n], msg);
                l1.borrow_mut().push("echo");
            }
            assert_eq!(s.read(&mut buf).await.unwrap(), 0);
        });
        let refused: Task = Box::pin(async move {
            let r = TcpStream::connect(closed, Duration::from_secs(5)).await;
            assert!(r.is_err());
            l2.borrow_mut().push("refused");
        });
        let timer: Task = Box::pin(async move {
            let t = Instant::now();
            sleep(Duration::from_micros(1500)).await;
            assert!(t.elapsed() >= Duration::from_micros(1500));
            l3.borrow_mut().push("timer");
        });
        let forever: Task = Box::pin(std::future::pending());
        Runtime::new()
            .unwrap()
            .block_on(vec![echo, refused, timer], vec![forever])
            .unwrap();
        server.join().unwrap();
        let mut log = log.borrow().clone();
        log.sort();
        assert_eq!(log, ["echo", "echo", "refused", "timer"]);
    }

    #[test]
    fn a_socket_that_always_has_data_does_not_starve_timers() {
        const TOTAL: usize = 64 << 20;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let chunk = vec![7u8; 1 << 20];
            for _ in 0..TOTAL / chunk.len() {
                if s.write_all(&chunk).is_err() {
                    break;
                }
            }
        });
        let got = Rc::new(Cell::new(0usize));
        let seen_at_timer = Rc::new(Cell::new(None));
        let (g1, g2, seen) = (got.clone(), got.clone(), seen_at_timer.clone());
        let reader: Task = Box::pin(async move {
            let mut s = TcpStream::connect(addr, Duration::from_secs(5))
                .await
                .unwrap();
            let mut buf = [0u8; 512];
            loop {
                match s.read(&mut buf).await.unwrap() {
                    0 => break,
                    n => g1.set(g1.get() + n),
                }
            }
        });
        let timer: Task = Box::pin(async move {
            sleep(Duration::from_millis(2)).await;
            seen.set(Some(g2.get()));
        });
        Runtime::new()
            .unwrap()
            .block_on(vec![reader, timer], vec![])
            .unwrap();
        server.join().unwrap();
        assert_eq!(got.get(), TOTAL);
        assert!(seen_at_timer.get().is_some_and(|n| n < TOTAL));
    }
}
