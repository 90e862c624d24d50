//! The harness's side of permessage-deflate (RFC 7692): [`Inflating`] sits under
//! fastwebsockets' read half and hands it every server frame plain, a compressed one (RSV1)
//! inflated. The server deflates each message on its own (`server_no_context_takeover`), so
//! one inflate context per connection is reset before each message.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use flate2::{Decompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, ReadBuf};

/// Appended to a compressed message before inflating it (RFC 7692 §7.2.2).
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Reads raw frames from the socket and serves them rewritten.
pub struct Inflating {
    /// Bytes read and not yet framed.
    raw: Vec<u8>,
    /// Frames ready to serve, from `served` on.
    out: Vec<u8>,
    served: usize,
    context: Decompress,
}

impl Inflating {
    /// `prefix`: bytes already read behind the upgrade's response.
    pub fn new(prefix: Vec<u8>) -> Self {
        Inflating { raw: prefix, out: Vec::new(), served: 0, context: Decompress::new(false) }
    }

    pub fn poll_read<S: AsyncRead + Unpin>(
        &mut self,
        mut inner: Pin<&mut S>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.served < self.out.len() {
                let n = (self.out.len() - self.served).min(buf.remaining());
                buf.put_slice(&self.out[self.served..self.served + n]);
                self.served += n;
                if self.served == self.out.len() {
                    self.out.clear();
                    self.served = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if self.next_frame()? {
                continue;
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(inner.as_mut().poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // EOF: whatever partial frame is left is dropped, as the socket would.
                return Poll::Ready(Ok(()));
            }
            self.raw.extend_from_slice(read.filled());
        }
    }

    /// Moves the first whole frame of `raw` to `out` (inflated when compressed); false when
    /// `raw` holds no whole frame yet.
    fn next_frame(&mut self) -> io::Result<bool> {
        let Some((header_len, payload_len)) = frame_len(&self.raw) else { return Ok(false) };
        let total = header_len + payload_len;
        if self.raw.len() < total {
            return Ok(false);
        }
        let first = self.raw[0];
        if first & 0x40 == 0 {
            self.out.extend_from_slice(&self.raw[..total]);
        } else {
            if first & 0x80 == 0 {
                return Err(io::Error::other("fragmented compressed server message"));
            }
            let text = inflate(&mut self.context, &self.raw[header_len..total])?;
            write_header(&mut self.out, first & !0x40, text.len());
            self.out.extend_from_slice(&text);
        }
        self.raw.drain(..total);
        Ok(true)
    }
}

/// One server message, deflated on its own (`server_no_context_takeover`).
fn inflate(context: &mut Decompress, compressed: &[u8]) -> io::Result<Vec<u8>> {
    context.reset(false);
    let mut input = Vec::with_capacity(compressed.len() + SYNC_TAIL.len());
    input.extend_from_slice(compressed);
    input.extend_from_slice(&SYNC_TAIL);
    let mut out = Vec::with_capacity(compressed.len() * 4 + 64);
    loop {
        let consumed = context.total_in() as usize;
        let status = context
            .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
        let done = context.total_in() as usize == input.len() || status == Status::StreamEnd;
        if done && out.len() < out.capacity() {
            return Ok(out);
        }
        out.reserve(out.capacity().max(1024));
    }
}

/// Header and payload lengths of the frame at the start of `raw` (server frames are not
/// masked), once its header is complete.
fn frame_len(raw: &[u8]) -> Option<(usize, usize)> {
    let second = *raw.get(1)?;
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    match second & 0x7F {
        126 => Some((4 + mask, u16::from_be_bytes([*raw.get(2)?, *raw.get(3)?]) as usize)),
        127 => Some((10 + mask, u64::from_be_bytes(raw.get(2..10)?.try_into().ok()?) as usize)),
        len => Some((2 + mask, len as usize)),
    }
}

fn write_header(out: &mut Vec<u8>, first: u8, len: usize) {
    out.push(first);
    if len < 126 {
        out.push(len as u8);
    } else if len <= u16::MAX as usize {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn test_compressed_frames_come_out_plain() {
        // RFC 7692 §7.2.3.1: "Hello" compressed, then a plain frame, then a 300-byte one.
        let mut wire = vec![0xC1, 7, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        wire.extend_from_slice(&[0x81, 2, b'h', b'i']);
        let long = "abc".repeat(100);
        let mut compress = flate2::Compress::new(flate2::Compression::fast(), false);
        let mut compressed = Vec::with_capacity(1024);
        compress.compress_vec(long.as_bytes(), &mut compressed, flate2::FlushCompress::Sync).unwrap();
        compressed.truncate(compressed.len() - 4);
        write_header(&mut wire, 0xC1, compressed.len());
        wire.extend_from_slice(&compressed);
        let (mut tx, rx) = tokio::io::duplex(8);
        tokio::spawn(async move { tokio::io::AsyncWriteExt::write_all(&mut tx, &wire).await });
        let mut stream = crate::ws::Prefixed::inflating(Vec::new(), rx);
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.unwrap();
        let mut expected = vec![0x81, 5];
        expected.extend_from_slice(b"Hello");
        expected.extend_from_slice(&[0x81, 2, b'h', b'i']);
        write_header(&mut expected, 0x81, 300);
        expected.extend_from_slice(long.as_bytes());
        assert_eq!(out, expected);
    }
}
