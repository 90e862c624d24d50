//! Runs a node: accept loops, the metrics upkeep, and the shutdown sequence.
//!
//! Shutdown order: `/ready` turns false → the accept loops stop → in a cluster, the node
//! gossips `draining`, which takes it off every ring, hands its rooms to their new owners
//! and re-homes its connections' rooms, then each client gets `reconnect{after_ms}` and
//! close 1012, spread over a few seconds; a single node closes everyone with 1001 → the node
//! waits for its connection tasks, at most `--drain-timeout-secs` in all → it leaves the
//! gossip and returns.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ringcast_cluster::MemberState;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::close::Disconnect;
use crate::http::{self, Role};
use crate::node::Node;
use crate::{frames, time};

/// Serves `node` on `listener` (and `admin_listener`) until `shutdown` resolves, then shuts
/// down gracefully. Returns false when the drain timeout expired first.
pub async fn run(
    node: Arc<Node>,
    listener: TcpListener,
    admin_listener: Option<TcpListener>,
    shutdown: impl Future,
) -> bool {
    // Ready before the accept loops run: a request they take already sees it.
    node.set_ready(true);
    let mut accept_loops = vec![tokio::spawn(accept_loop(node.clone(), listener, Role::Client))];
    if let Some(admin_listener) = admin_listener {
        accept_loops.push(tokio::spawn(accept_loop(node.clone(), admin_listener, Role::Admin)));
    }
    if let Some(handle) = node.metrics.clone() {
        let weak = Arc::downgrade(&node);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(5));
            loop {
                interval.tick().await;
                let Some(node) = weak.upgrade() else { break };
                let (queued, deepest) = node.edge.hub.queued_frames();
                crate::metrics::sample(node.edge.hub.num_rooms(), queued, deepest);
                if let Some(jwks) = node.edge.auth.jwks() {
                    let (ok, failed, keys) = jwks.stats();
                    crate::metrics::jwks(ok, failed, keys);
                }
                drop(node);
                handle.run_upkeep();
            }
        });
    }
    if node.edge.webhooks.durable() {
        tokio::spawn(adopt_webhook_events(Arc::downgrade(&node)));
    }
    tokio::spawn(node.router.clone().run_deferred());
    if let Some(jwks) = node.edge.auth.jwks() {
        tokio::spawn(jwks.clone().run(node.shutdown.clone()));
    }
    if let Some(feed) = node.take_store_feed() {
        tokio::spawn(node.router.clone().run_store(feed));
    }
    // Typing indicators not renewed in time are ended by their room's owner; expired inbox
    // messages are dropped now and then.
    let weak = Arc::downgrade(&node);
    let sweep_every = (node.config.typing_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(sweep_every);
        let mut ticks: u64 = 0;
        loop {
            interval.tick().await;
            let Some(node) = weak.upgrade() else { break };
            node.router.owner.expire_typing(&*node.router);
            node.router.owner.expire_presence(&*node.router);
            ticks += 1;
            if ticks % 256 == 0 {
                node.router.owner.expire_inboxes();
            }
        }
    });
    tokio::select! {
        _ = shutdown => {}
        _ = node.shutdown.cancelled() => {}
    }
    let started = tokio::time::Instant::now();
    let deadline = started + node.config.drain_timeout;
    tracing::info!(connections = node.edge.hub.num_connections(), "shutting down");
    node.set_ready(false);
    node.shutdown.cancel();
    for accept_loop in accept_loops {
        let _ = accept_loop.await;
    }
    match node.router.cluster().cloned() {
        Some(cluster) => {
            crate::rebalance::hand_off_everything(&node);
            cluster.set_state(MemberState::Draining).await;
            // Let the hand-off run and a few gossip rounds tell the others to route around us.
            let settle = node.config.cluster.as_ref().map(|c| c.gossip_interval * 5).unwrap_or_default();
            tokio::time::sleep(settle + Duration::from_millis(200)).await;
            let spread = (node.config.drain_timeout / 3).min(Duration::from_secs(3));
            send_elsewhere(&node, "drain", spread).await;
        }
        None => {
            for conn in node.edge.hub.all() {
                conn.outbox.close(Disconnect::SHUTDOWN);
            }
        }
    }
    node.edge.close_all.cancel();
    // A connection that registered while the closes went out is closed here; one that
    // registers later sees `close_all` itself.
    for conn in node.edge.hub.all() {
        conn.outbox.close(node.edge.shutdown_disconnect);
    }
    node.tasks.close();
    let drained = tokio::time::timeout_at(deadline, node.tasks.wait()).await.is_ok();
    if !drained {
        tracing::warn!(timeout = ?node.config.drain_timeout, "graceful shutdown did not complete in time");
    }
    // The webhook events still queued (the closes' `connection.closed` among them) get what
    // is left of the drain timeout; with a durable outbox, 2 s at most: what is left there is
    // adopted by the keys' owners once this node is gone.
    let webhooks = &node.edge.webhooks;
    let mut flush = deadline.saturating_duration_since(tokio::time::Instant::now());
    if webhooks.durable() {
        flush = flush.min(Duration::from_secs(2));
    }
    webhooks.flush(flush).await;
    if webhooks.queued() > 0 {
        tracing::warn!(events = webhooks.queued(), "shutting down with webhook events undelivered");
    }
    if let Some(cluster) = node.router.cluster() {
        cluster.shutdown().await;
    }
    drained
}

/// Every second while ready: the webhook events pending in the durable outbox of processes
/// that are gone are taken over for the keys this node owns (`webhook/outbox.rs`).
async fn adopt_webhook_events(node: std::sync::Weak<Node>) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    loop {
        interval.tick().await;
        let Some(node) = node.upgrade() else { break };
        if !node.is_ready() {
            continue;
        }
        let live: Vec<String> = match node.router.cluster() {
            Some(cluster) => cluster
                .view()
                .members
                .values()
                .map(|member| format!("{}:{}", member.node_id, member.generation))
                .collect(),
            None => vec![format!("{}:{}", node.id, node.generation)],
        };
        let ring = node.router.ring();
        let owns = |key: &str| ring.owner(key) == Some(&node.id);
        node.edge.webhooks.adopt(&live, &owns).await;
    }
}

/// Tells every client to reconnect elsewhere (`reason`: `drain`, `no_quorum`) and closes it
/// with 1012, spread over `spread` so the other nodes are not hit by every reconnect at once.
pub(crate) async fn send_elsewhere(node: &Node, reason: &'static str, spread: Duration) {
    #[derive(serde::Serialize)]
    struct Reconnect {
        reason: &'static str,
        after_ms: u64,
    }
    let conns = node.edge.hub.all();
    let count = conns.len().max(1) as u32;
    let ts = time::rfc3339_millis(time::now_millis());
    for (index, conn) in conns.iter().enumerate() {
        let after_ms = (index as u64 * 7919) % 1000;
        conn.outbox.push_text(frames::event("reconnect", Reconnect { reason, after_ms }, &ts));
        conn.outbox.close(Disconnect::RESTART);
        if index % 64 == 63 {
            tokio::time::sleep(spread / count * 64).await;
        }
    }
}

async fn accept_loop(node: Arc<Node>, listener: TcpListener, role: Role) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = node.shutdown.cancelled() => return,
        };
        let (stream, remote) = match accepted {
            Ok(pair) => {
                backoff = Duration::from_millis(10);
                pair
            }
            Err(err) => {
                // Out of file descriptors and the like: wait, do not spin.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let node = node.clone();
        // Two kinds of task, each sized for its own path: after an upgrade the socket keeps
        // this task's waker, and with it the task's allocation, for the connection's life.
        match node.config.tls.as_ref().map(|tls| tls.acceptor()) {
            None => node.tasks.clone().spawn(serve_http(node, role, remote, stream)),
            Some(acceptor) => node.tasks.clone().spawn(serve_tls(node, role, remote, stream, acceptor)),
        };
    }
}

/// The TLS handshake (bounded in time), then HTTP over it.
async fn serve_tls(node: Arc<Node>, role: Role, remote: SocketAddr, stream: TcpStream, acceptor: TlsAcceptor) {
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls_handshake(acceptor, stream));
    let stream = tokio::select! {
        result = handshake => match result {
            Ok(Some(stream)) => stream,
            Ok(None) => return,
            Err(_) => return tracing::debug!(%remote, "tls handshake timed out"),
        },
        _ = node.shutdown.cancelled() => return,
    };
    serve_http(node, role, remote, stream).await
}

/// How long a client may take to say hello and finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS handshake of a new connection; a client speaking plain HTTP gets a 400 that says
/// why, anything else that is not TLS is dropped.
async fn tls_handshake(acceptor: TlsAcceptor, mut stream: TcpStream) -> Option<TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    if matches!(stream.peek(&mut first).await, Ok(1) if first[0].is_ascii_alphabetic()) {
        let body = "this port speaks tls: use https:// or wss://\n";
        let response = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
        return None;
    }
    match acceptor.accept(stream).await {
        Ok(stream) => Some(stream),
        Err(err) => {
            tracing::debug!(error = %err, "tls handshake failed");
            None
        }
    }
}

/// Serves HTTP/1.1 (and the upgrades) on one connection until it ends or the node shuts down.
async fn serve_http<S>(node: Arc<Node>, role: Role, remote: SocketAddr, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(|req| http::handle(node.clone(), role, remote, req));
    let connection = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(err) = result {
                tracing::debug!(error = %err, "http connection ended");
            }
        }
        _ = node.shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
