//! The write side of a connection: a [`WriteQueue`] of frames taken from the outbox, written
//! with as few non-blocking vectored writes as the socket allows. The payloads are the shared
//! `Bytes` themselves (headers are built on the stack), so a broadcast is never copied per
//! connection, and many queued frames leave in one syscall.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::Bytes;

use crate::close::Disconnect;
use crate::edge::conn::Outgoing;
use crate::edge::deflate::{self, DeflateOut};
use crate::edge::transport::Transport;

const OPCODE_TEXT: u8 = 0x1;
const OPCODE_CLOSE: u8 = 0x8;
const OPCODE_PING: u8 = 0x9;
const OPCODE_PONG: u8 = 0xA;

/// Frames per vectored write (two iovecs each; Linux takes up to 1024).
const FRAMES_PER_WRITE: usize = 64;
/// RSV1 in the first header byte: the frame is a compressed message (RFC 7692 §6).
const RSV1: u8 = 0x40;

/// Frames waiting to be written, the first maybe partly written.
#[derive(Default)]
pub struct WriteQueue {
    frames: VecDeque<Queued>,
    /// Bytes of the first frame (header + payload) already written.
    offset: usize,
    /// Set when the connection negotiated permessage-deflate.
    deflate: Option<DeflateOut>,
}

struct Queued {
    /// The opcode, with [`RSV1`] for a compressed message.
    opcode: u8,
    payload: Bytes,
}

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

    /// Queues frames; on a connection that negotiated permessage-deflate, text frames of a
    /// size worth it go compressed (a shared one as its shared compressed form).
    pub fn extend(&mut self, frames: impl IntoIterator<Item = Outgoing>) {
        let deflate = self.deflate;
        let wants = |len: usize| deflate.is_some_and(|deflate| deflate.wants(len));
        self.frames.extend(frames.into_iter().map(|frame| match frame {
            Outgoing::Text(payload) if wants(payload.len()) => match deflate::compress(&payload) {
                Some(compressed) => Queued { opcode: OPCODE_TEXT | RSV1, payload: compressed },
                None => Queued { opcode: OPCODE_TEXT, payload },
            },
            Outgoing::Text(payload) => Queued { opcode: OPCODE_TEXT, payload },
            Outgoing::Shared(shared) => match wants(shared.text.len()).then(|| shared.deflated()).flatten() {
                Some(compressed) => Queued { opcode: OPCODE_TEXT | RSV1, payload: compressed.clone() },
                None => Queued { opcode: OPCODE_TEXT, payload: shared.text.clone() },
            },
            Outgoing::Ping => Queued { opcode: OPCODE_PING, payload: Bytes::new() },
            Outgoing::Pong(payload) => Queued { opcode: OPCODE_PONG, payload },
        }));
    }

    /// Queues the close frame of `disconnect`.
    pub fn push_close(&mut self, disconnect: Disconnect) {
        let mut payload = disconnect.code.to_be_bytes().to_vec();
        payload.extend_from_slice(disconnect.reason.as_bytes());
        self.frames.push_back(Queued { opcode: OPCODE_CLOSE, payload: Bytes::from(payload) });
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
            let count = self.frames.len().min(FRAMES_PER_WRITE);
            let mut headers = [[0u8; 10]; FRAMES_PER_WRITE];
            let mut header_lens = [0usize; FRAMES_PER_WRITE];
            for (index, frame) in self.frames.iter().take(count).enumerate() {
                header_lens[index] = frame_header(frame.opcode, frame.payload.len(), &mut headers[index]);
            }
            let mut slices = [IoSlice::new(&[]); 2 * FRAMES_PER_WRITE];
            let mut num_slices = 0;
            for (index, frame) in self.frames.iter().take(count).enumerate() {
                let header_len = header_lens[index];
                let skip = if index == 0 { self.offset } else { 0 };
                if skip < header_len {
                    slices[num_slices] = IoSlice::new(&headers[index][skip..header_len]);
                    num_slices += 1;
                    if !frame.payload.is_empty() {
                        slices[num_slices] = IoSlice::new(&frame.payload);
                        num_slices += 1;
                    }
                } else {
                    slices[num_slices] = IoSlice::new(&frame.payload[skip - header_len..]);
                    num_slices += 1;
                }
            }
            let written = transport.write_vectored(&slices[..num_slices])?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.advance(written);
        }
        // Everything is written: give the queue's buffer back, or every connection that
        // was ever sent a frame would keep one for its whole life.
        self.frames = VecDeque::new();
        transport.flush()
    }

    fn advance(&mut self, mut written: usize) {
        while written > 0 {
            let Some(front) = self.frames.front() else { return };
            let total = header_len_of(front.payload.len()) + front.payload.len();
            let remaining = total - self.offset;
            if written >= remaining {
                written -= remaining;
                self.frames.pop_front();
                self.offset = 0;
            } else {
                self.offset += written;
                written = 0;
            }
        }
    }
}

fn header_len_of(len: usize) -> usize {
    if len < 126 {
        2
    } else if len <= u16::MAX as usize {
        4
    } else {
        10
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
        let opcodes: Vec<u8> = queue.frames.iter().map(|frame| frame.opcode).collect();
        assert_eq!(opcodes, [OPCODE_TEXT | RSV1, OPCODE_TEXT | RSV1, OPCODE_TEXT, OPCODE_PING]);
        // The shared form is the same bytes, not a copy.
        assert_eq!(queue.frames[0].payload.as_ptr(), shared.deflated().unwrap().as_ptr());
        let mut plain = WriteQueue::default();
        plain.extend([Outgoing::Shared(shared)]);
        assert_eq!((plain.frames[0].opcode, &plain.frames[0].payload), (OPCODE_TEXT, &text));
    }

    #[test]
    fn test_advance_through_partial_writes() {
        let mut queue = WriteQueue::default();
        queue.extend([Outgoing::Text(Bytes::from_static(b"abc")), Outgoing::Ping]);
        queue.advance(2); // the first header
        assert!(queue.is_mid_frame());
        queue.advance(3); // its payload
        assert!(!queue.is_mid_frame());
        assert_eq!(queue.frames.len(), 1);
        queue.advance(2);
        assert!(queue.is_empty());
    }

    #[tokio::test]
    async fn test_flush_writes_every_frame_in_order() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let mut transport = Transport::plain(client);
        let (mut server_side, _) = listener.accept().await.unwrap();
        let mut queue = WriteQueue::default();
        let big = Bytes::from(vec![b'x'; 100_000]);
        queue.extend([Outgoing::Text(Bytes::from_static(b"ab")), Outgoing::Ping, Outgoing::Text(big.clone())]);
        queue.push_close(Disconnect::NORMAL);
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
        let out = reader.await.unwrap();
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
}
