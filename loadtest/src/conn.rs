//! One load connection: render requests into a reused buffer, send every due
//! request with one write, decode every buffered response, repeat. A task of
//! the worker thread's epoll loop (see `rt`).
//!
//! Closed loop: keep `--pipeline` requests in flight; latency from the actual
//! send. Open loop: send each request at its intended time (see
//! `schedule`), latency from that time, drop what is more than `--max-lag`
//! late. Failed connections are reopened (after [`RECONNECT_BACKOFF`]); the
//! requests they carried count as errors with an unknown outcome.

use crate::config::{Config, Op};
use crate::deadline::{Deadline, Watchdog};
use crate::http::ReadBuf;
use crate::ledger::{Ledger, Outcome, Recorder};
use crate::rt::{self, TcpStream};
use crate::schedule::{due, Due, Nanos, Pacer, Schedule};
use crate::stats::{Failure, Stats};
use crate::workload::{Generator, Workload, WriteRef};
use flux_devclient::http::Decoder;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Pause before reconnecting after a failed connect.
pub const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);

/// The run's time base: nanoseconds since `t0`, and Unix time for payloads.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    t0: Instant,
    unix_us_at_t0: u64,
}

impl Clock {
    pub fn new(t0: Instant) -> Clock {
        let since_t0 = t0.saturating_duration_since(Instant::now());
        let unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            + since_t0;
        Clock {
            t0,
            unix_us_at_t0: unix.as_micros() as u64,
        }
    }

    pub fn t0(&self) -> Instant {
        self.t0
    }

    pub fn now(&self) -> Nanos {
        Instant::now().saturating_duration_since(self.t0).as_nanos() as Nanos
    }

    pub fn unix_us(&self, t: Nanos) -> u64 {
        self.unix_us_at_t0 + t / 1_000
    }

    /// Run time of a Unix µs timestamp, `None` if before the run.
    pub fn run_time_of_unix_us(&self, us: u64) -> Option<Nanos> {
        us.checked_sub(self.unix_us_at_t0).map(|d| d * 1_000)
    }
}

/// What the connections of one worker thread share.
pub struct Shared {
    pub cfg: Arc<Config>,
    pub workload: Arc<Workload>,
    pub schedule: Option<Arc<Schedule>>,
    /// Every target's address (`--url`, in order); connection `i` uses `i % n`.
    pub addrs: Vec<SocketAddr>,
    pub clock: Clock,
    /// `Host` (and `Authorization`) header lines, per target.
    pub common: Vec<Vec<u8>>,
    pub stats: RefCell<Stats>,
    pub recorder: Option<RefCell<Recorder>>,
    /// Response and write timeouts of this thread's connections.
    pub watchdog: Watchdog,
}

impl Shared {
    /// Whether a request that started at `t` is in the measured window.
    pub fn measured(&self, t: Nanos) -> bool {
        t >= self.cfg.warmup.as_nanos() as Nanos && t < self.cfg.total().as_nanos() as Nanos
    }
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    op: Op,
    intended: Nanos,
    sent: Nanos,
    /// Entries of `Conn::writes` that belong to this request.
    events: usize,
}

enum Wait {
    Read(std::io::Result<usize>),
    Wake,
    Timeout,
}

struct Conn<'a> {
    sh: &'a Shared,
    /// Index of this connection's target in `Shared::addrs`.
    target: usize,
    w: &'a Workload,
    gen: Generator,
    pacer: Pacer,
    stream: Option<TcpStream>,
    /// Set while waiting: the oldest request's send time + `--timeout`.
    deadline: Rc<Deadline>,
    rbuf: ReadBuf,
    dec: Decoder,
    wbuf: Vec<u8>,
    inflight: VecDeque<InFlight>,
    /// Events of the requests in flight, in order (when tracked).
    writes: VecDeque<WriteRef>,
    ledger: Ledger,
    /// Keep per-event outcomes: for `--verify`/`--record`, or to count the
    /// events subscribers should see.
    keep_writes: bool,
    track: bool,
}

/// What issuing the due requests left to do.
struct Issued {
    /// Open loop: the next request's intended time, if a slot is free for it.
    wake: Option<Nanos>,
    /// No request will ever be issued again.
    exhausted: bool,
}

/// Runs connection `conn` until its part of the load is done; returns what
/// it had acknowledged (empty unless writes are tracked).
pub async fn run(sh: &Shared, conn: usize) -> Ledger {
    let cfg = &*sh.cfg;
    let end: Nanos = cfg.total().as_nanos() as Nanos;
    let timeout_ns = cfg.timeout.as_nanos() as Nanos;
    let mut c = Conn {
        sh,
        target: conn % sh.addrs.len(),
        w: &sh.workload,
        gen: Generator::new(&sh.workload, conn),
        pacer: Pacer::new(conn, cfg.connections),
        stream: None,
        deadline: sh.watchdog.register(),
        rbuf: ReadBuf::new(),
        dec: Decoder::new(),
        wbuf: Vec::with_capacity(64 * 1024),
        inflight: VecDeque::with_capacity(cfg.pipeline),
        writes: VecDeque::new(),
        ledger: Ledger::default(),
        keep_writes: cfg.tracks_writes() || cfg.subscribers > 0,
        track: cfg.tracks_writes(),
    };
    loop {
        let now = sh.clock.now();
        if c.stream.is_none() {
            let exhausted = match &sh.schedule {
                None => now >= end,
                Some(s) => c.pacer.next_intended(s).is_none(),
            };
            if exhausted || now >= end + timeout_ns {
                break;
            }
            c.connect(now).await;
            continue;
        }
        let issued = c.issue(now, end);
        if !c.wbuf.is_empty() && !c.send().await {
            continue;
        }
        if c.inflight.is_empty() {
            if issued.exhausted {
                break;
            }
            // Open loop, nothing in flight: sleep until the next request.
            let until = issued.wake.unwrap_or(now + 1_000_000);
            rt::sleep(Duration::from_nanos(until.saturating_sub(now))).await;
            continue;
        }
        let oldest = c.inflight.front().expect("in flight").sent;
        if now > oldest + timeout_ns {
            c.fail(Failure::Timeout);
            continue;
        }
        c.receive(now, issued.wake).await;
    }
    c.ledger
}

impl Conn<'_> {
    /// Renders every request that is due into `wbuf`, up to the pipeline
    /// depth; counts the ones too late to send.
    fn issue(&mut self, now: Nanos, end: Nanos) -> Issued {
        let (sh, w) = (self.sh, self.w);
        let cfg = &*sh.cfg;
        while self.inflight.len() < cfg.pipeline {
            let intended = match &sh.schedule {
                None if now >= end => {
                    return Issued {
                        wake: None,
                        exhausted: true,
                    }
                }
                None => now,
                Some(s) => match self.pacer.next_intended(s) {
                    None => {
                        return Issued {
                            wake: None,
                            exhausted: true,
                        }
                    }
                    Some(t) => match due(t, now, cfg.max_lag) {
                        Due::Later(t) => {
                            return Issued {
                                wake: Some(t),
                                exhausted: false,
                            }
                        }
                        Due::Drop => {
                            let mut st = sh.stats.borrow_mut();
                            if sh.measured(t) {
                                st.dropped += 1;
                            } else {
                                st.warmup_requests += 1;
                            }
                            self.pacer.advance(w.units(self.gen.peek_op()));
                            self.gen.skip(w);
                            continue;
                        }
                        Due::Send => t,
                    },
                },
            };
            self.pacer.advance(w.units(self.gen.peek_op()));
            let sent_us = sh.clock.unix_us(intended);
            let planned = self
                .gen
                .render(w, &mut self.wbuf, &sh.common[self.target], sent_us);
            if let Some(rec) = &sh.recorder {
                let mut rec = rec.borrow_mut();
                for wr in &self.gen.writes {
                    rec.send(w, wr);
                }
            }
            let mut events = 0;
            if self.keep_writes {
                self.writes.extend(self.gen.writes.iter().copied());
                events = planned.events;
            }
            self.inflight.push_back(InFlight {
                op: planned.op,
                intended,
                sent: now,
                events,
            });
        }
        Issued {
            wake: None,
            exhausted: false,
        }
    }

    /// Waits for response bytes (or, with a free slot, for the next
    /// request's time) and handles what arrived.
    async fn receive(&mut self, now: Nanos, wake: Option<Nanos>) {
        let oldest = self.inflight.front().expect("in flight").sent;
        self.deadline
            .arm(oldest + self.sh.cfg.timeout.as_nanos() as Nanos);
        let deadline = &*self.deadline;
        let stream = self.stream.as_mut().expect("connected");
        let spare = self.rbuf.spare();
        let read = async { Wait::Read(stream.read(spare).await) };
        let expired = async {
            deadline.expired().await;
            Wait::Timeout
        };
        let event = match wake {
            Some(t) => {
                let d = Duration::from_nanos(t.saturating_sub(now));
                let sleep = async {
                    rt::sleep(d).await;
                    Wait::Wake
                };
                futures_lite::future::or(read, futures_lite::future::or(expired, sleep)).await
            }
            None => futures_lite::future::or(read, expired).await,
        };
        self.deadline.disarm();
        match event {
            Wait::Wake => {}
            Wait::Timeout => self.fail(Failure::Timeout),
            Wait::Read(Ok(0)) => {
                if let Ok(Some(resp)) = self.dec.eof() {
                    self.complete(resp.status, self.sh.clock.now());
                }
                self.fail(Failure::Io);
            }
            Wait::Read(Ok(n)) => {
                self.rbuf.filled(n);
                self.sh.stats.borrow_mut().bytes_received += n as u64;
                self.decode_responses();
            }
            Wait::Read(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                self.fail(Failure::Timeout)
            }
            Wait::Read(Err(_)) => self.fail(Failure::Io),
        }
    }

    async fn connect(&mut self, now: Nanos) {
        let cfg = &*self.sh.cfg;
        match TcpStream::connect(self.sh.addrs[self.target], cfg.timeout).await {
            Ok(s) => {
                // Requests are written whole; Nagle would only add delay.
                let _ = s.set_nodelay(true);
                // No socket timeouts: the watchdog times requests out (see
                // `deadline`), without a reactor timer per read.
                self.rbuf.clear();
                self.dec = Decoder::new();
                self.stream = Some(s);
            }
            Err(_) => {
                let measured = self.sh.measured(now);
                self.sh
                    .stats
                    .borrow_mut()
                    .record_failure(Failure::Connect, 1, measured);
                rt::sleep(RECONNECT_BACKOFF).await;
            }
        }
    }

    /// Writes the rendered requests (after their `send` records); false if
    /// the connection failed.
    async fn send(&mut self) -> bool {
        if let Some(rec) = &self.sh.recorder {
            if let Err(e) = rec.borrow_mut().flush() {
                fatal_record_error(e);
            }
        }
        self.deadline
            .arm(self.sh.clock.now() + self.sh.cfg.timeout.as_nanos() as Nanos);
        let deadline = &*self.deadline;
        let stream = self.stream.as_mut().expect("connected");
        let write = async { Some(stream.write_all(&self.wbuf).await) };
        let expired = async {
            deadline.expired().await;
            None
        };
        let r = futures_lite::future::or(write, expired)
            .await
            .unwrap_or_else(|| Err(std::io::ErrorKind::TimedOut.into()));
        self.deadline.disarm();
        let len = self.wbuf.len() as u64;
        self.wbuf.clear();
        match r {
            Ok(()) => {
                self.sh.stats.borrow_mut().bytes_sent += len;
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                self.fail(Failure::Timeout);
                false
            }
            Err(_) => {
                self.fail(Failure::Io);
                false
            }
        }
    }

    fn decode_responses(&mut self) {
        let done = self.sh.clock.now();
        loop {
            match self.dec.decode(self.rbuf.data()) {
                Ok((used, Some(resp))) => {
                    self.rbuf.consume(used);
                    if self.inflight.is_empty() {
                        // A response nobody asked for.
                        self.fail(Failure::Protocol);
                        return;
                    }
                    self.complete(resp.status, done);
                    if resp.close {
                        self.fail(Failure::Io);
                        break;
                    }
                }
                Ok((0, None)) => break,
                Ok((used, None)) => self.rbuf.consume(used),
                Err(_) => {
                    self.fail(Failure::Protocol);
                    break;
                }
            }
        }
        self.flush_record();
    }

    /// The oldest request got its response.
    fn complete(&mut self, status: u16, done: Nanos) {
        let sh = self.sh;
        let Some(req) = self.inflight.pop_front() else {
            return;
        };
        let measured = sh.measured(req.intended);
        let mut stats = sh.stats.borrow_mut();
        let events = if req.op.writes() {
            sh.workload.units(req.op)
        } else {
            0
        };
        stats.record_response(
            req.op,
            req.intended,
            req.sent,
            done,
            status,
            events,
            measured,
        );
        let outcome = Outcome::of_status(status);
        for _ in 0..req.events {
            let wr = self.writes.pop_front().expect("writes of a request");
            if outcome == Outcome::Acked && self.w.subscribed(wr.entity) {
                stats.acked_subscribed += 1;
            }
            self.settle(&wr, outcome);
        }
    }

    fn settle(&mut self, wr: &WriteRef, outcome: Outcome) {
        if !self.track {
            return;
        }
        self.ledger.outcome(wr, outcome);
        if let Some(rec) = &self.sh.recorder {
            rec.borrow_mut().outcome(self.w, wr, outcome);
        }
    }

    /// Closes the connection; everything in flight failed for `why`.
    fn fail(&mut self, why: Failure) {
        self.stream = None;
        self.rbuf.clear();
        self.dec = Decoder::new();
        while let Some(req) = self.inflight.pop_front() {
            let measured = self.sh.measured(req.intended);
            self.sh.stats.borrow_mut().record_failure(why, 1, measured);
            for _ in 0..req.events {
                let wr = self.writes.pop_front().expect("writes of a request");
                self.settle(&wr, Outcome::Unknown);
            }
        }
        debug_assert!(self.writes.is_empty());
        self.flush_record();
    }

    fn flush_record(&mut self) {
        if let Some(rec) = &self.sh.recorder {
            if let Err(e) = rec.borrow_mut().flush() {
                fatal_record_error(e);
            }
        }
    }
}

/// A record with holes would make `--verify-from` report false mismatches:
/// better to stop the run.
#[cold]
fn fatal_record_error(e: std::io::Error) -> ! {
    eprintln!("flux-loadtest: writing the --record file failed: {e}");
    std::process::exit(2);
}
