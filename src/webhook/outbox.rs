//! The durable outbox (`--redis-url`): every event is added to a Redis stream of its node's
//! process (`ringcast:webhooks:{node}:{generation}:{endpoint}`) before it is queued to the
//! endpoint, and deleted from it once delivered or given up. The streams are listed in the
//! set `ringcast:webhooks:streams`. A stream whose process is no longer a live member (it was
//! killed, or drained with events still pending) is *adopted*: each live node claims the
//! entries whose key it now owns (`XDEL` of the entry is the claim: one node wins it), adds
//! them to its own stream and delivers them under their original id. A stream left empty by
//! a gone process is removed.
//!
//! At least once: an entry delivered by a node killed before it deleted it is posted again by
//! its adopter, under the same id. The events that the writer had not yet added when a node
//! was killed (a few milliseconds' worth) are lost. Adopted events of a key may arrive after
//! newer events its new owner emitted meanwhile.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;

use super::deliver::{Cmd, Endpoint, Job, Payload};

/// The set naming every outbox stream.
const STREAMS: &str = "ringcast:webhooks:streams";
/// Commands per pipeline at most.
const BATCH: usize = 256;

/// The writer's side of a node's outbox.
pub(super) struct Outbox {
    pub tx: mpsc::UnboundedSender<Cmd>,
    /// Adds not yet written: bounded like an endpoint's queue.
    pub pending: Arc<AtomicUsize>,
    conn: ConnectionManager,
    /// `{node}:{generation}`: this process's streams' prefix.
    me: String,
    node: Arc<str>,
}

pub(super) fn stream(process: &str, endpoint: usize) -> String {
    format!("ringcast:webhooks:{process}:{endpoint}")
}

impl Outbox {
    /// Starts the writer; `endpoints` get the events once written.
    pub(super) fn start(
        url: &str,
        node: Arc<str>,
        generation: u64,
        tx: mpsc::UnboundedSender<Cmd>,
        rx: mpsc::UnboundedReceiver<Cmd>,
        endpoints: Arc<Vec<Endpoint>>,
    ) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|err| err.to_string())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(|err| err.to_string())?;
        let me = format!("{node}:{generation}");
        let pending = Arc::new(AtomicUsize::new(0));
        tokio::spawn(write_loop(conn.clone(), rx, endpoints, me.clone(), node.clone(), pending.clone()));
        Ok(Outbox { tx, pending, conn, me, node })
    }

    /// Adopts the entries of gone processes' streams whose key `owns` says is this node's.
    /// `live` holds the `{node}:{generation}` of every live member. Returns how many entries
    /// were adopted.
    pub(super) async fn adopt(
        &self,
        endpoints: &[Endpoint],
        live: &[String],
        owns: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<usize, redis::RedisError> {
        let mut conn = self.conn.clone();
        let streams: Vec<String> = redis::cmd("SMEMBERS").arg(STREAMS).query_async(&mut conn).await?;
        let mut adopted = 0;
        for name in streams {
            let Some((process, endpoint)) = parse_stream(&name) else { continue };
            if process == self.me || live.iter().any(|member| *member == process) {
                continue;
            }
            let Some(target) = endpoints.get(endpoint) else { continue };
            let mine = stream(&self.me, endpoint);
            // Page by page: entries of keys this node does not own stay for their owners.
            let mut after = "-".to_string();
            loop {
                let entries = read_range(&mut conn, &name, &after).await?;
                if entries.is_empty() {
                    if after == "-" {
                        redis::pipe().del(&name).srem(STREAMS, &name).query_async::<()>(&mut conn).await?;
                    }
                    break;
                }
                after = format!("({}", entries[entries.len() - 1].0);
                for (entry, fields) in entries {
                    let field = |name: &str| fields.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone());
                    let (Some(key), Some(id), Some(body)) = (field("key"), field("id"), field("body")) else {
                        continue;
                    };
                    let key = String::from_utf8_lossy(&key).into_owned();
                    if !owns(&key) {
                        continue;
                    }
                    let id = String::from_utf8_lossy(&id).into_owned();
                    // Ours first, then the claim: a node killed in between leaves a copy, not a gap.
                    let (copy, claimed): (String, u64) = redis::pipe()
                        .sadd(STREAMS, &mine)
                        .ignore()
                        .cmd("XADD")
                        .arg(&mine)
                        .arg("*")
                        .arg("key")
                        .arg(&key)
                        .arg("id")
                        .arg(&id)
                        .arg("body")
                        .arg(&body)
                        .cmd("XDEL")
                        .arg(&name)
                        .arg(&entry)
                        .query_async(&mut conn)
                        .await?;
                    if claimed == 0 {
                        // Another node claimed it first.
                        let _: () = redis::cmd("XDEL").arg(&mine).arg(&copy).query_async(&mut conn).await?;
                        continue;
                    }
                    adopted += 1;
                    let payload = Payload::Rendered(Bytes::from(body));
                    let at_millis = crate::time::now_millis();
                    target.push(Job { id: id.into(), key: key.into(), payload, at_millis, entry: Some(copy) });
                }
            }
        }
        if adopted > 0 {
            tracing::info!(node = %self.node, adopted, "webhook events of gone nodes adopted");
        }
        Ok(adopted)
    }
}

/// `(process, endpoint)` of an outbox stream's name.
fn parse_stream(name: &str) -> Option<(&str, usize)> {
    let rest = name.strip_prefix("ringcast:webhooks:")?;
    let (process, endpoint) = rest.rsplit_once(':')?;
    Some((process, endpoint.parse().ok()?))
}

/// A stream entry: its id and its fields.
type Entry = (String, Vec<(String, Vec<u8>)>);

/// Up to 1000 entries of stream `name` from `start` (`-`, or `(id` for after `id`).
async fn read_range(conn: &mut ConnectionManager, name: &str, start: &str) -> Result<Vec<Entry>, redis::RedisError> {
    redis::cmd("XRANGE").arg(name).arg(start).arg("+").arg("COUNT").arg(1000).query_async(conn).await
}

/// Writes batches of commands; hands each added event to the endpoints with its entry id.
async fn write_loop(
    mut conn: ConnectionManager,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    endpoints: Arc<Vec<Endpoint>>,
    me: String,
    node: Arc<str>,
    pending: Arc<AtomicUsize>,
) {
    let mut registered = false;
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut pipe = redis::pipe();
        if !registered {
            for index in 0..endpoints.len() {
                pipe.sadd(STREAMS, stream(&me, index)).ignore();
            }
        }
        let mut adds = Vec::new();
        for cmd in batch.drain(..) {
            match cmd {
                Cmd::Add(event) => {
                    let body = Bytes::from(event.body(&node));
                    for index in 0..endpoints.len() {
                        pipe.cmd("XADD")
                            .arg(stream(&me, index))
                            .arg("*")
                            .arg("key")
                            .arg(event.key.as_str())
                            .arg("id")
                            .arg(&event.id)
                            .arg("body")
                            .arg(body.as_ref());
                    }
                    adds.push((event, body));
                }
                Cmd::Done { endpoint, entry } => {
                    pipe.cmd("XDEL").arg(stream(&me, endpoint)).arg(entry).ignore();
                }
            }
        }
        let entries: Vec<Option<String>> = match pipe.query_async::<Vec<String>>(&mut conn).await {
            Ok(ids) if ids.len() == adds.len() * endpoints.len() => {
                registered = true;
                ids.into_iter().map(Some).collect()
            }
            Ok(_) | Err(_) => {
                tracing::warn!("webhook outbox not written (redis): delivering from memory");
                vec![None; adds.len() * endpoints.len()]
            }
        };
        let mut entries = entries.into_iter();
        for (event, body) in adds {
            pending.fetch_sub(1, Ordering::Relaxed);
            for endpoint in endpoints.iter() {
                let mut job = Job::new(&event);
                job.payload = Payload::Rendered(body.clone());
                job.entry = entries.next().flatten();
                endpoint.push(job);
            }
        }
    }
}
