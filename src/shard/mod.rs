//! Shards: one pinned glommio executor each, owning a contiguous range of partitions,
//! the entities in them, and (with the log) their log.
//!
//! `placement` starts the executors; `router` is the pure id → shard mapping; `mesh` is
//! the only place where work crosses shards.

pub mod mesh;
pub mod placement;
pub mod router;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

pub use router::{shard_for, ShardId};

use crate::config::Config;
use crate::event::EventBatch;
use crate::ids::EventIdGen;
use crate::ingest::decode::Decoder;
use crate::state::{write_entity_json, Page, PageQuery, Store};
use crate::time;
use mesh::{Mesh, Request, Unavailable};

/// Process-wide flags shared by all shards.
#[derive(Default)]
pub struct Shared {
    /// Set once SIGINT/SIGTERM arrived: stop accepting, finish open requests.
    pub shutting_down: AtomicBool,
    /// Shards that have finished their own open requests after shutdown began. A shard
    /// keeps serving its peers until all have, since their requests may need it.
    pub drained: AtomicUsize,
}

/// Everything one shard owns. Lives in an `Rc` on its executor; never crosses threads.
pub struct Shard {
    pub id: ShardId,
    pub count: usize,
    pub config: Arc<Config>,
    pub shared: Arc<Shared>,
    pub store: RefCell<Store>,
    pub mesh: Mesh,
    /// JSON decoder state (simd-json buffers), reused by every request of this shard;
    /// decoding never awaits, so one is enough.
    pub decoder: RefCell<Decoder>,
    /// Open connections on this shard.
    pub connections: Cell<usize>,
    /// Requests of this shard's connections between head and response.
    pub in_flight: Cell<usize>,
    /// Event ids for events parsed on this shard.
    pub ids: RefCell<EventIdGen>,
}

impl Shard {
    pub fn new(
        id: ShardId,
        count: usize,
        config: Arc<Config>,
        shared: Arc<Shared>,
        mesh: Mesh,
    ) -> Rc<Self> {
        Rc::new(Shard {
            id,
            count,
            config,
            shared,
            store: RefCell::new(Store::default()),
            mesh,
            decoder: RefCell::new(Decoder::new()),
            connections: Cell::new(0),
            in_flight: Cell::new(0),
            ids: RefCell::new(EventIdGen::new(id.0)),
        })
    }

    #[inline]
    pub fn owner(&self, entity_id: &[u8]) -> ShardId {
        shard_for(entity_id, self.count)
    }

    pub fn shutting_down(&self) -> bool {
        self.shared.shutting_down.load(Ordering::Relaxed)
    }

    /// Applies records owned by this shard.
    pub fn apply_local(&self, batch: &mut EventBatch) {
        batch.stamp_ingest(time::now_ms());
        let mut store = self.store.borrow_mut();
        for r in batch.records() {
            debug_assert_eq!(
                self.owner(r.entity_id),
                self.id,
                "record routed to the wrong shard"
            );
            store.apply(&r);
        }
    }

    /// Renders entity `id` (owned by `owner`) into `out`; false if it does not exist.
    pub async fn get_entity(
        &self,
        owner: ShardId,
        id: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<bool, Unavailable> {
        if owner == self.id {
            let store = self.store.borrow();
            return Ok(match store.get(id) {
                Some(e) => {
                    write_entity_json(out, id, e);
                    true
                }
                None => false,
            });
        }
        match self.mesh.get(owner, id).await? {
            Some(json) => {
                out.extend_from_slice(&json);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// One listing page from shard `from`.
    pub async fn page(
        &self,
        from: ShardId,
        query: PageQuery,
        page: &mut Page,
    ) -> Result<(), Unavailable> {
        if from == self.id {
            self.store.borrow().page(&query, page);
            return Ok(());
        }
        *page = self.mesh.page(from, query).await?;
        Ok(())
    }

    /// Serves a request that another shard sent to this one.
    pub fn handle(&self, req: Request) {
        match req {
            Request::Apply { mut batch, reply } => {
                self.apply_local(&mut batch);
                let _ = reply.send(());
            }
            Request::Get { id, reply } => {
                debug_assert_eq!(self.owner(&id), self.id);
                let store = self.store.borrow();
                let json = store.get(&id).map(|e| {
                    let mut out = Vec::with_capacity(64 + e.props.len());
                    write_entity_json(&mut out, &id, e);
                    out
                });
                let _ = reply.send(json);
            }
            Request::Page { query, reply } => {
                let mut page = Page::default();
                self.store.borrow().page(&query, &mut page);
                let _ = reply.send(page);
            }
        }
    }
}
