//! Message operations (PROTOCOL.md §4–§5): edit and versions, soft and hard delete, redact,
//! reactions, typing with its server-side expiry, receipts, upload progress and history —
//! each with its permission rules and bad inputs, run twice: all clients on one node, and
//! the clients spread over a 3-node cluster (the room's owner is wherever the ring says).

mod common;

use std::time::Duration;

use common::cluster::Setup;
use common::*;
use serde_json::{json, Value};

trait Trio {
    async fn trio(&self, room: &str) -> (Client, Client, Client);
}

impl Trio for Setup {
    /// Three users on three nodes (or one): an author, a reader and a moderator, all in `room`.
    async fn trio(&self, room: &str) -> (Client, Client, Client) {
        let mut author = self.node(0).client("author").await;
        let mut reader = self.node(1).client("reader").await;
        let mut moderator = self.node(2).client_with(&Token::new("mod").roles(&["moderator"]).sign()).await;
        for client in [&mut author, &mut reader, &mut moderator] {
            client.join(room).await;
        }
        (author, reader, moderator)
    }
}

/// The next frame of `kind` about message `id`.
async fn event_about(client: &mut Client, kind: &str, id: &str) -> Value {
    let id = id.to_string();
    let kind_owned = kind.to_string();
    client
        .recv_where(&format!("{kind} about {id}"), RECV_TIMEOUT, move |frame| {
            frame["type"] == kind_owned && frame["data"]["id"] == id
        })
        .await["data"]
        .clone()
}

async fn history(client: &mut Client, room: &str) -> Vec<Value> {
    client.ack("room.history", json!({"room": room})).await["messages"].as_array().unwrap().clone()
}

async fn edits_versions_deletes_and_redactions(clustered: bool) {
    let setup = Setup::new(clustered, &["--typing-timeout-ms", "400"]).await;
    let room = "edits";
    let (mut author, mut reader, mut moderator) = setup.trio(room).await;
    let sent = author.say(room, "first words").await;
    let id = sent["id"].as_str().unwrap().to_string();
    reader.recv_message(room).await;
    moderator.recv_message(room).await;

    // Edit: author only; the others get chat.edited with the new version.
    let edited = author.ack("chat.edit", json!({"room": room, "id": id, "text": "second words"})).await;
    assert_eq!(edited["version"], 2);
    let event = event_about(&mut reader, "chat.edited", &id).await;
    assert_eq!(
        (event["text"].as_str(), event["version"].as_u64(), event["by"].as_str()),
        (Some("second words"), Some(2), Some("author"))
    );
    assert_ts(event["edited_at"].as_str().unwrap());
    assert_eq!(reader.error("chat.edit", json!({"room": room, "id": id, "text": "mine now"})).await, "forbidden");
    assert_eq!(moderator.error("chat.edit", json!({"room": room, "id": id, "text": "mine now"})).await, "forbidden");
    assert_eq!(author.error("chat.edit", json!({"room": room, "id": "no-such-id", "text": "x"})).await, "not_found");
    assert_eq!(author.error("chat.edit", json!({"room": room, "id": id})).await, "invalid_message");
    let versions = reader.ack("chat.versions", json!({"room": room, "id": id})).await["versions"].clone();
    let texts: Vec<&str> = versions.as_array().unwrap().iter().map(|v| v["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["first words", "second words"]);
    assert_eq!(versions[1]["version"], 2);

    // Soft delete: author (or moderator); a tombstone stays in history.
    assert_eq!(reader.error("chat.delete", json!({"room": room, "id": id, "mode": "soft"})).await, "forbidden");
    author.ack("chat.delete", json!({"room": room, "id": id, "mode": "soft"})).await;
    let deleted = event_about(&mut reader, "chat.deleted", &id).await;
    assert_eq!((deleted["mode"].as_str(), deleted["by"].as_str()), (Some("soft"), Some("author")));
    let stored = history(&mut reader, room).await;
    let tombstone = stored.iter().find(|m| m["id"] == id.as_str()).expect("a tombstone stays");
    assert_eq!((tombstone["deleted"].as_bool(), tombstone["text"].as_str()), (Some(true), Some("")));
    assert_eq!(author.error("chat.edit", json!({"room": room, "id": id, "text": "back"})).await, "conflict");

    // Redact: moderators only; the text is gone from history and from every version.
    let spam = author.say(room, "buy now").await["id"].as_str().unwrap().to_string();
    assert_eq!(reader.error("chat.redact", json!({"room": room, "id": spam})).await, "forbidden");
    assert_eq!(author.error("chat.redact", json!({"room": room, "id": spam})).await, "forbidden");
    moderator.ack("chat.redact", json!({"room": room, "id": spam, "reason": "spam"})).await;
    let redacted = event_about(&mut reader, "chat.redacted", &spam).await;
    assert_eq!((redacted["reason"].as_str(), redacted["by"].as_str()), (Some("spam"), Some("mod")));
    let stored = history(&mut reader, room).await;
    let gone = stored.iter().find(|m| m["id"] == spam.as_str()).unwrap();
    assert_eq!((gone["text"].as_str(), gone["redacted"].as_bool()), (Some(""), Some(true)));
    let versions = reader.ack("chat.versions", json!({"room": room, "id": spam})).await["versions"].clone();
    assert!(versions.as_array().unwrap().iter().all(|v| v["text"] == ""), "{versions}");

    // Hard delete: a moderator removes the message entirely.
    moderator.ack("chat.delete", json!({"room": room, "id": id, "mode": "hard"})).await;
    assert_eq!(event_about(&mut author, "chat.deleted", &id).await["mode"], "hard");
    assert!(history(&mut reader, room).await.iter().all(|m| m["id"] != id.as_str()));
    assert_eq!(reader.error("chat.versions", json!({"room": room, "id": id})).await, "not_found");
    assert_eq!(
        author.error("chat.delete", json!({"room": room, "id": id, "mode": "sideways"})).await,
        "invalid_message"
    );
    // Everything above left the connections usable.
    for client in [&mut author, &mut reader, &mut moderator] {
        client.ping().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_edits_versions_deletes_and_redactions_on_one_node() {
    edits_versions_deletes_and_redactions(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_edits_versions_deletes_and_redactions_across_nodes() {
    edits_versions_deletes_and_redactions(true).await;
}

async fn reactions(clustered: bool) {
    let setup = Setup::new(clustered, &["--typing-timeout-ms", "400"]).await;
    let room = "reacts";
    let (mut author, mut reader, mut moderator) = setup.trio(room).await;
    let id = author.say(room, "react to me").await["id"].as_str().unwrap().to_string();
    let ack = reader.ack("chat.react", json!({"room": room, "id": id, "emoji": "👍", "add": true})).await;
    assert_eq!(ack["count"], 1);
    let event = event_about(&mut author, "chat.reaction", &id).await;
    assert_eq!(
        (event["emoji"].as_str(), event["user_id"].as_str(), event["add"].as_bool(), event["count"].as_u64()),
        (Some("👍"), Some("reader"), Some(true), Some(1))
    );
    assert_eq!(
        moderator.ack("chat.react", json!({"room": room, "id": id, "emoji": "👍", "add": true})).await["count"],
        2
    );
    // Reacting twice is one reaction.
    assert_eq!(
        moderator.ack("chat.react", json!({"room": room, "id": id, "emoji": "👍", "add": true})).await["count"],
        2
    );
    assert_eq!(
        reader.ack("chat.react", json!({"room": room, "id": id, "emoji": "👍", "add": false})).await["count"],
        1
    );
    let stored = history(&mut author, room).await;
    assert_eq!(stored.iter().find(|m| m["id"] == id.as_str()).unwrap()["reactions"]["👍"], 1);
    assert_eq!(
        reader.error("chat.react", json!({"room": room, "id": "nope", "emoji": "👍", "add": true})).await,
        "not_found"
    );
    assert_eq!(
        reader.error("chat.react", json!({"room": room, "id": id, "emoji": "x".repeat(33), "add": true})).await,
        "invalid_message"
    );
    assert_eq!(
        reader.error("chat.react", json!({"room": room, "id": id, "emoji": "👍", "add": "yes"})).await,
        "invalid_message"
    );
    // Reacting in a room one is not in.
    let mut outsider = setup.node(1).client("outsider").await;
    assert_eq!(
        outsider.error("chat.react", json!({"room": room, "id": id, "emoji": "👍", "add": true})).await,
        "forbidden"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_reactions_on_one_node() {
    reactions(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_reactions_across_nodes() {
    reactions(true).await;
}

async fn typing_receipts_uploads(clustered: bool) {
    let setup = Setup::new(clustered, &["--typing-timeout-ms", "400"]).await;
    let room = "activity";
    let (mut author, mut reader, _moderator) = setup.trio(room).await;
    let typing_frame = |frame: &Value| frame["type"] == "chat.typing.user";
    author.ack("chat.typing", json!({"room": room, "typing": true})).await;
    let started = reader.recv_where("typing true", RECV_TIMEOUT, typing_frame).await;
    assert_eq!(
        (started["data"]["user_id"].as_str(), started["data"]["typing"].as_bool()),
        (Some("author"), Some(true))
    );
    // Not renewed within the (shortened) typing timeout: the owner ends it.
    let ended = reader.recv_where("typing false", Duration::from_secs(3), typing_frame).await;
    assert_eq!((ended["data"]["user_id"].as_str(), ended["data"]["typing"].as_bool()), (Some("author"), Some(false)));
    // An explicit stop is relayed too.
    author.ack("chat.typing", json!({"room": room, "typing": true})).await;
    reader.recv_where("typing true", RECV_TIMEOUT, typing_frame).await;
    author.ack("chat.typing", json!({"room": room, "typing": false})).await;
    let stopped = reader.recv_where("typing false", RECV_TIMEOUT, typing_frame).await;
    assert_eq!(stopped["data"]["typing"], false);
    assert_eq!(author.error("chat.typing", json!({"room": room, "typing": 1})).await, "invalid_message");

    let seq = author.say(room, "did you read this").await["seq"].as_u64().unwrap();
    reader.recv_message(room).await;
    for (kind, expected) in [("chat.delivered", "delivered"), ("chat.read", "read")] {
        reader.ack(kind, json!({"room": room, "seq": seq})).await;
        let receipt = author.recv_type("chat.receipt").await;
        assert_eq!(
            (receipt["data"]["user_id"].as_str(), receipt["data"]["seq"].as_u64(), receipt["data"]["kind"].as_str()),
            (Some("reader"), Some(seq), Some(expected))
        );
    }
    assert_eq!(reader.error("chat.read", json!({"room": room, "seq": -1})).await, "invalid_message");

    reader
        .ack("chat.upload", json!({"room": room, "upload_id": "u1", "name": "cat.png", "size": 1000, "sent": 250}))
        .await;
    let progress = author.recv_type("chat.upload.progress").await;
    assert_eq!(
        (
            progress["data"]["upload_id"].as_str(),
            progress["data"]["sent"].as_u64(),
            progress["data"]["user_id"].as_str()
        ),
        (Some("u1"), Some(250), Some("reader"))
    );
    assert_eq!(
        reader.error("chat.upload", json!({"room": room, "upload_id": "u1", "name": "cat.png"})).await,
        "invalid_message"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_typing_receipts_and_uploads_on_one_node() {
    typing_receipts_uploads(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_typing_receipts_and_uploads_across_nodes() {
    typing_receipts_uploads(true).await;
}

async fn history_reads(clustered: bool) {
    let setup = Setup::new(clustered, &["--typing-timeout-ms", "400"]).await;
    let room = "archive";
    let (mut author, mut reader, _moderator) = setup.trio(room).await;
    let mut seqs = Vec::new();
    for index in 0..5 {
        seqs.push(author.say(room, &format!("entry {index}")).await["seq"].as_u64().unwrap());
    }
    let last_two = reader.ack("room.history", json!({"room": room, "limit": 2})).await["messages"].clone();
    let got: Vec<u64> = last_two.as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(got, seqs[3..].to_vec(), "newest last");
    let earlier = reader.ack("room.history", json!({"room": room, "before_seq": seqs[3], "limit": 100})).await
        ["messages"]
        .clone();
    let got: Vec<u64> = earlier.as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(got, seqs[..3].to_vec());
    assert_eq!(earlier[0]["text"], "entry 0");
    assert_eq!(earlier[0]["from"]["user_id"], "author");
    assert_eq!(reader.error("room.history", json!({"room": room, "limit": 101})).await, "invalid_message");
    assert_eq!(reader.error("room.history", json!({"room": room, "limit": 0})).await, "invalid_message");
    assert_eq!(reader.error("room.history", json!({"room": room, "before_seq": "x"})).await, "invalid_message");
    let mut outsider = setup.node(2).client("outsider").await;
    assert_eq!(outsider.error("room.history", json!({"room": room})).await, "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_history_reads_on_one_node() {
    history_reads(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_history_reads_across_nodes() {
    history_reads(true).await;
}
