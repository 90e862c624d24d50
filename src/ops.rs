//! The edge↔owner interface (DESIGN.md "Data flow").
//!
//! An edge turns a client request into an [`OwnerOp`] and sends it to the owner of the room
//! key; the owner answers with [`EdgeMsg`]s to the edges concerned. On one node both hops
//! are in-process calls; in a cluster the same values cross the peer links. Nothing else
//! passes between edge and owner, so a feature that works through these types works across
//! nodes.

use std::sync::Arc;

use bytes::Bytes;
use ringcast_cluster::NodeId;

use crate::auth::Identity;
use crate::ids::ConnId;
pub use crate::protocol::RoomAction;
use crate::protocol::{ChatSend, Since};
use crate::room::RoomKey;

/// A connection anywhere in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnRef {
    pub node: NodeId,
    pub conn_id: ConnId,
}

/// Who asks: the connection and the user behind it.
#[derive(Debug, Clone)]
pub struct Sender {
    pub conn: ConnRef,
    pub user_id: Arc<str>,
    pub name: Arc<str>,
    pub is_moderator: bool,
    /// Set by the edge when the op crosses a peer link with an `op_id`: the owner echoes
    /// it in its answer so the edge can tell which requests are still in flight. 0 = none.
    pub request_id: u64,
}

impl Sender {
    /// Connection `conn_id` of `node`, asking as `identity`.
    pub fn new(node: NodeId, conn_id: ConnId, identity: &Identity) -> Self {
        Sender {
            conn: ConnRef { node, conn_id },
            user_id: identity.user_id.clone(),
            name: identity.name.clone(),
            is_moderator: identity.is_moderator(),
            request_id: 0,
        }
    }

    /// A server-side request (`ids::SERVICE_CONN_BIT` in `conn_id`) from the service `name`,
    /// which is its `user_id` and its name.
    pub fn service(node: NodeId, conn_id: ConnId, name: &str) -> Self {
        let name: Arc<str> = Arc::from(name);
        Sender { conn: ConnRef { node, conn_id }, user_id: name.clone(), name, is_moderator: true, request_id: 0 }
    }

    pub fn is_service(&self) -> bool {
        crate::ids::is_service_conn(self.conn.conn_id)
    }
}

/// A server-side room subscription of a user (`POST /v1/users/{id}/rooms/{room}`) travels
/// with its groups, in `RequestKind::UserGroups` and `EdgeMsg::Groups`, as `#` and the room
/// name: no group id has a `#`.
pub fn subscription_entry(room: &str) -> String {
    format!("#{room}")
}

/// The room of a subscription entry (`None` for a group).
pub fn subscribed_room(entry: &str) -> Option<&str> {
    entry.strip_prefix('#')
}

/// An operation for the owner of a room key.
// A resubscription is rare and small; boxing the request instead would cost an allocation
// for every op.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum OwnerOp {
    /// A request of one connection: its [`Request`] says who asks and which ack it wants.
    Request(Request),
    /// The room changed owner: these connections of the sending edge are in it. The owner
    /// adds them without `member.joined` and answers [`EdgeMsg::Joined`] for each.
    Resubscribe { room: RoomKey, members: Vec<Sender> },
}

/// A connection's request to the owner of `room`: the header every request shares, and
/// what is asked. `op_id: None` means the client wants no `ack` (automatic joins, leaves on
/// disconnect, group changes).
#[derive(Debug, Clone)]
pub struct Request {
    pub room: RoomKey,
    pub sender: Sender,
    pub op_id: Option<String>,
    pub kind: RequestKind,
}

/// What a [`Request`] asks of the owner.
#[derive(Debug, Clone)]
pub enum RequestKind {
    /// Add the connection to the room; the owner answers [`EdgeMsg::Joined`].
    Join { since: Option<Since> },
    /// Remove the connection from the room; the owner answers [`EdgeMsg::Left`].
    Leave,
    /// List the room's members.
    Members,
    /// Store and fan out a chat message.
    Publish(ChatSend),
    /// An operation on a room's messages or activity (edit, delete, react, typing, ...).
    Act(RoomAction),
    /// Something for every connection of one user (a DM, a call signal), sent to the owner of
    /// that user's personal room (`room`), which knows them all and keeps the inbox.
    ToUser(UserDelivery),
    /// A presence operation on the user of personal room `room`.
    Presence(PresenceOp),
    /// A user's groups changed: sent to the owner of the user's personal room (`room`), which
    /// knows every connection of the user and tells each one's edge ([`EdgeMsg::Groups`]).
    UserGroups { added: Vec<String>, removed: Vec<String> },
}

impl OwnerOp {
    /// A request of `sender` about `room`.
    pub fn request(room: RoomKey, sender: Sender, op_id: Option<String>, kind: RequestKind) -> Self {
        OwnerOp::Request(Request { room, sender, op_id, kind })
    }

    pub fn room(&self) -> &RoomKey {
        match self {
            OwnerOp::Request(request) => &request.room,
            OwnerOp::Resubscribe { room, .. } => room,
        }
    }

    /// The request, if this is one (a resubscription is not: it has many senders).
    pub fn as_request(&self) -> Option<&Request> {
        match self {
            OwnerOp::Request(request) => Some(request),
            OwnerOp::Resubscribe { .. } => None,
        }
    }

    /// The asking connection (`None` for a resubscription, which has many).
    pub fn sender(&self) -> Option<&Sender> {
        self.as_request().map(|request| &request.sender)
    }

    pub fn sender_mut(&mut self) -> Option<&mut Sender> {
        match self {
            OwnerOp::Request(request) => Some(&mut request.sender),
            OwnerOp::Resubscribe { .. } => None,
        }
    }

    pub fn op_id(&self) -> Option<&str> {
        self.as_request().and_then(|request| request.op_id.as_deref())
    }

    pub fn is_publish(&self) -> bool {
        matches!(self, OwnerOp::Request(Request { kind: RequestKind::Publish(_), .. }))
    }
}

/// Presence operations (PROTOCOL.md §6), each about one user, applied by the owner of that
/// user's personal room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceOp {
    /// `presence.set` by the user itself.
    Set {
        status: String,
        message: Option<String>,
    },
    /// Send the asking connection a `presence.update` on every change (and the state now).
    Subscribe,
    Unsubscribe,
    /// Part of a `presence.query`: answer [`EdgeMsg::PresenceInfo`] with this id.
    Query {
        query_id: u64,
    },
}

/// What a [`OwnerOp::ToUser`] carries. Frames are rendered once, by the sender's edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserDelivery {
    /// A direct message: to every connection of the user, or into its inbox (as
    /// `offline_frame`) when it has none.
    Dm { id: String, ts: String, frame: Bytes, offline_frame: Bytes, client_id: Option<String> },
    /// A call signal: to every connection of the user; `not_found` when it has none.
    Call { call_id: String, frame: Bytes },
    /// The copy of a DM for the sender's other connections (all but `exclude`).
    Copy { frame: Bytes, exclude: ConnRef },
}

/// What an owner sends to an edge. Frames are rendered by the owner, once.
#[derive(Debug, Clone)]
pub enum EdgeMsg {
    /// A frame for every local connection in `room` but `exclude`.
    Deliver { room: RoomKey, exclude: Option<ConnId>, frame: Bytes },
    /// A frame for one connection (an ack or an error). `is_error`: the request failed by
    /// the client's doing, and counts towards its 1008 error threshold (an `unavailable` of
    /// the server's own does not).
    Reply { conn_id: ConnId, request_id: u64, frame: Bytes, is_error: bool },
    /// The connection is in the room from now on: add it to the local fan-out, then queue
    /// `frames` (replayed messages, then the ack). Order matters: every later `Deliver` of
    /// the room reaches it, no earlier one does.
    Joined { room: RoomKey, conn_id: ConnId, request_id: u64, frames: Vec<Bytes> },
    /// The connection is out of the room: remove it, then queue `frames`.
    Left { room: RoomKey, conn_id: ConnId, request_id: u64, frames: Vec<Bytes> },
    /// The connection's user gained and lost these groups: its `group:` rooms follow.
    Groups { conn_id: ConnId, added: Vec<String>, removed: Vec<String> },
    /// One user's presence, answering part `query_id` of a `presence.query` of `conn_id`:
    /// `entry` is the JSON object `{user_id, status, message, devices}`.
    PresenceInfo { conn_id: ConnId, query_id: u64, entry: Bytes },
    /// Route this op to its owner from the edge (an owner's follow-up for another key; an
    /// owner never routes while it holds a room lock).
    Route(Box<OwnerOp>),
}

impl EdgeMsg {
    /// The request this message answers (0 = none).
    pub fn request_id(&self) -> u64 {
        match self {
            EdgeMsg::Deliver { .. } | EdgeMsg::Groups { .. } | EdgeMsg::Route(_) | EdgeMsg::PresenceInfo { .. } => 0,
            EdgeMsg::Reply { request_id, .. }
            | EdgeMsg::Joined { request_id, .. }
            | EdgeMsg::Left { request_id, .. } => *request_id,
        }
    }
}
