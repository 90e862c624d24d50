//! permessage-deflate (RFC 7692): the negotiation in the upgrade, the compression of server
//! messages and the inflation of client messages.
//!
//! The server always answers `server_no_context_takeover`: every server message is deflated
//! on its own, so a room message is deflated once, by the first writer that needs it
//! ([`SharedText`]), and the same compressed `Bytes` go to every connection that negotiated the
//! extension. The encoder ([`encoder`], not zlib: see there why) is one per thread, never one
//! per connection; inflating is flate2's (zlib-rs).
//!
//! Clients may keep their context: a connection's inflate context is allocated when its first
//! compressed frame arrives ([`Inflater`]), so a connection that negotiated the extension and
//! stays idle holds none (one pointer). It lives until the connection closes, or only for the
//! message when the client offered `client_no_context_takeover` (which the server then
//! confirms).

use std::cell::RefCell;
use std::num::NonZeroU8;
use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use flate2::{Decompress, FlushDecompress, Status};

use crate::metrics;

mod encoder;

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const EXTENSION: &str = "permessage-deflate";

/// The bytes a sync flush ends with, stripped from each compressed message and appended again
/// before inflating (RFC 7692 §7.2.1, §7.2.2).
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What a connection negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The client's `server_max_window_bits` (15 when it set none): the largest LZ77 window
    /// its inflater keeps.
    pub server_window_bits: u8,
    /// The client offered `client_no_context_takeover`: it compresses each message on its
    /// own, so the server drops its inflate context after each message.
    pub client_no_context_takeover: bool,
}

impl Negotiated {
    /// The `Sec-WebSocket-Extensions` value of the response.
    pub fn response(&self) -> String {
        let mut response = format!("{EXTENSION}; server_no_context_takeover");
        if self.client_no_context_takeover {
            response.push_str("; client_no_context_takeover");
        }
        if self.server_window_bits < 15 {
            response.push_str(&format!("; server_max_window_bits={}", self.server_window_bits));
        }
        response
    }

    /// The longest message whose compressed form this client can inflate.
    ///
    /// A message is deflated on its own, so its back-references reach at most its own
    /// length behind: one no longer than the client's window fits any window size. Longer
    /// ones go uncompressed to a client with a window under 15 bits.
    pub fn max_compressed_len(&self) -> usize {
        if self.server_window_bits >= 15 {
            usize::MAX
        } else {
            1 << self.server_window_bits
        }
    }
}

/// The first acceptable permessage-deflate offer of the request's `Sec-WebSocket-Extensions`
/// header values, if any (RFC 7692 §5, §7.1). An offer with an unknown, repeated or invalid
/// parameter is refused and the next one is tried.
pub fn negotiate<'a>(header_values: impl IntoIterator<Item = &'a str>) -> Option<Negotiated> {
    header_values.into_iter().flat_map(|value| split_outside_quotes(value, ',')).find_map(accept)
}

/// One offer: `permessage-deflate; param[=value]; ...`.
fn accept(offer: &str) -> Option<Negotiated> {
    let mut parts = split_outside_quotes(offer, ';').into_iter();
    let name = parts.next()?.trim();
    if !name.eq_ignore_ascii_case(EXTENSION) {
        return None;
    }
    let mut negotiated = Negotiated { server_window_bits: 15, client_no_context_takeover: false };
    let mut seen = [false; 4];
    for param in parts {
        let (key, value) = match param.split_once('=') {
            Some((key, value)) => (key.trim(), Some(param_value(value.trim())?)),
            None => (param.trim(), None),
        };
        let index = match key.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if value.is_none() => 0,
            "client_no_context_takeover" if value.is_none() => {
                negotiated.client_no_context_takeover = true;
                1
            }
            "server_max_window_bits" => {
                negotiated.server_window_bits = window_bits(value.as_deref()?)?;
                2
            }
            "client_max_window_bits" => {
                if let Some(value) = &value {
                    window_bits(value)?;
                }
                3
            }
            _ => return None,
        };
        if std::mem::replace(&mut seen[index], true) {
            return None;
        }
    }
    Some(negotiated)
}

/// A parameter's value: a token, or a quoted string whose content is a token (RFC 6455
/// §9.1).
fn param_value(raw: &str) -> Option<String> {
    let value = match raw.strip_prefix('"') {
        Some(rest) => {
            let inner = rest.strip_suffix('"')?;
            let mut unescaped = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => unescaped.push(chars.next()?),
                    '"' => return None,
                    c => unescaped.push(c),
                }
            }
            unescaped
        }
        None => raw.to_string(),
    };
    let is_token =
        !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
    is_token.then_some(value)
}

/// A window size: 8 to 15, digits without a leading zero (RFC 7692 §7.1.2).
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|bits| (8..=15).contains(bits))
}

/// Splits at `separator` where it is not inside a quoted string.
fn split_outside_quotes(text: &str, separator: char) -> Vec<&str> {
    let (mut parts, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (index, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

thread_local! {
    /// This thread's encoder (raw deflate, zlib's level 1 parse and codes), never reset.
    static ENCODER: RefCell<encoder::Encoder> = RefCell::new(encoder::Encoder::default());
}

/// `text` deflated on its own, sync-flushed, without the trailing `00 00 ff ff` (RFC 7692
/// §7.2.1); `None` when that is not shorter than `text` (it then goes uncompressed).
pub fn compress(text: &[u8]) -> Option<Bytes> {
    // Room for what is worth sending compressed (shorter than `text`) and the bit writer's
    // last word; an incompressible message grows past it, once.
    let mut compressed = Vec::with_capacity(text.len() + 8);
    ENCODER.with(|encoder| encoder.borrow_mut().deflate(text, &mut compressed));
    metrics::frame_compressed(text.len(), compressed.len());
    (compressed.len() < text.len()).then(|| Bytes::from(compressed))
}

/// A server frame shared by every local recipient of a room message, with its compressed
/// form made once, by the first writer whose connection wants it.
#[derive(Debug)]
pub struct SharedText {
    pub text: Bytes,
    deflated: OnceLock<Option<Bytes>>,
}

impl SharedText {
    pub fn new(text: Bytes) -> Self {
        SharedText { text, deflated: OnceLock::new() }
    }

    /// The compressed form (computed on the first call); `None` when not worth it.
    pub fn deflated(&self) -> Option<&Bytes> {
        self.deflated.get_or_init(|| compress(&self.text)).as_ref()
    }
}

/// What a connection's writer compresses (8 bytes, as `Option` too: it lives in every
/// connection's task).
#[derive(Debug, Clone, Copy)]
pub struct DeflateOut {
    /// Messages shorter than this go uncompressed (`--compression-min-bytes`, saturated).
    min_bytes: u32,
    /// The client's window: longer messages go uncompressed ([`Negotiated::max_compressed_len`]).
    window_bits: NonZeroU8,
}

impl DeflateOut {
    pub fn new(negotiated: &Negotiated, min_bytes: usize) -> Self {
        DeflateOut {
            min_bytes: u32::try_from(min_bytes).unwrap_or(u32::MAX),
            window_bits: NonZeroU8::new(negotiated.server_window_bits).unwrap_or(NonZeroU8::MAX),
        }
    }

    pub fn wants(&self, len: usize) -> bool {
        let negotiated = Negotiated { server_window_bits: self.window_bits.get(), client_no_context_takeover: false };
        len >= self.min_bytes as usize && len <= negotiated.max_compressed_len()
    }
}

/// Why a compressed message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates past the message size limit (close 1009); no more than the limit was
    /// allocated.
    TooLarge,
    /// Not valid deflate data (close 1007).
    Corrupt,
}

/// A connection's inflate side: nothing until its first compressed message.
#[derive(Default)]
pub struct Inflater {
    /// Boxed and made on demand: an idle connection holds only this pointer.
    context: Option<Box<Decompress>>,
}

impl Inflater {
    /// True while an inflate context is held.
    #[cfg(test)]
    fn has_context(&self) -> bool {
        self.context.is_some()
    }

    /// Inflates one whole message (its frames' payloads joined) into at most `max` bytes.
    /// `keep_context`: the client takes its context over to the next message.
    pub fn inflate(&mut self, compressed: &[u8], max: usize, keep_context: bool) -> Result<BytesMut, InflateError> {
        let context = self.context.get_or_insert_with(|| Box::new(Decompress::new(false)));
        let result = inflate_into(context, compressed, max);
        if result.is_err() || !keep_context {
            self.context = None;
        }
        if result.is_ok() {
            metrics::frame_inflated();
        }
        // A unique `Bytes` of a `Vec` turns into a `BytesMut` without a copy.
        result.map(|out| Bytes::from(out).try_into_mut().unwrap_or_else(|shared| BytesMut::from(&shared[..])))
    }
}

fn inflate_into(context: &mut Decompress, compressed: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
    // Room for the whole message or a guess, never more than the limit allows plus the one
    // byte that tells a message over it.
    let cap = max.saturating_add(1);
    let mut out = Vec::with_capacity(cap.min(compressed.len().saturating_mul(4).max(256)));
    let mut ended = false;
    for part in [compressed, &SYNC_TAIL[..]] {
        let mut offset = 0;
        while !ended {
            let before_in = context.total_in();
            let before_out = out.len();
            let status = context
                .decompress_vec(&part[offset..], &mut out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            offset += (context.total_in() - before_in) as usize;
            if out.len() > max {
                return Err(InflateError::TooLarge);
            }
            if status == Status::StreamEnd {
                // A final block ended the stream: nothing after it belongs to it.
                ended = true;
                break;
            }
            if out.len() == out.capacity() {
                if out.capacity() >= cap {
                    return Err(InflateError::TooLarge);
                }
                let grown = out.capacity().saturating_mul(2).clamp(256, cap);
                out.reserve_exact(grown - out.len());
                continue;
            }
            if offset >= part.len() || (context.total_in() == before_in && out.len() == before_out) {
                break;
            }
        }
    }
    if ended {
        // The stream is over: the next message starts a new one.
        context.reset(false);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(value: &str) -> Option<Negotiated> {
        negotiate([value])
    }

    #[test]
    fn test_rfc7692_hello_compressed() {
        // §7.2.3.1: "Hello" with no compression context.
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let mut inflater = Inflater::default();
        assert_eq!(&inflater.inflate(&hello, 100, true).unwrap()[..], b"Hello");
        // What the server sends for "Hello" inflates back (its bytes depend on the level).
        let ours = compress(b"Hello Hello Hello Hello Hello Hello").unwrap();
        assert!(!ours.ends_with(&SYNC_TAIL));
        assert_eq!(
            &Inflater::default().inflate(&ours, 100, false).unwrap()[..],
            b"Hello Hello Hello Hello Hello Hello"
        );
    }

    #[test]
    fn test_rfc7692_shared_context() {
        // §7.2.3.2: the second "Hello" refers back into the first message.
        let mut inflater = Inflater::default();
        let first = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let second = [0xf2, 0x00, 0x11, 0x00, 0x00];
        assert_eq!(&inflater.inflate(&first, 100, true).unwrap()[..], b"Hello");
        assert!(inflater.has_context());
        assert_eq!(&inflater.inflate(&second, 100, true).unwrap()[..], b"Hello");
        // Without the context the back-reference is invalid.
        assert_eq!(Inflater::default().inflate(&second, 100, true), Err(InflateError::Corrupt));
    }

    #[test]
    fn test_rfc7692_no_compression_block() {
        // §7.2.3.3: "Hello" in a stored block.
        let stored = [0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00];
        assert_eq!(&Inflater::default().inflate(&stored, 100, true).unwrap()[..], b"Hello");
        // §7.2.3.4: with BFINAL set; the context starts again afterwards.
        let final_block = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        let mut inflater = Inflater::default();
        assert_eq!(&inflater.inflate(&final_block, 100, true).unwrap()[..], b"Hello");
        assert_eq!(&inflater.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100, true).unwrap()[..], b"Hello");
    }

    #[test]
    fn test_inflate_is_capped() {
        let zeros = vec![0u8; 1 << 20];
        let bomb = compress(&zeros).unwrap();
        assert!(bomb.len() < 16 * 1024, "{}", bomb.len());
        assert_eq!(Inflater::default().inflate(&bomb, 64 * 1024, true), Err(InflateError::TooLarge));
        assert_eq!(Inflater::default().inflate(&bomb, 1 << 20, true).unwrap().len(), 1 << 20);
        assert_eq!(Inflater::default().inflate(&[0xff, 0xff, 0xff], 100, true), Err(InflateError::Corrupt));
    }

    #[test]
    fn test_context_is_made_lazily_and_dropped_without_takeover() {
        let mut inflater = Inflater::default();
        assert!(!inflater.has_context());
        inflater.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100, false).unwrap();
        assert!(!inflater.has_context());
        assert!(std::mem::size_of::<Inflater>() <= 8);
    }

    #[test]
    fn test_compress_round_trip_and_small_messages() {
        let text = br#"{"type":"chat.message","data":{"room":"lobby","text":"hello hello hello hello"}}"#;
        let compressed = compress(text).unwrap();
        assert!(compressed.len() < text.len());
        assert_eq!(&Inflater::default().inflate(&compressed, 1000, false).unwrap()[..], &text[..]);
        assert_eq!(compress(b"ab"), None, "not worth it");
    }

    #[test]
    fn test_negotiation() {
        let plain = Negotiated { server_window_bits: 15, client_no_context_takeover: false };
        assert_eq!(offer("permessage-deflate"), Some(plain));
        assert_eq!(offer("permessage-deflate; client_max_window_bits"), Some(plain));
        assert_eq!(offer("permessage-deflate; client_max_window_bits=10"), Some(plain));
        assert_eq!(offer("permessage-deflate; client_max_window_bits=\"10\""), Some(plain));
        assert_eq!(offer("Permessage-Deflate; Server_No_Context_Takeover"), Some(plain));
        for bits in 8..=15 {
            let value = format!("permessage-deflate; server_max_window_bits={bits}");
            assert_eq!(offer(&value).unwrap().server_window_bits, bits);
        }
        let refused = [
            "x-webkit-deflate-frame",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; client_max_window_bits=\"1 0\"",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; unknown",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        ];
        for value in refused {
            assert_eq!(offer(value), None, "{value}");
        }
        // The first acceptable offer wins, across offers and header lines.
        let several =
            "permessage-deflate; foo=\"a,b\", permessage-deflate; server_max_window_bits=9, permessage-deflate";
        assert_eq!(offer(several).unwrap().server_window_bits, 9);
        let lines = negotiate(["foo, permessage-deflate; bar", "permessage-deflate; client_no_context_takeover"]);
        assert!(lines.unwrap().client_no_context_takeover);
    }

    #[test]
    fn test_writer_settings_are_small() {
        assert_eq!(std::mem::size_of::<Option<DeflateOut>>(), 8);
        let negotiated = offer("permessage-deflate; server_max_window_bits=9").unwrap();
        let out = DeflateOut::new(&negotiated, 100);
        assert!(!out.wants(99) && out.wants(100) && out.wants(512) && !out.wants(513));
        let out = DeflateOut::new(&offer("permessage-deflate").unwrap(), usize::MAX);
        assert!(!out.wants(1 << 20));
    }

    #[test]
    fn test_response() {
        let negotiated = offer("permessage-deflate; client_no_context_takeover; server_max_window_bits=10").unwrap();
        assert_eq!(
            negotiated.response(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"
        );
        assert_eq!(negotiated.max_compressed_len(), 1024);
        assert_eq!(offer("permessage-deflate").unwrap().response(), "permessage-deflate; server_no_context_takeover");
    }

    /// A rendered `chat.message` of about 1.3 KB: the load harness's padding words after a
    /// stamp, in the envelope the owner renders.
    fn chat_message(n: u64) -> Vec<u8> {
        // The harness's padding words (`loadtest/src/proto.rs`; that crate is not a dependency).
        const WORDS: &str = "the meeting moved to thursday afternoon can you send me latest draft before lunch thanks i think we should ship it after review sounds good let's sync tomorrow morning about budget numbers";
        let words: Vec<&str> = WORDS.split(' ').collect();
        let mut text = format!("t:{}:1:{n}:", 1_764_000_000_000_000_000u64 + n * 1_234_567);
        let end = text.len() + 1000;
        let mut state = (n << 20) ^ 1 ^ 0x9e37_79b9_7f4a_7c15;
        while text.len() < end {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            text.push_str(words[(state % words.len() as u64) as usize]);
            text.push(' ');
        }
        text.truncate(end);
        format!(
            r#"{{"type":"chat.message","data":{{"room":"room-00017","id":"01JDK3Q{n:019}","seq":{n},"ts":"2026-12-03T09:10:04.123Z","from":{{"user_id":"load-pub-0","name":"load-pub-0"}},"text":"{text}","attachments":[],"recovered":false}},"ts":"2026-12-03T09:10:04.123Z"}}"#
        )
        .into_bytes()
    }

    /// The encoder compresses chat messages about as well as zlib-rs at level 1 (what it was
    /// before `encoder`), and what each costs per message is printed, with no assertion on
    /// time. As a micro-benchmark: `RINGCAST_BENCH_ITERATIONS=20000 cargo test --release
    /// --lib test_compress_matches_zlib_level_1 -- --nocapture`.
    #[test]
    fn test_compress_matches_zlib_level_1() {
        use std::time::Instant;

        use flate2::{Compress, Compression, FlushCompress};

        let messages: Vec<Vec<u8>> = (0..64).map(chat_message).collect();
        let plain: usize = messages.iter().map(Vec::len).sum();
        let mut zlib = Compress::new(Compression::fast(), false);
        let mut zlib_deflate = |text: &[u8]| {
            zlib.reset();
            let mut out = Vec::with_capacity(text.len() + 64);
            zlib.compress_vec(text, &mut out, FlushCompress::Sync).expect("deflate");
            assert!(zlib.total_in() as usize == text.len() && out.len() < out.capacity());
            out.truncate(out.len() - SYNC_TAIL.len());
            out
        };
        let zlib_bytes: usize = messages.iter().map(|text| zlib_deflate(text).len()).sum();
        let ours_bytes: usize = messages.iter().map(|text| compress(text).map_or(text.len(), |out| out.len())).sum();
        println!(
            "{} messages of {} bytes on average: zlib-rs level 1 {:.3} of plain, encoder {:.3}",
            messages.len(),
            plain / messages.len(),
            zlib_bytes as f64 / plain as f64,
            ours_bytes as f64 / plain as f64
        );
        assert!(ours_bytes as f64 <= zlib_bytes as f64 * 1.05, "encoder {ours_bytes} bytes, zlib-rs {zlib_bytes}");
        let iterations: usize =
            std::env::var("RINGCAST_BENCH_ITERATIONS").ok().and_then(|n| n.parse().ok()).unwrap_or(200);
        for round in 0..5 {
            let started = Instant::now();
            for i in 0..iterations {
                std::hint::black_box(zlib_deflate(std::hint::black_box(&messages[i % messages.len()])));
            }
            let zlib_ns = started.elapsed().as_nanos() as f64 / iterations as f64;
            let started = Instant::now();
            for i in 0..iterations {
                std::hint::black_box(compress(std::hint::black_box(&messages[i % messages.len()])));
            }
            let ours_ns = started.elapsed().as_nanos() as f64 / iterations as f64;
            println!(
                "round {round}: zlib-rs level 1 + reset {zlib_ns:.0} ns/message, compress() {ours_ns:.0} ns/message"
            );
        }
    }
}
