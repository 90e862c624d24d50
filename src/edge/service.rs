//! Server-side requests (the admin API's publish, history and user subscriptions): an op sent
//! to an owner on behalf of no connection. Its sender's `conn_id` carries
//! [`SERVICE_CONN_BIT`]; the owner's answer, an `EdgeMsg::Reply` to that id, reaches the hub
//! of the asking node like any reply and is handed here to the request waiting for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::ids::{ConnId, SERVICE_CONN_BIT};

/// The server-side requests of this node waiting for their owner's answer.
#[derive(Default)]
pub struct ServiceReplies {
    next: AtomicU64,
    waiting: Mutex<HashMap<ConnId, oneshot::Sender<Bytes>>>,
}

impl ServiceReplies {
    /// A fresh service connection id and the answer it will get.
    pub fn register(&self) -> (ConnId, Waiting<'_>) {
        let conn_id = SERVICE_CONN_BIT | (self.next.fetch_add(1, Ordering::Relaxed) & (SERVICE_CONN_BIT - 1));
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().insert(conn_id, tx);
        (conn_id, Waiting { replies: self, conn_id, rx })
    }

    /// The answer of `conn_id`'s request; false when nobody waits for it (any more).
    pub fn answer(&self, conn_id: ConnId, frame: Bytes) -> bool {
        match self.waiting.lock().remove(&conn_id) {
            Some(tx) => tx.send(frame).is_ok(),
            None => false,
        }
    }
}

/// One server-side request's answer to come; dropping it forgets the request.
pub struct Waiting<'a> {
    replies: &'a ServiceReplies,
    conn_id: ConnId,
    rx: oneshot::Receiver<Bytes>,
}

impl Waiting<'_> {
    /// The owner's answer (`ack` or `error` frame), or `None` after `timeout`.
    pub async fn answer(mut self, timeout: std::time::Duration) -> Option<Bytes> {
        tokio::time::timeout(timeout, &mut self.rx).await.ok().and_then(Result::ok)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.replies.waiting.lock().remove(&self.conn_id);
    }
}
