//! The wire format, pinned: the exact bytes of a value of every op, room action, delivery,
//! presence op, edge message and hand-off, as nodes exchange them (`kind/flags payload`, the
//! payload with its tail, in hex). Nodes of different builds share a cluster during a rolling
//! upgrade, so a change here is a protocol change, not a refactor.

use bytes::Bytes;
use ringcast_cluster::{NodeId, PeerFrame};

use super::tests::{inbox, meta, sender, snapshot};
use super::{
    decode_admin, decode_inbox, decode_meta, decode_msg, decode_op, decode_snapshot, decode_takeover_done,
    encode_admin, encode_inbox, encode_meta, encode_msg, encode_op, encode_snapshot, encode_takeover_done, KIND_ADMIN,
    KIND_EDGE_MSG, KIND_HANDOFF, KIND_INBOX, KIND_META, KIND_OWNER_OP, KIND_TAKEOVER_DONE,
};
use crate::codec::{DecodeError, Writer};
use crate::ops::{ConnRef, EdgeMsg, OwnerOp, PresenceOp, RequestKind, RoomAction, UserDelivery};
use crate::owner::InboxSnapshot;
use crate::protocol::{Attachment, ChatSend, Since};
use crate::room::RoomKey;

/// [`room`] on the wire: `t/r`.
macro_rules! room {
    () => {
        "03000000742f72"
    };
}

/// [`sender`] on the wire: node `n1`, connection 7, `alice` named `Alice`, a moderator,
/// request 99.
macro_rules! sender {
    () => {
        "020000006e31070000000000000005000000616c69636505000000416c696365016300000000000000"
    };
}

fn room() -> RoomKey {
    RoomKey::new("t", "r")
}

fn request(op_id: Option<&str>, kind: RequestKind) -> PeerFrame {
    encode_op(&OwnerOp::request(room(), sender(), op_id.map(String::from), kind), 2)
}

fn act(action: RoomAction) -> PeerFrame {
    request(None, RequestKind::Act(action))
}

fn to_user(delivery: UserDelivery) -> PeerFrame {
    request(None, RequestKind::ToUser(delivery))
}

fn presence(op: PresenceOp) -> PeerFrame {
    request(Some("q"), RequestKind::Presence(op))
}

fn attachment() -> Attachment {
    Attachment { url: "u".into(), name: "n".into(), size: 3, mime: "m".into() }
}

fn frame() -> Bytes {
    Bytes::from_static(b"{}")
}

fn pinned() -> Vec<(PeerFrame, &'static str)> {
    let mut plain = snapshot();
    plain.history[0].extra = None;
    plain.history[0].meta = None;
    plain.history[0].attachments = vec![attachment(), attachment()];
    let publish = ChatSend {
        room: "r".into(),
        text: "hé".into(),
        attachments: vec![attachment()],
        reply_to: None,
        client_id: Some("c".into()),
        meta: None,
    };
    let conn = ConnRef { node: NodeId::new("n"), conn_id: 2 };
    vec![
        (
            request(Some("j"), RequestKind::Join { since: Some(Since { seq: 4, epoch: "e".into() }) }),
            concat!("10/2 01", room!(), sender!(), "01010000006a0104000000000000000100000065"),
        ),
        (request(None, RequestKind::Join { since: None }), concat!("10/2 01", room!(), sender!(), "0000")),
        (request(None, RequestKind::Leave), concat!("10/2 02", room!(), sender!(), "00")),
        (request(Some("m"), RequestKind::Members), concat!("10/2 03", room!(), sender!(), "01010000006d")),
        (
            request(Some("p"), RequestKind::Publish(publish)),
            concat!(
                "10/2 04",
                room!(),
                sender!(),
                "01010000007001000000720300000068c3a9010000000100000075010000006e0300000000000000",
                "010000006d00010100000063",
                // No meta.
                "00"
            ),
        ),
        (
            encode_op(&OwnerOp::Resubscribe { room: room(), members: vec![sender(), sender()] }, 0),
            concat!("10/0 05", room!(), "02000000", sender!(), sender!()),
        ),
        (
            request(None, RequestKind::UserGroups { added: vec!["a".into()], removed: vec![] }),
            concat!("10/2 06", room!(), sender!(), "01000000010000006100000000"),
        ),
        (
            act(RoomAction::Edit { id: "i".into(), text: "t".into() }),
            concat!("10/2 07", room!(), sender!(), "000101000000690100000074"),
        ),
        (act(RoomAction::Versions { id: "i".into() }), concat!("10/2 07", room!(), sender!(), "00020100000069")),
        (
            act(RoomAction::Delete { id: "i".into(), hard: true }),
            concat!("10/2 07", room!(), sender!(), "0003010000006901"),
        ),
        (
            act(RoomAction::Redact { id: "i".into(), reason: Some("r".into()) }),
            concat!("10/2 07", room!(), sender!(), "00040100000069010100000072"),
        ),
        (
            act(RoomAction::React { id: "i".into(), emoji: "e".into(), add: true }),
            concat!("10/2 07", room!(), sender!(), "00050100000069010000006501"),
        ),
        (act(RoomAction::Typing { typing: true }), concat!("10/2 07", room!(), sender!(), "000601")),
        (
            act(RoomAction::Receipt { seq: 5, read: true }),
            concat!("10/2 07", room!(), sender!(), "0007050000000000000001"),
        ),
        (
            act(RoomAction::Upload { upload_id: "u".into(), name: "n".into(), size: 9, sent: 3 }),
            concat!("10/2 07", room!(), sender!(), "00080100000075010000006e09000000000000000300000000000000"),
        ),
        (
            act(RoomAction::History { before_seq: Some(4), limit: 10 }),
            concat!("10/2 07", room!(), sender!(), "00090104000000000000000a00000000000000"),
        ),
        (act(RoomAction::RequestJoin), concat!("10/2 07", room!(), sender!(), "000a")),
        (act(RoomAction::Approve { user_id: "b".into() }), concat!("10/2 07", room!(), sender!(), "000b0100000062")),
        (act(RoomAction::Deny { user_id: "b".into() }), concat!("10/2 07", room!(), sender!(), "000c0100000062")),
        (act(RoomAction::Kick { user_id: "b".into() }), concat!("10/2 07", room!(), sender!(), "000d0100000062")),
        (
            act(RoomAction::Ban { user_id: "b".into(), seconds: Some(60) }),
            concat!("10/2 07", room!(), sender!(), "000e0100000062013c00000000000000"),
        ),
        (
            to_user(UserDelivery::Dm {
                id: "i".into(),
                ts: "t".into(),
                frame: frame(),
                offline_frame: Bytes::from_static(b"o"),
                client_id: Some("c".into()),
            }),
            concat!("10/2 08", room!(), sender!(), "000101000000690100000074020000007b7d010000006f010100000063"),
        ),
        (
            to_user(UserDelivery::Call { call_id: "c".into(), frame: frame() }),
            concat!("10/2 08", room!(), sender!(), "00020100000063020000007b7d"),
        ),
        (
            to_user(UserDelivery::Copy { frame: frame(), exclude: conn.clone() }),
            concat!("10/2 08", room!(), sender!(), "0003020000007b7d010000006e0200000000000000"),
        ),
        (
            presence(PresenceOp::Set { status: "away".into(), message: Some("m".into()) }),
            concat!("10/2 09", room!(), sender!(), "01010000007101040000006177617901010000006d"),
        ),
        (presence(PresenceOp::Subscribe), concat!("10/2 09", room!(), sender!(), "01010000007102")),
        (presence(PresenceOp::Unsubscribe), concat!("10/2 09", room!(), sender!(), "01010000007103")),
        (
            presence(PresenceOp::Query { query_id: 6 }),
            concat!("10/2 09", room!(), sender!(), "010100000071040600000000000000"),
        ),
        (
            encode_msg(&EdgeMsg::Deliver { room: room(), exclude: Some(3), frame: frame() }),
            concat!("11/0 01", room!(), "0103000000000000007b7d"),
        ),
        (
            encode_msg(&EdgeMsg::Deliver { room: room(), exclude: None, frame: frame() }),
            concat!("11/0 01", room!(), "007b7d"),
        ),
        (
            encode_msg(&EdgeMsg::Reply { conn_id: 1, request_id: 2, frame: frame(), is_error: true }),
            "11/0 0201000000000000000200000000000000017b7d",
        ),
        (
            encode_msg(&EdgeMsg::Joined { room: room(), conn_id: 1, request_id: 2, frames: vec![frame()] }),
            concat!("11/0 03", room!(), "0100000000000000020000000000000001000000020000007b7d"),
        ),
        (
            encode_msg(&EdgeMsg::Left { room: room(), conn_id: 1, request_id: 0, frames: vec![] }),
            concat!("11/0 04", room!(), "0100000000000000000000000000000000000000"),
        ),
        (
            encode_msg(&EdgeMsg::Groups { conn_id: 4, added: vec![], removed: vec!["x".into()] }),
            "11/0 05040000000000000000000000010000000100000078",
        ),
        (
            encode_msg(&EdgeMsg::PresenceInfo { conn_id: 3, query_id: 4, entry: frame() }),
            "11/0 07030000000000000004000000000000007b7d",
        ),
        (
            encode_msg(&EdgeMsg::Route(Box::new(OwnerOp::request(room(), sender(), None, RequestKind::Leave)))),
            concat!("11/0 0602", room!(), sender!(), "00"),
        ),
        (
            encode_snapshot(&snapshot()),
            concat!(
                "12/0 07000000742f6c6f626279020000006531090000000000000001000000010000006d0900000",
                "00000000018000000323032362d30312d30315430303a30303a30302e3030305a05000000616c696",
                "36505000000416c69636502000000686900000000010100000070010100000070010200000000000",
                "00001020000007432010000000100000000000000030000006f6c640200000074310001040000007",
                "370616d0100000004000000f09f918d0100000003000000626f620100000005000000616c6963650",
                "5000000416c6963650101000000020000006e3203000000000000000100000005000000616c69636",
                "503000000632d31010000006d09000000000000000100000078",
                // The messages' meta, after the room (seq, JSON text).
                "010000000900000000000000190000007b226f72646572223a34322c2274616773223a5b2261225d7d"
            ),
        ),
        (
            encode_snapshot(&plain),
            concat!(
                "12/0 07000000742f6c6f626279020000006531090000000000000001000000010000006d0900000",
                "00000000018000000323032362d30312d30315430303a30303a30302e3030305a05000000616c696",
                "36505000000416c696365020000006869020000000100000075010000006e0300000000000000010",
                "000006d0100000075010000006e0300000000000000010000006d010100000070010100000070000",
                "100000005000000616c69636505000000416c6963650101000000020000006e32030000000000000",
                "00100000005000000616c69636503000000632d31010000006d09000000000000000100000078",
                // No message has a meta.
                "00000000"
            ),
        ),
        (
            encode_meta(&room(), &meta()),
            concat!(
                "15/0 ",
                room!(),
                "0200000003000000657665010900000000000000070000006d616c6c6f72790001000000",
                sender!()
            ),
        ),
        (
            encode_inbox(&inbox()),
            concat!(
                "14/0 0a000000742f757365723a626f6201000000050000000000000002000000646d01000000050",
                "00000616c69636502000000633101000000690000000000000000010000007401040000006177617",
                "90001000000020000006e3308000000000000000100000006000000236c6f626279"
            ),
        ),
        (encode_admin(8, false, b"{}"), "16/0 0800000000000000020000007b7d"),
        (encode_admin(8, true, b"[]"), "16/1 0800000000000000020000005b5d"),
        (encode_takeover_done(0x0102_0304_0506_0708), "17/0 0807060504030201"),
    ]
}

/// `kind/flags payload`: what crosses the link.
fn wire(frame: &PeerFrame) -> String {
    let bytes: String = [&frame.payload[..], &frame.tail[..]].concat().iter().map(|b| format!("{b:02x}")).collect();
    format!("{:02x}/{} {bytes}", frame.kind, frame.flags)
}

/// Decodes `payload` as a frame of `frame`'s kind and flags, the way its receiver does, and
/// encodes the value again.
fn reencode(frame: &PeerFrame, payload: Bytes) -> Result<PeerFrame, DecodeError> {
    Ok(match frame.kind {
        KIND_OWNER_OP => encode_op(&decode_op(payload)?, frame.flags),
        KIND_EDGE_MSG => encode_msg(&decode_msg(payload)?),
        KIND_HANDOFF => encode_snapshot(&decode_snapshot(payload)?),
        KIND_INBOX => encode_inbox(&decode_inbox(payload)?),
        KIND_META => {
            let (key, meta) = decode_meta(payload)?;
            encode_meta(&key, &meta)
        }
        KIND_ADMIN => {
            let (request_id, answer, json) = decode_admin(&PeerFrame { payload, ..frame.clone() })?;
            encode_admin(request_id, answer, &json)
        }
        KIND_TAKEOVER_DONE => encode_takeover_done(decode_takeover_done(&payload)?),
        kind => panic!("no peer frame of kind {kind}"),
    })
}

#[test]
fn test_wire_bytes_are_pinned() {
    let mut wrong = Vec::new();
    for (index, (frame, pinned)) in pinned().into_iter().enumerate() {
        if wire(&frame) != pinned {
            wrong.push(format!("#{index}: {}", wire(&frame)));
        }
    }
    assert!(wrong.is_empty(), "encodings changed:\n{}", wrong.join("\n"));
}

#[test]
fn test_pinned_frames_decode_and_encode_again_to_the_same_bytes() {
    for (frame, pinned) in pinned() {
        let joined = Bytes::from([&frame.payload[..], &frame.tail[..]].concat());
        assert_eq!(wire(&reencode(&frame, joined).unwrap()), pinned);
    }
}

#[test]
fn test_every_cut_of_a_pinned_frame_is_an_error() {
    // A frame's tail is the rest of its payload (a client frame): any length of it is one.
    for (frame, pinned) in pinned() {
        let older_build = older_build_cut(&frame);
        for cut in 0..frame.payload.len() {
            // Without the fields added at its end, a frame is one of an older build, which
            // decodes (see below).
            if Some(cut) == older_build {
                continue;
            }
            assert!(reencode(&frame, frame.payload.slice(..cut)).is_err(), "{pinned} cut at {cut}");
        }
    }
}

/// Where the fields added later at the end of `frame`'s value start: an inbox's `rooms`, a
/// room snapshot's `meta`s, a publish's `meta`.
fn older_build_cut(frame: &PeerFrame) -> Option<usize> {
    let late = |value: &dyn Fn(&mut Writer)| {
        let mut writer = Writer::new();
        value(&mut writer);
        frame.payload.len() - writer.finish().0.len()
    };
    match frame.kind {
        KIND_INBOX => {
            let inbox = decode_inbox(frame.payload.clone()).ok()?;
            Some(late(&|writer| {
                writer.put(&inbox.rooms);
            }))
        }
        KIND_HANDOFF => {
            let snapshot = decode_snapshot(frame.payload.clone()).ok()?;
            let metas: Vec<(u64, String)> =
                snapshot.history.iter().filter_map(|m| Some((m.seq, m.meta.as_deref()?.to_string()))).collect();
            Some(late(&|writer| {
                writer.put(&metas);
            }))
        }
        KIND_OWNER_OP => match decode_op(frame.payload.clone()).ok()? {
            OwnerOp::Request(crate::ops::Request { kind: RequestKind::Publish(send), .. }) => Some(late(&|writer| {
                writer.put(&send.meta.as_deref().map(|meta| meta.to_string()));
            })),
            _ => None,
        },
        _ => None,
    }
}

#[test]
fn test_an_inbox_of_an_older_build_decodes_without_subscriptions() {
    let old = concat!(
        "0a000000742f757365723a626f6201000000050000000000000002000000646d0100000005000000616c69636502000000",
        "633101000000690000000000000000010000007401040000006177617900010000000200000",
        "06e330800000000000000"
    );
    let bytes: Vec<u8> = (0..old.len()).step_by(2).map(|i| u8::from_str_radix(&old[i..i + 2], 16).unwrap()).collect();
    let decoded = decode_inbox(Bytes::from(bytes)).unwrap();
    assert_eq!(decoded, InboxSnapshot { rooms: Vec::new(), ..inbox() });
}
