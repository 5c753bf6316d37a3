//! Per-shard accept loop. Every shard listens on the same address (SO_REUSEPORT, set
//! by glommio's `TcpListener::bind`), so the kernel spreads connections over shards.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_lite::future;
use glommio::net::TcpListener;

use super::conn::{self, Conn};
use crate::shard::{Shard, ShardId};

/// How often a shard looks at the process-wide shutdown flag.
const SHUTDOWN_POLL_MS: u64 = 50;

async fn shutdown_requested(shard: &Shard) {
    while !shard.shutting_down() {
        glommio::timer::sleep(Duration::from_millis(SHUTDOWN_POLL_MS)).await;
    }
}

/// Binds, reports readiness (or the bind error) to the main thread, then accepts until
/// shutdown; then waits (bounded by the grace period) for open requests to finish.
pub async fn serve(shard: Rc<Shard>, ready: mpsc::Sender<Result<ShardId, String>>) {
    let addr = shard.config.listen_addr();
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot listen on {addr}: {e}")));
            return;
        }
    };
    let _ = ready.send(Ok(shard.id));
    drop(ready);

    // The accept future must be polled only when it has news: glommio's accept keeps
    // every waker it is polled with until a connection arrives (`add_waiter_many`),
    // and a task's waker count is an i16. Racing it against a polling timer re-polled
    // it every 50 ms and aborted an idle shard after ~27 minutes without a new
    // connection ("Waker invariant broken"). So the shutdown watch runs in its own
    // task and ends the accept through a oneshot, which wakes this task once.
    let (stop_tx, mut stop_rx) = futures_channel::oneshot::channel::<()>();
    let watcher = shard.clone();
    glommio::spawn_local(async move {
        shutdown_requested(&watcher).await;
        let _ = stop_tx.send(());
    })
    .detach();
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            let _ = (&mut stop_rx).await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => {
                if shard.connections.get() >= shard.config.max_connections_per_shard {
                    glommio::spawn_local(conn::reject_over_capacity(stream)).detach();
                    continue;
                }
                shard.connections.set(shard.connections.get() + 1);
                let s = shard.clone();
                glommio::spawn_local(async move {
                    Conn::new(s.clone(), stream).run().await;
                    s.connections.set(s.connections.get() - 1);
                })
                .detach();
            }
            Some(Err(e)) => {
                // EMFILE/ENFILE and friends: back off briefly instead of spinning.
                eprintln!("flux: shard {}: accept failed: {e}", shard.id.0);
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    drop(listener);
    let grace = Instant::now() + Duration::from_millis(shard.config.shutdown_grace_ms);
    while shard.in_flight.get() > 0 && Instant::now() < grace {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    shard.shared.drained.fetch_add(1, Ordering::SeqCst);
    while shard.shared.drained.load(Ordering::SeqCst) < shard.count && Instant::now() < grace {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
}
