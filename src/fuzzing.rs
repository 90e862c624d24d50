//! The decoders that read bytes from outside, as one entry point each for the fuzz targets
//! (`fuzz/`) and the corpus replay test (`tests/fuzz_corpus.rs`). Not an API: each function
//! feeds `data` to the real decoder and checks what must hold of any input (no panic, and what
//! decodes encodes back to the same bytes where the format allows).

use bytes::{Bytes, BytesMut};
use ringcast_cluster::wire;

use crate::edge::wsframe;
use crate::{peer, protocol, store};

/// The largest client payload the fuzzed decoder accepts (the default message limit).
const MAX_PAYLOAD: usize = 64 * 1024;

/// Client WebSocket frames (`edge/wsframe.rs`): every whole frame in `data`, as a connection
/// reads them (a compressed one inflated, `edge/deflate.rs`), and the close code a close frame
/// would be answered with.
pub fn client_frames(data: &[u8]) {
    // The input as an upgrade's Sec-WebSocket-Extensions value, too.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::edge::deflate::negotiate([text]);
    }
    let mut buf = BytesMut::from(data);
    let mut inflater = crate::edge::deflate::Inflater::default();
    while let Ok(Some(frame)) = wsframe::decode(&mut buf, MAX_PAYLOAD, data.first().is_some_and(|b| b & 1 == 1)) {
        assert!(frame.payload.len() <= MAX_PAYLOAD);
        if frame.compressed {
            if let Ok(inflated) = inflater.inflate(&frame.payload, MAX_PAYLOAD, true) {
                assert!(inflated.len() <= MAX_PAYLOAD, "inflated past the cap");
            }
        }
        if frame.opcode == wsframe::OPCODE_CLOSE {
            let _ = crate::edge::session::close_reply(&frame.payload);
        }
    }
}

/// A client's JSON envelope and request (`protocol/`), parsed in place as a connection does.
pub fn client_request(data: &[u8]) {
    let mut buf = data.to_vec();
    let parsed = protocol::parse(&mut buf);
    if let Some(op_id) = &parsed.op_id {
        assert!(op_id.chars().count() <= 64, "op_id over its limit");
    }
}

/// A peer link's byte stream (`cluster/src/wire.rs`) and every payload decoder of a peer frame
/// (`peer/`): the frames in `data`, and `data` itself as each kind of payload. What decodes
/// encodes back to the bytes it was read from (a prefix of `data`: a decoder leaves what
/// follows the value alone), or, for a value of an older build that ends before the fields
/// added at its end, to those bytes and the new fields' defaults.
pub fn peer_frames(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    let mut frames = Vec::new();
    let _ = wire::parse_all(&mut buf, &mut frames);
    let payload = Bytes::copy_from_slice(data);
    let read_back = |encoded: &[u8]| data.starts_with(encoded) || encoded.starts_with(data);
    if let Ok(op) = peer::decode_op(payload.clone()) {
        assert!(read_back(&peer::encode_op(&op, 0).payload), "an op encodes back to its bytes");
    }
    if let Ok(msg) = peer::decode_msg(payload.clone()) {
        let frame = peer::encode_msg(&msg);
        assert!(
            data.starts_with(&[&frame.payload[..], &frame.tail[..]].concat()),
            "a message encodes back to its bytes"
        );
    }
    if let Ok(snapshot) = peer::decode_snapshot(payload.clone()) {
        assert!(read_back(&peer::encode_snapshot(&snapshot).payload), "a snapshot encodes back to its bytes");
    }
    if let Ok(inbox) = peer::decode_inbox(payload.clone()) {
        assert!(read_back(&peer::encode_inbox(&inbox).payload), "an inbox encodes back to its bytes");
    }
    if let Ok((key, meta)) = peer::decode_meta(payload.clone()) {
        assert!(
            data.starts_with(&peer::encode_meta(&key, &meta).payload),
            "moderation state encodes back to its bytes"
        );
    }
    let _ = peer::decode_admin(&ringcast_cluster::PeerFrame::new(peer::KIND_ADMIN, payload));
    let _ = peer::decode_takeover_done(data);
}

/// The records a Redis store reads back (`store/record.rs`): messages, bans, inbox entries and
/// DM idempotency keys (`data` split at its first NUL into field and value for the last).
pub fn store_records(data: &[u8]) {
    let _ = store::record::decode_message(data);
    let _ = store::record::decode_bans(data);
    let _ = store::record::decode_inbox(data);
    let (field, value) = match data.iter().position(|&byte| byte == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let _ = store::record::decode_dm_sent(field, value);
}
