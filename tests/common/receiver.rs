//! A real HTTP receiver on loopback for webhooks and hooks: records every request (headers,
//! body) and answers as the test says; it can be stopped and started again on its port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub raw: Vec<u8>,
    pub body: Value,
    /// How many requests with this `webhook-id` came before this one.
    pub attempt: usize,
}

impl Received {
    pub fn kind(&self) -> &str {
        self.body["type"].as_str().unwrap_or("")
    }
}

/// The answer to a request: status, JSON body, and a delay before it.
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
}

impl Answer {
    pub fn status(status: u16) -> Answer {
        Answer { status, body: String::new(), delay: Duration::ZERO }
    }

    pub fn json(body: Value) -> Answer {
        Answer { status: 200, body: body.to_string(), delay: Duration::ZERO }
    }
}

type Responder = Box<dyn Fn(&Received) -> Answer + Send + Sync>;

struct Shared {
    received: Mutex<Vec<Received>>,
    respond: Mutex<Arc<Responder>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl Receiver {
    /// A receiver answering 204 to everything.
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            received: Mutex::new(Vec::new()),
            respond: Mutex::new(Arc::new(Box::new(|_: &Received| Answer::status(204)))),
        });
        let server = tokio::spawn(serve(listener, shared.clone()));
        Receiver { addr, shared, server: Mutex::new(Some(server)) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn respond_with(&self, respond: impl Fn(&Received) -> Answer + Send + Sync + 'static) {
        *self.shared.respond.lock().unwrap() = Arc::new(Box::new(respond));
    }

    /// Stops listening and drops every open connection: posts are refused.
    pub fn stop(&self) {
        if let Some(server) = self.server.lock().unwrap().take() {
            server.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&self) {
        self.stop();
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        *self.server.lock().unwrap() = Some(tokio::spawn(serve(listener, self.shared.clone())));
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Waits until `done` holds of what was received; panics with `what` after `timeout`.
    pub async fn wait_for(&self, what: &str, timeout: Duration, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let received = self.received();
            if done(&received) {
                return received;
            }
            if tokio::time::Instant::now() > deadline {
                let kinds: Vec<String> = received.iter().map(|r| r.body.to_string()).collect();
                panic!("receiver: {what} not seen within {timeout:?}; got:\n{}", kinds.join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    // Dropped with the task: every connection is aborted with it.
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let shared = shared.clone();
        connections.spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&shared, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
        while connections.try_join_next().is_some() {}
    }
}

async fn answer(shared: &Shared, request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let header =
        |name: &str| request.headers().get(name).and_then(|value| value.to_str().ok()).unwrap_or_default().to_string();
    let (id, timestamp, signature) = (header("webhook-id"), header("webhook-timestamp"), header("webhook-signature"));
    let path = request.uri().path().to_string();
    let raw = request.into_body().collect().await.map(|body| body.to_bytes().to_vec()).unwrap_or_default();
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let received = {
        let mut all = shared.received.lock().unwrap();
        let attempt = all.iter().filter(|earlier| earlier.id == id && earlier.path == path).count();
        let received = Received { path, id, timestamp, signature, raw, body, attempt };
        all.push(received.clone());
        received
    };
    let respond = shared.respond.lock().unwrap().clone();
    let answer = respond(&received);
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    Response::builder()
        .status(answer.status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(answer.body)))
        .unwrap()
}

/// Checks a request's Standard Webhooks signature with `key`, as a receiver would.
pub fn signature_valid(key: &[u8], received: &Received) -> bool {
    let mut content = format!("{}.{}.", received.id, received.timestamp).into_bytes();
    content.extend_from_slice(&received.raw);
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), &content);
    let expected = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(tag.as_ref()));
    received.signature.split(' ').any(|one| one == expected)
}
