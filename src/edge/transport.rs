//! The socket of an upgraded connection: plain TCP, or TCP with a `rustls::ServerConnection`
//! driven over the same readiness loop. Either way the session waits on `ready()` and then
//! reads and writes without blocking; TLS adds one step on each side: records read from the
//! socket are decrypted into the session's read buffer (`read_tls` → `process_new_packets` →
//! `reader()`), and a vectored write of frames is encrypted into records in one go
//! (`writer().write_vectored` → `write_tls`).

use std::io::{self, IoSlice, Read, Write};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use rustls::ServerConnection;
use tokio::io::{Interest, Ready};
use tokio::net::TcpStream;

/// TLS records read per call before the session gets its turn back.
const RECORDS_PER_READ: usize = 16;
/// Plaintext bytes taken per call at most (one TLS record).
const MAX_PLAINTEXT_READ: usize = 16 * 1024;

pub struct Transport {
    stream: TcpStream,
    /// Boxed: the connection state is large, and plain connections should not carry its size.
    tls: Option<Box<ServerConnection>>,
}

impl Transport {
    pub fn plain(stream: TcpStream) -> Transport {
        Transport { stream, tls: None }
    }

    /// Takes the socket (and the TLS state) back out of hyper's upgrade, with the bytes
    /// hyper had read past the handshake; `None` for an unknown stream type.
    pub fn from_upgraded(upgraded: Upgraded) -> Option<(Transport, Bytes)> {
        let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => return Some((Transport::plain(parts.io.into_inner()), parts.read_buf)),
            Err(upgraded) => upgraded,
        };
        let parts = upgraded.downcast::<TokioIo<tokio_rustls::server::TlsStream<TcpStream>>>().ok()?;
        let (stream, tls) = parts.io.into_inner().into_inner();
        Some((Transport { stream, tls: Some(Box::new(tls)) }, parts.read_buf))
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Waits for `interest` on the socket; never resolves without one.
    ///
    /// Polls the socket's own reader and writer waker slots rather than awaiting
    /// `TcpStream::ready`, whose future carries a waiter node of its own in every
    /// connection's task. Taking the reader slot also releases the waker hyper's task left
    /// there, and with it that finished task's allocation.
    pub async fn ready(&self, interest: Option<Interest>) -> io::Result<Ready> {
        std::future::poll_fn(|cx| self.poll_ready(cx, interest)).await
    }

    fn poll_ready(&self, cx: &mut Context<'_>, interest: Option<Interest>) -> Poll<io::Result<Ready>> {
        let Some(interest) = interest else { return Poll::Pending };
        let mut ready = Ready::EMPTY;
        if interest.is_readable() {
            match self.stream.poll_read_ready(cx) {
                Poll::Ready(Ok(())) => ready |= Ready::READABLE,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => {}
            }
        }
        if interest.is_writable() {
            match self.stream.poll_write_ready(cx) {
                Poll::Ready(Ok(())) => ready |= Ready::WRITABLE,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => {}
            }
        }
        match ready.is_empty() {
            true => Poll::Pending,
            false => Poll::Ready(Ok(ready)),
        }
    }

    /// True while TLS records wait to be written (the socket must be watched for writable).
    pub fn wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.wants_write())
    }

    /// Reads plaintext into the spare capacity of `buf`: `Ok(0)` when the peer is done,
    /// `Err(WouldBlock)` when nothing is there yet.
    ///
    /// A plain read that leaves room in `buf` took everything the socket had: its readiness
    /// is cleared then, so the caller's next read answers `WouldBlock` without a system
    /// call (a client that sends one frame at a time costs one read per frame, not two).
    /// Bytes that arrive after the read raise a new readiness event: none is missed.
    pub fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        let Some(tls) = self.tls.as_deref_mut() else {
            let spare = buf.capacity() - buf.len();
            let mut took = None;
            let read = self.stream.try_io(Interest::READABLE, || {
                let count = self.stream.try_read_buf(buf)?;
                took = Some(count);
                if count > 0 && count < spare {
                    // Drained: `WouldBlock` makes tokio clear the readiness it saw.
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(count)
            });
            return match (read, took) {
                (Err(err), Some(count)) if err.kind() == io::ErrorKind::WouldBlock => Ok(count),
                (read, _) => read,
            };
        };
        for _ in 0..RECORDS_PER_READ {
            let start = buf.len();
            buf.resize(start + (buf.capacity() - start).clamp(1, MAX_PLAINTEXT_READ), 0);
            let read = tls.reader().read(&mut buf[start..]);
            buf.truncate(start + *read.as_ref().unwrap_or(&0));
            match read {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                // `Ok(0)`: close_notify; an error: the peer left without one.
                other => return other,
            }
            if tls.read_tls(&mut SocketIo(&self.stream))? == 0 {
                return Ok(0);
            }
            if let Err(err) = tls.process_new_packets() {
                // rustls queued an alert for the peer: give it one chance to leave.
                let _ = tls.write_tls(&mut SocketIo(&self.stream));
                return Err(io::Error::new(io::ErrorKind::InvalidData, err));
            }
        }
        // Records without application data (a key update, tickets): the socket may still be
        // readable, and its readiness says so.
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// Writes some of `slices`; returns how many bytes were taken. For TLS these are
    /// encrypted and sent as far as the socket takes them (the rest when it is writable).
    pub fn write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return self.stream.try_write_vectored(slices);
        };
        flush_records(tls, &self.stream)?;
        let taken = tls.writer().write_vectored(slices)?;
        match flush_records(tls, &self.stream) {
            Err(err) if err.kind() != io::ErrorKind::WouldBlock => Err(err),
            _ => Ok(taken),
        }
    }

    /// Writes the TLS records still waiting (`Err(WouldBlock)` if the socket is full).
    pub fn flush(&mut self) -> io::Result<()> {
        match self.tls.as_deref_mut() {
            Some(tls) => flush_records(tls, &self.stream),
            None => Ok(()),
        }
    }
}

fn flush_records(tls: &mut ServerConnection, stream: &TcpStream) -> io::Result<()> {
    while tls.wants_write() {
        if tls.write_tls(&mut SocketIo(stream))? == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
    }
    Ok(())
}

/// Blocking-style `Read`/`Write` over the non-blocking socket, for rustls.
struct SocketIo<'a>(&'a TcpStream);

impl Read for SocketIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for SocketIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
