//! The authorization hooks: synchronous questions to the application, signed like webhooks.
//! `--connect-hook-url` is asked before a connection is told `connected` (it may refuse it,
//! add rooms to join, add connection `meta`); `--join-hook-url` before a join of a room whose
//! name starts with one of `--join-hook-rooms` (allow or deny, with an optional cache time).
//! A hook that times out, errs or answers other than 2xx with a JSON object has failed:
//! `--hook-failure` says whether that allows or denies.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};

use super::post::{self, Client};
use crate::config::HookSettings;
use crate::ids::IdGen;
use crate::metrics;
use crate::time;

/// Join answers cached at most; the cache is emptied when it is full.
const CACHE_LIMIT: usize = 100_000;

/// A node's authorization hooks; cheap to clone, and asks nothing when none are configured.
#[derive(Clone, Default)]
pub struct Hooks(Option<Arc<Inner>>);

struct Inner {
    settings: HookSettings,
    client: Client,
    node: String,
    ids: IdGen,
    /// Join answers with a cache time: (tenant, user, room) → (answer, until).
    cache: Mutex<HashMap<JoinKey, (JoinVerdict, Instant)>>,
}

/// (tenant, user, room) of a join.
type JoinKey = (String, String, String);

/// The connect hook's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectVerdict {
    /// Accepted, with rooms to join and `meta` to add to the connection.
    Allow {
        rooms: Vec<String>,
        meta: Option<Value>,
    },
    Deny {
        reason: String,
    },
}

/// The join hook's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum JoinVerdict {
    Allow,
    Deny { reason: String },
}

/// What a hook may answer (every member optional; `allow` defaults to true).
#[derive(Deserialize, Default)]
#[serde(default)]
struct Answer {
    allow: Option<bool>,
    reason: Option<String>,
    rooms: Vec<String>,
    meta: Option<Value>,
    cache_secs: Option<u64>,
}

/// Who connects: what the connect hook is told.
pub struct Connecting<'a> {
    pub tenant: &'a str,
    pub user: &'a str,
    pub conn_id: &'a str,
    /// The token's verified claims.
    pub claims: Value,
    /// Where the connection came from.
    pub connection: Value,
}

impl Hooks {
    pub fn start(settings: &HookSettings, node_id: &str, generation: u64) -> Self {
        Hooks(Some(Arc::new(Inner {
            settings: settings.clone(),
            client: post::client(),
            node: node_id.to_string(),
            ids: IdGen::new(node_id, generation),
            cache: Mutex::new(HashMap::new()),
        })))
    }

    /// Whether connections are asked about.
    pub fn asks_connect(&self) -> bool {
        self.0.as_ref().is_some_and(|inner| inner.settings.connect_url.is_some())
    }

    /// Whether a join of `room` is asked about.
    pub fn asks_join(&self, room: &str) -> bool {
        self.0.as_ref().is_some_and(|inner| {
            inner.settings.join_url.is_some()
                && inner.settings.join_rooms.iter().any(|prefix| room.starts_with(prefix.as_str()))
        })
    }

    /// Asks the connect hook about a connection.
    pub async fn connect(&self, who: Connecting<'_>) -> ConnectVerdict {
        let Some((inner, uri)) = self.0.as_ref().and_then(|inner| Some((inner, inner.settings.connect_url.as_ref()?)))
        else {
            return ConnectVerdict::Allow { rooms: Vec::new(), meta: None };
        };
        let data = json!({
            "tenant": who.tenant,
            "user": who.user,
            "node": inner.node,
            "conn_id": who.conn_id,
            "claims": who.claims,
            "connection": who.connection,
        });
        let verdict = match inner.ask(uri, "connection.connect", data).await {
            Ok(answer) if answer.allow.unwrap_or(true) => {
                let rooms = answer.rooms.into_iter().filter(|room| valid_room(room)).collect();
                ConnectVerdict::Allow { rooms, meta: answer.meta.filter(Value::is_object) }
            }
            Ok(answer) => ConnectVerdict::Deny { reason: answer.reason.unwrap_or_else(|| "refused".to_string()) },
            Err(err) => {
                tracing::warn!(user = who.user, error = %err, "connect hook failed");
                metrics::hook_called("connect", "failed");
                return if inner.settings.allow_on_failure {
                    ConnectVerdict::Allow { rooms: Vec::new(), meta: None }
                } else {
                    ConnectVerdict::Deny { reason: "connect hook unavailable".to_string() }
                };
            }
        };
        metrics::hook_called("connect", if matches!(verdict, ConnectVerdict::Allow { .. }) { "allow" } else { "deny" });
        verdict
    }

    /// Asks the join hook whether `user` may join `room` (or answers from its cache).
    pub async fn join(&self, tenant: &str, user: &str, room: &str, conn_id: &str) -> JoinVerdict {
        let Some((inner, uri)) = self.0.as_ref().and_then(|inner| Some((inner, inner.settings.join_url.as_ref()?)))
        else {
            return JoinVerdict::Allow;
        };
        let cache_key = (tenant.to_string(), user.to_string(), room.to_string());
        if let Some((verdict, until)) = inner.cache.lock().get(&cache_key) {
            if *until > Instant::now() {
                return verdict.clone();
            }
        }
        let data = json!({"tenant": tenant, "user": user, "room": room, "node": inner.node, "conn_id": conn_id});
        let verdict = match inner.ask(uri, "room.join", data).await {
            Ok(answer) => {
                let verdict = if answer.allow.unwrap_or(true) {
                    JoinVerdict::Allow
                } else {
                    JoinVerdict::Deny { reason: answer.reason.unwrap_or_else(|| "refused".to_string()) }
                };
                if let Some(secs) = answer.cache_secs.filter(|secs| *secs > 0) {
                    let mut cache = inner.cache.lock();
                    if cache.len() >= CACHE_LIMIT {
                        cache.clear();
                    }
                    cache.insert(cache_key, (verdict.clone(), Instant::now() + Duration::from_secs(secs.min(86_400))));
                }
                verdict
            }
            Err(err) => {
                tracing::warn!(user, room, error = %err, "join hook failed");
                metrics::hook_called("join", "failed");
                return if inner.settings.allow_on_failure {
                    JoinVerdict::Allow
                } else {
                    JoinVerdict::Deny { reason: "join hook unavailable".to_string() }
                };
            }
        };
        metrics::hook_called("join", if verdict == JoinVerdict::Allow { "allow" } else { "deny" });
        verdict
    }
}

impl Inner {
    /// POSTs `{type, id, timestamp, data}` and reads a 2xx answer (empty = `{}`).
    async fn ask(&self, uri: &hyper::Uri, kind: &str, data: Value) -> Result<Answer, String> {
        let now = time::now_millis();
        let id = format!("hook_{}", self.ids.message_id(now));
        let body = json!({"type": kind, "id": id, "timestamp": time::rfc3339_millis(now), "data": data});
        let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        let key = self.settings.secret.as_deref();
        let (status, answer) = post::post(&self.client, uri, key, &id, body, self.settings.timeout)
            .await
            .map_err(|err| err.to_string())?;
        if !status.is_success() {
            return Err(format!("answered {status}"));
        }
        if answer.iter().all(u8::is_ascii_whitespace) {
            return Ok(Answer::default());
        }
        serde_json::from_slice(&answer).map_err(|err| format!("answer is not a json object: {err}"))
    }
}

/// A room name the connect hook may add: what a client could name.
fn valid_room(room: &str) -> bool {
    !room.is_empty() && room.len() <= 128 && !room.starts_with("user:") && !room.chars().any(char::is_control)
}
