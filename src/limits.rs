//! Named limits. Each says what happens when it is hit; the HTTP parser's own limits
//! (header block, URI, header count) live in `http::parse`.

/// Largest body of `POST /api/events`; above it the request gets 413 without the body
/// being read (DECISIONS.md). Runtime-configurable later (auth issue); this is the default.
pub const BODY_SINGLE_BYTES_MAX: usize = 1024 * 1024;
/// Largest body of `POST /api/events/batch` (413 above it).
pub const BODY_BATCH_BYTES_MAX: usize = 10 * 1024 * 1024;
/// Largest body of any other endpoint that takes one (batch delete, admin): 1 MiB.
pub const BODY_OTHER_BYTES_MAX: usize = 1024 * 1024;

/// Events in one batch request. A 10 MiB body cannot hold more than ~100k minimal events;
/// the bound keeps per-request bookkeeping (results array) finite. Over it: 400.
pub const BATCH_EVENTS_MAX: usize = 100_000;

/// Properties in one event, by default (`FLUX_MAX_PROPERTIES_PER_EVENT`). An event with
/// more is a 400 (in a batch: that event's error, and nothing of the batch is applied),
/// checked from the JSON tape before any property is looked at. It bounds the work of
/// one event's merge and the state updates it fans out.
pub const PROPERTIES_PER_EVENT_DEFAULT: usize = 10_000;
/// The largest value `FLUX_MAX_PROPERTIES_PER_EVENT` accepts.
pub const PROPERTIES_PER_EVENT_MAX: usize = 1_000_000;

/// A batch body at least this large gives other requests a turn (glommio's
/// `yield_if_needed`, which yields once the shard's 10 ms time slice is spent) between
/// being decoded and being applied, so that the shard's longest uninterrupted step is
/// one of the two, not both (tuning.md, "Worst-case request bodies"). Smaller batches
/// never pay for it.
pub const BATCH_YIELD_BYTES_MIN: usize = 256 * 1024;

/// Open connections per shard. Past it a new connection is answered 503 and closed at
/// once, so a flood of sockets cannot exhaust memory or file descriptors.
pub const CONNECTIONS_PER_SHARD_MAX: usize = 10_000;

/// Time allowed from the first byte of a request until its head is complete. A slow
/// client (slowloris) is answered 408 and closed when it runs out.
pub const HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Time allowed for a request body to arrive once the head is complete (408 after).
pub const BODY_READ_TIMEOUT_MS: u64 = 30_000;
/// A kept-alive connection with no request in progress is closed after this.
pub const IDLE_TIMEOUT_MS: u64 = 60_000;
/// A response write that makes no progress for this long closes the connection.
pub const WRITE_TIMEOUT_MS: u64 = 30_000;

/// Initial read buffer per connection; it grows only up to the request being read
/// (head limit + body limit) and shrinks back after a large request.
pub const READ_BUF_BYTES: usize = 16 * 1024;
/// A connection's buffers are shrunk back to their initial size when a request left
/// them larger than this, so that one 10 MiB batch does not pin 10 MiB per idle socket.
pub const BUF_RETAIN_BYTES_MAX: usize = 256 * 1024;
/// Responses are flushed to the socket once this many bytes are queued (listings).
pub const WRITE_FLUSH_BYTES: usize = 64 * 1024;

/// Capacity of each cross-shard channel (messages). A full channel makes the sending
/// connection wait, which is how overload turns into TCP backpressure.
pub const MESH_CHANNEL_CAPACITY: usize = 1024;

/// Entities per page when a listing is gathered from the shards; bounds the memory of
/// one listing to about shards × this × entity size.
pub const LIST_PAGE_ENTITIES: usize = 256;
/// Bytes per listing page, whichever bound is hit first.
pub const LIST_PAGE_BYTES: usize = 256 * 1024;

/// Bytes of rendered events in one page of a history answer (at least one event,
/// however large). An answer longer than a page is streamed page by page, so one
/// answer holds about one page (plus the event that crosses the bound) in memory on
/// the owning shard and on the routing shard, and the owner renders one page per step.
pub const HISTORY_PAGE_BYTES: usize = 256 * 1024;

/// Number of partitions of the entity id space. Fixed forever: it decides which shard
/// (and so which log) owns an entity. Shard counts up to this are supported.
pub const PARTITIONS: u32 = 4096;
/// Shards supported.
pub const SHARDS_MAX: usize = 256;

const _: () = assert!(SHARDS_MAX <= PARTITIONS as usize);
const _: () = assert!(BODY_SINGLE_BYTES_MAX <= BODY_BATCH_BYTES_MAX);
const _: () = assert!(LIST_PAGE_ENTITIES > 0);
const _: () = assert!(PROPERTIES_PER_EVENT_DEFAULT <= PROPERTIES_PER_EVENT_MAX);

/// Largest per-namespace rate limit, events per minute (`FLUX_RATE_LIMIT_PER_MINUTE`,
/// `/api/admin/config`).
pub const RATE_LIMIT_PER_MINUTE_MAX: u64 = 1 << 40;

/// Each shard's heartbeat task beats this often (`shard::heartbeat`).
pub const HEARTBEAT_MS: u64 = 100;
/// A shard whose heartbeat is older than this is reported stalled (`/health` 503,
/// `flux_shards_stalled`, a log line): its executor has not run a task for that long
/// (a lost wake-up, a task that never yields, a blocked thread). Well above the
/// longest step a request may take a shard (tuning.md, worst-case bodies).
pub const SHARD_STALL_MS: u64 = 2_000;
/// How often the main thread looks at the heartbeats.
pub const HEARTBEAT_CHECK_MS: u64 = 250;
