//! The chaos scenario's delivery ledger: what each logical client was acknowledged and
//! received, per continuous session in a room, so that every acknowledged publish can be
//! checked against every connection that was in its room the whole time.
//!
//! A client's [`Tap`] is fed by its [`Inbox`](crate::worker::Inbox) (join acks, messages,
//! send acks, disconnects); [`verify`] runs once at the end of the run. A publish is owed to
//! a session that joined before the publish was sent and stayed connected until at least
//! `window` after its ack (or to the end of the run); the publisher's own sessions are not
//! owed its own messages (it gets the ack instead).

use std::sync::Arc;

use parking_lot::Mutex;

use crate::seqcheck::Violation;

/// One acknowledged publish: its place in the room (for the report) and its identity, the
/// publisher's number `n` carried in its text (what a delivery is matched by, so that a
/// restart that was not announced does not hide deliveries behind a wrong epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    pub epoch: u16,
    pub seq: u64,
    pub n: u64,
    pub sent_us: u64,
    pub ack_us: u64,
}

/// One continuous membership of a room on one connection.
#[derive(Debug, Clone, Default)]
pub struct Session {
    /// When the join ack arrived.
    pub start_us: u64,
    /// When the connection ended (`None`: still open at the end).
    pub end_us: Option<u64>,
    /// Received live messages as ranges `(publisher, first n, last n)` of the publishers'
    /// numbers (a publisher's numbers only go up; skipped ones split a range).
    pub received: Vec<(u32, u64, u64)>,
}

impl Session {
    fn add(&mut self, publisher: u32, n: u64) {
        if let Some(last) = self.received.iter_mut().rev().find(|r| r.0 == publisher) {
            if n == last.2 + 1 {
                last.2 = n;
                return;
            }
        }
        self.received.push((publisher, n, n));
    }

    pub fn has(&self, publisher: u32, n: u64) -> bool {
        self.received.iter().any(|&(p, lo, hi)| p == publisher && (lo..=hi).contains(&n))
    }
}

/// What one logical client did in one room.
#[derive(Debug, Clone, Default)]
pub struct RoomLog {
    pub room: String,
    pub sessions: Vec<Session>,
    pub acked: Vec<Acked>,
}

/// What one logical client did, over all its connections.
#[derive(Debug, Default)]
pub struct ClientLog {
    pub client: u32,
    /// The publisher id in this client's stamps, when it publishes.
    pub publisher: Option<u32>,
    /// Epoch strings, interned per client (a handful per run).
    pub epochs: Vec<String>,
    pub rooms: Vec<RoomLog>,
    /// Entries not recorded because the log was full.
    pub overflow: u64,
    /// Order violations seen live, with their time (unix ms).
    pub violations: Vec<(u64, Violation)>,
}

/// The most ranges and acks one client keeps (memory bound for long runs).
const MAX_ENTRIES: usize = 2_000_000;

impl ClientLog {
    fn epoch_id(&mut self, epoch: &str) -> u16 {
        match self.epochs.iter().position(|e| e == epoch) {
            Some(i) => i as u16,
            None => {
                self.epochs.push(epoch.to_string());
                (self.epochs.len() - 1).min(u16::MAX as usize) as u16
            }
        }
    }

    fn room_mut(&mut self, room: &str) -> &mut RoomLog {
        match self.rooms.iter().position(|r| r.room == room) {
            Some(i) => &mut self.rooms[i],
            None => {
                self.rooms.push(RoomLog { room: room.to_string(), ..Default::default() });
                self.rooms.last_mut().expect("just pushed")
            }
        }
    }

    fn entries(&self) -> usize {
        self.rooms.iter().map(|r| r.acked.len() + r.sessions.iter().map(|s| s.received.len()).sum::<usize>()).sum()
    }
}

/// A client's handle on its log.
#[derive(Debug, Clone)]
pub struct Tap(Arc<Mutex<ClientLog>>);

impl Tap {
    /// The join ack of `room` at `now_us`: a new session begins.
    pub fn joined(&self, room: &str, now_us: u64) {
        let mut log = self.0.lock();
        log.room_mut(room).sessions.push(Session { start_us: now_us, ..Default::default() });
    }

    /// This client publishes with `publisher` in its stamps.
    pub fn publishes_as(&self, publisher: u32) {
        self.0.lock().publisher = Some(publisher);
    }

    /// A live `chat.message` of `room`: publisher `origin.0`'s number `origin.1`.
    pub fn received(&self, room: &str, origin: (u32, u64)) {
        let mut log = self.0.lock();
        if log.entries() >= MAX_ENTRIES {
            log.overflow += 1;
            return;
        }
        if let Some(session) = log.room_mut(room).sessions.last_mut().filter(|s| s.end_us.is_none()) {
            session.add(origin.0, origin.1);
        }
    }

    /// The ack of this client's send number `n`, at `seq` of the epoch its connection knows.
    pub fn acked(&self, room: &str, epoch: &str, seq: u64, n: u64, sent_us: u64, ack_us: u64) {
        let mut log = self.0.lock();
        if log.entries() >= MAX_ENTRIES {
            log.overflow += 1;
            return;
        }
        let epoch = log.epoch_id(epoch);
        log.room_mut(room).acked.push(Acked { epoch, seq, n, sent_us, ack_us });
    }

    /// A live order violation at `now_ms`.
    pub fn violation(&self, v: Violation, now_ms: u64) {
        let mut log = self.0.lock();
        if log.violations.len() < 10_000 {
            log.violations.push((now_ms, v));
        }
    }

    /// The connection ended at `now_us`: every open session ends.
    pub fn disconnected(&self, now_us: u64) {
        let mut log = self.0.lock();
        for room in &mut log.rooms {
            for session in &mut room.sessions {
                if session.end_us.is_none() {
                    session.end_us = Some(now_us);
                }
            }
        }
    }
}

/// Per room, the ack times of its publishes (unix ms).
pub type AckTimes = Vec<(String, Vec<u64>)>;

/// Every client's log.
#[derive(Debug, Default)]
pub struct Ledger {
    clients: Mutex<Vec<Arc<Mutex<ClientLog>>>>,
}

impl Ledger {
    pub fn tap(&self, client: u32) -> Tap {
        let log = Arc::new(Mutex::new(ClientLog { client, ..Default::default() }));
        self.clients.lock().push(log.clone());
        Tap(log)
    }

    /// Every live violation with its time, and the ack times (unix ms) of each room.
    pub fn timings(&self) -> (Vec<(u64, Violation)>, AckTimes) {
        let clients = self.clients.lock().clone();
        let mut violations = Vec::new();
        let mut acks: AckTimes = Vec::new();
        for client in clients {
            let log = client.lock();
            violations.extend(log.violations.iter().copied());
            for room in &log.rooms {
                let times = room.acked.iter().map(|a| a.ack_us / 1000);
                match acks.iter_mut().find(|(name, _)| *name == room.room) {
                    Some((_, list)) => list.extend(times),
                    None => acks.push((room.room.clone(), times.collect())),
                }
            }
        }
        for (_, list) in &mut acks {
            list.sort_unstable();
        }
        violations.sort_unstable();
        (violations, acks)
    }

    /// Runs [`verify`] over every client's log.
    pub fn verify(&self, window_us: u64) -> Verdict {
        let clients = self.clients.lock().clone();
        let logs: Vec<_> = clients.iter().map(|c| c.lock()).collect();
        let refs: Vec<&ClientLog> = logs.iter().map(|g| &**g).collect();
        verify(&refs, window_us)
    }
}

/// One acknowledged publish that a session was owed and never got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub room: String,
    pub epoch: String,
    pub seq: u64,
    pub ack_us: u64,
    pub publisher: u32,
    pub subscriber: u32,
}

/// The end-of-run check.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Acknowledged publishes checked.
    pub acked: u64,
    /// (publish, session) pairs that were owed a delivery.
    pub owed: u64,
    /// Of those, never delivered.
    pub undelivered: u64,
    /// The first few of them, for the report.
    pub examples: Vec<Missing>,
    /// Undelivered counts by the publish's ack time (unix ms).
    pub by_ack_ms: Vec<u64>,
    pub overflow: u64,
}

/// The most undelivered (publish, session) pairs listed one by one.
const MAX_MISSING: usize = 20_000;

/// Checks every acknowledged publish against every session that was owed it: joined
/// before the send, and connected until `window_us` after the ack (or still connected).
pub fn verify(logs: &[&ClientLog], window_us: u64) -> Verdict {
    let mut verdict = Verdict { overflow: logs.iter().map(|l| l.overflow).sum(), ..Default::default() };
    for publisher in logs {
        let Some(id) = publisher.publisher else { continue };
        for room in &publisher.rooms {
            for ack in &room.acked {
                verdict.acked += 1;
                for subscriber in logs.iter().filter(|s| s.client != publisher.client) {
                    let Some(sub_room) = subscriber.rooms.iter().find(|r| r.room == room.room) else { continue };
                    for session in &sub_room.sessions {
                        let owed = session.start_us <= ack.sent_us
                            && session.end_us.is_none_or(|end| end >= ack.ack_us + window_us);
                        if !owed {
                            continue;
                        }
                        verdict.owed += 1;
                        if session.has(id, ack.n) {
                            continue;
                        }
                        verdict.undelivered += 1;
                        if verdict.by_ack_ms.len() < MAX_MISSING {
                            verdict.by_ack_ms.push(ack.ack_us / 1000);
                        }
                        if verdict.examples.len() < 20 {
                            verdict.examples.push(Missing {
                                room: room.room.clone(),
                                epoch: publisher.epochs[ack.epoch as usize].clone(),
                                seq: ack.seq,
                                ack_us: ack.ack_us,
                                publisher: publisher.client,
                                subscriber: subscriber.client,
                            });
                        }
                    }
                }
            }
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_verify_owed_and_missing() {
        let ledger = Ledger::default();
        let publisher = ledger.tap(1);
        let stays = ledger.tap(2);
        let leaves = ledger.tap(3);
        let late = ledger.tap(4);
        publisher.publishes_as(7);
        publisher.joined("r", 0);
        stays.joined("r", 5);
        leaves.joined("r", 5);
        publisher.acked("r", "e1", 1, 1, 10, 20);
        publisher.acked("r", "e1", 2, 2, 30, 40);
        publisher.acked("r", "e2", 1, 3, 50, 60);
        stays.received("r", (7, 1));
        // Number 2 (seq 2 of e1) never arrives at `stays`; number 3 does.
        stays.received("r", (7, 3));
        leaves.received("r", (7, 1));
        // `leaves` disconnects at 45: owed seq 1 (acked at 20 + window 10 ≤ 45) only.
        leaves.disconnected(45);
        // `late` joins after every send: owed nothing.
        late.joined("r", 100);
        let verdict = ledger.verify(10);
        assert_eq!(verdict.acked, 3);
        assert_eq!(verdict.owed, 3 + 1);
        assert_eq!(verdict.undelivered, 1);
        assert_eq!(verdict.examples[0].seq, 2);
        assert_eq!(verdict.examples[0].subscriber, 2);
        assert_eq!(verdict.by_ack_ms, vec![0]);
    }

    #[test]
    fn test_session_ranges_merge() {
        let mut s = Session::default();
        for n in 1..=100 {
            s.add(0, n);
            s.add(1, n * 2);
        }
        s.add(0, 101);
        assert_eq!(s.received.len(), 101);
        assert_eq!(s.received[0], (0, 1, 101));
        assert!(s.has(0, 50) && !s.has(1, 3) && s.has(1, 4));
    }
}
