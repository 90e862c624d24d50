//! raw-broadcast: the yardstick for ringcast's fan-out — a minimal WebSocket broadcast
//! server with no auth and no protocol. Every text frame a client sends is sent to every
//! other client of the same room (`?room=NAME`, default `default`).
//!
//! Written to be fast, with the same building blocks as ringcast (hyper upgrade,
//! fastwebsockets reader, one writer task per connection): the outbound frame (header and
//! payload) is built once per message into a shared `Bytes`, queued by reference to each
//! recipient, and each writer sends everything queued with vectored writes.
//!
//! `raw-broadcast --listen 127.0.0.1:0` prints `raw-broadcast listening on ADDR` first.
//! `GET /metrics` answers `raw_deliveries_total` and `raw_connections`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{IoSlice, Write as _};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use clap::Parser;
use fastwebsockets::{Frame, OpCode, Role, WebSocketError};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::{Mutex, RwLock};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

#[derive(Parser)]
#[command(name = "raw-broadcast", version, about = "Minimal WebSocket broadcast server (load-test yardstick)")]
struct Args {
    /// address to listen on
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: String,
    /// frames queued per connection before it is dropped as a slow consumer
    #[arg(long, default_value_t = 4096)]
    queue_frames: usize,
    /// runtime threads [default: cores]
    #[arg(long)]
    threads: Option<usize>,
}

struct Client {
    id: u64,
    queue: Mutex<Queue>,
    wake: Notify,
}

#[derive(Default)]
struct Queue {
    frames: Vec<Bytes>,
    closed: bool,
}

#[derive(Default)]
struct Room {
    clients: RwLock<Vec<Arc<Client>>>,
}

struct Server {
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    next_id: AtomicU64,
    queue_frames: usize,
    deliveries: AtomicU64,
    connections: AtomicI64,
}

impl Client {
    /// Queues a frame; false (and the client closes) when its queue is full.
    fn push(&self, frame: &Bytes, cap: usize) -> bool {
        let mut queue = self.queue.lock();
        if queue.closed {
            return false;
        }
        if queue.frames.len() >= cap {
            queue.closed = true;
            queue.frames.clear();
            drop(queue);
            self.wake.notify_one();
            return false;
        }
        queue.frames.push(frame.clone());
        let first = queue.frames.len() == 1;
        drop(queue);
        if first {
            self.wake.notify_one();
        }
        true
    }

    fn close(&self) {
        self.queue.lock().closed = true;
        self.wake.notify_one();
    }
}

/// An unmasked server frame: header and payload in one buffer.
fn encode(opcode: OpCode, payload: &[u8]) -> Bytes {
    let len = payload.len();
    let mut out = BytesMut::with_capacity(len + 10);
    out.put_u8(0x80 | opcode as u8);
    if len < 126 {
        out.put_u8(len as u8);
    } else if len <= u16::MAX as usize {
        out.put_u8(126);
        out.put_u16(len as u16);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
    out.put_slice(payload);
    out.freeze()
}

async fn write_all_vectored<W: AsyncWrite + Unpin>(writer: &mut W, frames: &[Bytes]) -> std::io::Result<()> {
    const MAX_IOV: usize = 512;
    for chunk in frames.chunks(MAX_IOV) {
        let mut slices: Vec<IoSlice<'_>> = chunk.iter().map(|b| IoSlice::new(b)).collect();
        let mut slices = &mut slices[..];
        while !slices.is_empty() {
            let n = writer.write_vectored(slices).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut slices, n);
        }
    }
    Ok(())
}

async fn writer_loop<W: AsyncWrite + Unpin>(client: Arc<Client>, mut writer: W) {
    let mut batch: Vec<Bytes> = Vec::with_capacity(16);
    loop {
        let closed = {
            let mut queue = client.queue.lock();
            std::mem::swap(&mut batch, &mut queue.frames);
            queue.closed
        };
        if batch.is_empty() {
            if closed {
                break;
            }
            client.wake.notified().await;
            continue;
        }
        if write_all_vectored(&mut writer, &batch).await.is_err() {
            client.close();
            break;
        }
        batch.clear();
    }
    let _ = writer.shutdown().await;
}

impl Server {
    fn room(&self, name: &str) -> Arc<Room> {
        self.rooms.lock().entry(name.to_string()).or_default().clone()
    }

    fn leave(&self, name: &str, room: &Arc<Room>, id: u64) {
        let empty = {
            let mut clients = room.clients.write();
            clients.retain(|c| c.id != id);
            clients.is_empty()
        };
        if empty {
            let mut rooms = self.rooms.lock();
            if rooms.get(name).is_some_and(|r| Arc::ptr_eq(r, room) && r.clients.read().is_empty()) {
                rooms.remove(name);
            }
        }
    }

    async fn run_client<R, W>(self: Arc<Self>, room_name: String, read: R, write: W)
    where
        R: tokio::io::AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let client = Arc::new(Client {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
        });
        let room = self.room(&room_name);
        room.clients.write().push(client.clone());
        self.connections.fetch_add(1, Ordering::Relaxed);
        let writer = tokio::spawn(writer_loop(client.clone(), write));
        let (mut ws, _) = fastwebsockets::after_handshake_split(read, tokio::io::sink(), Role::Server);
        ws.set_auto_close(true);
        ws.set_auto_pong(true);
        let cap = self.queue_frames;
        let me = client.clone();
        let mut obligated = move |frame: Frame<'_>| {
            let encoded = encode(frame.opcode, &frame.payload);
            me.push(&encoded, usize::MAX);
            if frame.opcode == OpCode::Close {
                me.close();
            }
            std::future::ready(Ok::<(), Infallible>(()))
        };
        loop {
            let frame = match ws.read_frame(&mut obligated).await {
                Ok(frame) => frame,
                Err(WebSocketError::ConnectionClosed) | Err(_) => break,
            };
            match frame.opcode {
                OpCode::Text | OpCode::Binary => {
                    let out = encode(frame.opcode, &frame.payload);
                    let clients = room.clients.read();
                    let mut delivered = 0;
                    for other in clients.iter() {
                        if other.id != client.id && other.push(&out, cap) {
                            delivered += 1;
                        }
                    }
                    drop(clients);
                    self.deliveries.fetch_add(delivered, Ordering::Relaxed);
                }
                OpCode::Close => break,
                _ => {}
            }
            if client.queue.lock().closed {
                break;
            }
        }
        self.leave(&room_name, &room, client.id);
        client.close();
        let _ = writer.await;
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

fn room_of(query: Option<&str>) -> String {
    query
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("room=")))
        .filter(|r| !r.is_empty())
        .unwrap_or("default")
        .to_string()
}

async fn handle(server: Arc<Server>, mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/metrics" {
        let body = format!(
            "raw_deliveries_total {}\nraw_connections {}\n",
            server.deliveries.load(Ordering::Relaxed),
            server.connections.load(Ordering::Relaxed)
        );
        return Ok(Response::new(Full::new(Bytes::from(body))));
    }
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        let mut response = Response::new(Full::new(Bytes::from_static(b"websocket upgrade required\n")));
        *response.status_mut() = hyper::StatusCode::BAD_REQUEST;
        return Ok(response);
    }
    let room = room_of(req.uri().query());
    let (response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(pair) => pair,
        Err(_) => {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = hyper::StatusCode::BAD_REQUEST;
            return Ok(response);
        }
    };
    tokio::spawn(async move {
        let Ok(ws) = upgrade.await else { return };
        let upgraded = ws.into_inner().into_inner();
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                let (read, write) = parts.io.into_inner().into_split();
                let read = std::io::Cursor::new(parts.read_buf).chain(read);
                server.run_client(room, read, write).await;
            }
            Err(upgraded) => {
                let (read, write) = tokio::io::split(TokioIo::new(upgraded));
                server.run_client(room, read, write).await;
            }
        }
    });
    Ok(response.map(|_| Full::new(Bytes::new())))
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        builder.worker_threads(threads.max(1));
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("raw-broadcast: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match TcpListener::bind(&args.listen).await {
            Ok(listener) => listener,
            Err(err) => {
                eprintln!("raw-broadcast: cannot listen on {}: {err}", args.listen);
                return std::process::ExitCode::from(64);
            }
        };
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        println!("raw-broadcast listening on {addr}");
        let _ = std::io::stdout().flush();
        let server = Arc::new(Server {
            rooms: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            queue_frames: args.queue_frames.max(1),
            deliveries: AtomicU64::new(0),
            connections: AtomicI64::new(0),
        });
        let accept = async {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let _ = stream.set_nodelay(true);
                let server = server.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(server.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        };
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(err) => {
                eprintln!("raw-broadcast: {err}");
                return std::process::ExitCode::FAILURE;
            }
        };
        tokio::select! {
            _ = accept => {}
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        std::process::ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_encode_and_room() {
        assert_eq!(&encode(OpCode::Text, b"hi")[..], &[0x81, 2, b'h', b'i']);
        assert_eq!(&encode(OpCode::Text, &[0u8; 300])[..4], &[0x81, 126, 1, 44]);
        assert_eq!(room_of(Some("a=1&room=r7")), "r7");
        assert_eq!(room_of(None), "default");
        assert_eq!(room_of(Some("room=")), "default");
    }
}
