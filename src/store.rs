//! Persistence (DESIGN.md "Persistence"): what an owner writes through and loads back.
//!
//! The owner keeps every key it serves in memory; a [`Store`] is where that state also
//! lives when it must survive the owner. Two implementations:
//! - [`MemoryStore`] (the default): nothing beyond the owner's own maps, so a room whose
//!   owner dies starts again with a new epoch. Ops apply and answer at once.
//! - [`redis_store::RedisStore`] (`--redis-url`): the owner loads a key from Redis the first
//!   time it serves it (after a kill, drain or restart the new owner continues the same epoch
//!   and seq), and every change that is acknowledged is written first: the ack and the
//!   events of an op leave only after Redis accepted its writes.
//!
//! How writes are collected: while an owner applies an op under the room's shard lock, the
//! code that changes durable state records a [`Write`] in this thread's journal
//! ([`journal::record`]); the owner takes the journal after the op and hands the writes to
//! the store with the op's answers, held back until they are stored. Without a durable store
//! the journal is off and recording costs one thread-local check.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use ringcast_cluster::NodeId;

use crate::frames;
use crate::ops::{EdgeMsg, OwnerOp, Request, RequestKind};
use crate::protocol::{ErrorCode, ReplyError};
use crate::room::RoomKey;

mod message;
pub(crate) mod record;
pub mod redis_store;

pub use message::{MessageExtra, SentAck, StoredMessage};

/// One change of a key's durable state.
#[derive(Debug, Clone)]
pub enum Write {
    /// The room's epoch (written once, when a room starts without one in the store).
    Epoch(Arc<str>),
    /// A new message, with the `client_id` it was sent with (its idempotency key).
    Append { message: Arc<StoredMessage>, client_id: Option<String> },
    /// A message changed after it was sent (edit, soft delete, redaction, reaction).
    Update(Arc<StoredMessage>),
    /// A message hard-deleted (by seq).
    Remove(u64),
    /// The room's bans, whole (few per room).
    Bans(Vec<(Arc<str>, Option<u64>)>),
    /// A DM kept for an offline user: expiry (ms since the epoch) and the frame.
    InboxPush { expires: u64, frame: Bytes },
    /// The inbox was delivered.
    InboxClear,
    /// A DM sent with a `client_id` to this user: (sender, client_id) and its first ack.
    DmSent { from: Arc<str>, client_id: String, ack: SentAck },
    /// The user's server-side room subscriptions, whole (`ops::subscription_entry`).
    Subscriptions(Vec<String>),
}

/// A key's durable state as the store gave it back.
#[derive(Debug, Default)]
pub struct Loaded {
    /// `None`: the store never saw this room.
    pub epoch: Option<String>,
    /// The highest seq ever stored (0 = none); may be above the last message kept.
    pub seq: u64,
    /// Kept messages, oldest first, with later changes applied, each with its `client_id`.
    pub messages: Vec<(StoredMessage, Option<String>)>,
    pub bans: Vec<(Arc<str>, Option<u64>)>,
    /// Personal rooms only: waiting DMs (expiry, frame), oldest first.
    pub inbox: Vec<(u64, Bytes)>,
    /// Personal rooms only: DM idempotency keys.
    pub dm_sent: Vec<(Arc<str>, String, SentAck)>,
    /// Personal rooms only: the user's server-side room subscriptions.
    pub rooms: Vec<String>,
}

/// The writes of one op and the answers that wait for them.
pub struct Job {
    pub key: RoomKey,
    /// The room's store generation when the op applied; a failed write bumps it, so later
    /// writes of the same room are not acknowledged ahead of the reload.
    pub gen: u64,
    pub writes: Vec<Write>,
    /// Sent when the writes are stored.
    pub on_ok: Vec<(NodeId, EdgeMsg)>,
    /// Sent instead when they are not (an `unavailable` error to the asking connection).
    pub on_fail: Option<Refusal>,
}

/// Who hears `unavailable` if an op's writes fail: made for every op that writes, rendered
/// and counted only when it is sent.
pub struct Refusal {
    node: NodeId,
    conn_id: u64,
    request_id: u64,
    op_id: Option<String>,
    /// A join is answered with `Left` (the edge waits for `Joined` or `Left`).
    join: Option<RoomKey>,
}

impl Refusal {
    /// The refusal of `op`'s asking connection (`None` for a resubscription: nobody asked).
    pub fn of(op: &OwnerOp) -> Option<Refusal> {
        let Request { room, sender, op_id, kind } = op.as_request()?;
        Some(Refusal {
            node: sender.conn.node.clone(),
            conn_id: sender.conn.conn_id,
            request_id: sender.request_id,
            op_id: op_id.clone(),
            join: matches!(kind, RequestKind::Join { .. }).then(|| room.clone()),
        })
    }

    /// The `unavailable` answer, counted, and the node of the edge it goes to: to be sent.
    pub fn answer(self, message: &'static str) -> (NodeId, EdgeMsg) {
        let error = ReplyError::new(ErrorCode::Unavailable, message);
        crate::metrics::error_sent(error.code.as_str());
        let frame = frames::error(self.op_id.as_deref(), &error);
        let msg = match self.join {
            Some(room) => {
                EdgeMsg::Left { room, conn_id: self.conn_id, request_id: self.request_id, frames: vec![frame] }
            }
            // Not counted towards the client's error threshold: the store failed, not the client.
            None => EdgeMsg::Reply { conn_id: self.conn_id, request_id: self.request_id, frame, is_error: false },
        };
        (self.node, msg)
    }
}

/// A store that failed to load or write; the text says why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

pub type LoadFuture = Pin<Box<dyn Future<Output = Result<Loaded, StoreError>> + Send>>;

/// Where owners keep what must outlive them.
pub trait Store: Send + Sync {
    /// False for memory: the owner applies and answers ops at once, with nothing to load.
    fn durable(&self) -> bool;
    /// The store answers (always true for memory).
    fn up(&self) -> bool;
    /// Reads a key's durable state.
    fn load(&self, key: &RoomKey) -> LoadFuture;
    /// Queues a job; the store answers it through its completion channel. `Err` gives the
    /// job back when the queue is full.
    fn submit(&self, job: Job) -> Result<(), Job>;
}

/// The default: state lives only in the owner's memory.
pub struct MemoryStore;

impl Store for MemoryStore {
    fn durable(&self) -> bool {
        false
    }

    fn up(&self) -> bool {
        true
    }

    fn load(&self, _key: &RoomKey) -> LoadFuture {
        Box::pin(async { Ok(Loaded::default()) })
    }

    fn submit(&self, job: Job) -> Result<(), Job> {
        // Never called: with a store that is not durable, owners answer at once.
        Err(job)
    }
}

/// The writes recorded while an op applies (see the module documentation).
pub mod journal {
    use std::cell::RefCell;

    use super::Write;

    thread_local! {
        static JOURNAL: RefCell<Option<Vec<Write>>> = const { RefCell::new(None) };
    }

    /// Starts recording on this thread.
    pub fn begin() {
        JOURNAL.with(|journal| *journal.borrow_mut() = Some(Vec::new()));
    }

    /// Stops recording and returns what was recorded.
    pub fn end() -> Vec<Write> {
        JOURNAL.with(|journal| journal.borrow_mut().take()).unwrap_or_default()
    }

    /// Records a change of durable state (a no-op unless recording).
    pub fn record(write: Write) {
        JOURNAL.with(|journal| {
            if let Some(writes) = journal.borrow_mut().as_mut() {
                writes.push(write);
            }
        });
    }

    /// Records a change only when recording: `make` runs only then.
    pub fn record_with(make: impl FnOnce() -> Write) {
        JOURNAL.with(|journal| {
            if let Some(writes) = journal.borrow_mut().as_mut() {
                writes.push(make());
            }
        });
    }
}
