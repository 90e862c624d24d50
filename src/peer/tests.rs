//! Round trips of every payload, and cut payloads: each is an error, never a panic.

use std::sync::Arc;

use bytes::Bytes;
use ringcast_cluster::NodeId;

use super::{
    decode_inbox, decode_meta, decode_msg, decode_op, decode_snapshot, encode_inbox, encode_meta, encode_msg,
    encode_op, encode_snapshot,
};
use crate::ops::{ConnRef, EdgeMsg, OwnerOp, RequestKind, RoomAction, Sender, UserDelivery};
use crate::owner::{InboxSnapshot, MessageExtra, RoomMeta, RoomSnapshot, SentAck, StoredMessage};
use crate::protocol::{Attachment, ChatSend, Since};
use crate::room::RoomKey;

pub(super) fn sender() -> Sender {
    Sender {
        conn: ConnRef { node: NodeId::new("n1"), conn_id: 7 },
        user_id: Arc::from("alice"),
        name: Arc::from("Alice"),
        is_moderator: true,
        request_id: 99,
    }
}

pub(super) fn snapshot() -> RoomSnapshot {
    RoomSnapshot {
        key: RoomKey::new("t", "lobby"),
        epoch: "e1".into(),
        seq: 9,
        history: vec![StoredMessage {
            id: "m".into(),
            seq: 9,
            ts: "2026-01-01T00:00:00.000Z".into(),
            user_id: Arc::from("alice"),
            name: Arc::from("Alice"),
            text: "hi".into(),
            attachments: vec![],
            reply_to: Some("p".into()),
            thread_root: Some("p".into()),
            meta: Some(Arc::new(serde_json::json!({"order": 42, "tags": ["a"]}))),
            extra: Some(Box::new(MessageExtra {
                version: 2,
                edited_at: Some("t2".into()),
                versions: vec![(1, "old".into(), "t1".into())],
                deleted: false,
                redacted: Some("spam".into()),
                reactions: vec![("👍".into(), vec![Arc::from("bob")])],
            })),
        }],
        users: vec![(
            Arc::from("alice"),
            Arc::from("Alice"),
            true,
            vec![ConnRef { node: NodeId::new("n2"), conn_id: 3 }],
        )],
        sent: vec![(Arc::from("alice"), "c-1".into(), SentAck { id: "m".into(), seq: 9, ts: "x".into() })],
    }
}

pub(super) fn meta() -> RoomMeta {
    RoomMeta { bans: vec![(Arc::from("eve"), Some(9)), (Arc::from("mallory"), None)], pending: vec![sender()] }
}

pub(super) fn inbox() -> InboxSnapshot {
    InboxSnapshot {
        key: RoomKey::user("t", "bob"),
        messages: vec![(5, Bytes::from_static(b"dm"))],
        sent: vec![(Arc::from("alice"), "c1".into(), SentAck { id: "i".into(), seq: 0, ts: "t".into() })],
        status: Some("away".into()),
        message: None,
        subscribers: vec![ConnRef { node: NodeId::new("n3"), conn_id: 8 }],
        rooms: vec!["#lobby".into()],
    }
}

#[test]
fn test_ops_round_trip() {
    let room = RoomKey::new("t", "lobby");
    let ops = vec![
        OwnerOp::request(
            room.clone(),
            sender(),
            Some("1".into()),
            RequestKind::Join { since: Some(Since { seq: 4, epoch: "e".into() }) },
        ),
        OwnerOp::request(room.clone(), sender(), None, RequestKind::Leave),
        OwnerOp::request(room.clone(), sender(), Some("m".into()), RequestKind::Members),
        OwnerOp::request(
            room.clone(),
            sender(),
            Some("p".into()),
            RequestKind::Publish(ChatSend {
                room: "lobby".into(),
                text: "hé".into(),
                attachments: vec![Attachment {
                    url: "https://x".into(),
                    name: "n".into(),
                    size: 3,
                    mime: "a/b".into(),
                }],
                reply_to: Some("r".into()),
                client_id: None,
                meta: Some(Arc::new(serde_json::json!({"k": "v"}))),
            }),
        ),
        OwnerOp::Resubscribe { room: room.clone(), members: vec![sender(), sender()] },
        OwnerOp::request(
            room.clone(),
            sender(),
            None,
            RequestKind::UserGroups { added: vec!["a".into()], removed: vec!["b".into(), "c".into()] },
        ),
        OwnerOp::request(
            room.clone(),
            sender(),
            Some("e".into()),
            RequestKind::Act(RoomAction::Edit { id: "m".into(), text: "t".into() }),
        ),
        OwnerOp::request(
            room.clone(),
            sender(),
            None,
            RequestKind::Act(RoomAction::React { id: "m".into(), emoji: "x".into(), add: false }),
        ),
        OwnerOp::request(
            room.clone(),
            sender(),
            None,
            RequestKind::Act(RoomAction::Upload { upload_id: "u".into(), name: "n".into(), size: 9, sent: 3 }),
        ),
        OwnerOp::request(
            room.clone(),
            sender(),
            None,
            RequestKind::Act(RoomAction::History { before_seq: Some(4), limit: 10 }),
        ),
        OwnerOp::request(
            room.clone(),
            sender(),
            Some("d".into()),
            RequestKind::ToUser(UserDelivery::Dm {
                id: "i".into(),
                ts: "t".into(),
                frame: Bytes::from_static(b"f"),
                offline_frame: Bytes::from_static(b"o"),
                client_id: Some("c".into()),
            }),
        ),
        OwnerOp::request(
            room.clone(),
            sender(),
            None,
            RequestKind::ToUser(UserDelivery::Call { call_id: "c".into(), frame: Bytes::from_static(b"f") }),
        ),
        OwnerOp::request(
            room,
            sender(),
            None,
            RequestKind::ToUser(UserDelivery::Copy {
                frame: Bytes::from_static(b"f"),
                exclude: ConnRef { node: NodeId::new("n"), conn_id: 2 },
            }),
        ),
    ];
    for op in ops {
        let frame = encode_op(&op, 1);
        assert_eq!(frame.flags, 1);
        assert_eq!(format!("{:?}", decode_op(frame.payload).unwrap()), format!("{op:?}"));
    }
}

#[test]
fn test_msgs_round_trip_and_deliver_is_sliced() {
    let room = RoomKey::new("t", "lobby");
    let frame = Bytes::from_static(br#"{"type":"chat.message"}"#);
    let msgs = vec![
        EdgeMsg::Deliver { room: room.clone(), exclude: Some(3), frame: frame.clone() },
        EdgeMsg::Reply { conn_id: 1, request_id: 2, frame: frame.clone(), is_error: true },
        EdgeMsg::Joined { room: room.clone(), conn_id: 1, request_id: 2, frames: vec![frame.clone(), frame.clone()] },
        EdgeMsg::Left { room, conn_id: 1, request_id: 0, frames: vec![] },
        EdgeMsg::Groups { conn_id: 4, added: vec![], removed: vec!["x".into()] },
        EdgeMsg::PresenceInfo { conn_id: 3, query_id: 4, entry: Bytes::from_static(b"{}") },
        EdgeMsg::Route(Box::new(OwnerOp::request(RoomKey::new("t", "r"), sender(), None, RequestKind::Members))),
    ];
    for msg in msgs {
        let encoded = encode_msg(&msg);
        let joined = Bytes::from([&encoded.payload[..], &encoded.tail[..]].concat());
        assert_eq!(format!("{:?}", decode_msg(joined).unwrap()), format!("{msg:?}"));
    }
}

#[test]
fn test_truncated_payloads_are_errors() {
    let op = OwnerOp::request(RoomKey::new("t", "r"), sender(), Some("x".into()), RequestKind::Members);
    let payload = encode_op(&op, 0).payload;
    for cut in 0..payload.len() {
        assert!(decode_op(payload.slice(..cut)).is_err(), "cut at {cut}");
    }
    assert!(decode_msg(Bytes::from_static(&[9, 9, 9])).is_err());
    assert!(decode_snapshot(Bytes::from_static(&[0xff; 7])).is_err());
}

#[test]
fn test_snapshot_round_trip() {
    let snapshot = snapshot();
    assert_eq!(decode_snapshot(encode_snapshot(&snapshot).payload).unwrap(), snapshot);
}

#[test]
fn test_meta_round_trip() {
    let meta = meta();
    let (key, decoded) = decode_meta(encode_meta(&RoomKey::new("t", "private:x"), &meta).payload).unwrap();
    assert_eq!(key, RoomKey::new("t", "private:x"));
    assert_eq!(format!("{decoded:?}"), format!("{meta:?}"));
}

#[test]
fn test_inbox_round_trip() {
    let inbox = inbox();
    assert_eq!(decode_inbox(encode_inbox(&inbox).payload).unwrap(), inbox);
}

#[test]
fn test_a_delivered_frame_is_not_copied() {
    let frame = Bytes::from_static(br#"{"type":"chat.message"}"#);
    let encoded = encode_msg(&EdgeMsg::Deliver { room: RoomKey::new("t", "r"), exclude: None, frame: frame.clone() });
    // Sent from its own buffer, sliced out of the received one.
    assert_eq!(encoded.tail.as_ptr(), frame.as_ptr());
    let received = Bytes::from([&encoded.payload[..], &encoded.tail[..]].concat());
    let Ok(EdgeMsg::Deliver { frame: delivered, .. }) = decode_msg(received.clone()) else { panic!("not a Deliver") };
    assert_eq!(delivered, frame);
    assert_eq!(delivered.as_ptr(), received[received.len() - frame.len()..].as_ptr());
}
