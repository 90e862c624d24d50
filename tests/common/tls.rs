//! TLS for the tests: self-signed certificates made at test time (rcgen), files in a
//! temporary directory, and clients (rustls with aws-lc-rs) that trust exactly the given
//! certificates.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};
use tokio_tungstenite::MaybeTlsStream;

use super::*;

/// A self-signed certificate for `localhost` and `127.0.0.1`, and its key.
pub struct SelfSigned {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl SelfSigned {
    pub fn new() -> SelfSigned {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let rcgen::CertifiedKey { cert, signing_key } = rcgen::generate_simple_self_signed(names).expect("rcgen");
        SelfSigned { cert_pem: cert.pem(), key_pem: signing_key.serialize_pem(), der: cert.der().to_vec() }
    }

    /// Writes `cert.pem` and `key.pem` into `dir`; returns their paths.
    pub fn write_to(&self, dir: &TempDir) -> (String, String) {
        (dir.write("cert.pem", &self.cert_pem), dir.write("key.pem", &self.key_pem))
    }
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("ringcast-{label}-{}-{}-{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    /// Writes (or replaces) `name`; returns its path.
    pub fn write(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write temp file");
        path.to_string_lossy().into_owned()
    }

    pub fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A client configuration that trusts exactly `trusted` and offers ALPN `http/1.1`.
pub fn client_config(trusted: &[&SelfSigned]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in trusted {
        roots.add(CertificateDer::from(cert.der.clone())).expect("trust anchor");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A TLS connection to `addr` (server name 127.0.0.1), handshake done.
pub async fn tls_connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> std::io::Result<TlsStream<TcpStream>> {
    let work = async {
        let stream = TcpStream::connect(addr).await?;
        let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
        tokio_rustls::TlsConnector::from(config.clone()).connect(name, stream).await
    };
    tokio::time::timeout(RECV_TIMEOUT, work).await.expect("tls handshake timed out")
}

/// The DER of the certificate a server presented.
pub fn served_cert(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    let (_, connection) = stream.get_ref();
    connection.peer_certificates().and_then(|chain| chain.first()).map(|cert| cert.to_vec()).unwrap_or_default()
}

/// The certificate a new connection to `addr` is served.
pub async fn cert_served_at(addr: SocketAddr, config: &Arc<ClientConfig>) -> Vec<u8> {
    served_cert(&tls_connect(addr, config).await.expect("tls connect"))
}

/// A WebSocket over TLS to `wss://addr/v1/ws`, with `token` as a bearer token.
pub async fn wss_open(addr: SocketAddr, token: &str, config: &Arc<ClientConfig>) -> Result<Ws, tungstenite::Error> {
    let stream = tls_connect(addr, config).await?;
    let mut request = format!("wss://{addr}/v1/ws").into_client_request()?;
    request.headers_mut().insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
    let work = tokio_tungstenite::client_async(request, MaybeTlsStream::Rustls(stream));
    let (ws, _response) = tokio::time::timeout(RECV_TIMEOUT, work).await.expect("websocket handshake timed out")?;
    Ok(ws)
}

/// An authenticated client of user `sub` over wss.
pub async fn wss_client(addr: SocketAddr, sub: &str, config: &Arc<ClientConfig>) -> Client {
    let ws = wss_open(addr, &Token::new(sub).sign(), config).await.unwrap_or_else(|err| panic!("wss connect: {err}"));
    let mut client = Client::from_ws(ws);
    client.expect_connected().await;
    client
}

/// `GET path` over https with `Connection: close` and optional extra header lines.
pub async fn https_get(addr: SocketAddr, path: &str, headers: &str, config: &Arc<ClientConfig>) -> HttpResponse {
    let stream = tls_connect(addr, config).await.expect("tls connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n");
    http_over(stream, &request).await
}

/// The `--tls-cert`/`--tls-key` flags.
pub fn tls_flags(cert: &str, key: &str) -> Vec<String> {
    vec!["--tls-cert".into(), cert.into(), "--tls-key".into(), key.into()]
}
