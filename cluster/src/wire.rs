//! The internal binary protocol: length-prefixed frames with a fixed little-endian header
//! and an opaque payload.
//!
//! ```text
//! u32 len        bytes after this field (header + payload)
//! u16 magic      0x5243 ("RC")
//! u8  version    PROTOCOL_VERSION
//! u8  kind       what the payload is (the user of this crate defines kinds >= 16)
//! u16 flags      per-kind flags (e.g. a hop count)
//! u16 reserved   zero
//! u64 id_a       ids whose meaning belongs to the kind (e.g. a connection id)
//! u64 id_b       (e.g. a request id)
//! ..  payload    len - 24 bytes, sliced out of the receive buffer without a copy
//! ```
//!
//! Parsing is split into [`check`] (is a whole frame buffered, how long is it) and
//! [`parse`], so that a partial frame is not an error.

use bytes::{Buf, Bytes, BytesMut};

pub const MAGIC: u16 = 0x5243;
pub const PROTOCOL_VERSION: u8 = 1;
/// Bytes of the fixed header after the length prefix.
pub const HEADER_LEN: usize = 24;
/// The largest frame a link accepts; larger ones end the link.
pub const MAX_FRAME_LEN: usize = 16 << 20;

/// Kinds below this are the link's own (handshake, keepalive); the user's start here.
pub const FIRST_USER_KIND: u8 = 16;
pub(crate) const KIND_HELLO: u8 = 1;
pub(crate) const KIND_PROOF: u8 = 2;
pub(crate) const KIND_PING: u8 = 3;
/// How many user frames of this link the sender of the receipt has handled (u64 LE): sent
/// back after each read batch (see [`crate::link`]). A node that predates it ignores it.
pub(crate) const KIND_RECEIPT: u8 = 4;

/// One frame of the internal protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerFrame {
    pub kind: u8,
    pub flags: u16,
    pub id_a: u64,
    pub id_b: u64,
    pub payload: Bytes,
    /// Sent right after `payload` from its own buffer (a shared client frame, say), so the
    /// sender copies nothing; the receiver sees one payload holding both.
    pub tail: Bytes,
}

impl PeerFrame {
    pub fn new(kind: u8, payload: Bytes) -> Self {
        PeerFrame { kind, flags: 0, id_a: 0, id_b: 0, payload, tail: Bytes::new() }
    }

    /// A frame whose payload is `head` followed by `tail`, without joining them.
    pub fn with_tail(kind: u8, head: Bytes, tail: Bytes) -> Self {
        PeerFrame { kind, flags: 0, id_a: 0, id_b: 0, payload: head, tail }
    }

    /// The length prefix and header of this frame; the payload follows separately so that
    /// it can be written from its own buffer (vectored write, no copy).
    pub fn encode_header(&self) -> [u8; 4 + HEADER_LEN] {
        let mut header = [0u8; 4 + HEADER_LEN];
        let len = (HEADER_LEN + self.payload.len() + self.tail.len()) as u32;
        header[0..4].copy_from_slice(&len.to_le_bytes());
        header[4..6].copy_from_slice(&MAGIC.to_le_bytes());
        header[6] = PROTOCOL_VERSION;
        header[7] = self.kind;
        header[8..10].copy_from_slice(&self.flags.to_le_bytes());
        header[10..12].copy_from_slice(&0u16.to_le_bytes());
        header[12..20].copy_from_slice(&self.id_a.to_le_bytes());
        header[20..28].copy_from_slice(&self.id_b.to_le_bytes());
        header
    }

    /// The whole frame in one buffer (handshake and tests).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.encode_header().to_vec();
        out.extend_from_slice(&self.payload);
        out.extend_from_slice(&self.tail);
        out
    }
}

/// Why a byte stream is not a valid frame sequence. Any of these ends the link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("bad magic {0:#06x}")]
    BadMagic(u16),
    #[error("unsupported protocol version {0}")]
    BadVersion(u8),
    #[error("frame length {0} out of bounds")]
    BadLength(usize),
}

/// Checks whether `buf` starts with a whole frame: `Ok(Some(total_len))` if so, `Ok(None)`
/// if more bytes are needed, `Err` if the bytes cannot be a frame.
pub fn check(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if !(HEADER_LEN..=MAX_FRAME_LEN).contains(&len) {
        return Err(FrameError::BadLength(len));
    }
    if buf.len() >= 6 {
        let magic = u16::from_le_bytes([buf[4], buf[5]]);
        if magic != MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
    }
    if buf.len() >= 7 && buf[6] != PROTOCOL_VERSION {
        return Err(FrameError::BadVersion(buf[6]));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    Ok(Some(4 + len))
}

/// Takes the first frame out of `buf` (which [`check`] said holds `total_len` bytes of it).
/// The payload shares the buffer's memory.
pub fn parse(buf: &mut BytesMut, total_len: usize) -> PeerFrame {
    let mut frame = buf.split_to(total_len).freeze();
    frame.advance(4 + 2 + 1);
    let kind = frame.get_u8();
    let flags = frame.get_u16_le();
    let _reserved = frame.get_u16_le();
    let id_a = frame.get_u64_le();
    let id_b = frame.get_u64_le();
    PeerFrame { kind, flags, id_a, id_b, payload: frame, tail: Bytes::new() }
}

/// Parses every whole frame in `buf`, leaving a partial one in place.
pub fn parse_all(buf: &mut BytesMut, out: &mut Vec<PeerFrame>) -> Result<(), FrameError> {
    while let Some(total_len) = check(buf)? {
        out.push(parse(buf, total_len));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PeerFrame {
        PeerFrame {
            kind: 20,
            flags: 3,
            id_a: 7,
            id_b: u64::MAX,
            payload: Bytes::from_static(b"hello"),
            tail: Bytes::new(),
        }
    }

    #[test]
    fn test_round_trip() {
        let mut buf = BytesMut::from(&sample().encode()[..]);
        let mut frames = Vec::new();
        parse_all(&mut buf, &mut frames).unwrap();
        assert_eq!(frames, vec![sample()]);
        assert!(buf.is_empty());
    }

    #[test]
    fn test_partial_frames_wait_for_more() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert_eq!(check(&bytes[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(check(&bytes), Ok(Some(bytes.len())));
    }

    #[test]
    fn test_garbage_is_refused() {
        assert!(matches!(check(b"\xff\xff\xff\xff\x43\x52\x01"), Err(FrameError::BadLength(_))));
        assert!(matches!(check(&[24, 0, 0, 0, 0xde, 0xad]), Err(FrameError::BadMagic(_))));
        let mut bytes = sample().encode();
        bytes[6] = 9;
        assert_eq!(check(&bytes), Err(FrameError::BadVersion(9)));
    }

    #[test]
    fn test_payload_shares_the_buffer() {
        let mut buf = BytesMut::from(&sample().encode()[..]);
        let base = buf.as_ptr() as usize;
        let total_len = check(&buf).unwrap().unwrap();
        let frame = parse(&mut buf, total_len);
        assert_eq!(frame.payload.as_ptr() as usize, base + 4 + HEADER_LEN);
    }

    #[test]
    fn test_random_bytes_never_panic() {
        let mut state = 0x9e3779b97f4a7c15u64;
        for _ in 0..10_000 {
            let len = (state % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let mut buf = BytesMut::from(&bytes[..]);
            let mut frames = Vec::new();
            let _ = parse_all(&mut buf, &mut frames);
        }
    }
}
