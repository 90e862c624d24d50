//! `presence.query`: one part per user, each answered by the owner of the user's personal
//! room; the edge answers the client once every part is in.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::pending::PENDING_TIMEOUT;
use super::Router;
use crate::frames;
use crate::ids::ConnId;
use crate::ops::{OwnerOp, PresenceOp, RequestKind, Sender};
use crate::protocol::{ErrorCode, ReplyError};
use crate::room::RoomKey;

/// Users per query id: a part's id is `query_id * QUERY_PARTS + index`.
pub(super) const QUERY_PARTS: u64 = 128;

/// A `presence.query` being answered by the owners of its users.
struct PresenceQuery {
    conn_id: ConnId,
    op_id: Option<String>,
    entries: Vec<Option<Bytes>>,
    started: Instant,
    /// Where the entries go instead of an ack to the connection (`room.members`).
    done: Option<oneshot::Sender<Vec<Bytes>>>,
}

/// The queries waiting for their parts, by query id.
#[derive(Default)]
pub(super) struct Queries(Mutex<HashMap<u64, PresenceQuery>>);

impl Router {
    /// `presence.query` of `sender`'s connection about the users of personal rooms `users`:
    /// asks the owner of each, answers once all have.
    pub fn presence_query(&self, sender: Sender, op_id: Option<&str>, users: Vec<RoomKey>) -> Result<(), ReplyError> {
        self.ask_presence(sender, op_id, users, None)
    }

    /// The presence entries of the users of personal rooms `users` (at most [`QUERY_PARTS`]),
    /// sent to `done` once all are in.
    pub(super) fn presence_parts(
        &self,
        sender: Sender,
        users: Vec<RoomKey>,
        done: oneshot::Sender<Vec<Bytes>>,
    ) -> Result<(), ReplyError> {
        self.ask_presence(sender, None, users, Some(done))
    }

    fn ask_presence(
        &self,
        sender: Sender,
        op_id: Option<&str>,
        users: Vec<RoomKey>,
        done: Option<oneshot::Sender<Vec<Bytes>>>,
    ) -> Result<(), ReplyError> {
        let query_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let query = PresenceQuery {
            conn_id: sender.conn.conn_id,
            op_id: op_id.map(str::to_string),
            entries: vec![None; users.len()],
            started: Instant::now(),
            done,
        };
        self.queries.0.lock().insert(query_id, query);
        for (index, room) in users.into_iter().enumerate() {
            let op = PresenceOp::Query { query_id: query_id * QUERY_PARTS + index as u64 };
            if let Err(error) = self.route(OwnerOp::request(room, sender.clone(), None, RequestKind::Presence(op))) {
                self.queries.0.lock().remove(&query_id);
                return Err(error);
            }
        }
        Ok(())
    }

    /// One part of a `presence.query` came back; the ack goes out with the last one.
    pub(super) fn on_presence_info(&self, conn_id: ConnId, part: u64, entry: Bytes) {
        let (query_id, index) = (part / QUERY_PARTS, (part % QUERY_PARTS) as usize);
        let complete = {
            let mut queries = self.queries.0.lock();
            let Some(query) = queries.get_mut(&query_id).filter(|query| query.conn_id == conn_id) else { return };
            if let Some(slot) = query.entries.get_mut(index) {
                *slot = Some(entry);
            }
            if query.entries.iter().all(Option::is_some) {
                queries.remove(&query_id)
            } else {
                None
            }
        };
        let Some(query) = complete else { return };
        if let Some(done) = query.done {
            let _ = done.send(query.entries.into_iter().flatten().collect());
            return;
        }
        let Some(op_id) = query.op_id else { return };
        let mut frame =
            format!(r#"{{"type":"ack","op_id":{},"data":{{"users":["#, serde_json::Value::from(op_id)).into_bytes();
        for (index, entry) in query.entries.iter().flatten().enumerate() {
            if index > 0 {
                frame.push(b',');
            }
            frame.extend_from_slice(entry);
        }
        frame.extend_from_slice(b"]}}");
        if let Some(conn) = self.hub.get(conn_id) {
            conn.outbox.push_text(Bytes::from(frame));
        }
    }

    /// Answers `unavailable` to the queries that waited too long for their parts.
    pub(super) fn expire_queries(&self) {
        let expired: Vec<PresenceQuery> = {
            let mut queries = self.queries.0.lock();
            let ids: Vec<u64> =
                queries.iter().filter(|(_, q)| q.started.elapsed() > PENDING_TIMEOUT).map(|(id, _)| *id).collect();
            ids.into_iter().filter_map(|id| queries.remove(&id)).collect()
        };
        for query in expired {
            if let Some(conn) = self.hub.get(query.conn_id) {
                let error = ReplyError::new(ErrorCode::Unavailable, "owner did not answer");
                conn.outbox.push_text(frames::error(query.op_id.as_deref(), &error));
            }
        }
    }
}
