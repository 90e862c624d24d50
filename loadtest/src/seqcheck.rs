//! The correctness check on received messages: per (connection, room) the `seq` of
//! `chat.message` frames must go up by exactly 1 from the join ack's `seq` — no gap, no
//! duplicate, no reorder. A rejoin with `since` must replay exactly the missed messages.

use std::collections::BTreeSet;

/// A kind of violation, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Violation {
    /// A `seq` beyond the next expected one: messages were skipped.
    Gap,
    /// A `seq` already seen.
    Duplicate,
    /// A skipped `seq` arriving late.
    Reorder,
    /// A live message for a room whose join is not acknowledged yet.
    BeforeJoin,
    /// A message for a room the connection is not in.
    NotJoined,
    /// `recovered:true` but the replay did not reach the ack's `seq` contiguously.
    RecoveryGap,
    /// A `recovered:true` message outside of a rejoin.
    UnexpectedReplay,
    /// The room restarted (a new message under an old `seq`, or `recovered:true` across an
    /// epoch change) without a `room.reset` first.
    UnannouncedReset,
    /// An acknowledged publish never reached a connection that was in its room the whole
    /// time (chaos: counted at the end of the run).
    Undelivered,
}

impl Violation {
    pub fn as_str(self) -> &'static str {
        match self {
            Violation::Gap => "gap",
            Violation::Duplicate => "duplicate",
            Violation::Reorder => "reorder",
            Violation::BeforeJoin => "before_join",
            Violation::NotJoined => "not_joined",
            Violation::RecoveryGap => "recovery_gap",
            Violation::UnexpectedReplay => "unexpected_replay",
            Violation::UnannouncedReset => "unannounced_reset",
            Violation::Undelivered => "undelivered",
        }
    }
}

/// The most skipped positions remembered per stream (to tell a late message from a duplicate).
const MAX_MISSING: u64 = 4096;

/// One ordered stream: the next expected position and the skipped ones.
#[derive(Debug, Clone, Default)]
pub struct SeqStream {
    next: u64,
    missing: BTreeSet<u64>,
}

impl SeqStream {
    /// A stream whose last seen position is `last` (the join ack's `seq`).
    pub fn after(last: u64) -> Self {
        SeqStream { next: last + 1, missing: BTreeSet::new() }
    }

    /// The last position seen in order.
    pub fn last(&self) -> u64 {
        self.next.saturating_sub(1)
    }

    /// Checks the next received position.
    pub fn check(&mut self, seq: u64) -> Result<(), Violation> {
        if seq == self.next {
            self.next += 1;
            return Ok(());
        }
        if seq > self.next {
            let skipped = (seq - self.next).min(MAX_MISSING);
            for missing in seq - skipped..seq {
                self.missing.insert(missing);
            }
            while self.missing.len() as u64 > MAX_MISSING {
                self.missing.pop_first();
            }
            self.next = seq + 1;
            return Err(Violation::Gap);
        }
        if self.missing.remove(&seq) {
            Err(Violation::Reorder)
        } else {
            Err(Violation::Duplicate)
        }
    }
}

/// The state of one room on one (logical) connection.
#[derive(Debug, Clone)]
enum RoomState {
    Joined {
        stream: SeqStream,
        epoch: String,
    },
    /// A join was sent; with `since`, replays are expected from `since + 1`.
    Joining {
        replay: Option<SeqStream>,
        replayed: u64,
        /// The epoch the join resumed from.
        since_epoch: Option<String>,
    },
    Left,
}

/// Who published a message and its number (the stamp in its text), or `SELF_ORIGIN` and the
/// op number for a connection's own `chat.send` acks.
pub type Origin = (u32, u64);

/// The publisher id used for a connection's own sends (their acks take the messages' place).
pub const SELF_ORIGIN: u32 = u32::MAX;

/// The most publishers whose latest number is remembered per room.
const MAX_ORIGINS: usize = 16;

/// One room of a connection: its state and, per publisher, the highest number seen. A
/// publisher's numbers only go up, so a message with an old `seq` but a new number is a new
/// message under a reused `seq`: the room restarted (without `room.reset`, a violation),
/// while one with an old number is a duplicate.
#[derive(Debug, Clone)]
struct RoomEntry {
    name: Box<str>,
    state: RoomState,
    origins: Vec<Origin>,
}

impl RoomEntry {
    /// Records `origin`; returns whether it is newer than anything seen from its publisher
    /// (`None` when the publisher is unknown).
    fn saw(&mut self, origin: Option<Origin>) -> Option<bool> {
        let (publisher, n) = origin?;
        match self.origins.iter_mut().find(|(p, _)| *p == publisher) {
            Some((_, max)) => {
                let newer = n > *max;
                *max = (*max).max(n);
                Some(newer)
            }
            None => {
                if self.origins.len() >= MAX_ORIGINS {
                    self.origins.remove(0);
                }
                self.origins.push((publisher, n));
                None
            }
        }
    }
}

/// What a join ack says about recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinOutcome {
    /// `Some(true/false)` when the join carried `since`.
    pub recovered: Option<bool>,
    pub replayed: u64,
    pub violation: Option<Violation>,
}

/// The checker of one logical client (it survives reconnects, so a rejoin resumes).
#[derive(Debug, Default, Clone)]
pub struct ConnChecker {
    rooms: Vec<RoomEntry>,
    /// Sends answered `unavailable`: each may still have taken a `seq` (an owner that could
    /// not confirm every delivery answers so), which this connection's own acks then skip.
    unconfirmed: u64,
}

impl ConnChecker {
    pub fn new() -> Self {
        ConnChecker { rooms: Vec::new(), unconfirmed: 0 }
    }

    /// One of this connection's sends was answered `unavailable`.
    pub fn send_unconfirmed(&mut self) {
        self.unconfirmed += 1;
    }

    fn entry_mut(&mut self, room: &str) -> Option<&mut RoomEntry> {
        self.rooms.iter_mut().find(|entry| &*entry.name == room)
    }

    fn put(&mut self, room: &str, state: RoomState) {
        match self.entry_mut(room) {
            Some(entry) => entry.state = state,
            None => self.rooms.push(RoomEntry { name: room.into(), state, origins: Vec::new() }),
        }
    }

    /// The position to resume from: `(last seq, epoch)` of a room joined before.
    pub fn since(&self, room: &str) -> Option<(u64, String)> {
        self.rooms.iter().find(|entry| &*entry.name == room).and_then(|entry| match &entry.state {
            RoomState::Joined { stream, epoch } => Some((stream.last(), epoch.clone())),
            _ => None,
        })
    }

    /// The epoch this connection knows for a joined room.
    pub fn epoch(&self, room: &str) -> Option<&str> {
        self.rooms.iter().find(|entry| &*entry.name == room).and_then(|entry| match &entry.state {
            RoomState::Joined { epoch, .. } => Some(epoch.as_str()),
            _ => None,
        })
    }

    /// A join request was sent (with `since` when resuming).
    pub fn join_sent(&mut self, room: &str, since: Option<(u64, String)>) {
        let state = match since {
            Some((seq, epoch)) => {
                RoomState::Joining { replay: Some(SeqStream::after(seq)), replayed: 0, since_epoch: Some(epoch) }
            }
            None => RoomState::Joining { replay: None, replayed: 0, since_epoch: None },
        };
        self.put(room, state);
    }

    /// The join ack: from now on `seq + 1` is expected.
    pub fn join_acked(&mut self, room: &str, seq: u64, epoch: &str, recovered: Option<bool>) -> JoinOutcome {
        let mut outcome = JoinOutcome { recovered, replayed: 0, violation: None };
        let new_state = RoomState::Joined { stream: SeqStream::after(seq), epoch: epoch.to_string() };
        match self.entry_mut(room) {
            Some(entry) => {
                if let RoomState::Joining { replay: Some(replay), replayed, since_epoch } = &entry.state {
                    outcome.replayed = *replayed;
                    if recovered == Some(true) && since_epoch.as_deref().is_some_and(|since| since != epoch) {
                        // Continuity claimed across an epoch change.
                        outcome.violation = Some(Violation::UnannouncedReset);
                    } else if recovered == Some(true) && replay.last() != seq {
                        outcome.violation = Some(Violation::RecoveryGap);
                    }
                }
                entry.state = new_state;
            }
            // An ack without a recorded request (e.g. a join sent by another path): accept it.
            None => self.put(room, new_state),
        }
        outcome
    }

    /// `room.reset{room, epoch, seq}`: the room restarted under `epoch`; the next message is
    /// `seq + 1`. Returns whether the connection was in the room (a reset for a room being
    /// rejoined is settled by the join ack, one for a room left is ignored).
    pub fn reset(&mut self, room: &str, epoch: &str, seq: u64) -> bool {
        match self.entry_mut(room) {
            Some(RoomEntry { state: RoomState::Joined { stream, epoch: known }, .. }) => {
                *stream = SeqStream::after(seq);
                *known = epoch.to_string();
                true
            }
            _ => false,
        }
    }

    /// The leave ack: messages for the room are no longer expected.
    pub fn leave_acked(&mut self, room: &str) {
        if let Some(entry) = self.entry_mut(room) {
            entry.state = RoomState::Left;
        }
    }

    /// The connection went away; rooms keep their position for a rejoin with `since`.
    pub fn disconnected(&mut self) {
        for entry in &mut self.rooms {
            if let RoomState::Joining { .. } = entry.state {
                entry.state = RoomState::Left;
            }
        }
    }

    /// Checks one received `chat.message` (or the ack of one's own send), `origin` from its
    /// stamp when it has one.
    pub fn message(&mut self, room: &str, seq: u64, recovered: bool, origin: Option<Origin>) -> Result<(), Violation> {
        let unconfirmed = &mut self.unconfirmed;
        let Some(entry) = self.rooms.iter_mut().find(|entry| &*entry.name == room) else {
            return Err(Violation::NotJoined);
        };
        if let (Some((SELF_ORIGIN, _)), RoomState::Joined { stream, .. }) = (origin, &mut entry.state) {
            // Own sends answered `unavailable` before this ack may have taken the seqs between.
            let skipped = seq.saturating_sub(stream.next);
            if seq > stream.next && skipped <= *unconfirmed {
                *unconfirmed -= skipped;
                stream.next = seq;
            }
        }
        let newer = entry.saw(origin);
        match &mut entry.state {
            RoomState::Left => Err(Violation::NotJoined),
            RoomState::Joined { stream, .. } => {
                if recovered {
                    return Err(Violation::UnexpectedReplay);
                }
                if seq < stream.next && !stream.missing.contains(&seq) && newer == Some(true) {
                    // A new message under a seq already passed: the numbering restarted.
                    *stream = SeqStream::after(seq);
                    return Err(Violation::UnannouncedReset);
                }
                stream.check(seq)
            }
            RoomState::Joining { replay, replayed, .. } => match (recovered, replay) {
                (true, Some(replay)) => {
                    *replayed += 1;
                    replay.check(seq)
                }
                (true, None) => Err(Violation::UnexpectedReplay),
                (false, _) => Err(Violation::BeforeJoin),
            },
        }
    }
}

/// Raw mode (no server `seq`): each publisher's counter `n` must go up by exactly 1 as seen
/// by each subscriber, starting wherever the subscriber first sees it.
#[derive(Debug, Default, Clone)]
pub struct PublisherChecker {
    streams: Vec<(u32, SeqStream)>,
}

impl PublisherChecker {
    pub fn check(&mut self, publisher: u32, n: u64) -> Result<(), Violation> {
        match self.streams.iter_mut().find(|(p, _)| *p == publisher) {
            Some((_, stream)) => stream.check(n),
            None => {
                self.streams.push((publisher, SeqStream::after(n)));
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_in_order_passes() {
        let mut s = SeqStream::after(10);
        for seq in 11..100 {
            assert_eq!(s.check(seq), Ok(()));
        }
        assert_eq!(s.last(), 99);
    }

    #[test]
    fn test_gap_duplicate_reorder() {
        let mut s = SeqStream::after(0);
        assert_eq!(s.check(1), Ok(()));
        assert_eq!(s.check(1), Err(Violation::Duplicate));
        assert_eq!(s.check(4), Err(Violation::Gap));
        assert_eq!(s.check(3), Err(Violation::Reorder));
        assert_eq!(s.check(3), Err(Violation::Duplicate));
        assert_eq!(s.check(5), Ok(()));
        assert_eq!(s.check(2), Err(Violation::Reorder));
        assert_eq!(s.check(0), Err(Violation::Duplicate));
    }

    #[test]
    fn test_huge_gap_is_bounded() {
        let mut s = SeqStream::after(0);
        assert_eq!(s.check(10_000_000), Err(Violation::Gap));
        assert!(s.missing.len() as u64 <= MAX_MISSING);
        assert_eq!(s.check(10_000_001), Ok(()));
    }

    #[test]
    fn test_conn_checker_join_and_leave() {
        let mut c = ConnChecker::new();
        assert_eq!(c.message("r", 1, false, None), Err(Violation::NotJoined));
        c.join_sent("r", None);
        assert_eq!(c.message("r", 1, false, None), Err(Violation::BeforeJoin));
        let out = c.join_acked("r", 5, "e1", None);
        assert_eq!(out.violation, None);
        assert_eq!(c.message("r", 6, false, None), Ok(()));
        assert_eq!(c.message("r", 8, false, None), Err(Violation::Gap));
        assert_eq!(c.since("r"), Some((8, "e1".to_string())));
        c.leave_acked("r");
        assert_eq!(c.message("r", 9, false, None), Err(Violation::NotJoined));
    }

    #[test]
    fn test_conn_checker_recovery() {
        let mut c = ConnChecker::new();
        c.join_sent("r", None);
        c.join_acked("r", 3, "e1", None);
        assert_eq!(c.message("r", 4, false, None), Ok(()));
        c.disconnected();
        let since = c.since("r").unwrap();
        assert_eq!(since, (4, "e1".to_string()));
        c.join_sent("r", Some(since));
        assert_eq!(c.message("r", 5, true, None), Ok(()));
        assert_eq!(c.message("r", 6, true, None), Ok(()));
        let out = c.join_acked("r", 6, "e1", Some(true));
        assert_eq!(out, JoinOutcome { recovered: Some(true), replayed: 2, violation: None });
        assert_eq!(c.message("r", 7, false, None), Ok(()));
        // A replay that stops short of the ack's seq is a recovery gap.
        c.disconnected();
        c.join_sent("r", c.since("r"));
        assert_eq!(c.message("r", 8, true, None), Ok(()));
        let out = c.join_acked("r", 9, "e1", Some(true));
        assert_eq!(out.violation, Some(Violation::RecoveryGap));
        // recovered:false is not a violation: the client is told it missed messages.
        c.join_sent("r", Some((2, "old".into())));
        let out = c.join_acked("r", 20, "e2", Some(false));
        assert_eq!(out.violation, None);
        assert_eq!(out.recovered, Some(false));
        assert_eq!(c.message("r", 21, false, None), Ok(()));
        assert_eq!(c.message("r", 22, true, None), Err(Violation::UnexpectedReplay));
    }

    #[test]
    fn test_own_acks_skip_only_what_unavailable_answers_may_have_taken() {
        let mut c = ConnChecker::new();
        c.join_sent("r", None);
        c.join_acked("r", 0, "e1", None);
        assert_eq!(c.message("r", 1, false, Some((SELF_ORIGIN, 1))), Ok(()));
        // Send 2 was answered unavailable but took seq 2: the next ack is seq 3.
        c.send_unconfirmed();
        assert_eq!(c.message("r", 3, false, Some((SELF_ORIGIN, 3))), Ok(()));
        // No allowance left: a skipped seq is a gap again, also for others' messages.
        assert_eq!(c.message("r", 5, false, Some((SELF_ORIGIN, 4))), Err(Violation::Gap));
        c.send_unconfirmed();
        assert_eq!(c.message("r", 8, false, Some((1, 1))), Err(Violation::Gap));
    }

    #[test]
    fn test_reset_announced_and_unannounced() {
        let mut c = ConnChecker::new();
        c.join_sent("r", None);
        c.join_acked("r", 0, "e1", None);
        for n in 1..=5 {
            assert_eq!(c.message("r", n, false, Some((1, n))), Ok(()));
        }
        // An announced restart: numbering goes on from the reset's seq under the new epoch.
        assert!(c.reset("r", "e2", 0));
        assert_eq!(c.epoch("r"), Some("e2"));
        assert_eq!(c.message("r", 1, false, Some((1, 6))), Ok(()));
        assert_eq!(c.message("r", 2, false, Some((1, 7))), Ok(()));
        // A redelivered message (old number) is a duplicate ...
        assert_eq!(c.message("r", 2, false, Some((1, 7))), Err(Violation::Duplicate));
        // ... a new message under an old seq is an unannounced restart, counted once.
        assert_eq!(c.message("r", 1, false, Some((1, 8))), Err(Violation::UnannouncedReset));
        assert_eq!(c.message("r", 2, false, Some((1, 9))), Ok(()));
        // The same for a connection's own acks.
        assert_eq!(c.message("r", 3, false, Some((SELF_ORIGIN, 1))), Ok(()));
        assert_eq!(c.message("r", 1, false, Some((SELF_ORIGIN, 2))), Err(Violation::UnannouncedReset));
        // A reset for a room not joined is ignored.
        assert!(!c.reset("other", "e9", 3));
        // recovered:true across an epoch change claims a continuity that cannot be.
        c.disconnected();
        c.join_sent("r", c.since("r"));
        let out = c.join_acked("r", 1, "e3", Some(true));
        assert_eq!(out.violation, Some(Violation::UnannouncedReset));
    }

    #[test]
    fn test_publisher_checker() {
        let mut p = PublisherChecker::default();
        assert_eq!(p.check(1, 10), Ok(()));
        assert_eq!(p.check(2, 1), Ok(()));
        assert_eq!(p.check(1, 11), Ok(()));
        assert_eq!(p.check(1, 11), Err(Violation::Duplicate));
        assert_eq!(p.check(2, 3), Err(Violation::Gap));
    }
}
