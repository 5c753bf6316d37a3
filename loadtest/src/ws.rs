//! WebSocket subscribers: connect to `/api/ws`, subscribe, and time every
//! `state_update` of `_lt_sent_us` against the send time it carries.
//!
//! A subscriber may receive millions of updates per second, so the reader is
//! our own (the frame codec is `flux_devclient::ws`, shared with the
//! integration tests; the message scanner is `wsproto`): one large
//! read into a buffer allocated once, every complete frame in it decoded in
//! place, one clock read and one stats borrow per read rather than per
//! message, and only pongs and close frames ever written.

use crate::config::Config;
use crate::conn::Shared;
use crate::rt::{self, TcpStream};
use crate::schedule::Nanos;
use crate::stats::Stats;
use crate::wsproto::{self, WsMsg};
use flux_devclient::ws::{self as proto, Part, Sequence, Upgrade};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often a subscriber checks whether the run asked it to stop.
const STOP_POLL: Duration = Duration::from_millis(50);
/// Bytes of a refused upgrade's body quoted in the error.
const REFUSAL_BODY_QUOTE_MAX: usize = 200;
/// Read buffer per subscriber, allocated once: one read takes up to this much
/// (hundreds of updates); it grows only for a single larger frame, up to
/// [`proto::MESSAGE_BYTES_MAX`].
const READ_BUF_BYTES: usize = 256 * 1024;
/// How long the closing frame may take to write.
const CLOSE_WRITE_MAX: Duration = Duration::from_millis(200);
/// Close code of the server's slow-consumer close.
const CLOSE_POLICY: u16 = 1008;

/// An upgraded connection, with the bytes read past the handshake.
pub struct Ws {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// A fragmented message being assembled.
    fragments: Vec<u8>,
    /// Where the server's frames stand among fragmented messages.
    seq: Sequence,
    /// Frames to send (pongs, close).
    out: Vec<u8>,
    mask: u32,
}

impl Ws {
    fn next_mask(&mut self) -> [u8; 4] {
        // xorshift: masks need not be secret for a load tester, only varied.
        self.mask ^= self.mask << 13;
        self.mask ^= self.mask >> 17;
        self.mask ^= self.mask << 5;
        self.mask.to_be_bytes()
    }

    fn queue(&mut self, opcode: u8, payload: &[u8]) {
        let mask = self.next_mask();
        proto::encode_client_frame(&mut self.out, true, opcode, payload, mask);
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let r = self.stream.write_all(&self.out).await;
        self.out.clear();
        r
    }
}

/// Opens a subscriber and sends its subscriptions. A refused upgrade (for
/// example a 404 from a server without WebSocket support) is an error whose
/// text says so.
pub async fn connect(
    cfg: &Config,
    target: usize,
    addr: SocketAddr,
    subscriptions: &[String],
) -> Result<Ws, String> {
    let target = &cfg.targets[target];
    let url = format!("ws://{}{}/api/ws", target.authority, target.base_path);
    let handshake = async {
        let stream = TcpStream::connect(addr, cfg.timeout)
            .await
            .map_err(|e| format!("WebSocket connect to {url} failed: {e}"))?;
        let _ = stream.set_nodelay(true);
        let key = handshake_key();
        let mut ws = Ws {
            stream,
            buf: vec![0; READ_BUF_BYTES],
            start: 0,
            end: 0,
            fragments: Vec::new(),
            seq: Sequence::new(),
            out: proto::upgrade_request(
                &target.authority,
                &target.base_path,
                &key,
                cfg.token.as_deref(),
            ),
            mask: 0x9E37_79B9 ^ addr.port() as u32 ^ std::process::id(),
        };
        ws.flush()
            .await
            .map_err(|e| format!("WebSocket handshake with {url} failed: {e}"))?;
        upgrade(&mut ws, &proto::accept_key(&key), &url).await?;
        for id in subscriptions {
            ws.queue(proto::OP_TEXT, wsproto::subscribe_message(id).as_bytes());
        }
        ws.flush()
            .await
            .map_err(|e| format!("sending subscribe to {url} failed: {e}"))?;
        Ok(ws)
    };
    let timeout = async {
        rt::sleep(cfg.timeout).await;
        Err(format!("WebSocket handshake with {url} timed out"))
    };
    futures_lite::future::or(handshake, timeout).await
}

/// A `Sec-WebSocket-Key` that differs between subscribers and runs (a nonce,
/// not a secret).
fn handshake_key() -> String {
    static SUBSCRIBERS: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let n = SUBSCRIBERS.fetch_add(1, Ordering::Relaxed);
    proto::key_from_seed(now ^ (u64::from(std::process::id()) << 40) ^ n.rotate_right(8))
}

/// Reads the answer to the upgrade; frames already read stay in the buffer.
async fn upgrade(ws: &mut Ws, accept: &str, url: &str) -> Result<(), String> {
    let failed = |e: std::io::Error| format!("WebSocket handshake with {url} failed: {e}");
    loop {
        match proto::parse_upgrade(&ws.buf[..ws.end], accept).map_err(|e| e.to_string())? {
            Some(Upgrade::Accepted { head_len }) => {
                ws.start = head_len;
                return Ok(());
            }
            Some(Upgrade::Refused {
                status,
                reason,
                head_len,
                body_len,
            }) => {
                let want = head_len + body_len.min(REFUSAL_BODY_QUOTE_MAX);
                while ws.end < want {
                    match ws.stream.read(&mut ws.buf[ws.end..want]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => ws.end += n,
                    }
                }
                let body = &ws.buf[head_len..ws.end.min(want)];
                return Err(format!(
                    "the server refused the WebSocket upgrade of {url}: HTTP {status} {reason} {}",
                    String::from_utf8_lossy(body).trim()
                ));
            }
            None => {}
        }
        if ws.end >= proto::UPGRADE_HEAD_BYTES_MAX {
            return Err(format!("WebSocket handshake with {url}: head too large"));
        }
        let end = ws.end;
        match ws
            .stream
            .read(&mut ws.buf[end..proto::UPGRADE_HEAD_BYTES_MAX])
            .await
        {
            Ok(0) => return Err(format!("{url} closed the connection during the upgrade")),
            Ok(n) => ws.end += n,
            Err(e) => return Err(failed(e)),
        }
    }
}

/// Why a subscriber stopped reading.
enum End {
    Stopped,
    Closed(u16),
    Eof,
    Error,
}

/// Reads updates until the server closes or `stop` is set.
pub async fn run(sh: &Shared, mut ws: Ws, stop: Arc<AtomicBool>) {
    let mut stop_poll = Box::pin(async {
        while !stop.load(Ordering::Acquire) {
            rt::sleep(STOP_POLL).await;
        }
    });
    let end = loop {
        // The timer below only fires when the thread gets around to its
        // timers; a subscriber that always has data checks the flag here.
        if stop.load(Ordering::Acquire) {
            break End::Stopped;
        }
        // Frames that arrived with the upgrade answer come first.
        match handle_frames(sh, &mut ws) {
            Ok(Some(code)) => break End::Closed(code),
            Ok(None) => {}
            Err(()) => break End::Error,
        }
        if ws.flush().await.is_err() {
            break End::Error;
        }
        let Ws {
            stream,
            buf,
            start,
            end,
            ..
        } = &mut ws;
        let spare = match spare(buf, start, end) {
            Ok(s) => s,
            Err(_) => break End::Error,
        };
        let room = spare.len();
        let read = futures_lite::future::or(async { Some(stream.read(spare).await) }, async {
            (&mut stop_poll).await;
            None
        })
        .await;
        let n = match read {
            None => break End::Stopped,
            Some(Ok(0)) => break End::Eof,
            Some(Ok(n)) => n,
            Some(Err(_)) => break End::Error,
        };
        *end += n;
        if n == room {
            // A full read: more is likely waiting and the next read would
            // not wait either. Let the thread's other tasks (publishers,
            // other subscribers, the reporter) run first.
            futures_lite::future::yield_now().await;
        }
    };
    {
        let mut st = sh.stats.borrow_mut();
        match end {
            End::Stopped => {}
            End::Closed(CLOSE_POLICY) => st.ws.slow_consumer_closes += 1,
            End::Closed(_) | End::Eof => st.ws.other_closes += 1,
            End::Error => st.ws.errors += 1,
        }
    }
    if !matches!(end, End::Eof | End::Error) {
        // Answer the server's close, or close ourselves (1000, normal).
        // Bounded: a server that stopped reading must not hold the run.
        let mask = ws.next_mask();
        proto::encode_close(&mut ws.out, 1000, b"", mask);
        let flush = async {
            let _ = ws.flush().await;
        };
        futures_lite::future::or(flush, rt::sleep(CLOSE_WRITE_MAX)).await;
    }
}

/// Room to read into: moves a partial frame to the front, and grows the
/// buffer when that frame alone does not fit. Takes the buffer fields alone,
/// so that the stream can be borrowed at the same time.
fn spare<'a>(
    buf: &'a mut Vec<u8>,
    start: &mut usize,
    end: &mut usize,
) -> Result<&'a mut [u8], String> {
    if *start == *end {
        *start = 0;
        *end = 0;
    }
    let need = match proto::frame_header(&buf[*start..*end]).map_err(|e| e.to_string())? {
        Some(f) => f.end(),
        None => 0,
    };
    if *end == buf.len() || *start + need > buf.len() {
        buf.copy_within(*start..*end, 0);
        *end -= *start;
        *start = 0;
    }
    if need > buf.len() {
        buf.resize(need, 0);
    }
    Ok(&mut buf[*end..])
}

/// Handles every complete frame in the buffer. `Ok(Some(code))` when the
/// server closed; `Err` on a protocol error.
fn handle_frames(sh: &Shared, ws: &mut Ws) -> Result<Option<u16>, ()> {
    let now = sh.clock.now();
    let mut st = sh.stats.borrow_mut();
    loop {
        let data = &ws.buf[ws.start..ws.end];
        let frame = match proto::frame_header(data) {
            Ok(Some(f)) if f.end() <= data.len() => f,
            Ok(_) => return Ok(None),
            Err(_) => return Err(()),
        };
        let (from, to) = (ws.start + frame.payload_at, ws.start + frame.end());
        ws.start = to;
        let part = ws.seq.next(&frame).map_err(|_| ())?;
        match part {
            Part::Whole if frame.opcode == proto::OP_TEXT => {
                on_text(sh, &mut st, &ws.buf[from..to], now);
            }
            Part::Whole => st.ws.other_messages += 1,
            Part::First | Part::Continuation { .. } => {
                if ws.fragments.len() + frame.len > proto::MESSAGE_BYTES_MAX {
                    return Err(());
                }
                ws.fragments.extend_from_slice(&ws.buf[from..to]);
                if let Part::Continuation { opcode, last: true } = part {
                    if opcode == proto::OP_TEXT {
                        on_text(sh, &mut st, &ws.fragments, now);
                    } else {
                        st.ws.other_messages += 1;
                    }
                    ws.fragments.clear();
                }
            }
            Part::Control => match frame.opcode {
                proto::OP_PING => {
                    let mask = ws.next_mask();
                    let payload = &ws.buf[from..to];
                    proto::encode_client_frame(&mut ws.out, true, proto::OP_PONG, payload, mask);
                }
                proto::OP_CLOSE => return Ok(Some(proto::close_code(&ws.buf[from..to]))),
                _ => {}
            },
        }
    }
}

fn on_text(sh: &Shared, st: &mut Stats, text: &[u8], now: Nanos) {
    st.ws.bytes += text.len() as u64;
    match wsproto::classify(text) {
        WsMsg::StateUpdate { sent_us } => {
            st.ws.updates += 1;
            if let Some(sent_us) = sent_us {
                record_latency(sh, st, sent_us, now);
            }
        }
        WsMsg::Other => st.ws.other_messages += 1,
        WsMsg::Bad => st.ws.bad_messages += 1,
    }
}

fn record_latency(sh: &Shared, st: &mut Stats, sent_us: u64, now: Nanos) {
    // Updates from before this run (another publisher's) are not ours.
    let Some(sent) = sh.clock.run_time_of_unix_us(sent_us) else {
        return;
    };
    st.ws.tagged_updates += 1;
    if sh.measured(sent) {
        st.ws
            .latency
            .saturating_record(now.saturating_sub(sent) / 1_000);
    }
}
