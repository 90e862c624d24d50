//! wss:// for the harness: the client's trust (`--ca-file`, PEM certificates) and a socket
//! that is plain TCP or TLS over it, split into owned halves either way (plain TCP splits
//! without a lock, as before; TLS through `tokio::io::split`).

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::{bail, Context as _, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A client configuration trusting the certificates in `ca_file` (ALPN http/1.1).
pub fn client_config(ca_file: &Path) -> Result<Arc<ClientConfig>> {
    let pem = std::fs::read(ca_file).with_context(|| format!("cannot read --ca-file {}", ca_file.display()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.with_context(|| format!("--ca-file {}: bad pem", ca_file.display()))?;
        roots.add(cert).with_context(|| format!("--ca-file {}: unusable certificate", ca_file.display()))?;
    }
    if roots.is_empty() {
        bail!("--ca-file {}: no certificate in the file", ca_file.display());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The TLS handshake over `stream`, checking the certificate against `host` (a name or an
/// IP address, as in the URL).
pub async fn handshake(config: &Arc<ClientConfig>, host: &str, stream: TcpStream) -> io::Result<TlsStream<TcpStream>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name =
        ServerName::try_from(host.to_string()).map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
    tokio_rustls::TlsConnector::from(config.clone()).connect(name, stream).await
}

/// The socket of a connection.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

pub enum ReadHalf {
    Plain(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<Box<TlsStream<TcpStream>>>),
}

pub enum WriteHalf {
    Plain(OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<Box<TlsStream<TcpStream>>>),
}

impl Stream {
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Stream::Plain(stream) => {
                let (read, write) = stream.into_split();
                (ReadHalf::Plain(read), WriteHalf::Plain(write))
            }
            Stream::Tls(stream) => {
                let (read, write) = tokio::io::split(stream);
                (ReadHalf::Tls(read), WriteHalf::Tls(write))
            }
        }
    }
}

/// Forwards `AsyncRead` to whichever variant `$ty` holds.
macro_rules! forward_read {
    ($ty:ident) => {
        impl AsyncRead for $ty {
            fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $ty::Plain(inner) => Pin::new(inner).poll_read(cx, buf),
                    $ty::Tls(inner) => Pin::new(inner).poll_read(cx, buf),
                }
            }
        }
    };
}

/// Forwards `AsyncWrite` to whichever variant `$ty` holds.
macro_rules! forward_write {
    ($ty:ident) => {
        impl AsyncWrite for $ty {
            fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $ty::Plain(inner) => Pin::new(inner).poll_write(cx, buf),
                    $ty::Tls(inner) => Pin::new(inner).poll_write(cx, buf),
                }
            }
            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $ty::Plain(inner) => Pin::new(inner).poll_write_vectored(cx, bufs),
                    $ty::Tls(inner) => Pin::new(inner).poll_write_vectored(cx, bufs),
                }
            }
            fn is_write_vectored(&self) -> bool {
                match self {
                    $ty::Plain(inner) => inner.is_write_vectored(),
                    $ty::Tls(inner) => inner.is_write_vectored(),
                }
            }
            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $ty::Plain(inner) => Pin::new(inner).poll_flush(cx),
                    $ty::Tls(inner) => Pin::new(inner).poll_flush(cx),
                }
            }
            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $ty::Plain(inner) => Pin::new(inner).poll_shutdown(cx),
                    $ty::Tls(inner) => Pin::new(inner).poll_shutdown(cx),
                }
            }
        }
    };
}

forward_read!(Stream);
forward_read!(ReadHalf);
forward_write!(Stream);
forward_write!(WriteHalf);
