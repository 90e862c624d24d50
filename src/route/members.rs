//! `room.members` with each member's real presence status: the room's owner lists the
//! members, then the owner of each member's personal room tells its status (`presence.query`
//! parts), and the edge answers the connection with both. The edge checked that the
//! connection is in the room; both steps are server-side requests (`edge::service`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::oneshot;

use super::Router;
use crate::frames;
use crate::ops::{OwnerOp, RequestKind, Sender};
use crate::protocol::{ErrorCode, ReplyError};
use crate::room::RoomKey;

/// How long each step waits for its owners.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

impl Router {
    /// `room.members` of connection `sender` about `room`: answered on its own task.
    pub fn members_with_presence(self: Arc<Self>, sender: Sender, op_id: Option<String>, room: RoomKey) {
        tokio::spawn(async move {
            let frame = match self.members_frame(&room, op_id.as_deref()).await {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(error) => frames::error(op_id.as_deref(), &error),
            };
            if let Some(conn) = self.hub.get(sender.conn.conn_id) {
                conn.outbox.push_text(frame);
            }
        });
    }

    /// The ack (`None` without `op_id`), or the owner's refusal.
    async fn members_frame(&self, room: &RoomKey, op_id: Option<&str>) -> Result<Option<Bytes>, ReplyError> {
        let unavailable = || ReplyError::new(ErrorCode::Unavailable, "owner did not answer");
        let (conn_id, waiting) = self.hub.service.register();
        let asker = Sender::service(self.id.clone(), conn_id, "service:members");
        self.route(OwnerOp::request(room.clone(), asker, Some("members".into()), RequestKind::Members))?;
        let answer = waiting.answer(STEP_TIMEOUT).await.ok_or_else(unavailable)?;
        let mut answer: Value = serde_json::from_slice(&answer).map_err(|_| unavailable())?;
        let mut data = answer["data"].take();
        if answer["type"] != "ack" {
            let code = data["code"].as_str().and_then(ErrorCode::parse).unwrap_or(ErrorCode::Internal);
            return Err(ReplyError::new(code, data["message"].as_str().unwrap_or_default().to_string()));
        }
        let Some(op_id) = op_id else { return Ok(None) };
        let members = data["members"].as_array_mut().map(std::mem::take).unwrap_or_default();
        let users: Vec<RoomKey> = members
            .iter()
            .filter_map(|member| member["user_id"].as_str())
            .map(|user_id| RoomKey::user(room.tenant(), user_id))
            .collect();
        let statuses = self.statuses(users).await;
        let members: Vec<Value> = members
            .into_iter()
            .map(|mut member| {
                let user_id = member["user_id"].as_str().unwrap_or_default();
                if let Some(status) = statuses.iter().find(|(user, _)| user == user_id).map(|(_, status)| status) {
                    member["status"] = Value::from(status.as_str());
                }
                member
            })
            .collect();
        data["members"] = Value::Array(members);
        Ok(frames::ack(Some(op_id), data))
    }

    /// The presence status of the users of personal rooms `users` (those whose owners answer
    /// in time; the others keep the status the room's owner gave).
    async fn statuses(&self, users: Vec<RoomKey>) -> Vec<(String, String)> {
        let mut statuses = Vec::new();
        for chunk in users.chunks(super::presence::QUERY_PARTS as usize) {
            let (conn_id, _waiting) = self.hub.service.register();
            let asker = Sender::service(self.id.clone(), conn_id, "service:members");
            let (tx, rx) = oneshot::channel();
            if self.presence_parts(asker, chunk.to_vec(), tx).is_err() {
                continue;
            }
            let Ok(Ok(entries)) = tokio::time::timeout(STEP_TIMEOUT, rx).await else { continue };
            for entry in entries {
                let entry: Value = serde_json::from_slice(&entry).unwrap_or_default();
                if let (Some(user_id), Some(status)) = (entry["user_id"].as_str(), entry["status"].as_str()) {
                    statuses.push((user_id.to_string(), status.to_string()));
                }
            }
        }
        statuses
    }
}
