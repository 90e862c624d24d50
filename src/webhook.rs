//! Lifecycle webhooks (PROTOCOL.md §12): the application's backend is told of connections,
//! joins, leaves, messages, DMs and presence changes by signed HTTP POSTs.
//!
//! Every event is emitted by exactly one node: the owner of the key it is about (a room's
//! for room and message events, a user's personal room's for DMs and presence), or the
//! edge of the connection for connection events. [`Webhooks::emit`] only builds the event
//! and queues it to each endpoint (`webhook/deliver.rs`): the owner's hot path never waits
//! for a receiver. Each endpoint delivers in lanes by key, so a later event about a key is
//! not posted before an earlier one that is still being retried; a lane retries with
//! exponential backoff and jitter for `--webhook-retry-secs`, keeping the event's `id`.
//! `webhook/post.rs` is the one signed POST (hyper-util's client), `webhook/sign.rs` the
//! Standard Webhooks signature.

use std::sync::Arc;

use bytes::Bytes;
use metrics::Counter;

use crate::config::{WebhookSettings, EVENT_TYPES};
use crate::ids::IdGen;
use crate::room::RoomKey;
use crate::time;

mod deliver;
mod event;
pub mod hooks;
mod outbox;
pub mod post;
pub mod sign;

pub use event::{Event, EventType, Field};

/// A node's webhooks; cheap to clone, and does nothing when none are configured.
#[derive(Clone, Default)]
pub struct Webhooks(Option<Arc<Inner>>);

struct Inner {
    /// Bits of the posted event types, by their index in [`EVENT_TYPES`].
    events: u16,
    ids: IdGen,
    /// `ringcast_webhook_events_emitted_total`, by type.
    emitted: Vec<Counter>,
    endpoints: Arc<Vec<deliver::Endpoint>>,
    /// The durable outbox (with `--redis-url`): events go through it to the endpoints.
    outbox: Option<outbox::Outbox>,
}

impl Webhooks {
    /// Starts a delivery task per lane of every endpoint (needs the runtime), and with
    /// `redis_url` the durable outbox's writer.
    pub fn start(
        settings: &WebhookSettings,
        node_id: &str,
        generation: u64,
        redis_url: Option<&str>,
    ) -> Result<Self, String> {
        let client = post::client();
        let node: Arc<str> = node_id.into();
        let (outbox_tx, outbox_rx) = tokio::sync::mpsc::unbounded_channel();
        let to_outbox = redis_url.map(|_| outbox_tx.clone());
        let endpoints: Arc<Vec<_>> = Arc::new(
            settings
                .urls
                .iter()
                .enumerate()
                .map(|(index, uri)| {
                    deliver::Endpoint::start(
                        index,
                        uri.clone(),
                        settings,
                        node.clone(),
                        client.clone(),
                        to_outbox.clone(),
                    )
                })
                .collect(),
        );
        let outbox = match redis_url {
            None => None,
            Some(url) => {
                Some(outbox::Outbox::start(url, node.clone(), generation, outbox_tx, outbox_rx, endpoints.clone())?)
            }
        };
        Ok(Webhooks(Some(Arc::new(Inner {
            events: settings.events,
            ids: IdGen::new(node_id, generation),
            emitted: EVENT_TYPES.iter().map(|kind| crate::metrics::webhook_emitted(kind)).collect(),
            endpoints,
            outbox,
        }))))
    }

    /// Whether events of `kind` are posted.
    pub fn wants(&self, kind: EventType) -> bool {
        self.0.as_ref().is_some_and(|inner| inner.events & (1 << kind as u16) != 0)
    }

    /// Emits an event of `kind` about `key` by `user`, if such events are posted; `fields`
    /// is called only then. Never waits: the event is queued to every endpoint (or counted
    /// as dropped where a queue is full).
    pub fn emit(
        &self,
        kind: EventType,
        key: &RoomKey,
        room_event: bool,
        user: &str,
        fields: impl FnOnce() -> Vec<(&'static str, Field)>,
    ) {
        let Some(inner) = self.0.as_ref().filter(|_| self.wants(kind)) else { return };
        let now = time::now_millis();
        let event = Arc::new(Event {
            kind,
            id: format!("evt_{}", inner.ids.message_id(now)),
            at_millis: now,
            key: key.clone(),
            room_event,
            user: user.into(),
            fields: fields(),
        });
        inner.emitted[kind as usize].increment(1);
        match &inner.outbox {
            Some(outbox) => {
                // Bounded like the endpoints' queues while the writer waits for Redis.
                let limit = inner.endpoints.first().map_or(0, deliver::Endpoint::limit);
                if outbox.pending.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= limit {
                    outbox.pending.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    inner.endpoints.iter().for_each(deliver::Endpoint::overflowed);
                    return;
                }
                let _ = outbox.tx.send(deliver::Cmd::Add(event));
            }
            None => {
                for endpoint in inner.endpoints.iter() {
                    endpoint.push(deliver::Job::new(&event));
                }
            }
        }
    }

    /// Events waiting for delivery, over every endpoint.
    pub fn queued(&self) -> usize {
        self.0.as_ref().map_or(0, |inner| {
            let writing =
                inner.outbox.as_ref().map_or(0, |outbox| outbox.pending.load(std::sync::atomic::Ordering::Relaxed));
            writing + inner.endpoints.iter().map(deliver::Endpoint::queued).sum::<usize>()
        })
    }

    /// With a durable outbox: takes over the pending events of processes that are gone
    /// (`live`: the `{node}:{generation}` of every live member) whose key `owns` says is
    /// this node's now. Returns how many were taken.
    pub async fn adopt(&self, live: &[String], owns: &(dyn Fn(&str) -> bool + Sync)) -> usize {
        let Some((inner, outbox)) = self.0.as_ref().and_then(|inner| Some((inner, inner.outbox.as_ref()?))) else {
            return 0;
        };
        match outbox.adopt(&inner.endpoints, live, owns).await {
            Ok(adopted) => adopted,
            Err(err) => {
                tracing::warn!(error = %err, "webhook outbox: adoption failed");
                0
            }
        }
    }

    /// Whether events go through a durable outbox.
    pub fn durable(&self) -> bool {
        self.0.as_ref().is_some_and(|inner| inner.outbox.is_some())
    }

    /// Waits until every queue is empty or `limit` has passed (a graceful shutdown's last
    /// events, such as its connections' `connection.closed`).
    pub async fn flush(&self, limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.queued() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// `data` serialized as the event's member `name`.
pub fn value<T: serde::Serialize>(name: &'static str, data: &T) -> Vec<(&'static str, Field)> {
    vec![(name, Field::Value(serde_json::to_value(data).unwrap_or_default()))]
}

/// A client frame as an event's `message`.
pub fn message(frame: &Bytes) -> Vec<(&'static str, Field)> {
    vec![("message", Field::Frame(frame.clone()))]
}
