//! Typed cross-shard messages. All cross-shard traffic goes through this module: a
//! request goes over a bounded glommio channel mesh to the owning shard, and the answer
//! comes back on a oneshot channel (glommio wakes the waiting task across threads).
//! Work for the local shard never comes here.

use futures_channel::oneshot;
use glommio::channels::channel_mesh::{Receivers, Senders};

use super::ShardId;
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
    /// Make room for a cross-shard part of `len` record bytes available to holds
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
    /// One page of an entity's history, or `None` if it does not exist.
    History {
        query: crate::api::history::HistoryQuery,
        reply: oneshot::Sender<Option<crate::api::history::HistoryPage>>,
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
    /// WebSocket subscription bookkeeping (`ws`).
    Ws(crate::ws::WsMsg),
    /// Deletions (`api::delete`).
    Delete(crate::api::delete::DeleteMsg),
    /// This shard's histograms, for `/metrics`.
    Metrics {
        reply: oneshot::Sender<crate::metrics::Snapshot>,
    },
}

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

    pub async fn history(
        &self,
        to: ShardId,
        query: crate::api::history::HistoryQuery,
    ) -> Result<Option<crate::api::history::HistoryPage>, Unavailable> {
        self.call(to, |reply| Request::History { query, reply })
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
