//! A connection's admission once its token is verified: the connect hook's question (its
//! answer applied on the connection's own task, `Conn::defer`), the welcome (`connected`, the
//! automatic joins), and the connection events posted to webhooks.

use std::sync::Arc;

use serde::Serialize;

use super::conn::Conn;
use super::Edge;
use crate::auth::Identity;
use crate::close::Disconnect;
use crate::frames;
use crate::metrics;
use crate::ops::{OwnerOp, RequestKind};
use crate::protocol::{ErrorCode, ReplyError};
use crate::room::RoomKey;
use crate::time;
use crate::webhook::hooks::{ConnectVerdict, Connecting};
use crate::webhook::{EventType, Field};

/// The connection is accepted: join the personal and group rooms (and those the connect hook
/// added), and say `connected` (then `ack`, for an in-band `auth`) once the personal room
/// holds the connection, so that DMs, calls and presence reach it from the first frame on.
pub(super) fn welcome(
    edge: &Edge,
    conn: &Arc<Conn>,
    identity: Arc<Identity>,
    ack: Option<bytes::Bytes>,
    rooms: Vec<String>,
) {
    conn.set_identity(identity.clone());
    #[derive(Serialize)]
    struct Connected<'a> {
        conn_id: String,
        node_id: &'a str,
        user_id: &'a str,
        tenant: &'a str,
        ping_interval_ms: u128,
        server_time: String,
        /// What the connect hook added.
        #[serde(skip_serializing_if = "Option::is_none")]
        meta: Option<&'a serde_json::Value>,
    }
    let now = time::rfc3339_millis(time::now_millis());
    let hook_meta = conn.hook_meta();
    let connected = Connected {
        conn_id: edge.conn_label(conn.id),
        node_id: edge.node_id.as_str(),
        user_id: &identity.user_id,
        tenant: &identity.tenant,
        ping_interval_ms: edge.limits.ping_interval.as_millis(),
        server_time: now.clone(),
        meta: hook_meta.as_ref(),
    };
    connection_event(edge, conn, &identity, EventType::ConnectionOpened, &[]);
    let mut welcome = vec![frames::event("connected", connected, &now)];
    welcome.extend(ack);
    conn.hold_welcome(welcome);
    join_quietly(edge, conn, &identity, &crate::room::personal_room(&identity.user_id));
    // The hub sends the welcome when the personal room's `Joined` arrives (at once, if
    // the join could not be routed).
    for group in &identity.groups {
        join_quietly(edge, conn, &identity, &format!("group:{group}"));
    }
    for room in rooms {
        join_quietly(edge, conn, &identity, &room);
    }
}

/// An automatic join: no ack; `unavailable` owners are logged, not fatal.
fn join_quietly(edge: &Edge, conn: &Conn, identity: &Identity, room: &str) {
    let key = RoomKey::new(&identity.tenant, room);
    conn.rooms.lock().rooms.insert(key.clone());
    let sender = edge.sender(conn, identity);
    if let Err(err) = edge.owners.route(OwnerOp::request(key, sender, None, RequestKind::Join { since: None })) {
        tracing::warn!(room, error = %err.message, "automatic join failed");
        conn.release_welcome();
    }
}

/// Asks the connect hook about `identity`'s connection; its answer is applied by the
/// connection's task: accepted ([`welcome`]), or refused with the application's reason in an
/// `error` and close 4403. Until then the connection's requests are answered `unavailable`.
pub(super) fn ask_connect_hook(edge: Arc<Edge>, conn: Arc<Conn>, identity: Identity, ack: Option<bytes::Bytes>) {
    conn.admitting.store(true, std::sync::atomic::Ordering::Relaxed);
    tokio::spawn(async move {
        let conn_id = edge.conn_label(conn.id);
        let claims = serde_json::json!({
            "sub": &*identity.user_id,
            "tenant": &*identity.tenant,
            "name": &*identity.name,
            "roles": identity.roles,
            "groups": identity.groups,
            "exp": identity.expires_at,
        });
        let connection = serde_json::json!({
            "remote_addr": conn.meta.remote_addr,
            "user_agent": conn.meta.user_agent,
            "origin": conn.meta.origin,
        });
        let who =
            Connecting { tenant: &identity.tenant, user: &identity.user_id, conn_id: &conn_id, claims, connection };
        let verdict = edge.hooks.connect(who).await;
        let task_edge = edge.clone();
        conn.defer(Box::new(move |conn| {
            conn.admitting.store(false, std::sync::atomic::Ordering::Relaxed);
            match verdict {
                ConnectVerdict::Allow { rooms, meta } => {
                    if let Some(meta) = meta {
                        conn.set_hook_meta(meta);
                    }
                    welcome(&task_edge, conn, Arc::new(identity), ack, rooms);
                }
                ConnectVerdict::Deny { reason } => {
                    let error = ReplyError::new(ErrorCode::Forbidden, reason);
                    metrics::error_sent(error.code.as_str());
                    conn.outbox.push_text(frames::error(None, &error));
                    conn.outbox.close(Disconnect::HOOK_REFUSED);
                }
            }
        }));
    });
}

/// `connection.opened` or `connection.closed` of `conn`, posted by its edge, with `fields`
/// besides its id (and the connect hook's `meta`, if any).
pub(super) fn connection_event(
    edge: &Edge,
    conn: &Conn,
    identity: &Identity,
    kind: EventType,
    fields: &[(&'static str, serde_json::Value)],
) {
    let key = RoomKey::user(&identity.tenant, &identity.user_id);
    edge.webhooks.emit(kind, &key, false, &identity.user_id, || {
        let mut all = vec![("conn_id", Field::Value(edge.conn_label(conn.id).into()))];
        all.extend(fields.iter().map(|(name, value)| (*name, Field::Value(value.clone()))));
        all.extend(conn.hook_meta().map(|meta| ("meta", Field::Value(meta))));
        all
    });
}
