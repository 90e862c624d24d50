//! The shared half of a client connection: its bounded outbound queue ([`Outbox`]), its
//! identity and the rooms it is in. The session task reads, the writer task drains the
//! outbox, and owners and the hub push into it from any thread without waiting.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::auth::Identity;
use crate::close::Disconnect;
use crate::edge::deflate::SharedText;
pub use crate::ids::ConnId;
use crate::room::RoomKey;

/// A frame waiting in an outbox.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A JSON text frame, shared with every other recipient.
    Text(Bytes),
    /// A room message's text frame with its compressed form, made once for every local
    /// recipient that negotiated permessage-deflate (`edge/deflate.rs`).
    Shared(Arc<SharedText>),
    Ping,
    Pong(Bytes),
    /// Made by the writer, never queued in an outbox: a text frame it compressed for this
    /// connection alone, and the close frame that ends the connection.
    Deflated(Bytes),
    Close(Bytes),
}

/// What a push into an outbox did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The queue was full: the connection is now closing as a slow consumer.
    Overflow,
    /// The connection is closing; the frame was dropped.
    Closed,
}

/// A bounded queue of frames plus the close that ends it.
///
/// A full queue never blocks or grows: the push that finds it full turns the connection into
/// a slow consumer (close 4009) and drops what was queued, so a room never waits for one
/// reader.
pub struct Outbox {
    state: Mutex<OutboxState>,
    capacity: usize,
}

struct OutboxState {
    frames: VecDeque<Outgoing>,
    close: Option<Disconnect>,
    /// Set when the connection must end now, even in the middle of a write.
    aborted: bool,
    /// Text frames queued so far (the admin API's `messages_out`), counted under the lock
    /// already held rather than with an atomic per delivery.
    sent: u64,
    /// A wake for the connection's task not yet seen by it: new frames, a close, an abort,
    /// or (through [`Outbox::signal`]) anything else it must look at.
    woken: bool,
    /// The connection's task while it waits ([`Outbox::poll_woken`]). A waker in the state,
    /// rather than a `Notify`, keeps both the outbox and the task's future small (a
    /// `Notified` future carries its own waiter node).
    waker: Option<Waker>,
}

impl Outbox {
    pub fn new(capacity: usize) -> Self {
        Outbox {
            state: Mutex::new(OutboxState {
                frames: VecDeque::new(),
                close: None,
                aborted: false,
                sent: 0,
                woken: false,
                waker: None,
            }),
            capacity,
        }
    }

    pub fn push(&self, frame: Outgoing) -> Pushed {
        let mut state = self.state.lock();
        if state.close.is_some() {
            return Pushed::Closed;
        }
        if state.frames.len() >= self.capacity {
            state.frames = VecDeque::new();
            state.close = Some(Disconnect::SLOW_CONSUMER);
            state.aborted = true;
            Self::wake(state);
            return Pushed::Overflow;
        }
        state.sent += u64::from(matches!(frame, Outgoing::Text(_) | Outgoing::Shared(_)));
        state.frames.push_back(frame);
        if state.frames.len() == 1 {
            Self::wake(state);
        }
        Pushed::Queued
    }

    pub fn push_text(&self, frame: Bytes) -> Pushed {
        self.push(Outgoing::Text(frame))
    }

    /// Queues a room message shared with the other local recipients.
    pub fn push_shared(&self, frame: Arc<SharedText>) -> Pushed {
        self.push(Outgoing::Shared(frame))
    }

    /// How many text frames were queued for the client.
    pub fn sent(&self) -> u64 {
        self.state.lock().sent
    }

    /// Queues the frames of one answer together (a join's replay and its ack): the bound
    /// applies to what was queued before them, since a replay the client asked for is itself
    /// bounded by the room's history size.
    pub fn push_answer(&self, frames: Vec<Bytes>) -> Pushed {
        let Some(last) = frames.len().checked_sub(1) else { return Pushed::Queued };
        let mut frames = frames.into_iter();
        let first = self.push_text(frames.next().expect("one frame"));
        if last == 0 || !matches!(first, Pushed::Queued) {
            return first;
        }
        let mut state = self.state.lock();
        if state.close.is_some() {
            return Pushed::Closed;
        }
        state.sent += last as u64;
        state.frames.extend(frames.map(Outgoing::Text));
        Self::wake(state);
        Pushed::Queued
    }

    /// Closes the connection with `disconnect` after the frames already queued (the first
    /// close wins).
    pub fn close(&self, disconnect: Disconnect) {
        let mut state = self.state.lock();
        if state.close.is_none() {
            state.close = Some(disconnect);
            Self::wake(state);
        }
    }

    /// True once, after an abort: the caller must give up on the connection now.
    pub fn take_aborted(&self) -> bool {
        std::mem::take(&mut self.state.lock().aborted)
    }

    /// Wakes the connection's task to look at its state (identity or group changes).
    pub fn signal(&self) {
        Self::wake(self.state.lock());
    }

    /// Marks the state woken and wakes the task, if it waits, once the lock is released.
    fn wake(mut state: parking_lot::MutexGuard<'_, OutboxState>) {
        state.woken = true;
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Frames queued and not yet taken by the writer.
    pub fn queued(&self) -> usize {
        self.state.lock().frames.len()
    }

    pub fn is_closing(&self) -> bool {
        self.state.lock().close.is_some()
    }

    /// Moves every queued frame to the back of `into` and returns the close, if one was asked
    /// for. An empty `into` (the writer's usual case) is swapped in whole, so the two buffers
    /// trade places and a busy connection allocates no queue per batch.
    pub fn take_into(&self, into: &mut VecDeque<Outgoing>) -> Option<Disconnect> {
        let mut state = self.state.lock();
        if into.is_empty() {
            std::mem::swap(into, &mut state.frames);
        } else {
            into.extend(state.frames.drain(..));
        }
        state.close
    }

    /// Gives back the memory of an empty queue (an idle connection keeps none).
    pub fn shrink_if_empty(&self) {
        let mut state = self.state.lock();
        if state.frames.is_empty() {
            state.frames = VecDeque::new();
        }
    }

    /// Ready on the next wake (a wake sent while nobody waits is kept for the next call).
    pub fn poll_woken(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.state.lock();
        if std::mem::take(&mut state.woken) {
            return Poll::Ready(());
        }
        match &mut state.waker {
            Some(waker) => waker.clone_from(cx.waker()),
            None => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Resolves on the next wake (see [`Outbox::poll_woken`]).
    pub async fn woken(&self) {
        std::future::poll_fn(|cx| self.poll_woken(cx)).await
    }
}

/// Counts failed requests in a sliding window (PROTOCOL.md §1: 50 within 60 s closes 1008).
pub struct ErrorWindow {
    times: VecDeque<Instant>,
}

impl ErrorWindow {
    pub fn new() -> Self {
        ErrorWindow { times: VecDeque::new() }
    }

    /// Records one error; true when `limit` errors fell within `window`.
    pub fn record(&mut self, limit: u32, window: Duration) -> bool {
        let now = Instant::now();
        while self.times.front().is_some_and(|oldest| now.duration_since(*oldest) > window) {
            self.times.pop_front();
        }
        self.times.push_back(now);
        if self.times.len() > limit as usize {
            self.times.pop_front();
        }
        self.times.len() >= limit as usize
    }

    /// No error within the window (or none recorded since).
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }
}

impl Default for ErrorWindow {
    fn default() -> Self {
        Self::new()
    }
}

/// Where a connection came from, for logs and the admin API. Boxed strings: they never
/// change, and a `String` carries a capacity besides.
#[derive(Debug, Clone, Default)]
pub struct ConnMeta {
    pub remote_addr: Box<str>,
    pub user_agent: Option<Box<str>>,
    pub origin: Option<Box<str>>,
    pub connected_at_ms: u64,
}

/// Work left to the connection's own task once a hook answered.
pub type Deferred = Box<dyn FnOnce(&Arc<Conn>) + Send>;

/// What a connection needs only now and then: allocated on first use and dropped once empty
/// again, so that an idle connection carries one pointer for all of it.
#[derive(Default)]
struct Rare {
    /// Recent failed requests (the 1008 threshold).
    errors: ErrorWindow,
    /// Group changes (added, removed) for the connection's task to apply.
    group_changes: Vec<(Vec<String>, Vec<String>)>,
    /// The first frames (`connected`, and the `ack` of an in-band `auth`), held until the
    /// connection is in its personal room.
    welcome: Option<Vec<Bytes>>,
    /// Users whose presence this connection subscribed to (unsubscribed when it closes).
    presence_subscriptions: Vec<String>,
    /// Run by the connection's task when woken: a hook's answer is applied there, in order
    /// with the connection's own requests and never after the task ended.
    deferred: Vec<Deferred>,
    /// The `meta` the connect hook added.
    hook_meta: Option<serde_json::Value>,
}

impl Rare {
    fn is_empty(&self) -> bool {
        self.errors.is_empty()
            && self.group_changes.is_empty()
            && self.welcome.is_none()
            && self.presence_subscriptions.is_empty()
            && self.deferred.is_empty()
            && self.hook_meta.is_none()
    }
}

/// Room membership of a connection as its edge sees it.
pub struct ConnRooms {
    /// Rooms joined or being joined. A join is added before it is sent to the owner, so
    /// that a connection closing meanwhile still leaves the room.
    pub rooms: HashSet<RoomKey>,
    /// Set once the connection is gone; the hub adds nothing to a closed connection.
    pub closed: bool,
}

/// The shared state of one client connection.
pub struct Conn {
    pub id: ConnId,
    pub outbox: Outbox,
    identity: Mutex<Option<Arc<Identity>>>,
    pub rooms: Mutex<ConnRooms>,
    /// Milliseconds since `started` of the last inbound frame.
    last_activity_ms: AtomicU64,
    started: Instant,
    pub meta: ConnMeta,
    /// The connect hook is being asked: the connection is not accepted yet.
    pub admitting: AtomicBool,
    /// Client messages received after authentication (the admin API's `messages_in`).
    pub received: AtomicU64,
    /// See [`Rare`]; a leaf lock: nothing is called while it is held.
    rare: Mutex<Option<Box<Rare>>>,
}

impl Conn {
    pub fn new(id: ConnId, queue_frames: usize, meta: ConnMeta) -> Self {
        Conn {
            id,
            outbox: Outbox::new(queue_frames),
            identity: Mutex::new(None),
            rooms: Mutex::new(ConnRooms { rooms: HashSet::new(), closed: false }),
            last_activity_ms: AtomicU64::new(0),
            started: Instant::now(),
            meta,
            admitting: AtomicBool::new(false),
            received: AtomicU64::new(0),
            rare: Mutex::new(None),
        }
    }

    /// Runs `change` on the rare state (made if missing), then drops that state if it is empty.
    fn rare<T>(&self, change: impl FnOnce(&mut Rare) -> T) -> T {
        let mut slot = self.rare.lock();
        let rare = slot.get_or_insert_with(Box::default);
        let result = change(rare);
        if rare.is_empty() {
            *slot = None;
        }
        result
    }

    /// Reads the rare state, if there is any.
    fn peek_rare<T>(&self, read: impl FnOnce(&Rare) -> T) -> Option<T> {
        self.rare.lock().as_deref().map(read)
    }

    pub fn identity(&self) -> Option<Arc<Identity>> {
        self.identity.lock().clone()
    }

    pub fn set_identity(&self, identity: Arc<Identity>) {
        *self.identity.lock() = Some(identity);
        self.outbox.signal();
    }

    /// Holds the first frames until [`Conn::release_welcome`].
    pub fn hold_welcome(&self, frames: Vec<Bytes>) {
        self.rare(|rare| rare.welcome = Some(frames));
    }

    /// Queues the held first frames, if any are still held.
    pub fn release_welcome(&self) {
        let welcome = self.rare(|rare| rare.welcome.take());
        for frame in welcome.into_iter().flatten() {
            self.outbox.push_text(frame);
        }
    }

    /// Replaces the identity without waking the writer (the writer itself calls this).
    pub fn set_identity_quietly(&self, identity: Arc<Identity>) {
        *self.identity.lock() = Some(identity);
    }

    /// Records a failed request; true when `limit` of them fell within `window`.
    pub fn record_error(&self, limit: u32, window: Duration) -> bool {
        self.rare(|rare| rare.errors.record(limit, window))
    }

    /// Queues a change of the user's groups for the connection's task (and wakes it).
    pub fn push_group_change(&self, added: Vec<String>, removed: Vec<String>) {
        self.rare(|rare| rare.group_changes.push((added, removed)));
        self.outbox.signal();
    }

    pub fn has_group_changes(&self) -> bool {
        self.peek_rare(|rare| !rare.group_changes.is_empty()).unwrap_or(false)
    }

    /// Takes the queued group changes, oldest first.
    pub fn take_group_changes(&self) -> Vec<(Vec<String>, Vec<String>)> {
        self.rare(|rare| std::mem::take(&mut rare.group_changes))
    }

    /// Remembers (or forgets) a subscription to `user`'s presence.
    pub fn set_presence_subscription(&self, user: &str, subscribe: bool) {
        self.rare(|rare| {
            rare.presence_subscriptions.retain(|known| known != user);
            if subscribe {
                rare.presence_subscriptions.push(user.to_string());
            }
        });
    }

    /// Takes the users whose presence the connection subscribed to.
    pub fn take_presence_subscriptions(&self) -> Vec<String> {
        self.rare(|rare| std::mem::take(&mut rare.presence_subscriptions))
    }

    /// Leaves `work` to the connection's task (and wakes it).
    pub fn defer(&self, work: Deferred) {
        self.rare(|rare| rare.deferred.push(work));
        self.outbox.signal();
    }

    /// Runs the work left to the connection's task (called by the task).
    pub fn run_deferred(self: &Arc<Self>) {
        if self.rare.lock().is_none() {
            return;
        }
        let work = self.rare(|rare| std::mem::take(&mut rare.deferred));
        for work in work {
            work(self);
        }
    }

    /// The `meta` the connect hook added, if any.
    pub fn hook_meta(&self) -> Option<serde_json::Value> {
        self.peek_rare(|rare| rare.hook_meta.clone()).flatten()
    }

    pub fn set_hook_meta(&self, meta: serde_json::Value) {
        self.rare(|rare| rare.hook_meta = Some(meta));
    }

    pub fn touch(&self) {
        self.last_activity_ms.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// When the last inbound frame arrived.
    pub fn last_activity(&self) -> Instant {
        self.started + Duration::from_millis(self.last_activity_ms.load(Ordering::Relaxed))
    }

    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_activity_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_overflow_turns_into_slow_consumer_close() {
        let outbox = Outbox::new(2);
        assert_eq!(outbox.push_text(Bytes::from_static(b"1")), Pushed::Queued);
        assert_eq!(outbox.push_text(Bytes::from_static(b"2")), Pushed::Queued);
        assert_eq!(outbox.push_text(Bytes::from_static(b"3")), Pushed::Overflow);
        assert_eq!(outbox.push_text(Bytes::from_static(b"4")), Pushed::Closed);
        let mut frames = VecDeque::new();
        assert_eq!(outbox.take_into(&mut frames), Some(Disconnect::SLOW_CONSUMER));
        assert!(frames.is_empty());
    }

    #[test]
    fn test_first_close_wins_and_keeps_queue() {
        let outbox = Outbox::new(8);
        outbox.push_text(Bytes::from_static(b"a"));
        outbox.close(Disconnect::UNAUTHORIZED);
        outbox.close(Disconnect::SHUTDOWN);
        let mut frames = VecDeque::new();
        assert_eq!(outbox.take_into(&mut frames), Some(Disconnect::UNAUTHORIZED));
        assert_eq!(frames.len(), 1);
        assert_eq!(outbox.sent(), 1);
    }

    #[test]
    fn test_error_window() {
        let mut window = ErrorWindow::new();
        for _ in 0..4 {
            assert!(!window.record(5, Duration::from_secs(60)));
        }
        assert!(window.record(5, Duration::from_secs(60)));
    }
}
