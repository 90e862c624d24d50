//! One worker: runs its share of a scenario, reports a [`Tick`] every second, waits at
//! barriers the parent releases, and ends with a [`Final`]. In a single-process run the
//! worker is a task of the parent; with `--processes N` it is a child process speaking JSON
//! lines on stdout and reading releases on stdin.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use fastwebsockets::{Frame, OpCode, Payload, WebSocketError, WebSocketRead, WebSocketWrite};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;

use crate::jwt::Minter;
use crate::plan::Plan;
use crate::proto::{self, classify, now_micros, OpKind, OpRef, ServerFrame};
use crate::report::{Final, WorkerMsg};
use crate::stats::{Phase, Recorder, Stats};
use crate::urls::Target;
use crate::ws::{self, ConnectSpec, Ws};

mod inbox;
pub use inbox::{Inbox, Seen};

/// The worker's line to the parent.
pub struct WorkerIo {
    pub out: mpsc::UnboundedSender<WorkerMsg>,
    pub releases: tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>,
}

impl WorkerIo {
    /// Tells the parent this worker reached `name` and waits for the release.
    pub async fn barrier(&self, name: &str, stats: &Stats) -> Result<()> {
        self.out
            .send(WorkerMsg::Barrier { name: name.to_string(), open: stats.open() })
            .ok()
            .context("parent is gone")?;
        let mut releases = self.releases.lock().await;
        let wait = async {
            while let Some(line) = releases.recv().await {
                if line.trim() == name {
                    return Ok(());
                }
            }
            bail!("parent closed the control channel")
        };
        tokio::time::timeout(Duration::from_secs(900), wait).await.context("barrier not released within 15 min")?
    }
}

/// What every scenario task shares.
pub struct Ctx {
    pub plan: Arc<Plan>,
    pub stats: Arc<Stats>,
    pub targets: Vec<Target>,
    /// The client's trust for wss:// targets.
    tls: Option<Arc<rustls::ClientConfig>>,
    minter: Option<Minter>,
    pub io: Arc<WorkerIo>,
    /// Flips to true at teardown: every connection closes.
    pub shutdown: watch::Receiver<bool>,
    shutdown_tx: watch::Sender<bool>,
}

impl Ctx {
    pub fn new(plan: Plan, io: Arc<WorkerIo>) -> Result<Arc<Ctx>> {
        let targets = plan.urls.iter().map(|u| Target::parse(u, plan.allow_remote)).collect::<Result<Vec<_>>>()?;
        let ttl = plan.duration_ms / 1000 + 3600 * 6;
        let minter = plan.jwt_secret.as_deref().map(|s| Minter::new(s, &plan.tenant, ttl));
        let (shutdown_tx, shutdown) = watch::channel(false);
        let tls = plan.ca_file.as_deref().map(crate::tls::client_config).transpose()?;
        Ok(Arc::new(Ctx {
            tls,
            plan: Arc::new(plan),
            stats: Arc::new(Stats::new()),
            targets,
            minter,
            io,
            shutdown,
            shutdown_tx,
        }))
    }

    pub fn raw(&self) -> bool {
        self.plan.raw
    }

    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.plan.duration_ms)
    }

    pub fn drain(&self) -> Duration {
        Duration::from_millis(self.plan.drain_ms)
    }

    pub fn begin_teardown(&self) {
        self.stats.set_phase(Phase::Teardown);
        let _ = self.shutdown_tx.send(true);
    }

    /// Opens connection number `index` (over all workers) for `user` (or into raw `room`),
    /// recording the connect time or the failure. For ringcast the `connected` frame is
    /// awaited (it is part of the connect time).
    pub async fn open(&self, index: u64, user: Option<&str>, raw_room: Option<&str>, rec: &Recorder) -> Option<Ws> {
        let target = &self.targets[(index % self.targets.len() as u64) as usize];
        let source = (!self.plan.source_ips.is_empty()).then(|| {
            self.plan.source_ips[((index / self.targets.len() as u64) % self.plan.source_ips.len() as u64) as usize]
        });
        let token = match (&self.minter, user, self.raw()) {
            (Some(minter), Some(user), false) => match minter.token(user) {
                Ok(token) => Some(token),
                Err(_) => {
                    rec.connect_failed("token");
                    return None;
                }
            },
            _ => None,
        };
        let mut query = String::new();
        if let Some(room) = raw_room {
            query.push_str("room=");
            query.push_str(room);
        }
        if let (Some(token), false) = (&token, self.plan.auth_header) {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str("token=");
            query.push_str(token);
        }
        let timeout = Duration::from_millis(self.plan.connect_timeout_ms);
        let started = Instant::now();
        let spec = ConnectSpec {
            target,
            source,
            query,
            bearer: if self.plan.auth_header { token.as_deref() } else { None },
            timeout,
            tls: self.tls.as_ref(),
            deflate: self.plan.compression && !self.raw(),
        };
        let mut ws = match ws::connect(spec).await {
            Ok(ws) => ws,
            Err(err) => {
                rec.connect_failed(&err.kind());
                return None;
            }
        };
        if !self.raw() {
            // The first frame must be `connected`.
            let remaining = timeout.saturating_sub(started.elapsed());
            match tokio::time::timeout(remaining, ws.read_frame()).await {
                Ok(Ok(frame)) if frame.opcode == OpCode::Text => match classify(&frame.payload) {
                    ServerFrame::Other { kind, .. } if kind == "connected" => {}
                    ServerFrame::Error { code, .. } => {
                        rec.connect_failed(&format!("error_{code}"));
                        return None;
                    }
                    _ => {
                        rec.connect_failed("no_connected_frame");
                        return None;
                    }
                },
                Ok(Ok(frame)) if frame.opcode == OpCode::Close => {
                    rec.connect_failed(&format!("closed_{}", close_code(&frame.payload)));
                    return None;
                }
                Ok(_) => {
                    rec.connect_failed("no_connected_frame");
                    return None;
                }
                Err(_) => {
                    rec.connect_failed("timeout");
                    return None;
                }
            }
        }
        rec.connected(started.elapsed().as_micros() as u64);
        Some(ws)
    }
}

pub fn close_code(payload: &[u8]) -> u16 {
    if payload.len() >= 2 {
        u16::from_be_bytes([payload[0], payload[1]])
    } else {
        1005
    }
}

/// Publishers' in-flight windows, by publisher id: released by a witness subscriber when it
/// receives that publisher's message (closed loop with delivery feedback).
pub type Witness = Arc<HashMap<u32, Arc<Semaphore>>>;

/// Sends a text frame on an unsplit connection.
pub async fn send_text(ws: &mut Ws, text: String) -> Result<(), WebSocketError> {
    ws.write_frame(Frame::text(Payload::Owned(text.into_bytes()))).await
}

/// Reads frames until `done(seen)` says so, or `timeout`.
pub async fn read_until(
    ws: &mut Ws,
    inbox: &mut Inbox,
    timeout: Duration,
    mut done: impl FnMut(&Seen) -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let frame = match tokio::time::timeout_at(deadline, ws.read_frame()).await {
            Err(_) => return Err("timeout".into()),
            Ok(Err(err)) => return Err(read_error_kind(&err)),
            Ok(Ok(frame)) => frame,
        };
        let seen = inbox.on_frame(frame.opcode, &frame.payload);
        if let Seen::Closed(code) = seen {
            return Err(format!("closed_{code}"));
        }
        if done(&seen) {
            return Ok(());
        }
    }
}

/// Joins `rooms` (with `since` where the checker has a position) and waits for every ack.
pub async fn join_rooms(
    ws: &mut Ws,
    inbox: &mut Inbox,
    rooms: &[String],
    timeout: Duration,
    resume: bool,
) -> Result<(), String> {
    if rooms.is_empty() {
        return Ok(());
    }
    for (i, room) in rooms.iter().enumerate() {
        let since = if resume { inbox.checker.since(room) } else { None };
        inbox.checker.join_sent(room, since.clone());
        let op = OpRef::new(OpKind::Join, i as u64);
        inbox.rec.request(OpKind::Join);
        send_text(ws, proto::join(room, since.as_ref().map(|(s, e)| (*s, e.as_str())), &op))
            .await
            .map_err(|e| read_error_kind(&e))?;
    }
    let mut pending = rooms.len();
    let mut failure = None;
    read_until(ws, inbox, timeout, |seen| {
        match seen {
            Seen::Joined { .. } => pending -= 1,
            Seen::JoinFailed { code } => {
                pending -= 1;
                failure = Some(code.clone());
            }
            _ => {}
        }
        pending == 0
    })
    .await?;
    match failure {
        Some(code) => Err(format!("join_{code}")),
        None => Ok(()),
    }
}

pub fn read_error_kind(err: &WebSocketError) -> String {
    match err {
        WebSocketError::UnexpectedEOF | WebSocketError::ConnectionClosed => "eof".into(),
        WebSocketError::IoError(e) if e.kind() == std::io::ErrorKind::ConnectionReset => "reset".into(),
        WebSocketError::IoError(_) => "io".into(),
        _ => "protocol".into(),
    }
}

/// Resolves once teardown starts.
async fn teardown(shutdown: &mut watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Reads an unsplit connection until teardown (or `until`), recording everything.
/// Returns how it ended: `None` for teardown/deadline, `Some(reason)` when the server side
/// ended it.
///
/// The teardown and deadline futures live across frames and the read is polled first, so
/// a busy connection costs no timer or notification registration per frame.
pub async fn read_idle(
    ws: &mut Ws,
    inbox: &mut Inbox,
    shutdown: &mut watch::Receiver<bool>,
    until: Option<Instant>,
) -> Option<String> {
    let stop = teardown(shutdown);
    tokio::pin!(stop);
    let deadline = async {
        match until {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            biased;
            result = ws.read_frame() => match result {
                Ok(frame) => {
                    if let Seen::Closed(code) = inbox.on_frame(frame.opcode, &frame.payload) {
                        return Some(format!("closed_{code}"));
                    }
                }
                Err(err) => {
                    let kind = read_error_kind(&err);
                    inbox.rec.dropped(&format!("dropped_{kind}"));
                    return Some(kind);
                }
            },
            _ = &mut stop => return None,
            _ = &mut deadline => return None,
        }
    }
}

/// Closes politely (close frame 1000) with a short time limit.
pub async fn close_politely<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut fastwebsockets::WebSocket<S>) {
    let _ = tokio::time::timeout(Duration::from_millis(500), ws.write_frame(Frame::close(1000, b"bye"))).await;
}

/// Frames the read half owes the server (pong, close echo), for the writer to send.
pub type Obligations = mpsc::UnboundedSender<(OpCode, Vec<u8>)>;

/// The read half of a split connection: records everything until the server closes, the
/// socket fails, or teardown.
pub async fn read_split<R: AsyncRead + Unpin>(
    mut read: WebSocketRead<R>,
    mut inbox: Inbox,
    obligations: Obligations,
    mut shutdown: watch::Receiver<bool>,
) -> Inbox {
    let mut send = move |frame: Frame<'_>| {
        let _ = obligations.send((frame.opcode, frame.payload.to_vec()));
        std::future::ready(Ok::<(), std::convert::Infallible>(()))
    };
    let watcher = shutdown.clone();
    let stop = teardown(&mut shutdown);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            result = read.read_frame(&mut send) => match result {
                Ok(frame) => {
                    // The echo of our own close at teardown is not a server close.
                    if frame.opcode == OpCode::Close && *watcher.borrow() {
                        break;
                    }
                    if let Seen::Closed(_) = inbox.on_frame(frame.opcode, &frame.payload) {
                        break;
                    }
                }
                Err(err) => {
                    if !*watcher.borrow() {
                        inbox.rec.dropped(&format!("dropped_{}", read_error_kind(&err)));
                    }
                    break;
                }
            },
            _ = &mut stop => break,
        }
    }
    inbox
}

/// Writes obligated frames (pongs, close echo) owed by the read half.
pub async fn write_obligation<W: AsyncWrite + Unpin>(
    write: &mut WebSocketWrite<W>,
    opcode: OpCode,
    payload: Vec<u8>,
) -> Result<(), WebSocketError> {
    write.write_frame(Frame::new(true, opcode, None, Payload::Owned(payload))).await
}

/// Runs one worker to its end and returns its final message (also sent on `io`).
pub async fn run(plan: Plan, io: Arc<WorkerIo>) -> Final {
    let cpu_before = crate::procfs::cpu_seconds(None).unwrap_or(0.0);
    let connections_requested = plan.share_of(plan.scenario.connections());
    let ctx = match Ctx::new(plan, io.clone()) {
        Ok(ctx) => ctx,
        Err(err) => {
            let fin = Final { error: Some(format!("{err:#}")), ..Default::default() };
            let _ = io.out.send(WorkerMsg::Final(fin.clone()));
            return fin;
        }
    };
    // Ticks, aligned on the common start instant.
    let next_second = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let ticker = {
        let ctx = ctx.clone();
        let next_second = next_second.clone();
        tokio::spawn(async move {
            let start_ms = ctx.plan.start_at_unix_ms;
            let now_ms = now_micros() / 1000;
            let start = Instant::now() - Duration::from_millis(now_ms.saturating_sub(start_ms));
            let mut second: u32 = 0;
            loop {
                tokio::time::sleep_until(start + Duration::from_secs(second as u64 + 1)).await;
                let tick = ctx.stats.tick(second);
                second += 1;
                next_second.store(second, Ordering::Relaxed);
                if ctx.io.out.send(WorkerMsg::Tick(Box::new(tick))).is_err() {
                    return;
                }
            }
        })
    };
    let result = crate::scenario::run(ctx.clone()).await;
    ctx.begin_teardown();
    ticker.abort();
    let _ = ticker.await;
    let last_second = next_second.load(Ordering::Relaxed);
    // A last tick with whatever the final partial second recorded.
    let _ = io.out.send(WorkerMsg::Tick(Box::new(ctx.stats.tick(last_second))));
    let cpu_secs = crate::procfs::cpu_seconds(None).unwrap_or(0.0) - cpu_before;
    let fin = match result {
        Ok(outcome) => Final {
            run: outcome.window,
            cpu_secs,
            connections_requested,
            error: None,
            notes: outcome.notes,
            chaos: outcome.chaos,
        },
        Err(err) => Final { cpu_secs, connections_requested, error: Some(format!("{err:#}")), ..Default::default() },
    };
    let _ = io.out.send(WorkerMsg::Final(fin.clone()));
    fin
}
