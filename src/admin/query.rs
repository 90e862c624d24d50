//! Admin queries answered cluster-wide: each node answers a [`Query`] about its own
//! connections (its hub) and the rooms it owns; [`ask`] sends one to every live member (or
//! to one) over the peer links as a `KIND_ADMIN` frame with a JSON payload, and gathers the
//! answers for at most [`ANSWER_TIMEOUT`]. This node answers itself through the same code.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ringcast_cluster::NodeId;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::close::Disconnect;
use crate::edge::conn::{Conn, ConnId};
use crate::edge::deflate::SharedText;
use crate::node::Node;
use crate::ops::EdgeMsg;
use crate::peer;
use crate::room::RoomKey;
use crate::time;

/// How long a node may take to answer before it is reported missing.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// Which of a node's connections of a tenant a query is about (all given fields must match).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Filter {
    pub tenant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn_id: Option<ConnId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
}

/// One node's part of an admin request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "q", rename_all = "snake_case")]
pub enum Query {
    /// `{connections, users, rooms, messages_in, messages_out}` of the tenant on this node.
    Stats { tenant: String },
    /// The matching connections, as `[{conn_id, user_id, ...}]`.
    Connections { filter: Filter },
    /// Close the matching connections (1008); answers how many.
    Close { filter: Filter },
    /// Queue `frame` to the matching connections; answers how many.
    Send { filter: Filter, frame: String },
    /// Give the matching connections these groups (live, like `auth.refresh`); answers how
    /// many.
    Groups { filter: Filter, groups: Vec<String> },
    /// The rooms this node holds, `[{room, owner, seq, epoch, members}]`.
    Rooms { tenant: String, prefix: String },
    /// One room if this node holds it, else `null`.
    Room { tenant: String, room: String },
    /// Fan `frame` out to the room from its owner; answers how many connections it has, or
    /// `null` when this node does not hold it.
    RoomSend { tenant: String, room: String, frame: String },
}

/// Who answers a query.
pub enum To {
    /// Every live member.
    All,
    One(NodeId),
}

/// The answers of the nodes that answered in time, and the ids of those that did not.
pub struct Gathered {
    pub answers: Vec<(String, Value)>,
    pub missing: Vec<String>,
}

impl Gathered {
    /// The sum of the numeric answers.
    pub fn count(&self) -> u64 {
        self.answers.iter().filter_map(|(_, answer)| answer.as_u64()).sum()
    }

    /// The array answers, concatenated.
    pub fn concat(self) -> Vec<Value> {
        self.answers
            .into_iter()
            .flat_map(|(_, answer)| if let Value::Array(items) = answer { items } else { Vec::new() })
            .collect()
    }

    /// The first answer that is not `null`.
    pub fn first(self) -> Option<Value> {
        self.answers.into_iter().map(|(_, answer)| answer).find(|answer| !answer.is_null())
    }
}

/// True when `id` is this node or a live member of its cluster.
pub fn is_member(node: &Node, id: &NodeId) -> bool {
    *id == node.id || node.router.cluster().is_some_and(|cluster| cluster.view().members.contains_key(id))
}

/// Asks `to` and waits at most [`ANSWER_TIMEOUT`] for the answers.
pub async fn ask(node: &Arc<Node>, to: To, query: &Query) -> Gathered {
    let targets: Vec<NodeId> = match to {
        To::One(id) => vec![id],
        To::All => match node.router.cluster() {
            None => vec![node.id.clone()],
            Some(cluster) => cluster.view().members.keys().cloned().collect(),
        },
    };
    let mut gathered = Gathered { answers: Vec::new(), missing: Vec::new() };
    let mut waiting = Vec::new();
    let json = serde_json::to_vec(query).unwrap_or_default();
    let mut answer_here = false;
    for target in targets {
        if target == node.id {
            answer_here = true;
            continue;
        }
        let sent = node.router.cluster().map(|cluster| {
            let (request_id, rx) = node.admin.register();
            match cluster.send(&target, peer::encode_admin(request_id, false, &json)) {
                Ok(_) => Some((request_id, rx)),
                Err(_) => {
                    node.admin.cancel(request_id);
                    None
                }
            }
        });
        match sent.flatten() {
            Some((request_id, rx)) => waiting.push((target, request_id, rx)),
            None => gathered.missing.push(target.to_string()),
        }
    }
    let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
    // The other nodes work on theirs meanwhile.
    if answer_here {
        gathered.answers.push((node.id.to_string(), answer(node, query.clone())));
    }
    for (target, request_id, rx) in waiting {
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(bytes)) => match serde_json::from_slice(&bytes) {
                Ok(value) => gathered.answers.push((target.to_string(), value)),
                Err(_) => gathered.missing.push(target.to_string()),
            },
            _ => {
                node.admin.cancel(request_id);
                gathered.missing.push(target.to_string());
            }
        }
    }
    gathered.answers.sort_by(|a, b| a.0.cmp(&b.0));
    gathered.missing.sort();
    gathered
}

/// A `KIND_ADMIN` frame from `from`: answer a request, or hand an answer to its waiter.
pub fn on_peer_frame(node: &Node, from: &NodeId, request_id: u64, is_answer: bool, json: Bytes) {
    if is_answer {
        return node.admin.answer(request_id, json);
    }
    let value = match serde_json::from_slice::<Query>(&json) {
        Ok(query) => answer(node, query),
        Err(err) => {
            tracing::warn!(from = %from, error = %err, "malformed admin query");
            Value::Null
        }
    };
    let bytes = serde_json::to_vec(&value).unwrap_or_default();
    if let Some(cluster) = node.router.cluster() {
        if let Err(err) = cluster.send(from, peer::encode_admin(request_id, true, &bytes)) {
            tracing::debug!(node = %from, error = %err, "admin answer not sent");
        }
    }
}

/// This node's answer to `query`.
pub fn answer(node: &Node, query: Query) -> Value {
    match query {
        Query::Stats { tenant } => {
            let connections = matching(node, &Filter { tenant: tenant.clone(), ..Filter::default() }).len();
            let owned = node.router.owner.admin_counts(&tenant);
            let (messages_in, messages_out) = node.edge.hub.message_counts(&tenant);
            json!({
                "connections": connections,
                "users": owned.users,
                "rooms": owned.rooms,
                "messages_in": messages_in,
                "messages_out": messages_out,
            })
        }
        Query::Connections { filter } => {
            let mut conns: Vec<Value> = matching(node, &filter).iter().map(|conn| conn_info(node, conn)).collect();
            conns.sort_by(|a, b| a["conn_id"].as_str().cmp(&b["conn_id"].as_str()));
            Value::Array(conns)
        }
        Query::Close { filter } => {
            let conns = matching(node, &filter);
            for conn in &conns {
                conn.outbox.close(Disconnect::ADMIN);
            }
            json!(conns.len())
        }
        Query::Send { filter, frame } => {
            // One shared frame: deflated at most once for every connection that compresses.
            let frame = Arc::new(SharedText::new(Bytes::from(frame)));
            let conns = matching(node, &filter);
            for conn in &conns {
                conn.outbox.push_shared(frame.clone());
            }
            json!(conns.len())
        }
        Query::Groups { filter, groups } => {
            let conns = matching(node, &filter);
            for conn in &conns {
                let Some(identity) = conn.identity() else { continue };
                let added = groups.iter().filter(|group| !identity.groups.contains(group)).cloned().collect();
                let removed = identity.groups.iter().filter(|group| !groups.contains(group)).cloned().collect();
                // The edge's path of a group change (`auth.refresh`, `EdgeMsg::Groups`).
                node.edge.hub.handle(EdgeMsg::Groups { conn_id: conn.id, added, removed });
            }
            json!(conns.len())
        }
        Query::Rooms { tenant, prefix } => json!(node.router.owner.admin_rooms(node.id.as_str(), &tenant, &prefix)),
        Query::Room { tenant, room } => {
            json!(node.router.owner.admin_room(node.id.as_str(), &RoomKey::new(&tenant, &room)))
        }
        Query::RoomSend { tenant, room, frame } => {
            json!(node.router.owner.admin_deliver(&*node.router, &RoomKey::new(&tenant, &room), Bytes::from(frame)))
        }
    }
}

/// This node's authenticated connections that match `filter`.
fn matching(node: &Node, filter: &Filter) -> Vec<Arc<Conn>> {
    let candidates = match (&filter.conn_id, &filter.room) {
        (Some(conn_id), _) => node.edge.hub.get(*conn_id).into_iter().collect(),
        (None, Some(room)) => node.edge.hub.in_room(&RoomKey::new(&filter.tenant, room)),
        (None, None) => node.edge.hub.all(),
    };
    candidates
        .into_iter()
        .filter(|conn| {
            let Some(identity) = conn.identity() else { return false };
            *identity.tenant == *filter.tenant
                && filter.user_id.as_deref().is_none_or(|user_id| *identity.user_id == *user_id)
                && filter
                    .room
                    .as_ref()
                    .is_none_or(|room| conn.rooms.lock().rooms.contains(&RoomKey::new(&filter.tenant, room)))
                && !conn.outbox.is_closing()
        })
        .collect()
}

/// `{conn_id, user_id, tenant, node, rooms, remote_addr, user_agent, origin, connected_at,
/// last_activity, messages_in, messages_out}`
fn conn_info(node: &Node, conn: &Conn) -> Value {
    let identity = conn.identity();
    let mut rooms: Vec<String> = conn.rooms.lock().rooms.iter().map(|key| key.room().to_string()).collect();
    rooms.sort();
    let idle_ms = conn.idle_for().as_millis() as u64;
    json!({
        "conn_id": node.edge.conn_label(conn.id),
        "user_id": identity.as_ref().map(|identity| identity.user_id.to_string()),
        "tenant": identity.as_ref().map(|identity| identity.tenant.to_string()),
        "node": node.id.as_str(),
        "rooms": rooms,
        "remote_addr": conn.meta.remote_addr,
        "user_agent": conn.meta.user_agent,
        "origin": conn.meta.origin,
        "connected_at": time::rfc3339_millis(conn.meta.connected_at_ms),
        "last_activity": time::rfc3339_millis(time::now_millis().saturating_sub(idle_ms)),
        "messages_in": conn.received.load(Ordering::Relaxed),
        "messages_out": conn.outbox.sent(),
        "meta": conn.hook_meta(),
    })
}
