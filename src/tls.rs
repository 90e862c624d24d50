//! TLS of the client and admin ports: the certificate chain and key (PEM files) loaded at
//! start, checked as a pair, and reloaded from the same paths on SIGHUP for new connections.
//!
//! The handshake and the HTTP requests before an upgrade run over tokio-rustls; an upgraded
//! connection takes its `rustls::ServerConnection` out and drives it itself
//! (`transport.rs`). One crypto provider in the tree: aws-lc-rs, as jsonwebtoken uses.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio_util::sync::CancellationToken;

/// The certificate and key of a node, replaceable while it runs.
pub struct Tls {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("cert", &self.cert_path).field("key", &self.key_path).finish()
    }
}

impl Tls {
    /// Loads and checks the pair; the error is one line naming the flag and the file.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Tls, String> {
        let config = server_config(cert_path, key_path)?;
        Ok(Tls {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// The acceptor of a new connection, with the pair loaded last.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.read().clone())
    }

    /// Loads the pair again from the same paths; a bad pair leaves the current one in use.
    pub fn reload(&self) -> Result<(), String> {
        let config = server_config(&self.cert_path, &self.key_path)?;
        *self.current.write() = Arc::new(config);
        Ok(())
    }

    /// Reloads the pair on every SIGHUP until `stop`. Registered before the node says it
    /// listens, so that a SIGHUP never meets the default action (exit).
    pub fn reload_on_sighup(self: Arc<Self>, stop: CancellationToken) -> std::io::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = signal(SignalKind::hangup())?;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    received = hangup.recv() => if received.is_none() { return },
                    _ = stop.cancelled() => return,
                }
                match self.reload() {
                    Ok(()) => tracing::info!(cert = %self.cert_path.display(), "tls certificate reloaded"),
                    Err(error) => tracing::warn!(%error, "tls reload refused, the old certificate stays"),
                }
            }
        });
        Ok(())
    }
}

/// Reads both files and builds the server side: TLS 1.2 and 1.3, ALPN `http/1.1`.
fn server_config(cert_path: &Path, key_path: &Path) -> Result<ServerConfig, String> {
    let cert_pem = read("--tls-cert", cert_path)?;
    let key_pem = read("--tls-key", key_path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("--tls-cert {}: bad pem: {}", cert_path.display(), pem_error(err)))?;
    if chain.is_empty() {
        return Err(format!("--tls-cert {}: no certificate in the file", cert_path.display()));
    }
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => {
            return Err(format!("--tls-key {}: no private key in the file", key_path.display()))
        }
        Err(err) => return Err(format!("--tls-key {}: bad pem: {}", key_path.display(), pem_error(err))),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("tls: {err}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|err| match err {
            rustls::Error::InconsistentKeys(_) => {
                format!("--tls-key {} does not match the certificate in {}", key_path.display(), cert_path.display())
            }
            err => format!("--tls-key {}: unusable key: {err}", key_path.display()),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A PEM error without the raw bytes some variants carry.
fn pem_error(err: pem::Error) -> String {
    match err {
        pem::Error::MissingSectionEnd { .. } => "a section has no end line".to_string(),
        pem::Error::IllegalSectionStart { .. } => "a section has a bad begin line".to_string(),
        err => err.to_string(),
    }
}

fn read(flag: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|err| format!("cannot read {flag} {}: {err}", path.display()))
}
