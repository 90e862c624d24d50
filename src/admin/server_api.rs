//! The server API of PROTOCOL.md §11 (wave 2): what a backend does in rooms on its own
//! behalf. A publish and a history read are requests to the room's owner like a client's
//! `chat.send` and `room.history`, sent by a service sender (`Sender::service`: no
//! connection, no membership needed) whose answer comes back to this request
//! (`edge::service`). A user's subscription is a `UserGroups` request to the owner of the
//! user's personal room, which tells every connection of the user and remembers it for the
//! connections to come.

use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use serde_json::{json, Map, Value};

use super::query::{ask, Filter, Query, To};
use super::routes::AdminRequest;
use super::Failure;
use crate::ids::SERVICE_CONN_BIT;
use crate::node::Node;
use crate::ops::{subscription_entry, OwnerOp, RequestKind, Sender};
use crate::protocol::{self, Request};
use crate::room::{is_valid_room_name, RoomKey};

/// How long a server-side request waits for its owner (a forwarded request is answered
/// `unavailable` after 10 s at most).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(12);

/// The service a publish comes from when the body names none.
const DEFAULT_SERVICE: &str = "backend";

/// `POST /v1/rooms/{room}/publish` `{text, client_id?, attachments?, reply_to?, from?}`: a
/// stored message with a seq, from `service:{from}`.
pub async fn publish(node: &Arc<Node>, req: &AdminRequest, room: String) -> Result<Value, Failure> {
    if room.starts_with("user:") {
        return Err(Failure::bad_request("room: personal rooms take /v1/users/{id}/messages"));
    }
    let Value::Object(mut data) = parse_json(&req.body)? else {
        return Err(Failure::bad_request("body must be a json object"));
    };
    let service = match data.remove("from") {
        None | Some(Value::Null) => DEFAULT_SERVICE.to_string(),
        Some(Value::String(from)) if crate::auth::is_valid_id(&from) && from.len() <= 64 => from,
        Some(_) => return Err(Failure::bad_request("from must be 1-64 chars of [A-Za-z0-9_.:@-]")),
    };
    data.insert("room".into(), Value::from(room.as_str()));
    let Request::ChatSend(send) = client_request("chat.send", data)? else {
        return Err(Failure::bad_request("not a message"));
    };
    let key = RoomKey::new(&req.tenant, &room);
    let ack = ask_owner(node, key, &format!("service:{service}"), RequestKind::Publish(send)).await?;
    Ok(ack)
}

/// `GET /v1/rooms/{room}/history?before_seq=&limit=`: like a member's `room.history`.
pub async fn history(node: &Arc<Node>, req: &AdminRequest, room: String) -> Result<Value, Failure> {
    let mut data = Map::new();
    data.insert("room".into(), Value::from(room.as_str()));
    for field in ["before_seq", "limit"] {
        if let Some(value) = req.query.get(field) {
            let number: u64 =
                value.parse().map_err(|_| Failure::bad_request(format!("{field} must be an integer >= 0")))?;
            data.insert(field.into(), Value::from(number));
        }
    }
    let Request::Room { action, .. } = client_request("room.history", data)? else {
        return Err(Failure::bad_request("not a history request"));
    };
    ask_owner(node, RoomKey::new(&req.tenant, &room), "service:admin", RequestKind::Act(action)).await
}

/// `POST|DELETE /v1/users/{id}/rooms/{room}`: every connection of the user joins (leaves)
/// the room now, and every new one joins it while the subscription lasts; answers how many
/// connections the user has.
pub async fn subscribe(node: &Arc<Node>, req: &AdminRequest, join: bool) -> Result<Value, Failure> {
    let user_id = req.params.first().cloned().unwrap_or_default();
    if !crate::auth::is_valid_user_id(&user_id) {
        return Err(Failure::bad_request("user id must be 1-256 bytes of UTF-8 without control characters"));
    }
    let room = req.params.get(1).cloned().unwrap_or_default();
    if !is_valid_room_name(&room) {
        return Err(Failure::bad_request("room: invalid room name"));
    }
    if room.starts_with("user:") {
        return Err(Failure::bad_request("room: personal rooms cannot be subscribed to"));
    }
    let entry = vec![subscription_entry(&room)];
    let kind = match join {
        true => RequestKind::UserGroups { added: entry, removed: Vec::new() },
        false => RequestKind::UserGroups { added: Vec::new(), removed: entry },
    };
    // A group change is never acknowledged (its peer frame has no op_id): sent, it reaches
    // the owner of the personal room before anything this node sends there later.
    let sender = Sender::service(node.id.clone(), SERVICE_CONN_BIT, "service:admin");
    let op = OwnerOp::request(RoomKey::user(&req.tenant, &user_id), sender, None, kind);
    node.edge.owners.route(op).map_err(|err| failure(err.code.as_str(), err.message))?;
    let filter = Filter { tenant: req.tenant.clone(), user_id: Some(user_id.clone()), ..Filter::default() };
    let gathered = ask(node, To::All, &Query::Connections { filter }).await;
    let missing = gathered.missing.clone();
    let connections = gathered.concat().len();
    Ok(json!({ "user_id": user_id, "room": room, "subscribed": join, "connections": connections, "missing": missing }))
}

/// The typed request a client would have sent as `{type, data}`: the same field checks and
/// error texts (400 naming the field).
fn client_request(kind: &str, data: Map<String, Value>) -> Result<Request, Failure> {
    let mut envelope = serde_json::to_vec(&json!({ "type": kind, "data": data })).unwrap_or_default();
    protocol::parse(&mut envelope).request.map_err(|err| Failure::bad_request(err.message))
}

fn parse_json(body: &[u8]) -> Result<Value, Failure> {
    serde_json::from_slice(body).map_err(|err| Failure::bad_request(format!("invalid json body: {err}")))
}

/// Sends `kind` to the owner of `key` as service `name` and waits for its answer: the
/// `ack`'s data, or the `error` as a [`Failure`].
async fn ask_owner(node: &Arc<Node>, key: RoomKey, name: &str, kind: RequestKind) -> Result<Value, Failure> {
    let (conn_id, waiting) = node.edge.hub.service.register();
    let sender = Sender::service(node.id.clone(), conn_id, name);
    let op = OwnerOp::request(key, sender, Some("admin".into()), kind);
    node.edge.owners.route(op).map_err(|err| failure(err.code.as_str(), err.message))?;
    let Some(frame) = waiting.answer(ANSWER_TIMEOUT).await else {
        tracing::debug!(conn_id, "server-side request not answered");
        return Err(Failure::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the owner did not answer"));
    };
    let mut answer: Value = serde_json::from_slice(&frame).unwrap_or_default();
    let data = answer["data"].take();
    match answer["type"].as_str() {
        Some("ack") => Ok(data),
        _ => Err(failure(data["code"].as_str().unwrap_or("internal"), data["message"].as_str().unwrap_or_default())),
    }
}

/// An owner's error as an HTTP failure.
fn failure(code: &str, message: impl Into<String>) -> Failure {
    match code {
        "invalid_message" => Failure::bad_request(message),
        "not_found" => Failure::not_found(message),
        "forbidden" => Failure::new(StatusCode::FORBIDDEN, "forbidden", message),
        "conflict" => Failure::new(StatusCode::CONFLICT, "conflict", message),
        "too_large" => Failure::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message),
        "unavailable" => Failure::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message),
        _ => Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message),
    }
}
