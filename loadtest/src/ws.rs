//! The client side of a WebSocket connection: TCP connect (optionally from a chosen source
//! address), TLS for wss://, the HTTP/1.1 upgrade written by hand, and a fastwebsockets
//! [`WebSocket`] over the socket itself.
//!
//! The upgrade is done by hand rather than with `fastwebsockets::handshake::client` so that
//! a connection costs no hyper connection task and no boxed `Upgraded` stream: the harness
//! shares the machine with the server it measures, and at 10k+ connections that matters.
//!
//! With `--compression` the upgrade offers permessage-deflate (RFC 7692), and the read side
//! inflates each compressed frame back into a plain one before fastwebsockets (which refuses
//! RSV1) sees it: the rest of the harness reads plain frames either way.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use fastwebsockets::{Role, WebSocket};
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpSocket;

use crate::tls::{self, ReadHalf, Stream, WriteHalf};
use crate::urls::Target;

/// A stream whose first bytes were already read (bytes the server sent right behind the
/// 101 response).
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
    /// Set when permessage-deflate was negotiated: compressed frames are rewritten plain.
    inflate: Option<Box<crate::deflate::Inflating>>,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Prefixed { prefix, pos: 0, inner, inflate: None }
    }

    /// A stream whose compressed frames (the server's, after `prefix`) are inflated.
    pub fn inflating(prefix: Vec<u8>, inner: S) -> Self {
        Prefixed { prefix: Vec::new(), pos: 0, inner, inflate: Some(Box::new(crate::deflate::Inflating::new(prefix))) }
    }
}

impl Prefixed<Stream> {
    /// Splits into owned halves (no lock between them for plain TCP); unread prefix bytes
    /// stay with the read half.
    pub fn into_split(self) -> (Prefixed<ReadHalf>, WriteHalf) {
        let (read, write) = self.inner.into_split();
        (Prefixed { prefix: self.prefix, pos: self.pos, inner: read, inflate: self.inflate }, write)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(inflate) = this.inflate.as_deref_mut() {
            return inflate.poll_read(Pin::new(&mut this.inner), cx, buf);
        }
        if this.pos < this.prefix.len() {
            let n = (this.prefix.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

pub type Ws = WebSocket<Prefixed<Stream>>;

/// Why a connection attempt failed; `kind()` is the report's category.
#[derive(Debug)]
pub enum ConnectError {
    Timeout,
    Refused,
    /// The server answered the upgrade with this HTTP status.
    Status(u16),
    Io(io::Error),
    Handshake(String),
}

impl ConnectError {
    pub fn kind(&self) -> String {
        match self {
            ConnectError::Timeout => "timeout".into(),
            ConnectError::Refused => "refused".into(),
            ConnectError::Status(code) => format!("http_{code}"),
            ConnectError::Io(err) => match err.kind() {
                io::ErrorKind::AddrNotAvailable => "addr_not_available".into(),
                io::ErrorKind::ConnectionReset => "reset".into(),
                io::ErrorKind::UnexpectedEof => "eof".into(),
                _ if err.raw_os_error() == Some(libc::EMFILE) || err.raw_os_error() == Some(libc::ENFILE) => {
                    "too_many_open_files".into()
                }
                _ => "io".into(),
            },
            ConnectError::Handshake(_) => "handshake".into(),
        }
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Timeout => write!(f, "timed out"),
            ConnectError::Refused => write!(f, "connection refused"),
            ConnectError::Status(code) => write!(f, "upgrade answered HTTP {code}"),
            ConnectError::Io(err) => write!(f, "{err}"),
            ConnectError::Handshake(msg) => write!(f, "bad handshake: {msg}"),
        }
    }
}

impl From<io::Error> for ConnectError {
    fn from(err: io::Error) -> Self {
        if err.kind() == io::ErrorKind::ConnectionRefused {
            ConnectError::Refused
        } else {
            ConnectError::Io(err)
        }
    }
}

/// What to connect to and how.
pub struct ConnectSpec<'a> {
    pub target: &'a Target,
    pub source: Option<IpAddr>,
    /// Query parameters to add (`token=...`, `room=...`).
    pub query: String,
    /// Sent as `Authorization: Bearer` when set.
    pub bearer: Option<&'a str>,
    pub timeout: Duration,
    /// The client's trust, for a wss:// target.
    pub tls: Option<&'a std::sync::Arc<ClientConfig>>,
    /// Offer permessage-deflate (and insist on it: a server that does not accept fails the
    /// connection).
    pub deflate: bool,
}

/// Connects and completes the upgrade.
pub async fn connect(spec: ConnectSpec<'_>) -> Result<Ws, ConnectError> {
    match tokio::time::timeout(spec.timeout, connect_inner(&spec)).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Timeout),
    }
}

async fn connect_inner(spec: &ConnectSpec<'_>) -> Result<Ws, ConnectError> {
    let addr = spec.target.addr;
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(source) = spec.source {
        bind_source(&socket, source)?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut stream = match (spec.target.tls, spec.tls) {
        (false, _) => Stream::Plain(stream),
        (true, Some(config)) => Stream::Tls(Box::new(tls::handshake(config, spec.target.host(), stream).await?)),
        (true, None) => return Err(ConnectError::Handshake("wss:// without --ca-file".into())),
    };
    let key = fastwebsockets::handshake::generate_key();
    let mut request = String::with_capacity(256);
    request.push_str("GET ");
    request.push_str(&spec.target.path_with(&spec.query));
    request.push_str(" HTTP/1.1\r\nHost: ");
    request.push_str(&spec.target.authority);
    request
        .push_str("\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ");
    request.push_str(&key);
    request.push_str("\r\nUser-Agent: ringcast-loadtest\r\n");
    if spec.deflate {
        request.push_str("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n");
    }
    if let Some(token) = spec.bearer {
        request.push_str("Authorization: Bearer ");
        request.push_str(token);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(ConnectError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            break pos + 4;
        }
        if buf.len() > 16 * 1024 {
            return Err(ConnectError::Handshake("response head too large".into()));
        }
    };
    let status = parse_status(&buf[..head_end]).ok_or_else(|| ConnectError::Handshake("no status line".into()))?;
    if status != 101 {
        return Err(ConnectError::Status(status));
    }
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    if !head.contains("upgrade: websocket") {
        return Err(ConnectError::Handshake("no Upgrade: websocket".into()));
    }
    let rest = buf[head_end..].to_vec();
    let stream = if spec.deflate {
        if !head.contains("sec-websocket-extensions: permessage-deflate") {
            return Err(ConnectError::Handshake(
                "permessage-deflate not accepted (is the server's --compression on?)".into(),
            ));
        }
        Prefixed::inflating(rest, stream)
    } else {
        Prefixed::new(rest, stream)
    };
    let mut ws = WebSocket::after_handshake(stream, Role::Client);
    ws.set_auto_pong(true);
    ws.set_auto_close(true);
    ws.set_writev(false);
    Ok(ws)
}

/// Binds the socket to `source` with `IP_BIND_ADDRESS_NO_PORT`, so the ephemeral port is
/// picked at connect time per 4-tuple: each source address brings its own ~28k ports.
fn bind_source(socket: &TcpSocket, source: IpAddr) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    if source.is_ipv4() {
        let one: libc::c_int = 1;
        // SAFETY: a valid socket fd and a c_int option value of the right size.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    socket.bind(SocketAddr::new(source, 0))
}

fn parse_status(head: &[u8]) -> Option<u16> {
    let line_end = find(head, b"\r\n")?;
    let line = std::str::from_utf8(&head[..line_end]).ok()?;
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// The first position of `needle` in `haystack` (vectorised: the harness scans every
/// delivered frame with it).
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    memchr::memmem::find(haystack, needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_find_and_status() {
        assert_eq!(find(b"abc\r\n\r\nrest", b"\r\n\r\n"), Some(3));
        assert_eq!(find(b"aaab", b"ab"), Some(2));
        assert_eq!(find(b"ab", b"abc"), None);
        assert_eq!(parse_status(b"HTTP/1.1 101 Switching Protocols\r\n"), Some(101));
        assert_eq!(parse_status(b"HTTP/1.1 401 Unauthorized\r\nx"), Some(401));
        assert_eq!(parse_status(b"garbage\r\n"), None);
    }

    #[tokio::test]
    async fn test_prefixed_reads_prefix_first() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(b"world").await.unwrap();
        drop(a);
        let mut p = Prefixed::new(b"hello ".to_vec(), b);
        let mut out = String::new();
        p.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }
}
