//! The admin endpoints: each checks its inputs (400), asks the nodes concerned
//! (`query.rs`) and merges their answers. Every answer built from several nodes carries
//! `missing`: the live members that did not answer within 2 s.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use ringcast_cluster::NodeId;
use serde::Deserialize;
use serde_json::{json, Value};

use super::query::{ask, is_member, Filter, Gathered, Query, To};
use super::Failure;
use crate::auth::is_valid_id;
use crate::frames;
use crate::node::Node;
use crate::room::{is_valid_room_name, RoomKey};
use crate::time;

/// A matched, authorized admin request.
pub struct AdminRequest {
    pub template: &'static str,
    pub method: Method,
    /// The values of the template's `{x}` segments, percent-decoded.
    pub params: Vec<String>,
    pub query: HashMap<String, String>,
    pub tenant: String,
    pub body: Bytes,
}

impl AdminRequest {
    fn param(&self) -> &str {
        self.params.first().map(String::as_str).unwrap_or("")
    }

    fn room(&self) -> Result<String, Failure> {
        valid_room(self.param())
    }

    fn user_id(&self) -> Result<String, Failure> {
        valid_user(self.param())
    }

    fn filter(&self) -> Filter {
        Filter { tenant: self.tenant.clone(), ..Filter::default() }
    }
}

pub async fn serve(node: &Arc<Node>, req: AdminRequest) -> Result<Value, Failure> {
    match (req.template, req.method.as_str()) {
        ("/v1/stats", _) => stats(node, &req).await,
        ("/v1/connections", _) => {
            let user_id = req.query.get("user_id").map(|user_id| valid_user(user_id)).transpose()?;
            let room = req.query.get("room").map(|room| valid_room(room)).transpose()?;
            let filter = Filter { user_id, room, ..req.filter() };
            let gathered = ask(node, To::All, &Query::Connections { filter }).await;
            let missing = gathered.missing.clone();
            let mut connections = gathered.concat();
            connections.sort_by(|a, b| a["conn_id"].as_str().cmp(&b["conn_id"].as_str()));
            Ok(json!({ "connections": connections, "missing": missing }))
        }
        ("/v1/connections/{id}", "GET") => {
            let (target, filter) = connection(node, &req)?;
            let gathered = answered(ask(node, To::One(target), &Query::Connections { filter }).await)?;
            gathered.concat().into_iter().next().ok_or_else(|| Failure::not_found("unknown connection"))
        }
        ("/v1/connections/{id}", _) => {
            let (target, filter) = connection(node, &req)?;
            let gathered = ask(node, To::One(target), &Query::Close { filter }).await;
            counted(gathered, "closed", "unknown connection")
        }
        ("/v1/rooms", _) => {
            let prefix = req.query.get("prefix").cloned().unwrap_or_default();
            if !prefix.is_empty() && !is_valid_id(&prefix) {
                return Err(Failure::bad_request("prefix must be up to 128 chars of [A-Za-z0-9_.:@-]"));
            }
            let gathered = ask(node, To::All, &Query::Rooms { tenant: req.tenant.clone(), prefix }).await;
            let missing = gathered.missing.clone();
            let mut rooms = gathered.concat();
            rooms.sort_by(|a, b| a["room"].as_str().cmp(&b["room"].as_str()));
            Ok(json!({ "rooms": rooms, "missing": missing }))
        }
        ("/v1/rooms/{room}", _) => {
            let room = req.room()?;
            let owner = owner_of(node, &req.tenant, &room)?;
            let gathered =
                answered(ask(node, To::One(owner), &Query::Room { tenant: req.tenant.clone(), room }).await)?;
            gathered.first().ok_or_else(|| Failure::not_found("unknown room"))
        }
        ("/v1/rooms/{room}/messages", _) => {
            let room = req.room()?;
            let frame = message_frame(&req.body, Some(&room))?;
            let owner = owner_of(node, &req.tenant, &room)?;
            let query = Query::RoomSend { tenant: req.tenant.clone(), room, frame };
            let gathered = answered(ask(node, To::One(owner), &query).await)?;
            match gathered.first() {
                Some(delivered) => Ok(json!({ "delivered": delivered, "missing": [] })),
                None => Err(Failure::not_found("unknown room")),
            }
        }
        ("/v1/rooms/{room}/disconnect", _) => {
            let filter = Filter { room: Some(req.room()?), ..req.filter() };
            counted(ask(node, To::All, &Query::Close { filter }).await, "closed", "no connection in this room")
        }
        ("/v1/rooms/{room}/publish", _) => super::server_api::publish(node, &req, req.room()?).await,
        ("/v1/rooms/{room}/history", _) => super::server_api::history(node, &req, req.room()?).await,
        ("/v1/connections/{id}/messages", _) => {
            let (target, filter) = connection(node, &req)?;
            let frame = message_frame(&req.body, None)?;
            counted(ask(node, To::One(target), &Query::Send { filter, frame }).await, "delivered", "unknown connection")
        }
        ("/v1/users/{id}/rooms/{room}", method) => super::server_api::subscribe(node, &req, method == "POST").await,
        ("/v1/users/{id}/messages", _) => {
            let filter = Filter { user_id: Some(req.user_id()?), ..req.filter() };
            let frame = message_frame(&req.body, None)?;
            counted(ask(node, To::All, &Query::Send { filter, frame }).await, "delivered", "user has no connection")
        }
        ("/v1/users/{id}/disconnect", _) => {
            let filter = Filter { user_id: Some(req.user_id()?), ..req.filter() };
            counted(ask(node, To::All, &Query::Close { filter }).await, "closed", "user has no connection")
        }
        ("/v1/users/{id}/groups", _) => {
            let filter = Filter { user_id: Some(req.user_id()?), ..req.filter() };
            let groups = groups_of(&req.body)?;
            counted(ask(node, To::All, &Query::Groups { filter, groups }).await, "updated", "user has no connection")
        }
        ("/v1/broadcast", _) => {
            let frame = message_frame(&req.body, None)?;
            let gathered = ask(node, To::All, &Query::Send { filter: req.filter(), frame }).await;
            Ok(json!({ "delivered": gathered.count(), "missing": gathered.missing }))
        }
        _ => Err(Failure::not_found("no such route")),
    }
}

async fn stats(node: &Arc<Node>, req: &AdminRequest) -> Result<Value, Failure> {
    let gathered = ask(node, To::All, &Query::Stats { tenant: req.tenant.clone() }).await;
    let sum = |field: &str| gathered.answers.iter().filter_map(|(_, answer)| answer[field].as_u64()).sum::<u64>();
    Ok(json!({
        "node_id": node.id.as_str(),
        "tenant": req.tenant,
        "nodes": gathered.answers.len(),
        "missing": gathered.missing,
        "connections": sum("connections"),
        "users": sum("users"),
        "rooms": sum("rooms"),
        "messages_in": sum("messages_in"),
        "messages_out": sum("messages_out"),
    }))
}

/// `{id}` = `{node_id}-{number}`: the node that holds it and the filter that finds it.
fn connection(node: &Node, req: &AdminRequest) -> Result<(NodeId, Filter), Failure> {
    let id = req.param();
    let parsed = id.rsplit_once('-').and_then(|(node_id, number)| Some((node_id, number.parse::<u64>().ok()?)));
    let Some((node_id, conn_id)) = parsed.filter(|(node_id, _)| !node_id.is_empty()) else {
        return Err(Failure::bad_request("connection id must be {node_id}-{number}"));
    };
    let target = NodeId::new(node_id);
    if !is_member(node, &target) {
        return Err(Failure::not_found("unknown connection"));
    }
    Ok((target, Filter { conn_id: Some(conn_id), ..req.filter() }))
}

/// The node that owns `room` of `tenant` on the routing ring.
fn owner_of(node: &Node, tenant: &str, room: &str) -> Result<NodeId, Failure> {
    let key = RoomKey::new(tenant, room);
    node.router
        .ring()
        .owner(key.as_str())
        .cloned()
        .ok_or_else(|| Failure::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "no ready owner for this room"))
}

/// A query sent to one node: 503 when it did not answer.
fn answered(gathered: Gathered) -> Result<Gathered, Failure> {
    if gathered.missing.is_empty() {
        Ok(gathered)
    } else {
        Err(Failure::unavailable(&gathered.missing))
    }
}

/// `{key: n, missing}` for an action on connections; none affected is 404 (`none`), or 503
/// when some node did not answer.
fn counted(gathered: Gathered, key: &str, none: &str) -> Result<Value, Failure> {
    let count = gathered.count();
    if count == 0 {
        return Err(if gathered.missing.is_empty() {
            Failure::not_found(none)
        } else {
            Failure::unavailable(&gathered.missing)
        });
    }
    Ok(json!({ key: count, "missing": gathered.missing }))
}

fn valid_room(room: &str) -> Result<String, Failure> {
    if is_valid_room_name(room) {
        Ok(room.to_string())
    } else {
        Err(Failure::bad_request("invalid room name"))
    }
}

fn valid_user(user_id: &str) -> Result<String, Failure> {
    if crate::auth::is_valid_user_id(user_id) {
        Ok(user_id.to_string())
    } else {
        Err(Failure::bad_request("user id must be 1-256 bytes of UTF-8 without control characters"))
    }
}

fn parse_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Failure> {
    serde_json::from_slice(body).map_err(|err| Failure::bad_request(format!("invalid json body: {err}")))
}

#[derive(Deserialize)]
struct MessageBody {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Option<serde_json::Map<String, Value>>,
}

/// The frame clients get for an admin message `{type, data}`: `{"type", "data", "ts"}`,
/// with `data.room` set for a room message.
fn message_frame(body: &[u8], room: Option<&str>) -> Result<String, Failure> {
    let message: MessageBody = parse_body(body)?;
    let valid_type = !message.kind.is_empty()
        && message.kind.len() <= 64
        && message.kind.starts_with(|c: char| c.is_ascii_lowercase())
        && message.kind.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if !valid_type {
        return Err(Failure::bad_request("type must be 1-64 chars of [a-z0-9._-], starting with a letter"));
    }
    if matches!(message.kind.as_str(), "ack" | "error") {
        return Err(Failure::bad_request("type ack and error are reserved"));
    }
    let mut data = message.data.unwrap_or_default();
    if let Some(room) = room {
        data.insert("room".to_string(), Value::from(room));
    }
    let frame = frames::event(&message.kind, data, &time::rfc3339_millis(time::now_millis()));
    Ok(String::from_utf8_lossy(&frame).into_owned())
}

/// The body of `POST /v1/users/{id}/groups`: `{"groups": [...]}`, each a valid id.
fn groups_of(body: &[u8]) -> Result<Vec<String>, Failure> {
    #[derive(Deserialize)]
    struct GroupsBody {
        groups: Vec<String>,
    }
    let mut groups = parse_body::<GroupsBody>(body)?.groups;
    if let Some(bad) = groups.iter().find(|group| !is_valid_id(group)) {
        return Err(Failure::bad_request(format!("invalid group {bad:?}")));
    }
    groups.sort();
    groups.dedup();
    Ok(groups)
}
