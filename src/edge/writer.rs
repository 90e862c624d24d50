//! The write side of a connection: a [`WriteQueue`] of frames taken from the outbox, written
//! with as few non-blocking vectored writes as the socket allows. The payloads are the shared
//! `Bytes` themselves (headers are built on the stack), so a broadcast is never copied per
//! connection, and many queued frames leave in one syscall.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::Bytes;

use crate::close::Disconnect;
use crate::edge::conn::{Outbox, Outgoing};
use crate::edge::deflate::{self, DeflateOut};
use crate::edge::transport::Transport;

const OPCODE_TEXT: u8 = 0x1;
const OPCODE_CLOSE: u8 = 0x8;
const OPCODE_PING: u8 = 0x9;
const OPCODE_PONG: u8 = 0xA;

/// Frames per vectored write (two iovecs each; Linux takes up to 1024).
const FRAMES_PER_WRITE: usize = 256;
/// A batch of at most this many frames is written with stack arrays sized for it.
const SMALL_WRITE: usize = 32;
/// An emptied queue keeps its buffer only above this many frames (see `try_flush`).
const KEPT_FRAMES_MIN: usize = 4;
/// RSV1 in the first header byte: the frame is a compressed message (RFC 7692 §6).
const RSV1: u8 = 0x40;

/// Frames waiting to be written, the first maybe partly written.
#[derive(Default)]
pub struct WriteQueue {
    /// The outbox's frames as taken (a room message stays one shared `Arc` until written).
    frames: VecDeque<Outgoing>,
    /// Bytes of the first frame (header + payload) already written.
    offset: usize,
    /// Set when the connection negotiated permessage-deflate.
    deflate: Option<DeflateOut>,
}

/// An empty payload (pings).
static EMPTY: Bytes = Bytes::new();

impl WriteQueue {
    /// A queue that compresses text frames as `deflate` says (`None`: never).
    pub fn new(deflate: Option<DeflateOut>) -> Self {
        WriteQueue { deflate, ..Default::default() }
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// True when part of a frame is on the wire: nothing else may be written before its rest.
    pub fn is_mid_frame(&self) -> bool {
        self.offset > 0
    }

    /// Takes everything queued in `outbox` (the two queues' buffers trade places when this
    /// one is empty) and returns the close it asks for, if any.
    pub fn refill(&mut self, outbox: &Outbox) -> Option<Disconnect> {
        let before = self.frames.len();
        let close = outbox.take_into(&mut self.frames);
        self.compress_from(before);
        close
    }

    /// Queues frames (tests; the session uses [`WriteQueue::refill`]).
    #[cfg(test)]
    pub fn extend(&mut self, frames: impl IntoIterator<Item = Outgoing>) {
        let before = self.frames.len();
        self.frames.extend(frames);
        self.compress_from(before);
    }

    /// On a connection that negotiated permessage-deflate, the text frames from `start` on
    /// that are worth it are compressed now, once (a shared room message is compressed once
    /// for every connection, on the first write that wants it).
    fn compress_from(&mut self, start: usize) {
        let Some(deflate) = self.deflate else { return };
        for frame in self.frames.range_mut(start..) {
            if let Outgoing::Text(payload) = frame {
                if deflate.wants(payload.len()) {
                    if let Some(compressed) = deflate::compress(payload) {
                        *frame = Outgoing::Deflated(compressed);
                    }
                }
            }
        }
    }

    /// Gives back the memory of an empty queue (an idle connection keeps none).
    pub fn shrink_if_empty(&mut self) {
        if self.frames.is_empty() {
            self.frames = VecDeque::new();
        }
    }

    /// Queues the close frame of `disconnect`.
    pub fn push_close(&mut self, disconnect: Disconnect) {
        let mut payload = disconnect.code.to_be_bytes().to_vec();
        payload.extend_from_slice(disconnect.reason.as_bytes());
        self.frames.push_back(Outgoing::Close(Bytes::from(payload)));
    }

    /// Drops every frame not yet started (a slow consumer's backlog).
    pub fn drop_unstarted(&mut self) {
        let keep = usize::from(self.offset > 0);
        self.frames.truncate(keep);
    }

    /// Writes until the queue is empty and the transport has sent everything (`Ok`) or the
    /// socket would block (`Err(WouldBlock)`); any other error means the peer is gone.
    pub fn try_flush(&mut self, transport: &mut Transport) -> io::Result<()> {
        while !self.frames.is_empty() {
            // The stack arrays are sized to the batch: a few frames (the common case) do not
            // pay for initialising room for the most one write takes.
            if self.frames.len() <= SMALL_WRITE {
                self.write_some::<SMALL_WRITE, { 2 * SMALL_WRITE }>(transport)?;
            } else {
                self.write_some::<FRAMES_PER_WRITE, { 2 * FRAMES_PER_WRITE }>(transport)?;
            }
        }
        // Everything is written. A buffer that only ever held a few frames goes back, or
        // every connection that was sent a frame would keep one for its whole life; a busy
        // connection's bigger one is kept for its next batches (no allocation per batch)
        // and given back at its next ping if it went idle (`shrink_if_empty`).
        if self.frames.capacity() <= KEPT_FRAMES_MIN {
            self.frames = VecDeque::new();
        }
        transport.flush()
    }

    /// One vectored write of up to `N` frames from the front (`S` = 2 × `N` slices).
    fn write_some<const N: usize, const S: usize>(&mut self, transport: &mut Transport) -> io::Result<()> {
        let deflate = self.deflate;
        // Frames are pushed onto an empty queue, so this rarely moves anything; a slice is
        // cheaper to walk than the deque.
        let frames = self.frames.make_contiguous();
        let count = frames.len().min(N);
        let frames = &frames[..count];
        let mut headers = [[0u8; 10]; N];
        let mut totals = [0usize; N];
        for (index, frame) in frames.iter().enumerate() {
            let (opcode, payload) = wire(deflate, frame);
            totals[index] = frame_header(opcode, payload.len(), &mut headers[index]) + payload.len();
        }
        let mut slices = [IoSlice::new(&[]); S];
        let mut num_slices = 0;
        for (index, frame) in frames.iter().enumerate() {
            let payload = wire(deflate, frame).1;
            let header_len = totals[index] - payload.len();
            let skip = if index == 0 { self.offset } else { 0 };
            if skip < header_len {
                slices[num_slices] = IoSlice::new(&headers[index][skip..header_len]);
                num_slices += 1;
                if !payload.is_empty() {
                    slices[num_slices] = IoSlice::new(payload);
                    num_slices += 1;
                }
            } else {
                slices[num_slices] = IoSlice::new(&payload[skip - header_len..]);
                num_slices += 1;
            }
        }
        let written = transport.write_vectored(&slices[..num_slices])?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        self.advance(written, &totals[..count]);
        Ok(())
    }

    /// Drops the frames `written` bytes completed; `totals` are the wire lengths (header and
    /// payload) of the frames from the front.
    fn advance(&mut self, mut written: usize, totals: &[usize]) {
        let mut finished = 0;
        while finished < totals.len() && written >= totals[finished] - self.offset {
            written -= totals[finished] - self.offset;
            self.offset = 0;
            finished += 1;
        }
        self.offset += written;
        self.frames.drain(..finished);
    }
}

/// A frame's opcode (with [`RSV1`] when compressed) and payload as written to a connection
/// with `deflate`.
fn wire(deflate: Option<DeflateOut>, frame: &Outgoing) -> (u8, &Bytes) {
    match frame {
        Outgoing::Text(payload) => (OPCODE_TEXT, payload),
        Outgoing::Deflated(payload) => (OPCODE_TEXT | RSV1, payload),
        Outgoing::Shared(shared) => {
            match deflate.filter(|deflate| deflate.wants(shared.text.len())).and_then(|_| shared.deflated()) {
                Some(compressed) => (OPCODE_TEXT | RSV1, compressed),
                None => (OPCODE_TEXT, &shared.text),
            }
        }
        Outgoing::Ping => (OPCODE_PING, &EMPTY),
        Outgoing::Pong(payload) => (OPCODE_PONG, payload),
        Outgoing::Close(payload) => (OPCODE_CLOSE, payload),
    }
}

/// The header of an unmasked server frame with FIN set (`opcode` may carry [`RSV1`]).
fn frame_header(opcode: u8, len: usize, header: &mut [u8; 10]) -> usize {
    header[0] = 0x80 | opcode;
    if len < 126 {
        header[1] = len as u8;
        2
    } else if len <= u16::MAX as usize {
        header[1] = 126;
        header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        header[1] = 127;
        header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::AsyncReadExt;
    use tokio::net::TcpStream;

    use super::*;

    #[test]
    fn test_frame_headers() {
        let mut header = [0u8; 10];
        assert_eq!(frame_header(OPCODE_TEXT, 5, &mut header), 2);
        assert_eq!(&header[..2], &[0x81, 5]);
        assert_eq!(frame_header(OPCODE_TEXT, 300, &mut header), 4);
        assert_eq!(&header[..4], &[0x81, 126, 1, 44]);
        assert_eq!(frame_header(OPCODE_TEXT, 70_000, &mut header), 10);
        assert_eq!(header[1], 127);
    }

    #[test]
    fn test_compressed_frames_carry_rsv1() {
        let mut header = [0u8; 10];
        assert_eq!(frame_header(OPCODE_TEXT | RSV1, 5, &mut header), 2);
        assert_eq!(&header[..2], &[0xC1, 5]);
        let text = Bytes::from(r#"{"type":"chat.message","text":"hello hello hello hello hello"}"#.repeat(8));
        let negotiated = deflate::Negotiated { server_window_bits: 15, client_no_context_takeover: false };
        let mut queue = WriteQueue::new(Some(DeflateOut::new(&negotiated, 256)));
        let shared = Arc::new(deflate::SharedText::new(text.clone()));
        queue.extend([
            Outgoing::Shared(shared.clone()),
            Outgoing::Text(text.clone()),
            Outgoing::Text(Bytes::from_static(b"short")),
            Outgoing::Ping,
        ]);
        let opcodes: Vec<u8> = queue.frames.iter().map(|frame| wire(queue.deflate, frame).0).collect();
        assert_eq!(opcodes, [OPCODE_TEXT | RSV1, OPCODE_TEXT | RSV1, OPCODE_TEXT, OPCODE_PING]);
        // The shared form is the same bytes, not a copy.
        assert_eq!(wire(queue.deflate, &queue.frames[0]).1.as_ptr(), shared.deflated().unwrap().as_ptr());
        let mut plain = WriteQueue::default();
        plain.extend([Outgoing::Shared(shared)]);
        assert_eq!(wire(None, &plain.frames[0]), (OPCODE_TEXT, &text));
    }

    #[test]
    fn test_advance_through_partial_writes() {
        let mut queue = WriteQueue::default();
        queue.extend([Outgoing::Text(Bytes::from_static(b"abc")), Outgoing::Ping]);
        queue.advance(2, &[5, 2]); // the first header
        assert!(queue.is_mid_frame());
        queue.advance(3, &[5, 2]); // its payload
        assert!(!queue.is_mid_frame());
        assert_eq!(queue.frames.len(), 1);
        queue.advance(1, &[2]); // half the ping's header
        assert!(queue.is_mid_frame());
        queue.advance(1, &[2]);
        assert!(queue.is_empty() && !queue.is_mid_frame());
    }

    /// Everything `queue` writes to a real socket, flushed until empty, up to the close.
    async fn written(mut queue: WriteQueue) -> Vec<u8> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let mut transport = Transport::plain(client);
        let (mut server_side, _) = listener.accept().await.unwrap();
        let reader = tokio::spawn(async move {
            let mut out = Vec::new();
            server_side.read_to_end(&mut out).await.unwrap();
            out
        });
        while !queue.is_empty() {
            match queue.try_flush(&mut transport) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    transport.ready(Some(tokio::io::Interest::WRITABLE)).await.unwrap();
                }
                Err(err) => panic!("{err}"),
            }
        }
        drop(transport);
        reader.await.unwrap()
    }

    #[tokio::test]
    async fn test_flush_writes_every_frame_in_order() {
        let mut queue = WriteQueue::default();
        let big = Bytes::from(vec![b'x'; 100_000]);
        queue.extend([Outgoing::Text(Bytes::from_static(b"ab")), Outgoing::Ping, Outgoing::Text(big.clone())]);
        queue.push_close(Disconnect::NORMAL);
        let out = written(queue).await;
        assert_eq!(&out[..4], &[0x81, 2, b'a', b'b']);
        assert_eq!(&out[4..6], &[0x89, 0]);
        assert_eq!(&out[6..16], &[0x81, 127, 0, 0, 0, 0, 0, 1, 0x86, 0xa0]);
        assert_eq!(&out[16..100_016], &big[..]);
        assert_eq!(
            &out[100_016..],
            &[0x88, 16, 0x03, 0xe8, b'n', b'o', b'r', b'm', b'a', b'l', b' ', b'c', b'l', b'o', b's', b'u', b'r', b'e']
                [..]
        );
    }

    /// More frames than one vectored write takes leave in several writes, in order.
    #[tokio::test]
    async fn test_flush_splits_a_long_queue_into_writes_in_order() {
        let mut queue = WriteQueue::default();
        let count = 2 * FRAMES_PER_WRITE + 3;
        queue.extend((0..count).map(|index| Outgoing::Text(Bytes::from(format!("{index:05}")))));
        let out = written(queue).await;
        assert_eq!(out.len(), count * 7);
        for (index, frame) in out.chunks(7).enumerate() {
            assert_eq!(&frame[..2], &[0x81, 5]);
            assert_eq!(frame[2..], *format!("{index:05}").as_bytes(), "frame {index}");
        }
    }
}
