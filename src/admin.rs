//! The admin HTTP API (PROTOCOL.md §11), authorized by an admin JWT (role `admin`) or the
//! `--admin-key`, served on the client port and on `--admin-listen`, and answered for the
//! whole cluster from whichever node gets the request (`query.rs` asks the other nodes).
//!
//! A request is matched against [`ROUTES`] (404, then 405), authorized (401, 403), given
//! its tenant, and served by `routes.rs`. Errors are `{"error":{"code","message"}}`.

mod cluster;
pub mod query;
mod routes;
mod server_api;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::auth::is_valid_id;
use crate::node::Node;
use crate::respond::{json, percent_decode, Body};

/// The OpenAPI 3 document of the HTTP API.
pub const OPENAPI: &str = include_str!("../docs/openapi.json");

/// Every route the HTTP side serves and its methods; `docs/openapi.json` lists the same
/// (checked by a test). `{x}` is one path segment.
pub const ROUTES: &[(&str, &[&str])] = &[
    ("/health", &["GET"]),
    ("/live", &["GET"]),
    ("/ready", &["GET"]),
    ("/metrics", &["GET"]),
    ("/v1/ws", &["GET"]),
    ("/ws", &["GET"]),
    ("/v1/openapi.json", &["GET"]),
    ("/v1/cluster", &["GET"]),
    ("/v1/stats", &["GET"]),
    ("/v1/connections", &["GET"]),
    ("/v1/connections/{id}", &["GET", "DELETE"]),
    ("/v1/rooms", &["GET"]),
    ("/v1/rooms/{room}", &["GET"]),
    ("/v1/rooms/{room}/messages", &["POST"]),
    ("/v1/rooms/{room}/disconnect", &["POST"]),
    ("/v1/rooms/{room}/publish", &["POST"]),
    ("/v1/rooms/{room}/history", &["GET"]),
    ("/v1/connections/{id}/messages", &["POST"]),
    ("/v1/users/{id}/rooms/{room}", &["POST", "DELETE"]),
    ("/v1/users/{id}/messages", &["POST"]),
    ("/v1/users/{id}/disconnect", &["POST"]),
    ("/v1/users/{id}/groups", &["POST"]),
    ("/v1/broadcast", &["POST"]),
    ("/demo", &["GET"]),
    ("/demo/{file}", &["GET"]),
];

/// The largest request body the admin API reads.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// An admin error: the status and `{"error":{"code","message"}}`.
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Failure {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Failure { status, code, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Failure::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Failure::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unavailable(missing: &[String]) -> Self {
        Failure::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("no answer from {}", missing.join(", ")))
    }

    pub fn response(&self) -> Response<Body> {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = json(self.status, body.to_string());
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The route `path` matches: its template and the values of its `{x}` segments.
pub fn match_route(path: &str) -> Option<(&'static str, &'static [&'static str], Vec<String>)> {
    let segments: Vec<&str> = path.split('/').collect();
    ROUTES.iter().find_map(|(template, methods)| {
        let parts: Vec<&str> = template.split('/').collect();
        if parts.len() != segments.len() {
            return None;
        }
        let mut params = Vec::new();
        for (part, segment) in parts.iter().zip(&segments) {
            if part.starts_with('{') {
                if segment.is_empty() {
                    return None;
                }
                params.push(percent_decode(segment));
            } else if part != segment {
                return None;
            }
        }
        Some((*template, *methods, params))
    })
}

/// The answer to a request no route of this listener serves: 405 with `Allow` when the path
/// exists with other methods, 404 otherwise.
pub fn no_route(method: &Method, path: &str) -> Response<Body> {
    match match_route(path) {
        Some((_, methods, _)) if !methods.contains(&method.as_str()) => method_not_allowed(methods),
        _ => Failure::not_found("no such route").response(),
    }
}

fn method_not_allowed(methods: &[&str]) -> Response<Body> {
    let mut response =
        Failure::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed").response();
    if let Ok(allow) = HeaderValue::from_str(&methods.join(", ")) {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    response
}

/// Serves a `/v1/` request other than the WebSocket upgrade.
pub async fn handle(node: Arc<Node>, req: Request<Incoming>) -> Response<Body> {
    let Some((template, methods, params)) = match_route(req.uri().path()) else {
        return Failure::not_found("no such route").response();
    };
    if !methods.contains(&req.method().as_str()) {
        return method_not_allowed(methods);
    }
    if template == "/v1/openapi.json" {
        return json(StatusCode::OK, OPENAPI.to_string());
    }
    let scope = match authorize(&node, req.headers()) {
        Ok(scope) => scope,
        Err(failure) => return failure.response(),
    };
    if template == "/v1/cluster" {
        return cluster::cluster(&node);
    }
    let query = parse_query(req.uri().query().unwrap_or(""));
    let tenant = match tenant_of(scope, query.get("tenant")) {
        Ok(tenant) => tenant,
        Err(failure) => return failure.response(),
    };
    let method = req.method().clone();
    let body = if method == Method::POST {
        match read_body(req.into_body()).await {
            Ok(body) => body,
            Err(failure) => return failure.response(),
        }
    } else {
        Bytes::new()
    };
    let request = routes::AdminRequest { template, method, params, query, tenant, body };
    match routes::serve(&node, request).await {
        Ok(value) => json(StatusCode::OK, value.to_string()),
        Err(failure) => failure.response(),
    }
}

/// Whose data an admin may see: `None` for the admin key (every tenant), the token's tenant
/// for an admin JWT.
type Scope = Option<Arc<str>>;

/// Checks the bearer credential of an admin request.
fn authorize(node: &Node, headers: &HeaderMap) -> Result<Scope, Failure> {
    let unauthorized = |message: &str| Failure::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
        .map(str::trim)
    else {
        return Err(unauthorized("admin credentials required"));
    };
    if let Some(admin_key) = &node.config.admin_key {
        if constant_time_eq(admin_key.as_bytes(), token.as_bytes()) {
            return Ok(None);
        }
    }
    match node.edge.authenticate(token) {
        Ok(identity) if identity.is_admin() => Ok(Some(identity.tenant)),
        Ok(_) => Err(Failure::new(StatusCode::FORBIDDEN, "forbidden", "admin role required")),
        Err(_) => Err(unauthorized("invalid admin credentials")),
    }
}

/// The tenant of a request: `?tenant=`, else the admin token's tenant, else `default`. An
/// admin JWT reaches its own tenant only.
fn tenant_of(scope: Scope, asked: Option<&String>) -> Result<String, Failure> {
    let tenant = match (asked, &scope) {
        (Some(asked), _) => asked.clone(),
        (None, Some(own)) => own.to_string(),
        (None, None) => crate::auth::DEFAULT_TENANT.to_string(),
    };
    if !is_valid_id(&tenant) || tenant.contains(':') {
        return Err(Failure::bad_request("tenant must be 1-128 chars of [A-Za-z0-9_.@-]"));
    }
    if scope.is_some_and(|own| *own != *tenant) {
        return Err(Failure::new(StatusCode::FORBIDDEN, "forbidden", "admin token is for another tenant"));
    }
    Ok(tenant)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `a=1&b=2` → map (percent-decoded; the first of a repeated name wins).
fn parse_query(query: &str) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        map.entry(percent_decode(name)).or_insert_with(|| percent_decode(value));
    }
    map
}

async fn read_body(body: Incoming) -> Result<Bytes, Failure> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("request body over {MAX_BODY_BYTES} bytes"),
        )),
        Err(_) => Err(Failure::bad_request("request body could not be read")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_routes_match_templates() {
        let (template, methods, params) = match_route("/v1/rooms/a%3Ab/messages").unwrap();
        assert_eq!((template, methods, params), ("/v1/rooms/{room}/messages", &["POST"][..], vec!["a:b".to_string()]));
        assert!(match_route("/v1/rooms/").is_none());
        assert!(match_route("/v1/rooms/a/b").is_none());
        assert_eq!(match_route("/v1/rooms").unwrap().0, "/v1/rooms");
    }

    /// The OpenAPI document lists exactly the routes and methods the router serves.
    #[test]
    fn test_openapi_lists_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json parses");
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let paths = doc["paths"].as_object().expect("paths");
        let mut documented: Vec<(String, String)> = paths
            .iter()
            .flat_map(|(path, item)| {
                let methods = item.as_object().unwrap().keys().filter(|key| *key != "parameters");
                methods.map(|method| (path.clone(), method.to_uppercase())).collect::<Vec<_>>()
            })
            .collect();
        let mut served: Vec<(String, String)> = ROUTES
            .iter()
            .flat_map(|(path, methods)| methods.iter().map(|method| (path.to_string(), method.to_string())))
            .collect();
        documented.sort();
        served.sort();
        assert_eq!(documented, served);
    }

    #[test]
    fn test_tenant_scope() {
        assert_eq!(tenant_of(None, None).unwrap(), "default");
        assert_eq!(tenant_of(Some(Arc::from("acme")), None).unwrap(), "acme");
        assert_eq!(tenant_of(None, Some(&"acme".to_string())).unwrap(), "acme");
        assert_eq!(tenant_of(Some(Arc::from("acme")), Some(&"other".to_string())).unwrap_err().status, 403);
        assert_eq!(tenant_of(None, Some(&"a/b".to_string())).unwrap_err().status, 400);
    }
}
