//! Decoding of client WebSocket frames (RFC 6455 §5) straight out of a connection's read
//! buffer.
//!
//! ringcast reads client frames itself instead of through fastwebsockets' read half, whose
//! fixed 8 KiB buffer would stay allocated for every idle connection: here the buffer is
//! allocated when bytes arrive and freed as soon as it is drained (see `session.rs`).
//! fastwebsockets still does the upgrade handshake and the SIMD unmasking.

use bytes::{Buf, BytesMut};

pub const OPCODE_CONTINUATION: u8 = 0x0;
pub const OPCODE_TEXT: u8 = 0x1;
pub const OPCODE_BINARY: u8 = 0x2;
pub const OPCODE_CLOSE: u8 = 0x8;
pub const OPCODE_PING: u8 = 0x9;
pub const OPCODE_PONG: u8 = 0xA;

/// Whether an endpoint may send close code `code` (RFC 6455 §7.4.1, §7.4.2 and the IANA
/// registry): 1000–1003 and 1007–1014 are defined, 3000–4999 are for libraries and
/// applications; 1004–1006 and 1015 are reserved, the rest unassigned or invalid.
pub fn is_sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// One frame from a client, unmasked.
#[derive(Debug, PartialEq, Eq)]
pub struct ClientFrame {
    pub fin: bool,
    pub opcode: u8,
    /// RSV1 set: the first frame of a compressed message (permessage-deflate).
    pub compressed: bool,
    /// A view into the read buffer: parsing it in place needs no copy.
    pub payload: BytesMut,
}

/// Why the bytes are not an acceptable frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// A protocol violation (close 1002) with what was wrong.
    Protocol(&'static str),
    /// A payload over the message size limit (close 1009); nothing of it was buffered.
    TooLarge,
}

/// Takes the first whole frame out of `buf`: `Ok(None)` when more bytes are needed (room for
/// the rest of the frame is reserved), `Err` when the bytes cannot be accepted.
///
/// `deflate`: the connection negotiated permessage-deflate, so RSV1 may mark the first frame
/// of a data message (never a control or continuation frame: RFC 7692 §6.1).
pub fn decode(buf: &mut BytesMut, max_payload: usize, deflate: bool) -> Result<Option<ClientFrame>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (first, second) = (buf[0], buf[1]);
    if first & 0x30 != 0 {
        return Err(FrameError::Protocol("reserved bits set"));
    }
    let fin = first & 0x80 != 0;
    let opcode = first & 0x0F;
    if !matches!(opcode, OPCODE_CONTINUATION | OPCODE_TEXT | OPCODE_BINARY | OPCODE_CLOSE | OPCODE_PING | OPCODE_PONG) {
        return Err(FrameError::Protocol("unknown opcode"));
    }
    let compressed = first & 0x40 != 0;
    if compressed && !(deflate && matches!(opcode, OPCODE_TEXT | OPCODE_BINARY)) {
        return Err(FrameError::Protocol("rsv1 set"));
    }
    if second & 0x80 == 0 {
        return Err(FrameError::Protocol("client frames must be masked"));
    }
    let (extended, short_len) = match second & 0x7F {
        126 => (2, None),
        127 => (8, None),
        len => (0, Some(len as u64)),
    };
    let header_len = 2 + extended + 4;
    if buf.len() < 2 + extended {
        return Ok(None);
    }
    let payload_len = match short_len {
        Some(len) => len,
        None if extended == 2 => u16::from_be_bytes([buf[2], buf[3]]) as u64,
        None => u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes checked")),
    };
    if opcode >= OPCODE_CLOSE {
        if !fin {
            return Err(FrameError::Protocol("fragmented control frame"));
        }
        if payload_len > 125 {
            return Err(FrameError::Protocol("control frame over 125 bytes"));
        }
    }
    if payload_len > max_payload as u64 {
        return Err(FrameError::TooLarge);
    }
    if buf.len() < header_len {
        return Ok(None);
    }
    let total = header_len + payload_len as usize;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let mask: [u8; 4] = buf[header_len - 4..header_len].try_into().expect("4 bytes checked");
    let mut frame = buf.split_to(total);
    frame.advance(header_len);
    fastwebsockets::unmask(&mut frame, mask);
    Ok(Some(ClientFrame { fin, opcode, compressed, payload: frame }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_sendable_close_codes() {
        for code in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999] {
            assert!(is_sendable_close_code(code), "{code}");
        }
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
            assert!(!is_sendable_close_code(code), "{code}");
        }
    }

    fn masked(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            len if len < 126 => out.push(0x80 | len as u8),
            len if len <= 0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, byte)| byte ^ mask[i % 4]));
        out
    }

    #[test]
    fn test_decodes_frames_of_every_length_class() {
        for len in [0, 5, 125, 126, 300, 65_535, 65_536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut buf = BytesMut::from(&masked(OPCODE_TEXT, true, &payload)[..]);
            let frame = decode(&mut buf, 1 << 20, false).unwrap().unwrap();
            assert_eq!(frame.opcode, OPCODE_TEXT);
            assert!(frame.fin);
            assert_eq!(&frame.payload[..], &payload[..], "len {len}");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn test_partial_frames_wait() {
        let bytes = masked(OPCODE_TEXT, true, b"hello world");
        for cut in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..cut]);
            assert_eq!(decode(&mut buf, 1024, false), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn test_two_frames_in_one_read() {
        let mut bytes = masked(OPCODE_TEXT, false, b"ab");
        bytes.extend(masked(OPCODE_CONTINUATION, true, b"cd"));
        let mut buf = BytesMut::from(&bytes[..]);
        let first = decode(&mut buf, 1024, false).unwrap().unwrap();
        let second = decode(&mut buf, 1024, false).unwrap().unwrap();
        assert_eq!((&first.payload[..], first.fin), (&b"ab"[..], false));
        assert_eq!((&second.payload[..], second.opcode, second.fin), (&b"cd"[..], OPCODE_CONTINUATION, true));
    }

    #[test]
    fn test_refusals() {
        let too_large = masked(OPCODE_TEXT, true, &[0u8; 200]);
        assert_eq!(decode(&mut BytesMut::from(&too_large[..4]), 100, false), Err(FrameError::TooLarge));
        let mut unmasked = masked(OPCODE_TEXT, true, b"x");
        unmasked[1] &= 0x7F;
        assert!(matches!(decode(&mut BytesMut::from(&unmasked[..]), 100, false), Err(FrameError::Protocol(_))));
        let mut reserved = masked(OPCODE_TEXT, true, b"x");
        reserved[0] |= 0x40;
        assert!(matches!(decode(&mut BytesMut::from(&reserved[..]), 100, false), Err(FrameError::Protocol(_))));
        let fragmented_ping = masked(OPCODE_PING, false, b"x");
        assert!(matches!(decode(&mut BytesMut::from(&fragmented_ping[..]), 100, false), Err(FrameError::Protocol(_))));
        let long_ping = masked(OPCODE_PING, true, &[0u8; 126]);
        assert!(matches!(decode(&mut BytesMut::from(&long_ping[..]), 1000, false), Err(FrameError::Protocol(_))));
        let mut bad_opcode = masked(OPCODE_TEXT, true, b"x");
        bad_opcode[0] = 0x83;
        assert!(matches!(decode(&mut BytesMut::from(&bad_opcode[..]), 100, false), Err(FrameError::Protocol(_))));
    }

    #[test]
    fn test_rsv1_only_on_data_frames_of_deflate_connections() {
        let mut text = masked(OPCODE_TEXT, false, b"x");
        text[0] |= 0x40;
        assert!(matches!(decode(&mut BytesMut::from(&text[..]), 100, false), Err(FrameError::Protocol(_))));
        let frame = decode(&mut BytesMut::from(&text[..]), 100, true).unwrap().unwrap();
        assert!(frame.compressed && !frame.fin);
        for opcode in [OPCODE_CONTINUATION, OPCODE_PING, OPCODE_PONG, OPCODE_CLOSE] {
            let mut bytes = masked(opcode, true, b"");
            bytes[0] |= 0x40;
            assert!(matches!(decode(&mut BytesMut::from(&bytes[..]), 100, true), Err(FrameError::Protocol(_))));
        }
        for bit in [0x20, 0x10] {
            let mut bytes = masked(OPCODE_TEXT, true, b"x");
            bytes[0] |= bit;
            assert!(matches!(decode(&mut BytesMut::from(&bytes[..]), 100, true), Err(FrameError::Protocol(_))));
        }
    }

    #[test]
    fn test_random_bytes_never_panic() {
        let mut state = 0x853c49e6748fea9bu64;
        for _ in 0..20_000 {
            let len = (state % 40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = decode(&mut buf, 1 << 16, false) {}
        }
    }
}
