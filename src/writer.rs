//! The writer task of a connection: drains the outbox and writes every queued frame in one
//! vectored socket write (shared `Bytes`, no copy), sends server pings, and ends the
//! connection on idle timeout, token expiry, shutdown, or any close asked of the outbox.

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::{sleep_until, Instant};

use crate::auth::now_secs;
use crate::close::Disconnect;
use crate::conn::{Conn, Outgoing};
use crate::metrics;
use crate::node::Node;

const OPCODE_TEXT: u8 = 0x1;
const OPCODE_CLOSE: u8 = 0x8;
const OPCODE_PING: u8 = 0x9;
const OPCODE_PONG: u8 = 0xA;

/// How long a closing connection may take to take its last frames and the close frame.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs until the connection closes; returns the close that ended it.
pub async fn run<W: AsyncWrite + Unpin>(node: Arc<Node>, conn: Arc<Conn>, mut writer: W) -> Disconnect {
    let limits = &node.config.limits;
    let mut ping_at = Instant::now() + limits.ping_interval;
    loop {
        let batch = conn.outbox.take();
        let closing = batch.close.is_some();
        if !batch.frames.is_empty() {
            let write = write_batch(&mut writer, batch.frames.iter());
            let outcome = tokio::select! {
                result = write => result.map_err(|_| ()),
                _ = conn.outbox.aborted() => Err(()),
                _ = tokio::time::sleep(CLOSE_WRITE_TIMEOUT), if closing => Err(()),
            };
            if outcome.is_err() {
                // The peer is gone or not reading: nothing more can be written.
                let disconnect = conn.outbox.take().close.unwrap_or(Disconnect::NORMAL);
                conn.outbox.abort(disconnect);
                return disconnect;
            }
            continue;
        }
        if let Some(disconnect) = batch.close {
            let close_frame = close_payload(disconnect);
            let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, async {
                write_frame(&mut writer, OPCODE_CLOSE, &close_frame).await?;
                writer.shutdown().await
            })
            .await;
            metrics::disconnect(disconnect.code);
            return disconnect;
        }
        let expiry = token_deadline(&conn);
        let idle_deadline = Instant::now() + limits.idle_timeout.saturating_sub(conn.idle_for());
        tokio::select! {
            _ = conn.outbox.woken() => {}
            _ = conn.identity_changed.notified() => crate::session::apply_group_changes(&node, &conn),
            _ = sleep_until(ping_at) => {
                ping_at = Instant::now() + limits.ping_interval;
                conn.outbox.push(Outgoing::Ping);
            }
            _ = sleep_until(idle_deadline) => {
                if conn.idle_for() >= limits.idle_timeout {
                    conn.outbox.close(Disconnect::IDLE);
                }
            }
            _ = sleep_until(expiry) => {
                if token_deadline(&conn) <= Instant::now() {
                    conn.outbox.close(Disconnect::TOKEN_EXPIRED);
                }
            }
            _ = node.close_all.cancelled(), if !conn.outbox.is_closing() => {
                conn.outbox.close(if node.cluster().is_some() { Disconnect::RESTART } else { Disconnect::SHUTDOWN });
            }
        }
    }
}

/// When the connection's token expires; far away before authentication.
fn token_deadline(conn: &Conn) -> Instant {
    let far = Instant::now() + Duration::from_secs(86_400 * 365);
    match conn.identity() {
        None => far,
        Some(identity) => {
            let now = now_secs();
            Instant::now() + Duration::from_secs(identity.expires_at.saturating_sub(now))
        }
    }
}

fn close_payload(disconnect: Disconnect) -> Vec<u8> {
    let mut payload = disconnect.code.to_be_bytes().to_vec();
    payload.extend_from_slice(disconnect.reason.as_bytes());
    payload
}

/// The header of an unmasked server frame with FIN set.
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

async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, opcode: u8, payload: &[u8]) -> io::Result<()> {
    let mut header = [0u8; 10];
    let header_len = frame_header(opcode, payload.len(), &mut header);
    let mut slices = [IoSlice::new(&header[..header_len]), IoSlice::new(payload)];
    write_all_vectored(writer, &mut slices).await?;
    writer.flush().await
}

/// Writes every frame of a batch with as few syscalls as the socket allows: one iovec per
/// header and per payload, the payloads being the shared `Bytes` themselves.
async fn write_batch<'a, W: AsyncWrite + Unpin>(
    writer: &mut W,
    frames: impl ExactSizeIterator<Item = &'a Outgoing>,
) -> io::Result<()> {
    const EMPTY: &[u8] = &[];
    let frames: Vec<(u8, &[u8])> = frames
        .map(|frame| match frame {
            Outgoing::Text(bytes) => (OPCODE_TEXT, &bytes[..]),
            Outgoing::Ping => (OPCODE_PING, EMPTY),
            Outgoing::Pong(bytes) => (OPCODE_PONG, &bytes[..]),
        })
        .collect();
    let mut headers = vec![[0u8; 10]; frames.len()];
    let mut header_lens = Vec::with_capacity(frames.len());
    for ((opcode, payload), header) in frames.iter().zip(headers.iter_mut()) {
        header_lens.push(frame_header(*opcode, payload.len(), header));
    }
    let mut slices = Vec::with_capacity(frames.len() * 2);
    for (index, (_, payload)) in frames.iter().enumerate() {
        slices.push(IoSlice::new(&headers[index][..header_lens[index]]));
        if !payload.is_empty() {
            slices.push(IoSlice::new(payload));
        }
    }
    write_all_vectored(writer, &mut slices).await?;
    writer.flush().await
}

async fn write_all_vectored<W: AsyncWrite + Unpin>(writer: &mut W, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !slices.is_empty() {
        let written = writer.write_vectored(slices).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, written);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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

    #[tokio::test]
    async fn test_batch_is_written_whole() {
        let frames = vec![
            Outgoing::Text(bytes::Bytes::from_static(b"ab")),
            Outgoing::Ping,
            Outgoing::Text(bytes::Bytes::from(vec![b'x'; 200])),
        ];
        let mut out = Vec::new();
        write_batch(&mut out, frames.iter()).await.unwrap();
        assert_eq!(&out[..4], &[0x81, 2, b'a', b'b']);
        assert_eq!(&out[4..6], &[0x89, 0]);
        assert_eq!(&out[6..10], &[0x81, 126, 0, 200]);
        assert_eq!(out.len(), 10 + 200);
    }
}
