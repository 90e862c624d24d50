//! Peer links: one TCP connection per node pair, dialed by the node with the smaller id,
//! authenticated by an HMAC handshake over fresh nonces, carrying [`PeerFrame`]s both ways.
//!
//! Sending never waits: each link has a bounded queue and a writer task that writes every
//! queued frame in one vectored write. A frame of an ordered stream (an owner's deliveries
//! and answers) may overfill the queue up to [`STREAM_QUEUE_FACTOR`] times its bound (at
//! least [`STREAM_QUEUE_MIN`] frames): its sender refuses new work while the link is
//! congested, and dropping a frame that passed that check would leave a hole in the stream
//! (a seq the subscribers never see, a request never answered). Past that the link is reset.
//! A link that breaks is reported to the [`FrameHandler`] at once, so the user can answer
//! what was in flight.

use std::collections::HashMap;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics;
use crate::node::{NodeId, NodeIdentity};
use crate::wire::{self, PeerFrame, FIRST_USER_KIND, KIND_PING, KIND_RECEIPT};

mod handshake;

/// How long a handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// A link sends a keepalive when it has been quiet this long...
const KEEPALIVE_INTERVAL: Duration = Duration::from_millis(500);
/// ...and is declared broken when nothing arrived for this long (a partition sends no FIN).
const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// How far past its bound a link's queue takes frames of an ordered stream: this many times
/// the bound, and at least [`STREAM_QUEUE_MIN`] frames (a burst of answers to ops read in one
/// go must fit even a small queue).
pub const STREAM_QUEUE_FACTOR: usize = 4;
pub const STREAM_QUEUE_MIN: usize = 4096;

/// Receives what peers send. Called on the link's reader task: must not block.
pub trait FrameHandler: Send + Sync + 'static {
    fn on_frame(&self, from: &NodeId, frame: PeerFrame);
    /// The link to `node` broke: frames queued to it may not have arrived.
    fn on_link_down(&self, node: &NodeId);
    /// `node` handled more of the frames sent to it (see [`Mark`]).
    fn on_receipt(&self, _node: &NodeId) {}
}

/// Where a frame stands in its link's stream: the link, and the frame's number on it (from
/// 1). The peer handled the frame once its receipts on that link reach `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub link_id: u64,
    pub seq: u64,
}

impl Mark {
    /// A frame that was never queued (no link, or a full queue): never handled.
    pub const NOT_SENT: Mark = Mark { link_id: u64::MAX, seq: u64::MAX };
}

/// Why a frame could not be queued for a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("no link to the node")]
    NoLink,
    #[error("the link's queue is full")]
    QueueFull,
}

/// A link's queue: unbounded underneath, bounded by its users through `queued`.
#[derive(Clone)]
struct Queue {
    tx: mpsc::UnboundedSender<PeerFrame>,
    /// Frames queued and not yet taken by the writer.
    queued: Arc<AtomicUsize>,
}

impl Queue {
    fn new() -> (Queue, mpsc::UnboundedReceiver<PeerFrame>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Queue { tx, queued: Arc::new(AtomicUsize::new(0)) }, rx)
    }

    /// Queues `frame` unless `limit` frames are queued already.
    fn push(&self, frame: PeerFrame, limit: usize) -> Result<(), SendError> {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= limit {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(SendError::QueueFull);
        }
        self.tx.send(frame).map_err(|_| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            SendError::NoLink
        })
    }

    fn len(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

struct Link {
    /// Unique per link, to tell a replaced link from its successor.
    link_id: u64,
    generation: u64,
    queue: Queue,
    cancel: CancellationToken,
    /// User frames queued on this link so far.
    sent: u64,
    /// User frames the peer said it handled (its receipts), shared with the reader.
    handled: Arc<AtomicU64>,
}

/// `handled` before the peer's first receipt (nothing handled yet: every member sends
/// receipts, one after each read that brought user frames).
const NO_RECEIPT_YET: u64 = u64::MAX;

/// All links of this node.
pub(crate) struct Links {
    identity: NodeIdentity,
    cluster_id: String,
    key: hmac::Key,
    queue_frames: usize,
    handler: Arc<dyn FrameHandler>,
    links: Mutex<HashMap<NodeId, Link>>,
    dialers: Mutex<HashMap<NodeId, (SocketAddr, CancellationToken)>>,
    next_link_id: AtomicU64,
    shutdown: CancellationToken,
}

impl Links {
    pub(crate) fn new(
        identity: NodeIdentity,
        cluster_id: String,
        secret: &[u8],
        queue_frames: usize,
        handler: Arc<dyn FrameHandler>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Links {
            identity,
            cluster_id,
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            queue_frames,
            handler,
            links: Mutex::new(HashMap::new()),
            dialers: Mutex::new(HashMap::new()),
            next_link_id: AtomicU64::new(1),
            shutdown,
        })
    }

    /// Queues `frame` for `node` without waiting, unless the queue is full (for a stream's
    /// frame: past its stream limit); returns its [`Mark`]. A stream's frame that does not
    /// fit even so resets the link: its peer learns that the stream was cut (and answers
    /// what waits on it) rather than finding a hole in it.
    pub(crate) fn send(&self, node: &NodeId, frame: PeerFrame, stream_frame: bool) -> Result<Mark, SendError> {
        let limit = if stream_frame { self.stream_limit() } else { self.queue_frames };
        let mut links = self.links.lock();
        let link = links.get_mut(node).ok_or(SendError::NoLink)?;
        link.queue.push(frame, limit).inspect_err(|err| {
            if *err == SendError::QueueFull {
                metrics::link_queue_full();
                if stream_frame {
                    reset_overflowed(node, &link.queue, &link.cancel);
                }
            }
        })?;
        link.sent += 1;
        Ok(Mark { link_id: link.link_id, seq: link.sent })
    }

    /// How many frames `node` has handled of link `link_id` (0 before its first receipt);
    /// `None` when that link is gone or replaced (what it sent is never known).
    pub(crate) fn handled(&self, node: &NodeId, link_id: u64) -> Option<u64> {
        let links = self.links.lock();
        let link = links.get(node).filter(|link| link.link_id == link_id)?;
        match link.handled.load(Ordering::Acquire) {
            NO_RECEIPT_YET => Some(0),
            handled => Some(handled),
        }
    }

    fn stream_limit(&self) -> usize {
        (self.queue_frames * STREAM_QUEUE_FACTOR).max(STREAM_QUEUE_MIN)
    }

    pub(crate) fn congested(&self, node: &NodeId) -> bool {
        self.links.lock().get(node).is_some_and(|link| link.queue.len() > self.queue_frames - self.queue_frames / 8)
    }

    pub(crate) fn is_connected(&self, node: &NodeId) -> bool {
        self.links.lock().contains_key(node)
    }

    /// Queued frames per link, for metrics.
    pub(crate) fn queue_depths(&self) -> Vec<(NodeId, usize)> {
        self.links.lock().iter().map(|(node, link)| (node.clone(), link.queue.len())).collect()
    }

    /// Makes the dialers match the members: this node dials every member whose id is
    /// greater than its own, and stops dialing members that are gone or moved.
    pub(crate) fn reconcile_dialers(self: &Arc<Self>, members: &[(NodeId, SocketAddr)]) {
        let mut dialers = self.dialers.lock();
        dialers.retain(|node_id, (addr, cancel)| {
            let keep = members.iter().any(|(id, a)| id == node_id && a == addr);
            if !keep {
                cancel.cancel();
            }
            keep
        });
        for (node_id, addr) in members {
            if node_id <= &self.identity.node_id || dialers.contains_key(node_id) {
                continue;
            }
            let cancel = self.shutdown.child_token();
            dialers.insert(node_id.clone(), (*addr, cancel.clone()));
            tokio::spawn(self.clone().dial_loop(node_id.clone(), *addr, cancel));
        }
    }

    async fn dial_loop(self: Arc<Self>, node_id: NodeId, addr: SocketAddr, cancel: CancellationToken) {
        let mut backoff = Duration::from_millis(50);
        loop {
            let attempt = async {
                let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await??;
                let _ = stream.set_nodelay(true);
                let (stream, peer) =
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, self.handshake_as_dialer(stream, &node_id)).await??;
                anyhow::Ok((stream, peer))
            };
            let outcome = tokio::select! {
                outcome = attempt => outcome,
                _ = cancel.cancelled() => return,
            };
            match outcome {
                Ok((stream, peer)) => {
                    backoff = Duration::from_millis(50);
                    let link_cancel = cancel.child_token();
                    self.run_link(stream, peer, link_cancel).await;
                    metrics::link_reconnect();
                }
                Err(err) => {
                    tracing::debug!(peer = %node_id, %addr, error = %err, "peer dial failed");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = cancel.cancelled() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// Accepts inbound links until shutdown.
    pub(crate) async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, remote) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        tracing::warn!(error = %err, "peer accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = self.shutdown.cancelled() => return,
            };
            let _ = stream.set_nodelay(true);
            let links = self.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, links.handshake_as_acceptor(stream)).await {
                    Ok(Ok((stream, peer))) => {
                        let cancel = links.shutdown.child_token();
                        links.run_link(stream, peer, cancel).await;
                    }
                    Ok(Err(err)) => tracing::warn!(%remote, error = %err, "peer refused"),
                    Err(_) => tracing::warn!(%remote, "peer handshake timed out"),
                }
            });
        }
    }

    /// Runs an authenticated link until it breaks or is replaced.
    async fn run_link(self: &Arc<Self>, stream: TcpStream, peer: NodeIdentity, cancel: CancellationToken) {
        let link_id = self.next_link_id.fetch_add(1, Ordering::Relaxed);
        let (queue, rx) = Queue::new();
        let queued = queue.queued.clone();
        let handled = Arc::new(AtomicU64::new(NO_RECEIPT_YET));
        let receipts = queue.clone();
        {
            let mut links = self.links.lock();
            if let Some(existing) = links.get(&peer.node_id) {
                if existing.generation > peer.generation {
                    tracing::warn!(peer = %peer.node_id, generation = peer.generation, "refusing a link from an older generation");
                    return;
                }
                existing.cancel.cancel();
            }
            links.insert(
                peer.node_id.clone(),
                Link {
                    link_id,
                    generation: peer.generation,
                    queue,
                    cancel: cancel.clone(),
                    sent: 0,
                    handled: handled.clone(),
                },
            );
        }
        tracing::info!(peer = %peer.node_id, generation = peer.generation, "peer link up");
        let (read_half, write_half) = stream.into_split();
        let writer = tokio::spawn(write_loop(write_half, rx, queued, cancel.clone()));
        let reason = self.read_loop(read_half, &peer.node_id, &cancel, &receipts, &handled).await;
        cancel.cancel();
        let _ = writer.await;
        let removed = {
            let mut links = self.links.lock();
            match links.get(&peer.node_id) {
                Some(link) if link.link_id == link_id => {
                    links.remove(&peer.node_id);
                    true
                }
                _ => false,
            }
        };
        tracing::info!(peer = %peer.node_id, reason, replaced = !removed, "peer link down");
        // Even a replaced link may have taken frames with it.
        self.handler.on_link_down(&peer.node_id);
    }

    async fn read_loop(
        &self,
        mut read_half: tokio::net::tcp::OwnedReadHalf,
        peer: &NodeId,
        cancel: &CancellationToken,
        receipts: &Queue,
        handled: &AtomicU64,
    ) -> &'static str {
        let mut buffer = BytesMut::with_capacity(64 * 1024);
        let mut frames = Vec::new();
        // User frames handled so far on this link, told back to the peer after each read
        // that brought some. (Not at once: the first frame may reach a peer still in its
        // handshake, which refuses a link whose first read holds more than the proof.)
        let mut received: u64 = 0;
        loop {
            if buffer.capacity() - buffer.len() < 16 * 1024 {
                buffer.reserve(64 * 1024);
            }
            let read = tokio::select! {
                read = tokio::time::timeout(READ_TIMEOUT, read_half.read_buf(&mut buffer)) => read,
                _ = cancel.cancelled() => return "closed",
            };
            match read {
                Err(_) => return "keepalive timeout",
                Ok(Err(_)) => return "read error",
                Ok(Ok(0)) => return "peer closed",
                Ok(Ok(count)) => metrics::link_bytes_received(count),
            }
            if let Err(err) = wire::parse_all(&mut buffer, &mut frames) {
                tracing::warn!(peer = %peer, error = %err, "garbage on peer link");
                return "garbage";
            }
            metrics::link_frames_received(frames.len());
            let before = received;
            let mut receipt = false;
            for frame in frames.drain(..) {
                if frame.kind >= FIRST_USER_KIND {
                    self.handler.on_frame(peer, frame);
                    received += 1;
                } else if frame.kind == KIND_RECEIPT && frame.payload.len() == 8 {
                    let count = u64::from_le_bytes(frame.payload[..].try_into().unwrap_or_default());
                    let previous = handled.load(Ordering::Relaxed);
                    if previous == NO_RECEIPT_YET || count > previous {
                        handled.store(count, Ordering::Release);
                        receipt = true;
                    }
                }
            }
            if received > before {
                // A stream frame: the peer's answers wait for it, and a later one may never
                // come (one per read that brought user frames). If even it does not fit, the
                // link is reset rather than those answers left to time out `unavailable`.
                let receipt = PeerFrame::new(KIND_RECEIPT, Bytes::copy_from_slice(&received.to_le_bytes()));
                if receipts.push(receipt, self.stream_limit()).is_err() {
                    metrics::link_queue_full();
                    reset_overflowed(peer, receipts, cancel);
                    return "queue overflowed";
                }
            }
            if receipt {
                self.handler.on_receipt(peer);
            }
        }
    }
}

/// A stream frame found `queue` past its stream limit: the link is reset (its peer answers
/// what waited on it) rather than holed.
fn reset_overflowed(peer: &NodeId, queue: &Queue, cancel: &CancellationToken) {
    tracing::warn!(peer = %peer, queued = queue.len(), "peer queue overflowed, link reset");
    cancel.cancel();
}

/// The most frames one write carries (each takes up to 3 of the 1,024 slices of a vectored
/// write).
const BATCH_FRAMES: usize = 256;

/// Writes queued frames, many per syscall, and a keepalive when idle.
async fn write_loop(
    mut write_half: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<PeerFrame>,
    queued: Arc<AtomicUsize>,
    cancel: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH_FRAMES);
    loop {
        let received = tokio::select! {
            received = rx.recv_many(&mut batch, BATCH_FRAMES) => {
                queued.fetch_sub(received, Ordering::AcqRel);
                received
            }
            _ = tokio::time::sleep(KEEPALIVE_INTERVAL) => {
                batch.push(PeerFrame::new(KIND_PING, Bytes::new()));
                1
            }
            _ = cancel.cancelled() => return,
        };
        if received == 0 {
            return;
        }
        if batch.len() < BATCH_FRAMES {
            // Let the tasks that are ready run first (the reads that came with these frames
            // often queue more for this link): one write then carries them all, instead of
            // a system call, and a wake-up of the peer, per frame or two.
            tokio::task::yield_now().await;
            while batch.len() < BATCH_FRAMES {
                match rx.try_recv() {
                    Ok(frame) => {
                        queued.fetch_sub(1, Ordering::AcqRel);
                        batch.push(frame);
                    }
                    Err(_) => break,
                }
            }
        }
        let written = tokio::select! {
            written = write_frames(&mut write_half, &batch) => written,
            _ = cancel.cancelled() => return,
        };
        match written {
            Ok(bytes) => {
                metrics::link_frames_sent(batch.len());
                metrics::link_bytes_sent(bytes);
            }
            Err(_) => {
                cancel.cancel();
                return;
            }
        }
        batch.clear();
    }
}

/// Writes frames with vectored writes: each header and each payload is its own slice.
async fn write_frames<W: AsyncWrite + Unpin>(writer: &mut W, frames: &[PeerFrame]) -> std::io::Result<usize> {
    let headers: Vec<[u8; 4 + wire::HEADER_LEN]> = frames.iter().map(PeerFrame::encode_header).collect();
    let mut slices = Vec::with_capacity(frames.len() * 2);
    let mut total = 0;
    for (header, frame) in headers.iter().zip(frames) {
        slices.push(IoSlice::new(header));
        total += header.len() + frame.payload.len() + frame.tail.len();
        if !frame.payload.is_empty() {
            slices.push(IoSlice::new(&frame.payload));
        }
        if !frame.tail.is_empty() {
            slices.push(IoSlice::new(&frame.tail));
        }
    }
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        let written = writer.write_vectored(slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, written);
    }
    Ok(total)
}
