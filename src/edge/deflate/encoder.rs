//! A raw DEFLATE encoder (RFC 1951) for one server message at a time: greedy LZ77 with one
//! hash probe per position and the fixed Huffman codes, the same parse and codes as zlib-ng's
//! and zlib-rs's level 1 (`deflate_quick`), without their per-message cost.
//!
//! Why not zlib-rs: every message is deflated on its own (`server_no_context_takeover`), so
//! its compressor is reset before each one, and a reset zeroes its hash heads, 65,536
//! two-byte entries (128 KiB, fixed whatever the window or memory level), for a 1 KiB message.
//! Here the hash table is never cleared, and small: an entry is only a hint. It holds the low
//! 16 bits of a position; the candidate it names in the current message is used only when it
//! lies behind the current position, within the window, and its four bytes are the same. An
//! entry left by an earlier message (or by a position 64 KiB back) names some position of
//! this message that either passes that check, and is then a true match, or is ignored.

/// log2 of the hash table's entries (`u16` each: 4 Ki entries, 8 KiB per thread). On 1.3 KB
/// chat messages 12 to 16 bits compress the same within 0.2 % (10 bits: 2 % worse), and in the
/// server a fifth of the encoder's time is the table's cache misses (between two messages the
/// server's other work evicts it), so a smaller table is cheaper.
const HASH_BITS: u32 = 12;
/// The farthest a match may refer back (RFC 1951 §3.2.5). A message no longer than the
/// client's window never refers back further than the window, whatever the window bits.
const WINDOW: usize = 32 * 1024;
/// Candidates are compared on 4 bytes (a 3-byte match saves little with the fixed codes).
const MIN_MATCH: usize = 4;
const MAX_MATCH: usize = 258;

/// Length symbols 257..=285: the smallest length of each and its extra bits (RFC 1951
/// §3.2.5).
const LENGTH_BASE: [u16; 29] =
    [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
const LENGTH_EXTRA: [u8; 29] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];

/// The fixed literal/length code of `symbol` (RFC 1951 §3.2.6), bit-reversed (Huffman codes
/// go into the stream most significant bit first), and its length.
const fn fixed_code(symbol: u16) -> (u32, u32) {
    let (code, len) = match symbol {
        0..=143 => (0x30 + symbol as u32, 8),
        144..=255 => (0x190 + (symbol as u32 - 144), 9),
        256..=279 => (symbol as u32 - 256, 7),
        _ => (0xc0 + (symbol as u32 - 280), 8),
    };
    (reverse(code, len), len)
}

const fn reverse(code: u32, len: u32) -> u32 {
    code.reverse_bits() >> (32 - len)
}

/// A literal's bits and their count, packed as `bits << 8 | count`.
const LITERALS: [u32; 256] = {
    let mut table = [0; 256];
    let mut symbol = 0;
    while symbol < 256 {
        let (code, len) = fixed_code(symbol as u16);
        table[symbol] = code << 8 | len;
        symbol += 1;
    }
    table
};

/// A match length's (3..=258) symbol code and extra bits, packed as `bits << 8 | count`.
const LENGTHS: [u32; MAX_MATCH + 1] = {
    let mut table = [0; MAX_MATCH + 1];
    let mut len = 3;
    while len <= MAX_MATCH {
        let mut index = 28;
        while LENGTH_BASE[index] as usize > len {
            index -= 1;
        }
        let (code, code_len) = fixed_code(257 + index as u16);
        let extra = (len - LENGTH_BASE[index] as usize) as u32;
        table[len] = (code | extra << code_len) << 8 | (code_len + LENGTH_EXTRA[index] as u32);
        len += 1;
    }
    table
};

/// The fixed code of end-of-block (symbol 256: seven zero bits).
const END_OF_BLOCK: (u32, u32) = fixed_code(256);

/// The fixed distance codes (5 bits, RFC 1951 §3.2.6), bit-reversed: a table, since
/// `reverse_bits` is some twenty instructions on x86-64.
const DISTANCE_CODES: [u8; 30] = {
    let mut table = [0; 30];
    let mut symbol = 0;
    while symbol < 30 {
        table[symbol] = reverse(symbol as u32, 5) as u8;
        symbol += 1;
    }
    table
};

/// A distance's (1..=32768) code and extra bits.
#[inline(always)]
fn distance_bits(dist: usize) -> (u64, u32) {
    debug_assert!((1..=WINDOW).contains(&dist));
    let d = (dist - 1) as u32;
    if d < 4 {
        return (u64::from(DISTANCE_CODES[d as usize]), 5);
    }
    // Symbols 4 and up come in pairs per power of two, with `log2 - 1` extra bits.
    let log2 = 31 - d.leading_zeros();
    let extra_bits = log2 - 1;
    let symbol = 2 * log2 + ((d >> extra_bits) & 1);
    let extra = d & ((1 << extra_bits) - 1);
    (u64::from(DISTANCE_CODES[symbol as usize]) | u64::from(extra) << 5, 5 + extra_bits)
}

/// An LSB-first bit writer over a `Vec`.
struct Bits<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    count: u32,
}

impl Bits<'_> {
    /// Appends the low `count` bits of `bits` (at most 32).
    #[inline(always)]
    fn put(&mut self, bits: u64, count: u32) {
        debug_assert!(count <= 32 && bits >> count == 0, "{count} bits");
        self.acc |= bits << self.count;
        self.count += count;
        if self.count >= 32 {
            self.out.extend_from_slice(&(self.acc as u32).to_le_bytes());
            self.acc >>= 32;
            self.count -= 32;
        }
    }

    /// Pads with zero bits to a byte boundary and writes what is left.
    fn finish(mut self) {
        while self.count > 0 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.count = self.count.saturating_sub(8);
        }
    }
}

/// A thread's encoder: its hash table, kept from message to message without being cleared.
#[derive(Clone)]
pub struct Encoder {
    /// For each hash of four bytes, the low 16 bits of the position where they were last
    /// seen, in this message or an earlier one: a hint, checked before use.
    table: Box<[u16; 1 << HASH_BITS]>,
}

impl Default for Encoder {
    fn default() -> Self {
        let table = vec![0; 1 << HASH_BITS].into_boxed_slice().try_into().expect("1 << HASH_BITS entries");
        Encoder { table }
    }
}

impl Encoder {
    /// Appends `text` deflated on its own to `out`, as zlib's sync flush ends it: one block
    /// with the fixed codes (none for an empty `text`), then the 3-bit header of an empty
    /// stored block and zero bits to the byte boundary, without the stored block's
    /// `00 00 ff ff` (RFC 7692 §7.2.1). It never gives up half-way on incompressible input (at
    /// most 9 bits a byte: the caller compares the lengths), which keeps a test off the loop.
    pub fn deflate(&mut self, text: &[u8], out: &mut Vec<u8>) {
        let mut bits = Bits { out, acc: 0, count: 0 };
        if !text.is_empty() {
            // BFINAL 0, BTYPE 01 (fixed codes).
            bits.put(0b010, 3);
            let mut pos = 0;
            while pos + MIN_MATCH <= text.len() {
                let quad = read_u32(text, pos);
                let slot = (quad.wrapping_mul(0x9e37_79b1) >> (32 - HASH_BITS)) as usize;
                let entry = std::mem::replace(&mut self.table[slot], pos as u16);
                // The nearest position behind this one whose low 16 bits are the entry's.
                let dist = usize::from((pos as u16).wrapping_sub(entry));
                // 1 <= dist <= min(pos, WINDOW), in one comparison.
                if dist.wrapping_sub(1) < pos.min(WINDOW) {
                    let candidate = pos - dist;
                    if read_u32(text, candidate) == quad {
                        let limit = MAX_MATCH.min(text.len() - pos);
                        let len = MIN_MATCH
                            + common_prefix(&text[candidate + MIN_MATCH..], &text[pos + MIN_MATCH..pos + limit]);
                        let (dist_bits, dist_count) = distance_bits(dist);
                        let packed = LENGTHS[len];
                        // At most 8 + 5 bits of length and 5 + 13 of distance: one write.
                        let len_count = packed & 0xff;
                        bits.put(u64::from(packed >> 8) | dist_bits << len_count, len_count + dist_count);
                        pos += len;
                        continue;
                    }
                }
                let packed = LITERALS[usize::from(quad as u8)];
                bits.put(u64::from(packed >> 8), packed & 0xff);
                pos += 1;
            }
            for &byte in &text[pos..] {
                let packed = LITERALS[byte as usize];
                bits.put((packed >> 8) as u64, packed & 0xff);
            }
            bits.put(END_OF_BLOCK.0 as u64, END_OF_BLOCK.1);
        }
        // The sync flush's empty stored block: BFINAL 0, BTYPE 00, then to the byte boundary.
        bits.put(0, 3);
        bits.finish();
    }
}

#[inline(always)]
fn read_u32(text: &[u8], pos: usize) -> u32 {
    u32::from_le_bytes(text[pos..pos + 4].try_into().expect("4 bytes"))
}

/// How many bytes `earlier` and `later` have in common from their starts (at most
/// `later.len()`; `earlier` is at least as long, as it starts before `later` in the same text).
#[inline(always)]
fn common_prefix(earlier: &[u8], later: &[u8]) -> usize {
    let mut n = 0;
    while n + 8 <= later.len() {
        let a = u64::from_le_bytes(earlier[n..n + 8].try_into().expect("8 bytes"));
        let b = u64::from_le_bytes(later[n..n + 8].try_into().expect("8 bytes"));
        let diff = a ^ b;
        if diff != 0 {
            return n + (diff.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    while n < later.len() && earlier[n] == later[n] {
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes an RFC 7692 receiver appends before inflating (§7.2.2).
    const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

    fn deflate(encoder: &mut Encoder, text: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encoder.deflate(text, &mut out);
        out
    }

    /// Inflates with flate2 (zlib-rs) and with miniz_oxide, two independent inflaters, and
    /// checks both give `text` back.
    fn assert_round_trip(compressed: &[u8], text: &[u8]) {
        let mut input = compressed.to_vec();
        input.extend_from_slice(&SYNC_TAIL);
        let mut inflater = flate2::Decompress::new(false);
        let mut inflated = Vec::with_capacity(text.len() + 64);
        let status =
            inflater.decompress_vec(&input, &mut inflated, flate2::FlushDecompress::Sync).expect("flate2 inflates");
        assert_ne!(status, flate2::Status::StreamEnd, "no final block");
        assert_eq!(inflater.total_in() as usize, input.len(), "flate2 read it all");
        assert!(inflated == text, "flate2: {} bytes back for {}", inflated.len(), text.len());
        let mut miniz = miniz_oxide::inflate::stream::InflateState::new_boxed(miniz_oxide::DataFormat::Raw);
        let mut back = vec![0; text.len() + 64];
        let result = miniz_oxide::inflate::stream::inflate(&mut miniz, &input, &mut back, miniz_oxide::MZFlush::Sync);
        assert!(result.status.is_ok(), "miniz_oxide: {:?}", result.status);
        assert_eq!(result.bytes_consumed, input.len(), "miniz_oxide read it all");
        let miniz = &back[..result.bytes_written];
        assert!(miniz == text, "miniz_oxide: {} bytes back for {}", miniz.len(), text.len());
    }

    /// A xorshift generator: the same inputs on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const WORDS: [&str; 16] = [
        "the",
        "meeting",
        "moved",
        "to",
        "thursday",
        "{\"type\":",
        "\"chat.message\"",
        "you",
        "send",
        "me",
        "latest",
        "draft",
        "\u{e9}t\u{e9}",
        "lunch",
        "42",
        ",",
    ];

    /// An input of one of several shapes: random bytes, a small alphabet, words, runs, and
    /// pieces of itself copied from near and far.
    fn input(rng: &mut Rng, len: usize) -> Vec<u8> {
        let mut text = Vec::with_capacity(len + 16);
        let shape = rng.below(5);
        while text.len() < len {
            match shape {
                0 => text.push(rng.next() as u8),
                1 => text.push(b"ab\x00"[rng.below(3)]),
                2 => {
                    text.extend_from_slice(WORDS[rng.below(WORDS.len())].as_bytes());
                    text.push(b' ');
                }
                3 => {
                    let byte = rng.next() as u8;
                    text.extend(std::iter::repeat_n(byte, 1 + rng.below(600)));
                }
                _ => {
                    if text.len() > 8 && rng.below(2) == 0 {
                        let from = rng.below(text.len());
                        let n = (1 + rng.below(300)).min(text.len() - from);
                        text.extend_from_within(from..from + n);
                    } else {
                        text.push(rng.next() as u8);
                    }
                }
            }
        }
        text.truncate(len);
        text
    }

    #[test]
    fn test_rfc7692_hello_is_the_example_bytes() {
        // §7.2.3.1: "Hello" compressed with no context, as zlib's sync flush writes it.
        let mut encoder = Encoder::default();
        assert_eq!(deflate(&mut encoder, b"Hello"), [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        // §7.2.3.6: an empty message is one byte, 0x00.
        assert_eq!(deflate(&mut encoder, b""), [0x00]);
        // The second "Hello" does not refer back into the first: no context is taken over.
        assert_eq!(deflate(&mut encoder, b"Hello"), [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    }

    #[test]
    fn test_round_trip_random_and_text_inputs() {
        // One encoder for every input, as a thread's: entries of earlier inputs must never be
        // used (a reference into an earlier message would inflate to other bytes).
        let mut encoder = Encoder::default();
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for round in 0..3000 {
            let len = match round % 10 {
                0 => rng.below(8),
                1..=6 => rng.below(2048),
                7 | 8 => rng.below(20_000),
                _ => rng.below(100_000),
            };
            let text = input(&mut rng, len);
            // The output depends on what the table holds (hints), not its inflated form.
            let mut twin = encoder.clone();
            let compressed = deflate(&mut encoder, &text);
            assert_round_trip(&compressed, &text);
            assert_eq!(deflate(&mut twin, &text), compressed, "the same table, the same bytes");
            // Incompressible input grows by at most 1/8 and a few bytes.
            assert!(compressed.len() <= text.len() + text.len() / 8 + 3, "{} for {}", compressed.len(), text.len());
        }
    }

    #[test]
    fn test_matches_at_the_window_edge_and_long_runs() {
        let mut encoder = Encoder::default();
        let mut rng = Rng(7);
        let chunk: Vec<u8> = (0..64).map(|_| rng.next() as u8).collect();
        for gap in [WINDOW - 64, WINDOW - 63, WINDOW - 1, WINDOW, WINDOW + 1, 2 * WINDOW] {
            // The chunk again `gap` bytes after it started: at distance 32,768 it can be
            // matched, one further it must not be.
            let mut text = chunk.clone();
            text.extend((chunk.len()..gap).map(|_| rng.next() as u8));
            text.extend_from_slice(&chunk);
            text.extend_from_slice(&chunk);
            assert_round_trip(&deflate(&mut encoder, &text), &text);
        }
        for len in [1, 3, 4, 5, 257, 258, 259, 260, 261, 516, 1 << 20] {
            let text = vec![b'x'; len];
            assert_round_trip(&deflate(&mut encoder, &text), &text);
        }
    }

    #[test]
    fn test_stale_hints_and_positions_past_64_kib() {
        let mut encoder = Encoder::default();
        let mut rng = Rng(1234);
        // Every hint of a message about the next one's positions: the same words at other
        // offsets, then a message made of what the hints point at.
        let words = b"hello hello hello, the meeting moved to thursday, the meeting moved".repeat(20);
        for shift in 0..40 {
            let text = [&vec![b'#'; shift][..], &words[..]].concat();
            assert_round_trip(&deflate(&mut encoder, &text), &text);
        }
        // Positions past 65,535 wrap in the table: a chunk again at 64 KiB plus or minus a
        // little (its hint then names a near position, which must be checked).
        let chunk: Vec<u8> = (0..64).map(|_| rng.next() as u8).collect();
        for gap in [65_536 - 100, 65_536 - 1, 65_536, 65_537, 65_536 + 100, 3 * 65_536 + 7] {
            let mut text = chunk.clone();
            text.extend((chunk.len()..gap).map(|i| WORDS[i % WORDS.len()].as_bytes()[0]));
            text.extend_from_slice(&chunk);
            text.extend_from_slice(&words);
            assert_round_trip(&deflate(&mut encoder, &text), &text);
        }
    }

    #[test]
    fn test_small_client_windows_with_c_zlib() {
        // A client that set server_max_window_bits=N gets compressed only messages of at most
        // 2^N bytes (`Negotiated::max_compressed_len`); its inflater (C zlib, through Python)
        // must take them with an N-bit window.
        let mut encoder = Encoder::default();
        let mut rng = Rng(99);
        let mut script =
            String::from("import sys, zlib\nok = 0\nfor line in sys.stdin:\n    bits, data, text = line.split()\n");
        script.push_str("    d = zlib.decompressobj(-int(bits))\n    out = d.decompress(bytes.fromhex(data) + b'\\x00\\x00\\xff\\xff')\n");
        script.push_str("    assert out == bytes.fromhex(text), (bits, len(out))\n    ok += 1\nprint(ok)\n");
        let mut lines = String::new();
        let mut count = 0;
        for bits in 8..=15u32 {
            for _ in 0..40 {
                let len = [1 << bits, (1 << bits) - 1, rng.below(1 << bits)][rng.below(3)];
                let text = input(&mut rng, len.max(1));
                lines.push_str(&format!("{bits} {} {}\n", hex(&deflate(&mut encoder, &text)), hex(&text)));
                count += 1;
            }
        }
        let mut child = std::process::Command::new("python3")
            .args(["-c", &script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        use std::io::Write as _;
        child.stdin.take().expect("stdin").write_all(lines.as_bytes()).expect("write");
        let output = child.wait_with_output().expect("python3 ran");
        assert!(output.status.success(), "C zlib refused one");
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), count.to_string());
    }

    fn hex(bytes: &[u8]) -> String {
        let mut text = String::with_capacity(bytes.len() * 2 + 2);
        for byte in bytes {
            text.push_str(&format!("{byte:02x}"));
        }
        text
    }
}
