//! RFC 6455 close rules (Autobahn case group 7): a client's close frame is answered with 1000
//! when it is well formed, 1002 when its payload is one byte or its code is one an endpoint
//! may not send, 1007 when its reason is not UTF-8. Each case against a real socket, with an
//! observer in the same room that must not notice.

mod common;

use common::*;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use tokio_tungstenite::tungstenite::Message;

/// Sends a close frame with exactly `payload` and returns the code the server closed with.
async fn close_with(client: &mut Client, payload: Vec<u8>) -> Option<u16> {
    let header = FrameHeader { is_final: true, opcode: OpCode::Control(Control::Close), ..FrameHeader::default() };
    let frame = Frame::from_payload(header, payload.into());
    futures_util::SinkExt::send(&mut client.ws, Message::Frame(frame)).await.unwrap();
    client.expect_close().await
}

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    payload
}

/// Each code is sent by a client of its own; the server answers `expected` every time and the
/// observer notices nothing.
async fn closes_with(codes: &[u16], reason: &[u8], expected: u16) {
    let server = Server::start();
    let (_client, mut observer) = pair(&server).await;
    for &code in codes {
        let mut client = server.client("alice").await;
        assert_eq!(close_with(&mut client, close_payload(code, reason)).await, Some(expected), "close code {code}");
    }
    observer_unaffected(&server, &mut observer).await;
}

#[tokio::test]
async fn test_close_with_a_one_byte_payload_is_a_protocol_error() {
    let server = Server::start();
    let (mut client, mut observer) = pair(&server).await;
    assert_eq!(close_with(&mut client, vec![0x03]).await, Some(1002));
    assert_eq!(observer.recv_type("member.left").await["data"]["user_id"], "alice");
    observer_unaffected(&server, &mut observer).await;
}

#[tokio::test]
async fn test_close_codes_below_1000_are_protocol_errors() {
    closes_with(&[0, 1, 999], b"", 1002).await;
}

#[tokio::test]
async fn test_reserved_close_codes_1004_to_1006_and_1015_are_protocol_errors() {
    closes_with(&[1004, 1005, 1006, 1015], b"", 1002).await;
}

#[tokio::test]
async fn test_unassigned_close_codes_1016_to_2999_are_protocol_errors() {
    closes_with(&[1016, 1100, 2000, 2999], b"", 1002).await;
}

#[tokio::test]
async fn test_close_codes_of_5000_and_above_are_protocol_errors() {
    closes_with(&[5000, 5555, 65535], b"", 1002).await;
}

#[tokio::test]
async fn test_close_reason_that_is_not_utf8_closes_1007() {
    let server = Server::start();
    let (mut client, mut observer) = pair(&server).await;
    let payload = close_payload(
        1000,
        &[b'o', b'k', 0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80],
    );
    assert_eq!(close_with(&mut client, payload).await, Some(1007));
    assert_eq!(observer.recv_type("member.left").await["data"]["user_id"], "alice");
    observer_unaffected(&server, &mut observer).await;
}

#[tokio::test]
async fn test_well_formed_closes_are_answered_1000() {
    // The codes an endpoint may send, with a UTF-8 reason (one of them multi-byte).
    let codes = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999];
    closes_with(&codes, "bye κόσμε".as_bytes(), 1000).await;
    // And a close with no payload at all.
    let server = Server::start();
    let mut client = server.client("alice").await;
    assert_eq!(close_with(&mut client, Vec::new()).await, Some(1000));
}
