//! The admin HTTP API (PROTOCOL.md §11): every endpoint against one node and against a
//! 3-node cluster, where the clients sit on different nodes and the admin request goes to a
//! node that neither owns the room nor holds the connections. Bad inputs, the OpenAPI
//! document and a silent node: `tests/admin_bad_input.rs`.

mod common;

use std::time::Duration;

use common::admin::*;
use common::cluster::Setup;
use common::*;
use serde_json::json;

// ---------------------------------------------------------------------------------------
// Stats, connections, rooms
// ---------------------------------------------------------------------------------------

async fn inspects_the_whole_cluster(clustered: bool) {
    let setup = setup(clustered).await;
    let room = room_owned_by(&setup, 0, "lobby");
    let mut alice = setup.node(0).client_with(&Token::new("alice").name("Alice").sign()).await;
    let mut bob = setup.node(1).client("bob").await;
    let mut carol = setup.node(1).client_with(&Token::new("carol").tenant("acme").sign()).await;
    let join = alice.join(&room).await;
    bob.join(&room).await;
    carol.join(&room).await;
    alice.recv_type("member.joined").await;
    alice.say(&room, "hello").await;
    bob.recv_message(&room).await;
    let asked = setup.node(2);

    let stats = admin(asked, "GET", "/v1/stats", None).await;
    let nodes = if clustered { 3 } else { 1 };
    assert_eq!((stats["nodes"].as_u64(), stats["missing"].clone()), (Some(nodes), json!([])), "{stats}");
    assert_eq!(stats["node_id"], node_id(&setup, 2));
    assert_eq!(stats["tenant"], "default");
    assert_eq!(
        (stats["connections"].as_u64(), stats["users"].as_u64(), stats["rooms"].as_u64()),
        (Some(2), Some(2), Some(1)),
        "{stats}"
    );
    assert!(stats["messages_in"].as_u64().unwrap() >= 3, "two joins and a send came in: {stats}");
    assert!(stats["messages_out"].as_u64().unwrap() >= 5, "connected, acks, the message: {stats}");
    let acme = admin(asked, "GET", "/v1/stats?tenant=acme", None).await;
    assert_eq!(
        (acme["connections"].as_u64(), acme["users"].as_u64(), acme["rooms"].as_u64()),
        (Some(1), Some(1), Some(1)),
        "{acme}"
    );

    // Connections: every node's, filtered by user and by room, of the tenant only.
    let all = admin(asked, "GET", "/v1/connections", None).await;
    assert_eq!(all["missing"], json!([]));
    assert_eq!(field(&all["connections"], "user_id"), ["alice", "bob"], "{all}");
    let mut ids = vec![conn_id(&alice), conn_id(&bob)];
    ids.sort();
    assert_eq!(field(&all["connections"], "conn_id"), ids);
    let only_bob = admin(asked, "GET", "/v1/connections?user_id=bob", None).await;
    assert_eq!(field(&only_bob["connections"], "conn_id"), [conn_id(&bob).as_str()]);
    let in_room = admin(asked, "GET", &format!("/v1/connections?room={room}"), None).await;
    assert_eq!(field(&in_room["connections"], "user_id"), ["alice", "bob"]);
    let nowhere = admin(asked, "GET", "/v1/connections?room=empty-room", None).await;
    assert_eq!(nowhere["connections"], json!([]));
    let acme_conns = admin(asked, "GET", "/v1/connections?tenant=acme", None).await;
    assert_eq!(field(&acme_conns["connections"], "conn_id"), [conn_id(&carol).as_str()]);

    // One connection, from the node its id names.
    let info = admin(asked, "GET", &format!("/v1/connections/{}", conn_id(&alice)), None).await;
    assert_eq!(info["conn_id"], conn_id(&alice));
    assert_eq!((info["user_id"].as_str(), info["tenant"].as_str()), (Some("alice"), Some("default")));
    assert_eq!(info["node"], node_id(&setup, 0));
    let mut rooms = vec![room.clone(), "user:alice".to_string()];
    rooms.sort();
    assert_eq!(info["rooms"], json!(rooms));
    assert!(info["remote_addr"].as_str().unwrap().starts_with("127.0.0.1:"), "{info}");
    assert!(info["user_agent"].is_null() || info["user_agent"].is_string());
    assert!(info["origin"].is_null());
    assert_ts(info["connected_at"].as_str().unwrap());
    assert_ts(info["last_activity"].as_str().unwrap());
    assert!(info["messages_in"].as_u64().unwrap() >= 2, "{info}");
    // Another tenant's connection is not found by the default tenant.
    let path = format!("/v1/connections/{}", conn_id(&carol));
    assert_eq!(refused(asked, "GET", &path, Some(ADMIN_KEY), None, 404).await, "not_found");
    assert_eq!(admin(asked, "GET", &format!("{path}?tenant=acme"), None).await["user_id"], "carol");

    // Rooms: from their owners.
    let rooms = admin(asked, "GET", "/v1/rooms", None).await;
    assert_eq!(field(&rooms["rooms"], "room"), [room.as_str(), "user:alice", "user:bob"], "{rooms}");
    let prefixed = admin(asked, "GET", "/v1/rooms?prefix=lob", None).await;
    assert_eq!(field(&prefixed["rooms"], "room"), [room.as_str()]);
    let detail = admin(asked, "GET", &format!("/v1/rooms/{room}"), None).await;
    assert_eq!(detail["room"], room.as_str());
    assert_eq!(detail["owner"], node_id(&setup, 0));
    assert_eq!(detail["seq"], 1);
    assert_eq!(detail["epoch"], join["epoch"]);
    assert_eq!(
        detail["members"],
        json!([{"user_id": "alice", "name": "Alice", "connections": 1}, {"user_id": "bob", "name": "bob", "connections": 1}])
    );
    assert_eq!(prefixed["rooms"][0], detail, "the list shows rooms as the detail does");
    let acme_room = admin(asked, "GET", &format!("/v1/rooms/{room}?tenant=acme"), None).await;
    assert_eq!(field(&acme_room["members"], "user_id"), ["carol"]);
    assert_ne!(acme_room["epoch"], detail["epoch"], "same name in another tenant is another room");
    // The clients saw nothing of it.
    for client in [&mut alice, &mut bob, &mut carol] {
        client.expect_no_frame(QUIET).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_inspect_one_node() {
    inspects_the_whole_cluster(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_inspect_cluster() {
    inspects_the_whole_cluster(true).await;
}

// ---------------------------------------------------------------------------------------
// Messages and broadcast
// ---------------------------------------------------------------------------------------

/// The clients of the message and disconnect tests: alice (node 0) and bob (node 1) in
/// `room`, owned by node 1; bob's phone (node 0) not in it; carol of tenant acme (node 0) in
/// acme's room of the same name.
struct Cast {
    room: String,
    alice: Client,
    bob: Client,
    bob_phone: Client,
    carol: Client,
}

async fn cast(setup: &Setup, prefix: &str) -> Cast {
    let room = room_owned_by(setup, 1, prefix);
    let mut alice = setup.node(0).client("alice").await;
    let mut bob = setup.node(1).client("bob").await;
    let bob_phone = setup.node(0).client("bob").await;
    bob.recv_type("device.online").await;
    let mut carol = setup.node(0).client_with(&Token::new("carol").tenant("acme").sign()).await;
    alice.join(&room).await;
    bob.join(&room).await;
    carol.join(&room).await;
    alice.recv_type("member.joined").await;
    Cast { room, alice, bob, bob_phone, carol }
}

async fn messages_reach_every_node(clustered: bool) {
    let setup = setup(clustered).await;
    let Cast { room, mut alice, mut bob, mut bob_phone, mut carol } = cast(&setup, "news").await;
    let asked = setup.node(2);

    // A room message: through the owner to every connection in the room, not stored.
    let body = json!({"type": "announcement", "data": {"text": "maintenance at noon"}});
    let sent = admin(asked, "POST", &format!("/v1/rooms/{room}/messages"), Some(body)).await;
    assert_eq!(sent["delivered"], 2, "{sent}");
    for client in [&mut alice, &mut bob] {
        let frame = client.recv_type("announcement").await;
        assert_eq!(frame["data"], json!({"text": "maintenance at noon", "room": room}));
        assert_ts(frame["ts"].as_str().unwrap());
    }
    let detail = admin(asked, "GET", &format!("/v1/rooms/{room}"), None).await;
    assert_eq!(detail["seq"], 0, "an admin message is not a stored chat message");
    // Without data: an empty object, plus the room.
    admin(asked, "POST", &format!("/v1/rooms/{room}/messages"), Some(json!({"type": "ping.all"}))).await;
    assert_eq!(alice.recv_type("ping.all").await["data"], json!({"room": room}));
    bob.recv_type("ping.all").await;

    // A user message: every connection of the user, on every node.
    let sent = admin(asked, "POST", "/v1/users/bob/messages", Some(json!({"type": "notice", "data": {"n": 1}}))).await;
    assert_eq!(sent["delivered"], 2, "{sent}");
    for client in [&mut bob, &mut bob_phone] {
        assert_eq!(client.recv_type("notice").await["data"], json!({"n": 1}));
    }

    // A broadcast: every connection of the tenant.
    let notice = json!({"type": "system.notice", "data": {"text": "restart in 5 min", "level": "warning"}});
    let sent = admin(asked, "POST", "/v1/broadcast", Some(notice)).await;
    assert_eq!(sent["delivered"], 3, "{sent}");
    for client in [&mut alice, &mut bob, &mut bob_phone] {
        let frame = client.recv_type("system.notice").await;
        assert_eq!(frame["data"], json!({"text": "restart in 5 min", "level": "warning"}));
    }
    // Other tenants hear none of it; each client got each message once.
    carol.expect_no_frame(QUIET).await;
    for client in [&mut alice, &mut bob, &mut bob_phone] {
        client.expect_no_frame(QUIET).await;
    }
    let sent =
        admin(asked, "POST", "/v1/broadcast?tenant=acme", Some(json!({"type": "system.notice", "data": {}}))).await;
    assert_eq!(sent["delivered"], 1);
    carol.recv_type("system.notice").await;
    alice.expect_no_frame(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_messages_one_node() {
    messages_reach_every_node(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_messages_cluster() {
    messages_reach_every_node(true).await;
}

// ---------------------------------------------------------------------------------------
// Disconnects and groups
// ---------------------------------------------------------------------------------------

async fn disconnects_close_the_right_connections(clustered: bool) {
    let setup = setup(clustered).await;
    let Cast { room, mut alice, mut bob, mut bob_phone, mut carol } = cast(&setup, "ops").await;
    let mut dave = setup.node(1).client("dave").await;
    let mut dave_tablet = setup.node(0).client("dave").await;
    dave.recv_type("device.online").await;
    let asked = setup.node(2);

    // One connection.
    let path = format!("/v1/connections/{}", conn_id(&bob_phone));
    assert_eq!(admin(asked, "DELETE", &path, None).await["closed"], 1);
    assert_eq!(bob_phone.expect_close().await, Some(1008));
    let gone = eventually(Duration::from_secs(5), || async {
        call(asked, "GET", &path, Some(ADMIN_KEY), None).await.status == 404
    })
    .await;
    assert!(gone, "a closed connection is unknown");
    assert_eq!(refused(asked, "DELETE", &path, Some(ADMIN_KEY), None, 404).await, "not_found");

    // Everyone in a room (not the other tenant's room of the same name).
    let closed = admin(asked, "POST", &format!("/v1/rooms/{room}/disconnect"), None).await;
    assert_eq!(closed["closed"], 2, "{closed}");
    assert_eq!(alice.expect_close().await, Some(1008));
    assert_eq!(bob.expect_close().await, Some(1008));

    // Every connection of a user.
    assert_eq!(admin(asked, "POST", "/v1/users/dave/disconnect", None).await["closed"], 2);
    assert_eq!(dave.expect_close().await, Some(1008));
    assert_eq!(dave_tablet.expect_close().await, Some(1008));
    let left = eventually(Duration::from_secs(5), || async {
        admin(asked, "GET", "/v1/stats", None).await["connections"] == 0
    })
    .await;
    assert!(left, "every default-tenant connection is gone");
    assert_eq!(refused(asked, "POST", "/v1/users/dave/disconnect", Some(ADMIN_KEY), None, 404).await, "not_found");

    // The other tenant's client is untouched and still served.
    carol.ping().await;
    carol.say(&room, "still here").await;
    let acme = admin(asked, "GET", "/v1/stats?tenant=acme", None).await;
    assert_eq!(acme["connections"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_disconnects_one_node() {
    disconnects_close_the_right_connections(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_disconnects_cluster() {
    disconnects_close_the_right_connections(true).await;
}

async fn groups_change_live(clustered: bool) {
    let setup = setup(clustered).await;
    let mut alice = setup.node(0).client_with(&Token::new("alice").groups(&["eng"]).sign()).await;
    let mut alice_phone = setup.node(1).client_with(&Token::new("alice").groups(&["eng"]).sign()).await;
    alice.recv_type("device.online").await;
    let mut bob = setup.node(1).client_with(&Token::new("bob").groups(&["eng", "ops"]).sign()).await;
    let asked = setup.node(2);
    let members = |room: &'static str| async move {
        let response = call(asked, "GET", &format!("/v1/rooms/{room}"), Some(ADMIN_KEY), None).await;
        if response.status == 404 {
            return Vec::new();
        }
        let members = response.json()["members"].clone();
        members
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["user_id"].as_str().unwrap().to_string(), m["connections"].as_u64().unwrap()))
            .collect::<Vec<_>>()
    };
    let settled = eventually(Duration::from_secs(5), || async {
        members("group:eng").await == [("alice".to_string(), 2), ("bob".to_string(), 1)]
    })
    .await;
    assert!(settled, "group:eng has both users: {:?}", members("group:eng").await);

    let updated = admin(asked, "POST", "/v1/users/alice/groups", Some(json!({"groups": ["ops", "ops"]}))).await;
    assert_eq!(updated["updated"], 2, "{updated}");
    for client in [&mut alice, &mut alice_phone] {
        let joined = client
            .recv_where("room.update joined", RECV_TIMEOUT, |f| {
                f["type"] == "room.update" && f["data"]["status"] == "joined"
            })
            .await;
        assert_eq!(joined["data"], json!({"room": "group:ops", "status": "joined", "reason": "groups"}));
        let left = client
            .recv_where("room.update left", RECV_TIMEOUT, |f| {
                f["type"] == "room.update" && f["data"]["status"] == "left"
            })
            .await;
        assert_eq!(left["data"], json!({"room": "group:eng", "status": "left", "reason": "groups"}));
    }
    let moved = eventually(Duration::from_secs(5), || async {
        members("group:ops").await == [("alice".to_string(), 2), ("bob".to_string(), 1)]
            && members("group:eng").await == [("bob".to_string(), 1)]
    })
    .await;
    assert!(
        moved,
        "alice moved from group:eng to group:ops: {:?} {:?}",
        members("group:ops").await,
        members("group:eng").await
    );
    // Live: alice now hears group:ops and can speak there.
    bob.say("group:ops", "ops only").await;
    assert_eq!(alice.recv_message("group:ops").await["text"], "ops only");
    assert_eq!(alice_phone.recv_message("group:ops").await["text"], "ops only");
    // An empty list removes every group.
    admin(asked, "POST", "/v1/users/alice/groups", Some(json!({"groups": []}))).await;
    let emptied =
        eventually(Duration::from_secs(5), || async { members("group:ops").await == [("bob".to_string(), 1)] }).await;
    assert!(emptied, "alice left group:ops: {:?}", members("group:ops").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_groups_one_node() {
    groups_change_live(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_groups_cluster() {
    groups_change_live(true).await;
}
