//! The edge: the half of the data path that holds client connections.
//!
//! A connection is one task ([`session`]) and one shared [`conn::Conn`]. The task reads
//! frames ([`wsframe`]), rate-limits them ([`ratelimit`]), parses them ([`crate::protocol`]),
//! turns each request into an [`OwnerOp`] ([`dispatch`]) and hands it to [`Owners`], the way
//! to the owner of its room key. Answers and fan-out come back as
//! [`crate::ops::EdgeMsg`]s to the [`hub::Hub`], which queues frames into the connections'
//! outboxes; each connection's task writes them ([`writer`]) through its [`transport`].
//!
//! The edge imports nothing of the router: it sees it through [`Owners`] (implemented by
//! `crate::route::Router`), and the router hands it messages through the [`hub::Hub`].

use std::sync::Arc;

use ringcast_cluster::NodeId;
use tokio_util::sync::CancellationToken;

use crate::auth::{AuthError, Authenticator, Identity};
use crate::close::Disconnect;
use crate::config::Limits;
use crate::ids::ConnId;
use crate::ops::{OwnerOp, Sender};
use crate::protocol::ReplyError;
use crate::room::RoomKey;

mod admission;
pub mod conn;
pub mod deflate;
pub mod dispatch;
pub mod hub;
pub mod ratelimit;
pub mod service;
pub mod session;
#[cfg(test)]
mod sizes;
pub mod transport;
pub mod writer;
pub mod wsframe;

/// What the edge needs of the owners of room keys (implemented by the router).
pub trait Owners: Send + Sync {
    /// Sends `op` to the owner of its room; `Err(unavailable)` when it cannot be reached
    /// (the op was not applied).
    fn route(&self, op: OwnerOp) -> Result<(), ReplyError>;

    /// `presence.query` of `sender`'s connection about the users of personal rooms `users`:
    /// asks the owner of each, and answers the connection once all have.
    fn presence_query(&self, sender: Sender, op_id: Option<&str>, users: Vec<RoomKey>) -> Result<(), ReplyError>;

    /// A fresh message id (a DM's, given by the sender's edge).
    fn message_id(&self, now_millis: u64) -> String;

    /// `room.members` of `sender`'s connection (in `room`, as the edge checked): the owner's
    /// member list with each member's presence status, answered to the connection.
    fn members(self: Arc<Self>, sender: Sender, op_id: Option<String>, room: RoomKey);
}

/// What every connection of this node shares.
pub struct Edge {
    pub node_id: NodeId,
    pub limits: Limits,
    pub auth: Authenticator,
    /// This node's connections and their local fan-out.
    pub hub: Arc<hub::Hub>,
    /// The way to the owners of room keys.
    pub owners: Arc<dyn Owners>,
    /// Cancelled once every connection was asked to close: a connection registered later
    /// closes at once.
    pub close_all: CancellationToken,
    /// The close every client gets when this node shuts down: 1012 (reconnect elsewhere) in
    /// a cluster, 1001 alone.
    pub shutdown_disconnect: Disconnect,
    /// Where `connection.opened` and `connection.closed` are posted.
    pub webhooks: crate::webhook::Webhooks,
    /// The connect and join hooks.
    pub hooks: crate::webhook::hooks::Hooks,
    /// permessage-deflate: offered to clients at all, and the smallest message compressed.
    pub compression: crate::config::CompressionSettings,
}

impl Edge {
    /// The cluster-wide id of a local connection.
    pub fn conn_label(&self, conn_id: ConnId) -> String {
        format!("{}-{}", self.node_id, conn_id)
    }

    /// Checks a token, counting and logging a refusal by its reason (a client sees only 401
    /// or 4001). A `kid` the JWKS does not know is fetched in the background.
    pub fn authenticate(&self, token: &str) -> Result<Identity, AuthError> {
        self.auth.authenticate(token).inspect_err(auth_failed)
    }

    /// [`Edge::authenticate`] that waits for the JWKS to be fetched again when the `kid` is
    /// unknown (the upgrade's token).
    pub async fn authenticate_fetching(&self, token: &str) -> Result<Identity, AuthError> {
        self.auth.authenticate_fetching(token).await.inspect_err(auth_failed)
    }

    /// Connection `conn`, asking as `identity`.
    pub fn sender(&self, conn: &conn::Conn, identity: &crate::auth::Identity) -> Sender {
        Sender::new(self.node_id.clone(), conn.id, identity)
    }
}

fn auth_failed(err: &AuthError) {
    tracing::debug!(reason = err.reason(), %err, "token refused");
    crate::metrics::auth_failed(err.reason());
}
