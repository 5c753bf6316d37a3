//! Cross-shard messages. All cross-shard traffic goes through this module: a request
//! goes over a bounded glommio channel mesh to the owning shard, and the answer comes
//! back on a oneshot channel (glommio wakes the waiting task across threads). Work for
//! the local shard never comes here.
//!
//! The shard's own operations (apply, hold, get, page, count) are typed variants; the
//! features above this layer (history, deletion, WebSocket bookkeeping, metrics) send
//! a closure that runs on the receiving shard ([`Request::Run`], like Seastar's
//! `submit_to`), so that this layer names none of their types.

use std::rc::Rc;

use futures_channel::oneshot;
use glommio::channels::channel_mesh::{Receivers, Senders};

use super::{Shard, ShardId};
use crate::event::EventBatch;
use crate::state::{Page, PageQuery};

/// What a shard can be asked by another.
pub enum Request {
    /// Log and apply these records (owned by the receiver) in order; answer when
    /// applied, or once durable if `sync`. A part of a committed cross-shard batch
    /// (`batch.txn`) is applied whatever happens (see `txn`).
    Apply {
        batch: EventBatch,
        sync: bool,
        reply: oneshot::Sender<Result<super::Applied, super::ApplyError>>,
    },
    /// Make room for a cross-shard part's frame of `len` payload bytes available to holds
    /// (`Shard::ensure_room`: the slow path of `txn`); the answer says whether it can
    /// be had, and why not.
    Hold {
        len: usize,
        reply: oneshot::Sender<Result<(), super::ApplyError>>,
    },
    /// Render entity `id` as JSON, or `None` if it does not exist.
    Get {
        id: Box<[u8]>,
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    /// One page of a listing.
    Page {
        query: PageQuery,
        reply: oneshot::Sender<Page>,
    },
    /// How many entities' ids start with `prefix` (`Shard::count_prefix`).
    Count {
        prefix: Box<[u8]>,
        reply: oneshot::Sender<u64>,
    },
    /// Work of a feature above this layer, run on the receiving shard's executor
    /// (it answers through whatever channel it captured). One allocation per message:
    /// none of these is on the ingest path.
    Run(Task),
}

/// A closure sent to run on another shard (`Request::Run`).
pub type Task = Box<dyn FnOnce(&Rc<Shard>) + Send>;

/// Why a cross-shard request got no answer: the peer is shutting down.
#[derive(Debug, Clone, Copy)]
pub struct Unavailable;

pub struct Mesh {
    senders: Senders<Request>,
}

impl Mesh {
    pub fn new(senders: Senders<Request>) -> Self {
        Mesh { senders }
    }

    pub async fn call<T>(
        &self,
        to: ShardId,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, Unavailable> {
        let (tx, rx) = oneshot::channel();
        self.senders
            .send_to(to.index(), make(tx))
            .await
            .map_err(|_| Unavailable)?;
        rx.await.map_err(|_| Unavailable)
    }

    /// Sends a batch without waiting for the answer, so that a request touching several
    /// shards waits for all of them at once.
    pub async fn send_apply(
        &self,
        to: ShardId,
        batch: EventBatch,
        sync: bool,
    ) -> Result<oneshot::Receiver<Result<super::Applied, super::ApplyError>>, Unavailable> {
        let (tx, rx) = oneshot::channel();
        self.senders
            .send_to(
                to.index(),
                Request::Apply {
                    batch,
                    sync,
                    reply: tx,
                },
            )
            .await
            .map_err(|_| Unavailable)?;
        Ok(rx)
    }

    /// Asks `to` to make room for a part of `len` bytes, without waiting for the answer.
    pub async fn send_hold(
        &self,
        to: ShardId,
        len: usize,
    ) -> Result<oneshot::Receiver<Result<(), super::ApplyError>>, Unavailable> {
        let (tx, rx) = oneshot::channel();
        self.senders
            .send_to(to.index(), Request::Hold { len, reply: tx })
            .await
            .map_err(|_| Unavailable)?;
        Ok(rx)
    }

    pub async fn get(&self, to: ShardId, id: &[u8]) -> Result<Option<Vec<u8>>, Unavailable> {
        self.call(to, |reply| Request::Get {
            id: id.into(),
            reply,
        })
        .await
    }

    pub async fn page(&self, to: ShardId, query: PageQuery) -> Result<Page, Unavailable> {
        self.call(to, |reply| Request::Page { query, reply }).await
    }

    /// Runs `f` on shard `to` and waits for what it sends back on its reply channel
    /// (it may answer later, from a task it spawns). `Unavailable` if the shard is
    /// going away or dropped the reply.
    pub async fn run<T: Send + 'static>(
        &self,
        to: ShardId,
        f: impl FnOnce(&Rc<Shard>, oneshot::Sender<T>) + Send + 'static,
    ) -> Result<T, Unavailable> {
        self.call(to, |reply| {
            Request::Run(Box::new(move |shard| f(shard, reply)))
        })
        .await
    }

    /// Runs `f` on shard `to` and waits for its result.
    pub async fn ask<T: Send + 'static>(
        &self,
        to: ShardId,
        f: impl FnOnce(&Rc<Shard>) -> T + Send + 'static,
    ) -> Result<T, Unavailable> {
        self.run(to, move |shard, reply| {
            let _ = reply.send(f(shard));
        })
        .await
    }

    pub fn close(&self) {
        self.senders.close();
    }
}

/// Splits the receiving side into one stream per peer.
pub fn streams(
    receivers: &mut Receivers<Request>,
) -> Vec<(
    usize,
    glommio::channels::shared_channel::ConnectedReceiver<Request>,
)> {
    receivers.streams()
}
