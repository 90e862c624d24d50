//! The Redis store (`--redis-url`).
//!
//! Key layout (every key of a room shares the hash tag `{tenant/room}`, so a room lives in
//! one slot; the owner of the room is the only writer of its keys):
//!
//! | key                          | type   | holds                                                  |
//! |------------------------------|--------|--------------------------------------------------------|
//! | `rc:{T/R}:meta`              | hash   | `epoch`                                                |
//! | `rc:{T/R}:log`               | stream | messages as sent: entry id `{seq}-0`, field `m` = JSON, `MAXLEN` = history size |
//! | `rc:{T/R}:edits`             | zset   | changed messages (score = seq, member = JSON) and hard deletes (`-{seq}`) |
//! | `rc:{T/R}:bans`              | string | the room's bans as JSON                                |
//! | `rc:{T/user:U}:inbox`        | list   | offline DMs, capped at the inbox size, `PEXPIRE` = inbox TTL |
//! | `rc:{T/user:U}:dmsent`       | hash   | DM idempotency keys, `PEXPIRE` = inbox TTL             |
//! | `rc:{T/user:U}:rooms`        | string | the user's server-side room subscriptions as JSON      |
//!
//! The stream's explicit ids make Redis refuse a seq that is not above the last one stored,
//! so two owners of one room (a partition) cannot both write the same seq. A deleted or
//! redacted message is removed from the stream (`XDEL`) and kept only as its changed record,
//! so its text is gone from Redis too. The room's seq is the highest of the stream's last id
//! and the changed records' scores.
//!
//! Writes are queued to one writer task that sends everything queued as one pipeline per
//! round trip, in order, so a room's writes reach Redis in seq order and their answers leave
//! in that order.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::StreamRangeReply;
use tokio::sync::mpsc;

use super::record;
use super::{Job, LoadFuture, Loaded, Store, StoreError, Write};
use crate::metrics;
use crate::room::RoomKey;

/// Jobs waiting for the writer; beyond this, ops are answered `unavailable` at once.
const QUEUE_JOBS: usize = 64 * 1024;
/// Jobs sent in one pipeline at most.
const BATCH_JOBS: usize = 1024;
/// A Redis answer slower than this counts as a failure.
const TIMEOUT: Duration = Duration::from_secs(2);

pub struct RedisStore {
    conn: ConnectionManager,
    jobs: mpsc::Sender<Job>,
    up: Arc<AtomicBool>,
    history_size: usize,
}

/// What the node needs to run the store: the completions to answer, in order.
pub type Completions = mpsc::Receiver<(Job, bool)>;

#[derive(Clone, Copy)]
pub struct Limits {
    pub history_size: usize,
    pub inbox_size: usize,
    pub inbox_ttl: Duration,
}

impl RedisStore {
    /// Opens the store lazily (Redis may come up after us) and starts its writer and
    /// health tasks. `Err` only for a URL that cannot be used.
    pub fn start(url: &str, limits: Limits) -> Result<(Arc<Self>, Completions), String> {
        let client = redis::Client::open(url).map_err(|err| err.to_string())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(|err| err.to_string())?;
        let (jobs, jobs_rx) = mpsc::channel(QUEUE_JOBS);
        // Bounded like the queue: when the node falls behind answering, the writer waits, the
        // queue fills and new writes are refused `unavailable`, as when Redis is slow, instead
        // of answers piling up without end. The wait always ends: answering a job (locking a
        // shard, handing messages to edges) never waits for the writer.
        let (done_tx, done_rx) = mpsc::channel(QUEUE_JOBS);
        let up = Arc::new(AtomicBool::new(false));
        metrics::store_up(false);
        tokio::spawn(write_loop(conn.clone(), jobs_rx, done_tx, up.clone(), limits));
        tokio::spawn(watch_health(conn.clone(), up.clone()));
        Ok((Arc::new(RedisStore { conn, jobs, up, history_size: limits.history_size }), done_rx))
    }
}

impl Store for RedisStore {
    fn durable(&self) -> bool {
        true
    }

    fn up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn load(&self, key: &RoomKey) -> LoadFuture {
        let mut conn = self.conn.clone();
        let keys = Keys::of(key);
        let history_size = self.history_size;
        let up = self.up.clone();
        Box::pin(async move {
            let mut pipe = redis::pipe();
            pipe.hget(&keys.meta, "epoch")
                .xrange_all(&keys.log)
                .cmd("ZRANGE")
                .arg(&keys.edits)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .get(&keys.bans)
                .lrange(&keys.inbox, 0, -1)
                .hgetall(&keys.dm_sent)
                .get(&keys.rooms);
            type Reply = (
                Option<String>,
                StreamRangeReply,
                Vec<(Vec<u8>, f64)>,
                Option<Vec<u8>>,
                Vec<Vec<u8>>,
                HashMap<Vec<u8>, Vec<u8>>,
                Option<Vec<u8>>,
            );
            let started = Instant::now();
            let reply = tokio::time::timeout(TIMEOUT, pipe.query_async::<Reply>(&mut conn)).await;
            let reply = match reply {
                Ok(Ok(reply)) => reply,
                Ok(Err(err)) => return Err(failed("load", started, &up, err.to_string())),
                Err(_) => return Err(failed("load", started, &up, "redis timed out".to_string())),
            };
            metrics::store_operation("load", true, started.elapsed().as_secs_f64());
            let mut loaded = assemble(reply.0, reply.1, reply.2, reply.3, reply.4, reply.5, history_size);
            loaded.rooms = reply.6.map(|text| record::decode_rooms(&text)).unwrap_or_default();
            Ok(loaded)
        })
    }

    fn submit(&self, job: Job) -> Result<(), Job> {
        self.jobs.try_send(job).map_err(|err| match err {
            mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job) => job,
        })
    }
}

fn failed(op: &'static str, started: Instant, up: &AtomicBool, error: String) -> StoreError {
    metrics::store_operation(op, false, started.elapsed().as_secs_f64());
    if up.swap(false, Ordering::Relaxed) {
        metrics::store_up(false);
        tracing::warn!(error = %error, "redis unreachable");
    }
    StoreError(error)
}

/// The keys of one room.
struct Keys {
    meta: String,
    log: String,
    edits: String,
    bans: String,
    inbox: String,
    dm_sent: String,
    rooms: String,
}

impl Keys {
    fn of(key: &RoomKey) -> Keys {
        Keys {
            meta: room_key(key, "meta"),
            log: room_key(key, "log"),
            edits: room_key(key, "edits"),
            bans: room_key(key, "bans"),
            inbox: room_key(key, "inbox"),
            dm_sent: room_key(key, "dmsent"),
            rooms: room_key(key, "rooms"),
        }
    }
}

/// `rc:{tenant/room}:suffix`
fn room_key(key: &RoomKey, suffix: &str) -> String {
    let mut name = String::with_capacity(key.as_str().len() + suffix.len() + 6);
    name.push_str("rc:{");
    name.push_str(key.as_str());
    name.push_str("}:");
    name.push_str(suffix);
    name
}

/// A room's state from its keys: the stream's messages with their changes applied.
fn assemble(
    epoch: Option<String>,
    log: StreamRangeReply,
    edits: Vec<(Vec<u8>, f64)>,
    bans: Option<Vec<u8>>,
    inbox: Vec<Vec<u8>>,
    dm_sent: HashMap<Vec<u8>, Vec<u8>>,
    history_size: usize,
) -> Loaded {
    let mut seq = 0;
    let mut messages = BTreeMap::new();
    for entry in log.ids {
        let Some(redis::Value::BulkString(body)) = entry.map.get("m") else { continue };
        if let Some((message, client_id)) = record::decode_message(body) {
            seq = seq.max(message.seq);
            messages.insert(message.seq, (message, client_id));
        }
    }
    for (member, score) in edits {
        let at = score as u64;
        seq = seq.max(at);
        if member.first() == Some(&b'-') {
            messages.remove(&at);
        } else if let Some((message, _)) = record::decode_message(&member) {
            let client_id = messages.remove(&at).and_then(|(_, client_id)| client_id);
            messages.insert(at, (message, client_id));
        }
    }
    let skip = messages.len().saturating_sub(history_size);
    let now = crate::time::now_millis();
    Loaded {
        epoch,
        seq,
        messages: messages.into_values().skip(skip).collect(),
        bans: bans.map(|text| record::decode_bans(&text)).unwrap_or_default(),
        inbox: inbox
            .iter()
            .filter_map(|entry| record::decode_inbox(entry))
            .filter(|(expires, _)| *expires > now)
            .collect(),
        dm_sent: dm_sent.iter().filter_map(|(field, value)| record::decode_dm_sent(field, value)).collect(),
        rooms: Vec::new(),
    }
}

/// Adds the commands of one write to `pipe`.
fn encode(pipe: &mut redis::Pipeline, room: &RoomKey, write: &Write, limits: &Limits) {
    let key = |suffix| room_key(room, suffix);
    match write {
        Write::Epoch(epoch) => {
            pipe.hset(key("meta"), "epoch", &**epoch).ignore();
        }
        Write::Append { message, client_id } => {
            pipe.cmd("XADD")
                .arg(key("log"))
                .arg("MAXLEN")
                .arg(limits.history_size.max(1))
                .arg(format!("{}-0", message.seq))
                .arg("m")
                .arg(record::encode_message(message, client_id.as_deref()))
                .ignore();
        }
        Write::Update(message) => {
            let seq = message.seq;
            pipe.zrembyscore(key("edits"), seq, seq).ignore();
            pipe.zadd(key("edits"), record::encode_message(message, None), seq).ignore();
            if message.is_gone() {
                // The text must not outlive the delete or redaction in the stream either.
                pipe.xdel(key("log"), &[format!("{seq}-0")]).ignore();
            }
            // Changes of messages that left the history are of no use any more.
            pipe.zrembyscore(key("edits"), 0, format!("({}", seq.saturating_sub(limits.history_size as u64))).ignore();
        }
        Write::Remove(seq) => {
            pipe.zrembyscore(key("edits"), *seq, *seq).ignore();
            pipe.zadd(key("edits"), format!("-{seq}"), *seq).ignore();
            pipe.xdel(key("log"), &[format!("{seq}-0")]).ignore();
        }
        Write::Bans(bans) if bans.is_empty() => {
            pipe.del(key("bans")).ignore();
        }
        Write::Bans(bans) => {
            pipe.set(key("bans"), record::encode_bans(bans)).ignore();
        }
        Write::InboxPush { expires, frame } => {
            pipe.rpush(key("inbox"), record::encode_inbox(*expires, frame)).ignore();
            pipe.ltrim(key("inbox"), -(limits.inbox_size.max(1) as isize), -1).ignore();
            pipe.pexpire(key("inbox"), limits.inbox_ttl.as_millis() as i64).ignore();
        }
        Write::InboxClear => {
            pipe.del(key("inbox")).ignore();
        }
        Write::Subscriptions(rooms) if rooms.is_empty() => {
            pipe.del(key("rooms")).ignore();
        }
        Write::Subscriptions(rooms) => {
            pipe.set(key("rooms"), record::encode_rooms(rooms)).ignore();
        }
        Write::DmSent { from, client_id, ack } => {
            pipe.hset(key("dmsent"), record::dm_sent_field(from, client_id), record::encode_sent_ack(ack)).ignore();
            pipe.pexpire(key("dmsent"), limits.inbox_ttl.as_millis() as i64).ignore();
        }
    }
}

/// Sends the queued jobs, a pipeline per round trip, and hands each back with its result.
async fn write_loop(
    mut conn: ConnectionManager,
    mut jobs: mpsc::Receiver<Job>,
    done: mpsc::Sender<(Job, bool)>,
    up: Arc<AtomicBool>,
    limits: Limits,
) {
    let mut batch = Vec::with_capacity(BATCH_JOBS);
    while jobs.recv_many(&mut batch, BATCH_JOBS).await > 0 {
        let mut pipe = redis::pipe();
        for job in &batch {
            for write in &job.writes {
                encode(&mut pipe, &job.key, write, &limits);
            }
        }
        let started = Instant::now();
        if pipe.cmd_iter().next().is_none() {
            // Only jobs waiting for their turn: nothing to send.
            for job in batch.drain(..) {
                if done.send((job, true)).await.is_err() {
                    return;
                }
            }
            continue;
        }
        let ok = match tokio::time::timeout(TIMEOUT, pipe.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => {
                metrics::store_operation("write", true, started.elapsed().as_secs_f64());
                if !up.swap(true, Ordering::Relaxed) {
                    metrics::store_up(true);
                }
                true
            }
            Ok(Err(err)) => {
                failed("write", started, &up, err.to_string());
                false
            }
            Err(_) => {
                failed("write", started, &up, "redis timed out".to_string());
                false
            }
        };
        for job in batch.drain(..) {
            if done.send((job, ok)).await.is_err() {
                return;
            }
        }
    }
}

/// Pings Redis every second: keeps `up` (and `/ready`, and the metric) true to the state.
async fn watch_health(mut conn: ConnectionManager, up: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let started = Instant::now();
        let answer = tokio::time::timeout(TIMEOUT, redis::cmd("PING").query_async::<String>(&mut conn)).await;
        match answer {
            Ok(Ok(_)) => {
                metrics::store_operation("ping", true, started.elapsed().as_secs_f64());
                if !up.swap(true, Ordering::Relaxed) {
                    metrics::store_up(true);
                    tracing::info!("redis reachable");
                }
            }
            Ok(Err(err)) => {
                failed("ping", started, &up, err.to_string());
            }
            Err(_) => {
                failed("ping", started, &up, "redis timed out".to_string());
            }
        }
        if Arc::strong_count(&up) == 1 {
            return;
        }
    }
}
