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
    },
    Left,
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
    rooms: Vec<(Box<str>, RoomState)>,
}

impl ConnChecker {
    pub fn new() -> Self {
        ConnChecker { rooms: Vec::new() }
    }

    fn state_mut(&mut self, room: &str) -> Option<&mut RoomState> {
        self.rooms.iter_mut().find(|(name, _)| &**name == room).map(|(_, state)| state)
    }

    /// The position to resume from: `(last seq, epoch)` of a room joined before.
    pub fn since(&self, room: &str) -> Option<(u64, String)> {
        self.rooms.iter().find(|(name, _)| &**name == room).and_then(|(_, state)| match state {
            RoomState::Joined { stream, epoch } => Some((stream.last(), epoch.clone())),
            _ => None,
        })
    }

    /// A join request was sent (with `since` when resuming).
    pub fn join_sent(&mut self, room: &str, since: Option<(u64, String)>) {
        let state = match since {
            Some((seq, _epoch)) => RoomState::Joining { replay: Some(SeqStream::after(seq)), replayed: 0 },
            None => RoomState::Joining { replay: None, replayed: 0 },
        };
        match self.state_mut(room) {
            Some(existing) => *existing = state,
            None => self.rooms.push((room.into(), state)),
        }
    }

    /// The join ack: from now on `seq + 1` is expected.
    pub fn join_acked(&mut self, room: &str, seq: u64, epoch: &str, recovered: Option<bool>) -> JoinOutcome {
        let mut outcome = JoinOutcome { recovered, replayed: 0, violation: None };
        let new_state = RoomState::Joined { stream: SeqStream::after(seq), epoch: epoch.to_string() };
        match self.state_mut(room) {
            Some(state) => {
                if let RoomState::Joining { replay: Some(replay), replayed, .. } = state {
                    outcome.replayed = *replayed;
                    if recovered == Some(true) && replay.last() != seq {
                        outcome.violation = Some(Violation::RecoveryGap);
                    }
                }
                *state = new_state;
            }
            // An ack without a recorded request (e.g. a join sent by another path): accept it.
            None => self.rooms.push((room.into(), new_state)),
        }
        outcome
    }

    /// The leave ack: messages for the room are no longer expected.
    pub fn leave_acked(&mut self, room: &str) {
        if let Some(state) = self.state_mut(room) {
            *state = RoomState::Left;
        }
    }

    /// The connection went away; rooms keep their position for a rejoin with `since`.
    pub fn disconnected(&mut self) {
        for (_, state) in &mut self.rooms {
            if let RoomState::Joining { .. } = state {
                *state = RoomState::Left;
            }
        }
    }

    /// Checks one received `chat.message`.
    pub fn message(&mut self, room: &str, seq: u64, recovered: bool) -> Result<(), Violation> {
        match self.state_mut(room) {
            None | Some(RoomState::Left) => Err(Violation::NotJoined),
            Some(RoomState::Joined { stream, .. }) => {
                if recovered {
                    return Err(Violation::UnexpectedReplay);
                }
                stream.check(seq)
            }
            Some(RoomState::Joining { replay, replayed, .. }) => match (recovered, replay) {
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
        assert_eq!(c.message("r", 1, false), Err(Violation::NotJoined));
        c.join_sent("r", None);
        assert_eq!(c.message("r", 1, false), Err(Violation::BeforeJoin));
        let out = c.join_acked("r", 5, "e1", None);
        assert_eq!(out.violation, None);
        assert_eq!(c.message("r", 6, false), Ok(()));
        assert_eq!(c.message("r", 8, false), Err(Violation::Gap));
        assert_eq!(c.since("r"), Some((8, "e1".to_string())));
        c.leave_acked("r");
        assert_eq!(c.message("r", 9, false), Err(Violation::NotJoined));
    }

    #[test]
    fn test_conn_checker_recovery() {
        let mut c = ConnChecker::new();
        c.join_sent("r", None);
        c.join_acked("r", 3, "e1", None);
        assert_eq!(c.message("r", 4, false), Ok(()));
        c.disconnected();
        let since = c.since("r").unwrap();
        assert_eq!(since, (4, "e1".to_string()));
        c.join_sent("r", Some(since));
        assert_eq!(c.message("r", 5, true), Ok(()));
        assert_eq!(c.message("r", 6, true), Ok(()));
        let out = c.join_acked("r", 6, "e1", Some(true));
        assert_eq!(out, JoinOutcome { recovered: Some(true), replayed: 2, violation: None });
        assert_eq!(c.message("r", 7, false), Ok(()));
        // A replay that stops short of the ack's seq is a recovery gap.
        c.disconnected();
        c.join_sent("r", c.since("r"));
        assert_eq!(c.message("r", 8, true), Ok(()));
        let out = c.join_acked("r", 9, "e1", Some(true));
        assert_eq!(out.violation, Some(Violation::RecoveryGap));
        // recovered:false is not a violation: the client is told it missed messages.
        c.join_sent("r", Some((2, "old".into())));
        let out = c.join_acked("r", 20, "e2", Some(false));
        assert_eq!(out.violation, None);
        assert_eq!(out.recovered, Some(false));
        assert_eq!(c.message("r", 21, false), Ok(()));
        assert_eq!(c.message("r", 22, true), Err(Violation::UnexpectedReplay));
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
