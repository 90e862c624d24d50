//! Helpers of the admin API tests (`tests/admin.rs`, `tests/admin_bad_input.rs`): HTTP calls
//! with the admin key, and names of the nodes of a [`Setup`].

use serde_json::Value;

use super::cluster::Setup;
use super::*;

pub const ADMIN_KEY: &str = "admin-key-for-tests-0123456789";

/// `METHOD path` with `Authorization: Bearer {token}` (none when `None`) and a JSON body.
pub async fn call(server: &Server, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> HttpResponse {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method == "POST" {
        request.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    http_raw(server.addr, &request).await
}

/// An admin call with the admin key that must succeed; its JSON body.
pub async fn admin(server: &Server, method: &str, path: &str, body: Option<Value>) -> Value {
    let body = body.map(|body| body.to_string());
    let response = call(server, method, path, Some(ADMIN_KEY), body.as_deref()).await;
    assert_eq!(response.status, 200, "{method} {path}: {}", response.body);
    assert_eq!(response.header("content-type"), Some("application/json"));
    response.json()
}

/// An admin call that must fail with `status`; its error code.
pub async fn refused(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    status: u16,
) -> String {
    let response = call(server, method, path, token, body).await;
    assert_eq!(response.status, status, "{method} {path} {body:?}: {}", response.body);
    let error = &response.json()["error"];
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "error has a message: {}", response.body);
    // The node is not disturbed by it.
    let stats = call(server, "GET", "/v1/stats", Some(ADMIN_KEY), None).await;
    assert_eq!(stats.status, 200, "node still serves after {method} {path}: {}", stats.body);
    error["code"].as_str().unwrap_or_default().to_string()
}

pub async fn setup(clustered: bool) -> Setup {
    Setup::new(clustered, &["--admin-key", ADMIN_KEY]).await
}

/// A room owned by node `index` (any name on one node).
pub fn room_owned_by(setup: &Setup, index: usize, prefix: &str) -> String {
    match setup {
        Setup::Single(_) => prefix.to_string(),
        Setup::Cluster(cluster) => cluster.room_owned_by(index, prefix),
    }
}

pub fn node_id(setup: &Setup, index: usize) -> String {
    match setup {
        Setup::Single(_) => NODE_ID.to_string(),
        Setup::Cluster(cluster) => cluster.ids[index].clone(),
    }
}

pub fn conn_id(client: &Client) -> String {
    client.connected["conn_id"].as_str().unwrap().to_string()
}

pub fn field<'a>(items: &'a Value, key: &str) -> Vec<&'a str> {
    let mut values: Vec<&str> = items.as_array().unwrap().iter().map(|item| item[key].as_str().unwrap()).collect();
    values.sort();
    values
}
