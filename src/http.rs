//! The HTTP side of a node: health endpoints, `/metrics`, the WebSocket upgrade with
//! origin check and token extraction, and the admin API's `/v1/` routes (`admin/`). No
//! messaging logic lives here.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::admin;
use crate::auth::AuthError;
use crate::demo;
use crate::edge::conn::{Conn, ConnMeta};
use crate::edge::{deflate, session};
use crate::metrics;
use crate::node::Node;
use crate::respond::{error, json, percent_decode, Body};
use crate::time;

/// Which routes a listener serves: the client port serves everything; the admin port
/// serves health and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Admin,
}

pub async fn handle(
    node: Arc<Node>,
    role: Role,
    remote: SocketAddr,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path();
    if path.starts_with("/v1/") && !(role == Role::Client && path == "/v1/ws") {
        return Ok(admin::handle(node, req).await);
    }
    let response = match (req.method(), path) {
        (&Method::GET, "/health") => json(StatusCode::OK, format!(r#"{{"status":"ok","node_id":"{}"}}"#, node.id)),
        (&Method::GET, "/live") => json(StatusCode::OK, r#"{"status":"live"}"#.to_string()),
        (&Method::GET, "/ready") => {
            if node.is_ready() {
                json(StatusCode::OK, r#"{"status":"ready"}"#.to_string())
            } else {
                json(StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"not_ready"}"#.to_string())
            }
        }
        (&Method::GET, "/metrics") => match &node.metrics {
            Some(handle) => Response::builder()
                .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
                .body(Full::new(Bytes::from(handle.render())))
                .unwrap_or_default(),
            None => error(StatusCode::NOT_FOUND, "metrics are not enabled"),
        },
        (_, "/v1/ws" | "/ws") if role == Role::Client => upgrade(&node, remote, &mut req).await,
        (&Method::GET, path) if role == Role::Client && (path == "/demo" || path.starts_with("/demo/")) => {
            demo::serve(node.config.demo, path)
        }
        (method, path) => admin::no_route(method, path),
    };
    Ok(response)
}

/// Checks the upgrade request and hands the connection to a session task.
async fn upgrade(node: &Arc<Node>, remote: SocketAddr, req: &mut Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET || !fastwebsockets::upgrade::is_upgrade_request(req) {
        metrics::connection_rejected("bad_request");
        return error(StatusCode::BAD_REQUEST, "websocket upgrade required");
    }
    if node.shutdown.is_cancelled() {
        metrics::connection_rejected("shutdown");
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    if node.fenced.load(std::sync::atomic::Ordering::Relaxed) {
        metrics::connection_rejected("no_quorum");
        return error(StatusCode::SERVICE_UNAVAILABLE, "cut off from the cluster's majority");
    }
    let headers = req.headers();
    let origin = header_str(headers, header::ORIGIN);
    if let (Some(allowed), Some(origin)) = (&node.config.allowed_origins, &origin) {
        if !allowed.iter().any(|allowed| allowed == origin) {
            metrics::connection_rejected("origin");
            return error(StatusCode::FORBIDDEN, "origin not allowed");
        }
    }
    if node.edge.hub.num_connections() >= node.config.max_connections {
        metrics::connection_rejected("capacity");
        return error(StatusCode::SERVICE_UNAVAILABLE, "connection limit reached");
    }
    let forwarded: Vec<&str> =
        req.headers().get_all("x-forwarded-for").iter().filter_map(|value| value.to_str().ok()).collect();
    let client_ip = node.config.admission.trusted_proxies.client_ip(remote.ip(), &forwarded);
    if node.connect_limiter.as_ref().is_some_and(|limiter| !limiter.admit(client_ip)) {
        metrics::connection_rejected("connect_rate");
        return error(StatusCode::TOO_MANY_REQUESTS, "too many new connections from this address");
    }
    let identity = match token_of(req) {
        None => None,
        Some(token) => match node.edge.authenticate_fetching(&token).await {
            Ok(identity) => Some(identity),
            Err(err) => {
                metrics::connection_rejected("unauthorized");
                return unauthorized(&err);
            }
        },
    };
    let meta = ConnMeta {
        // The client's address: behind a trusted proxy, the one it forwarded.
        remote_addr: if client_ip == remote.ip() { remote.to_string() } else { client_ip.to_string() }.into(),
        user_agent: header_str(req.headers(), header::USER_AGENT).map(Into::into),
        origin: origin.map(Into::into),
        connected_at_ms: time::now_millis(),
    };
    // permessage-deflate: the first acceptable offer, when compression is on.
    let deflate = match node.config.compression.enabled {
        true => deflate::negotiate(
            req.headers().get_all(header::SEC_WEBSOCKET_EXTENSIONS).iter().filter_map(|value| value.to_str().ok()),
        ),
        false => None,
    };
    let (mut response, upgrade_future) = match fastwebsockets::upgrade::upgrade(&mut *req) {
        Ok(pair) => pair,
        Err(err) => {
            metrics::connection_rejected("bad_request");
            return error(StatusCode::BAD_REQUEST, &format!("bad websocket upgrade: {err}"));
        }
    };
    if let Some(negotiated) = &deflate {
        if let Ok(value) = HeaderValue::from_str(&negotiated.response()) {
            response.headers_mut().insert(header::SEC_WEBSOCKET_EXTENSIONS, value);
        }
    }
    // Everything the connection keeps goes to the heap now (the `Conn`, a boxed identity):
    // the task's future then carries no second copy of it for the connection's lifetime.
    let conn = Arc::new(Conn::new(node.next_conn_id(), node.config.limits.queue_frames, meta));
    let task = session::run(node.edge.clone(), conn, upgrade_future, identity.map(Box::new), deflate);
    if std::env::var_os("RINGCAST_DEBUG_SIZES").is_some() {
        eprintln!("connection task future: {} bytes", std::mem::size_of_val(&task));
    }
    node.tasks.spawn(task);
    response.map(|_| Full::new(Bytes::new()))
}

fn unauthorized(err: &AuthError) -> Response<Body> {
    let body = serde_json::json!({ "error": "unauthorized", "message": err.to_string() }).to_string();
    let mut response = json(StatusCode::UNAUTHORIZED, body);
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers.get(name).and_then(|value| value.to_str().ok()).map(str::to_string)
}

/// The token of an upgrade request: `Authorization: Bearer`, then cookie `ringcast_token`,
/// then query `?token=`.
fn token_of<B>(req: &Request<B>) -> Option<String> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()) {
        if let Some(token) = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")) {
            return Some(token.trim().to_string());
        }
    }
    for cookies in req.headers().get_all(header::COOKIE) {
        let Ok(cookies) = cookies.to_str() else { continue };
        for cookie in cookies.split(';') {
            if let Some(token) = cookie.trim().strip_prefix("ringcast_token=") {
                return Some(token.to_string());
            }
        }
    }
    let query = req.uri().query()?;
    query.split('&').find_map(|pair| pair.strip_prefix("token=")).map(percent_decode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(builder: hyper::http::request::Builder) -> Request<()> {
        builder.body(()).unwrap()
    }

    #[test]
    fn test_token_sources_in_order() {
        let req = request(
            Request::builder()
                .uri("/v1/ws?token=q")
                .header("authorization", "Bearer h")
                .header("cookie", "a=b; ringcast_token=c"),
        );
        assert_eq!(token_of(&req).as_deref(), Some("h"));
        let req = request(Request::builder().uri("/v1/ws?token=q").header("cookie", "a=b; ringcast_token=c"));
        assert_eq!(token_of(&req).as_deref(), Some("c"));
        let req = request(Request::builder().uri("/v1/ws?x=1&token=q%2Ex"));
        assert_eq!(token_of(&req).as_deref(), Some("q.x"));
        assert_eq!(token_of(&request(Request::builder().uri("/v1/ws"))), None);
    }
}
