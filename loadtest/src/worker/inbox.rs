//! What a worker makes of each frame it receives: order checks, latency, acks and joins.

use std::sync::atomic::AtomicU64;

use super::*;
use crate::ledger::Tap;
use crate::proto::now_nanos;
use crate::seqcheck::{ConnChecker, PublisherChecker, SELF_ORIGIN};

/// What a frame meant to the code waiting on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Nothing,
    Joined { room: String },
    JoinFailed { code: String },
    Left { room: String },
    Closed(u16),
}

/// The receive side of one logical client: checks and records every frame.
pub struct Inbox {
    pub rec: Recorder,
    raw: bool,
    pub checker: ConnChecker,
    pubcheck: PublisherChecker,
    witness: Option<Witness>,
    /// Released on each `chat.send` ack or error (closed loop with ack feedback).
    pub send_window: Option<Arc<Semaphore>>,
    /// Last `seq` seen per room slot (for receipts); slot names in `slot_rooms`.
    slot_rooms: Vec<String>,
    pub slot_seq: Arc<Vec<AtomicU64>>,
    /// The chaos scenario's delivery ledger for this client.
    pub tap: Option<Tap>,
    /// `after_ms` of the last `reconnect` frame (a drain is coming).
    pub reconnect_after_ms: Option<u64>,
    /// `room.reset` frames received.
    pub resets: u64,
}

impl Inbox {
    pub fn new(rec: Recorder, raw: bool) -> Inbox {
        Inbox {
            rec,
            raw,
            checker: ConnChecker::new(),
            pubcheck: PublisherChecker::default(),
            witness: None,
            send_window: None,
            slot_rooms: Vec::new(),
            slot_seq: Arc::new(Vec::new()),
            tap: None,
            reconnect_after_ms: None,
            resets: 0,
        }
    }

    /// Records a violation (with its time in the ledger, when there is one).
    fn violation(&self, v: crate::seqcheck::Violation) {
        self.rec.violation(v);
        if let Some(tap) = &self.tap {
            tap.violation(v, now_micros() / 1000);
        }
    }

    fn trace(&self, v: crate::seqcheck::Violation, what: &str, payload: &[u8]) {
        if std::env::var_os("RINGCAST_LT_TRACE").is_some() {
            eprintln!("violation {v:?}{what}: {}", String::from_utf8_lossy(payload));
        }
    }

    pub fn with_witness(mut self, witness: Witness) -> Inbox {
        self.witness = Some(witness);
        self
    }

    pub fn with_slots(mut self, rooms: Vec<String>) -> Inbox {
        self.slot_seq = Arc::new(rooms.iter().map(|_| AtomicU64::new(0)).collect());
        self.slot_rooms = rooms;
        self
    }

    fn witness_release(&self, publisher: u32) {
        if let Some(witness) = &self.witness {
            if let Some(window) = witness.get(&publisher) {
                window.add_permits(1);
            }
        }
    }

    /// The ack of a publish: a permit back, and the ack's seq takes the message's place in
    /// this connection's stream (the sender gets the ack instead of its own message).
    fn on_send_ack(&mut self, op: OpRef, room: &str, seq: u64, payload: &[u8]) {
        if let Some(window) = &self.send_window {
            window.add_permits(1);
        }
        if let Err(v) = self.checker.message(room, seq, false, Some((SELF_ORIGIN, op.n))) {
            self.trace(v, " on ack", payload);
            self.violation(v);
        }
        if let Some(tap) = &self.tap {
            if let Some(epoch) = self.checker.epoch(room) {
                tap.acked(room, epoch, seq, op.n, op.sent_micros, now_micros());
            }
        }
    }

    /// Handles one text frame.
    pub fn on_text(&mut self, payload: &[u8]) -> Seen {
        if self.raw {
            // Raw frames are either chat.message-shaped (the default) or a bare stamp.
            let stamp = if payload.starts_with(b"{") {
                match classify(payload) {
                    ServerFrame::Chat(chat) => chat.stamp,
                    _ => None,
                }
            } else {
                proto::parse_stamp(payload)
            };
            let latency = match stamp {
                Some(stamp) => {
                    if let Err(v) = self.pubcheck.check(stamp.publisher, stamp.n) {
                        self.violation(v);
                    }
                    self.witness_release(stamp.publisher);
                    Some(now_nanos().saturating_sub(stamp.sent_nanos) / 1000)
                }
                None => None,
            };
            self.rec.delivered(latency, false);
            return Seen::Nothing;
        }
        match classify(payload) {
            ServerFrame::Chat(chat) => {
                let origin = chat.stamp.map(|stamp| (stamp.publisher, stamp.n));
                if let Err(v) = self.checker.message(chat.room, chat.seq, chat.recovered, origin) {
                    self.trace(v, "", payload);
                    self.violation(v);
                }
                if let (Some(tap), false, Some(origin)) = (&self.tap, chat.recovered, origin) {
                    tap.received(chat.room, origin);
                }
                if !self.slot_rooms.is_empty() {
                    if let Some(slot) = self.slot_rooms.iter().position(|r| r == chat.room) {
                        self.slot_seq[slot].store(chat.seq, Ordering::Relaxed);
                    }
                }
                // A replay's age is not a delivery latency: recovered messages are counted,
                // not timed.
                let latency = chat.stamp.and_then(|stamp| {
                    self.witness_release(stamp.publisher);
                    (!chat.recovered).then(|| now_nanos().saturating_sub(stamp.sent_nanos) / 1000)
                });
                self.rec.delivered(latency, chat.recovered);
                Seen::Nothing
            }
            ServerFrame::Ack { op, data } => {
                self.rec.frame("ack");
                let Some(op) = op else { return Seen::Nothing };
                self.rec.answered(op.kind, now_micros().saturating_sub(op.sent_micros));
                match op.kind {
                    OpKind::Send => {
                        if let (Some(room), Some(seq)) =
                            (data.get("room").and_then(|r| r.as_str()), data.get("seq").and_then(|s| s.as_u64()))
                        {
                            self.on_send_ack(op, room, seq, payload);
                        } else if let Some(window) = &self.send_window {
                            window.add_permits(1);
                        }
                        Seen::Nothing
                    }
                    OpKind::Join => {
                        let room = data.get("room").and_then(|r| r.as_str()).unwrap_or_default().to_string();
                        let seq = data.get("seq").and_then(|s| s.as_u64()).unwrap_or(0);
                        let epoch = data.get("epoch").and_then(|e| e.as_str()).unwrap_or_default();
                        let recovered = data.get("recovered").and_then(|r| r.as_bool());
                        let outcome = self.checker.join_acked(&room, seq, epoch, recovered);
                        if let Some(v) = outcome.violation {
                            self.trace(v, " on join", payload);
                            self.violation(v);
                        }
                        if let Some(tap) = &self.tap {
                            tap.joined(&room, now_micros());
                        }
                        if let Some(recovered) = outcome.recovered {
                            self.rec.rejoined(recovered);
                        }
                        if let Some(slot) = self.slot_rooms.iter().position(|r| *r == room) {
                            self.slot_seq[slot].store(seq, Ordering::Relaxed);
                        }
                        Seen::Joined { room }
                    }
                    OpKind::Leave => {
                        let room = data.get("room").and_then(|r| r.as_str()).unwrap_or_default().to_string();
                        self.checker.leave_acked(&room);
                        Seen::Left { room }
                    }
                    _ => Seen::Nothing,
                }
            }
            ServerFrame::SendAck { op, room, seq } => {
                self.rec.frame("ack");
                self.rec.answered(op.kind, now_micros().saturating_sub(op.sent_micros));
                self.on_send_ack(op, room, seq, payload);
                Seen::Nothing
            }
            ServerFrame::Error { op, code } => {
                let kind = op.map(|op| op.kind);
                self.rec.error(kind, &code);
                match kind {
                    Some(OpKind::Send) => {
                        if let Some(window) = &self.send_window {
                            window.add_permits(1);
                        }
                        if code == "unavailable" {
                            self.checker.send_unconfirmed();
                        }
                        Seen::Nothing
                    }
                    Some(OpKind::Join) => Seen::JoinFailed { code },
                    _ => Seen::Nothing,
                }
            }
            ServerFrame::Other { kind, op, data } => {
                self.rec.frame(&kind);
                match kind.as_str() {
                    "room.reset" => {
                        let room = data.get("room").and_then(|r| r.as_str()).unwrap_or_default();
                        let epoch = data.get("epoch").and_then(|e| e.as_str()).unwrap_or_default();
                        let seq = data.get("seq").and_then(|s| s.as_u64()).unwrap_or(0);
                        self.resets += 1;
                        self.checker.reset(room, epoch, seq);
                    }
                    "reconnect" => {
                        self.reconnect_after_ms = Some(data.get("after_ms").and_then(|a| a.as_u64()).unwrap_or(0));
                    }
                    _ => {}
                }
                if let Some(op) = op {
                    self.rec.answered(op.kind, now_micros().saturating_sub(op.sent_micros));
                }
                Seen::Nothing
            }
            ServerFrame::Unparsable => {
                self.rec.frame("unparsable");
                Seen::Nothing
            }
        }
    }

    /// Handles any frame; `Closed` ends the connection.
    pub fn on_frame(&mut self, opcode: OpCode, payload: &[u8]) -> Seen {
        match opcode {
            OpCode::Text => self.on_text(payload),
            OpCode::Close => {
                let code = close_code(payload);
                self.rec.close_received(code);
                Seen::Closed(code)
            }
            OpCode::Binary => {
                self.rec.frame("binary");
                Seen::Nothing
            }
            _ => Seen::Nothing,
        }
    }
}
