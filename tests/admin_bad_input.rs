//! The admin HTTP API's bad inputs, on one node and on a 3-node cluster, each followed by a
//! check that the node still serves; the OpenAPI document against the routes served; and a
//! node that does not answer.

mod common;

use common::admin::*;
use common::cluster::{admin_token, TestCluster};
use common::*;
use serde_json::json;

// ---------------------------------------------------------------------------------------
// Bad inputs
// ---------------------------------------------------------------------------------------

async fn bad_inputs_are_refused(clustered: bool) {
    let setup = setup(clustered).await;
    let mut alice = setup.node(0).client("alice").await;
    alice.join("lobby").await;
    let asked = setup.node(2);
    let key = Some(ADMIN_KEY);

    // Credentials.
    let response = call(asked, "GET", "/v1/stats", None, None).await;
    assert_eq!((response.status, response.header("www-authenticate")), (401, Some("Bearer")));
    assert_eq!(refused(asked, "GET", "/v1/stats", None, None, 401).await, "unauthorized");
    assert_eq!(refused(asked, "GET", "/v1/stats", Some("wrong-key"), None, 401).await, "unauthorized");
    let user = Token::new("mallory").sign();
    assert_eq!(refused(asked, "GET", "/v1/connections", Some(&user), None, 403).await, "forbidden");
    assert_eq!(refused(asked, "POST", "/v1/broadcast", Some(&user), Some(r#"{"type":"x"}"#), 403).await, "forbidden");
    let expired = Token::new("root").roles(&["admin"]).expires_in(-120).sign();
    assert_eq!(refused(asked, "GET", "/v1/stats", Some(&expired), None, 401).await, "unauthorized");
    let forged = Token::new("root")
        .roles(&["admin"])
        .sign_with("another-secret-0123456789abcdef", jsonwebtoken::Algorithm::HS256);
    assert_eq!(refused(asked, "GET", "/v1/stats", Some(&forged), None, 401).await, "unauthorized");
    // An admin JWT works, for its own tenant only.
    let acme_admin = Token::new("boss").tenant("acme").roles(&["admin"]).sign();
    let response = call(asked, "GET", "/v1/stats", Some(&acme_admin), None).await;
    assert_eq!((response.status, response.json()["tenant"].as_str()), (200, Some("acme")), "{}", response.body);
    assert_eq!(response.json()["connections"], 0, "alice is not in acme");
    assert_eq!(
        refused(asked, "GET", "/v1/connections?tenant=default", Some(&acme_admin), None, 403).await,
        "forbidden"
    );
    assert_eq!(
        call(asked, "GET", "/v1/connections", Some(&admin_token()), None).await.json()["connections"][0]["user_id"],
        "alice"
    );

    // Unknown things.
    for path in
        ["/v1/connections/test-node-999999", "/v1/connections/s1-999999", "/v1/connections/nope-1", "/v1/rooms/nowhere"]
    {
        assert_eq!(refused(asked, "GET", path, key, None, 404).await, "not_found", "{path}");
    }
    assert_eq!(refused(asked, "DELETE", "/v1/connections/nope-1", key, None, 404).await, "not_found");
    for path in ["/v1/users/nobody/messages", "/v1/rooms/nowhere/messages"] {
        assert_eq!(refused(asked, "POST", path, key, Some(r#"{"type":"x"}"#), 404).await, "not_found", "{path}");
    }
    for path in ["/v1/users/nobody/disconnect", "/v1/rooms/nowhere/disconnect"] {
        assert_eq!(refused(asked, "POST", path, key, None, 404).await, "not_found", "{path}");
    }
    assert_eq!(
        refused(asked, "POST", "/v1/users/nobody/groups", key, Some(r#"{"groups":[]}"#), 404).await,
        "not_found"
    );
    for path in ["/v1/nope", "/v1/rooms/a/b/c", "/v1/", "/v1/rooms/", "/nope"] {
        assert_eq!(refused(asked, "GET", path, key, None, 404).await, "not_found", "{path}");
    }

    // Bad names and ids.
    for path in [
        "/v1/rooms/bad%20room",
        "/v1/rooms/user:",
        "/v1/rooms/a%2Fb",
        "/v1/connections?room=bad%20room",
        "/v1/connections?user_id=a%0Ab",
        "/v1/rooms?prefix=a%20b",
        "/v1/stats?tenant=a:b",
        "/v1/stats?tenant=",
        "/v1/connections/nodash",
        "/v1/connections/s1-x",
        "/v1/connections/-5",
    ] {
        assert_eq!(refused(asked, "GET", path, key, None, 400).await, "bad_request", "{path}");
    }
    let long = "r".repeat(129);
    assert_eq!(refused(asked, "GET", &format!("/v1/rooms/{long}"), key, None, 400).await, "bad_request");

    // Bad bodies.
    let bodies = [
        "",
        "{",
        "not json",
        "[]",
        r#"{"data":{}}"#,
        r#"{"type":5}"#,
        r#"{"type":""}"#,
        r#"{"type":"Upper"}"#,
        r#"{"type":"ack"}"#,
        r#"{"type":"error"}"#,
        r#"{"type":"has space"}"#,
        r#"{"type":"x","data":[1]}"#,
        r#"{"type":"x","data":"text"}"#,
    ];
    for body in bodies {
        for path in ["/v1/broadcast", "/v1/users/alice/messages", "/v1/rooms/lobby/messages"] {
            assert_eq!(refused(asked, "POST", path, key, Some(body), 400).await, "bad_request", "{path} {body}");
        }
    }
    for body in ["{}", r#"{"groups":"eng"}"#, r#"{"groups":[5]}"#, r#"{"groups":["bad group"]}"#, "{"] {
        assert_eq!(
            refused(asked, "POST", "/v1/users/alice/groups", key, Some(body), 400).await,
            "bad_request",
            "{body}"
        );
    }
    for path in ["/v1/users/bad%0Auser/messages", "/v1/rooms/bad%20room/messages"] {
        assert_eq!(refused(asked, "POST", path, key, Some(r#"{"type":"x"}"#), 400).await, "bad_request", "{path}");
    }
    let huge = format!(r#"{{"type":"x","data":{{"text":"{}"}}}}"#, "a".repeat(70 * 1024));
    assert_eq!(refused(asked, "POST", "/v1/broadcast", key, Some(&huge), 413).await, "too_large");

    // Wrong methods.
    for (method, path, allow) in [
        ("GET", "/v1/broadcast", "POST"),
        ("POST", "/v1/stats", "GET"),
        ("DELETE", "/v1/rooms/lobby", "GET"),
        ("PUT", "/v1/connections/x-1", "GET, DELETE"),
        ("GET", "/v1/users/alice/disconnect", "POST"),
        ("POST", "/health", "GET"),
        ("DELETE", "/v1/cluster", "GET"),
    ] {
        let response = call(asked, method, path, key, None).await;
        assert_eq!(
            (response.status, response.header("allow")),
            (405, Some(allow)),
            "{method} {path}: {}",
            response.body
        );
        assert_eq!(refused(asked, method, path, key, None, 405).await, "method_not_allowed");
    }

    // None of it reached or harmed the client; the node still serves it.
    alice.ping().await;
    alice.expect_no_frame(QUIET).await;
    alice.say("lobby", "still fine").await;
    let stats = admin(asked, "GET", "/v1/stats", None).await;
    assert_eq!(stats["connections"], 1, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_bad_inputs_one_node() {
    bad_inputs_are_refused(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_bad_inputs_cluster() {
    bad_inputs_are_refused(true).await;
}

// ---------------------------------------------------------------------------------------
// The OpenAPI document, and a node that does not answer
// ---------------------------------------------------------------------------------------

/// The document parses, needs no credentials, and every route it lists is served (no 404
/// "no such route", no 405), with every method.
#[tokio::test]
async fn test_openapi_document_lists_served_routes() {
    let server = Server::start_with(&["--admin-key", ADMIN_KEY]);
    let response = call(&server, "GET", "/v1/openapi.json", None, None).await;
    assert_eq!(response.status, 200);
    let doc = response.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "OpenAPI 3: {}", doc["openapi"]);
    let paths = doc["paths"].as_object().unwrap();
    for route in [
        "/health",
        "/live",
        "/ready",
        "/metrics",
        "/v1/ws",
        "/ws",
        "/v1/openapi.json",
        "/v1/cluster",
        "/v1/stats",
        "/v1/connections",
        "/v1/connections/{id}",
        "/v1/rooms",
        "/v1/rooms/{room}",
        "/v1/rooms/{room}/messages",
        "/v1/rooms/{room}/disconnect",
        "/v1/users/{id}/messages",
        "/v1/users/{id}/disconnect",
        "/v1/users/{id}/groups",
        "/v1/broadcast",
        "/demo",
        "/demo/{file}",
        "/v1/rooms/{room}/publish",
        "/v1/rooms/{room}/history",
        "/v1/connections/{id}/messages",
        "/v1/users/{id}/rooms/{room}",
    ] {
        assert!(paths.contains_key(route), "{route} is documented");
    }
    let mut checked = 0;
    for (path, item) in paths {
        let concrete = path.replace("{id}", "test-node-1").replace("{room}", "lobby");
        for method in item.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            let body = (method == "POST").then_some(r#"{"type":"x","groups":[]}"#);
            let response = call(&server, &method, &concrete, Some(ADMIN_KEY), body).await;
            assert_ne!(response.status, 405, "{method} {path} is served: {}", response.body);
            let no_route = response.status == 404 && response.body.contains("no such route");
            assert!(!no_route, "{method} {path} is served: {}", response.body);
            assert!(item[method.to_lowercase()]["responses"].is_object(), "{method} {path} documents its responses");
            checked += 1;
        }
    }
    assert_eq!(checked, 27, "every documented method was tried");
}

/// A node that stops answering is reported in `missing` within the answer timeout, and the
/// answer still covers the nodes that did answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_missing_node_is_reported_not_waited_for() {
    let mut cluster = TestCluster::start_with(&["s1", "s2", "s3"], &["--admin-key", ADMIN_KEY]).await;
    let mut alice = cluster.node(0).client("alice").await;
    let bob = cluster.node(2).client("bob").await;
    let stats = admin(cluster.node(1), "GET", "/v1/stats", None).await;
    assert_eq!((stats["nodes"].as_u64(), stats["connections"].as_u64()), (Some(3), Some(2)), "{stats}");
    // SIGSTOP: the process stays a member for a while but answers nothing.
    let pid = cluster.node(2).pid();
    signal(pid, "-STOP");
    // Answered (the HTTP helper gives up after 5 s), from the two nodes that answer.
    let stats = admin(cluster.node(1), "GET", "/v1/stats", None).await;
    // A lookup on the silent node: 503 naming it (404 once the cluster dropped it).
    let lookup =
        call(cluster.node(1), "GET", &format!("/v1/connections/{}", conn_id(&bob)), Some(ADMIN_KEY), None).await;
    signal(pid, "-CONT");
    assert!(matches!(lookup.status, 503 | 404), "{lookup:?}");
    if lookup.status == 503 {
        assert_eq!(lookup.json()["error"], json!({"code": "unavailable", "message": "no answer from s3"}));
    }
    assert_eq!(stats["nodes"], 2, "{stats}");
    assert_eq!(stats["connections"], 1, "{stats}");
    if stats["missing"] != json!([]) {
        assert_eq!(stats["missing"], json!(["s3"]), "{stats}");
    }
    alice.ping().await;
    cluster.nodes[2] = None;
    let stats = admin(cluster.node(0), "GET", "/v1/stats", None).await;
    assert_eq!(stats["connections"], 1, "{stats}");
}
