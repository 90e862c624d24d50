//! A small binary codec for the payloads of peer frames: little-endian integers and
//! length-prefixed strings and byte strings. Decoding never panics: a short or malformed
//! payload is a [`DecodeError`].

use bytes::{Buf, BufMut, Bytes, BytesMut};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed peer payload")]
pub struct DecodeError;

/// Builds a payload.
#[derive(Default)]
pub struct Writer {
    buf: BytesMut,
}

impl Writer {
    pub fn new() -> Self {
        Writer { buf: BytesMut::with_capacity(128) }
    }

    pub fn u8(&mut self, value: u8) -> &mut Self {
        self.buf.put_u8(value);
        self
    }

    pub fn bool(&mut self, value: bool) -> &mut Self {
        self.u8(value as u8)
    }

    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.buf.put_u64_le(value);
        self
    }

    pub fn str(&mut self, value: &str) -> &mut Self {
        self.bytes(value.as_bytes())
    }

    pub fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.buf.put_u32_le(value.len() as u32);
        self.buf.put_slice(value);
        self
    }

    pub fn opt_str(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            None => self.u8(0),
            Some(value) => self.u8(1).str(value),
        }
    }

    pub fn opt_u64(&mut self, value: Option<u64>) -> &mut Self {
        match value {
            None => self.u8(0),
            Some(value) => self.u8(1).u64(value),
        }
    }

    pub fn len(&mut self, len: usize) -> &mut Self {
        self.buf.put_u32_le(len as u32);
        self
    }

    pub fn finish(self) -> Bytes {
        self.buf.freeze()
    }
}

/// Reads a payload; string and byte fields are slices of it, not copies.
pub struct Reader {
    buf: Bytes,
}

impl Reader {
    pub fn new(buf: Bytes) -> Self {
        Reader { buf }
    }

    fn need(&self, len: usize) -> Result<(), DecodeError> {
        if self.buf.remaining() < len {
            return Err(DecodeError);
        }
        Ok(())
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }

    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError),
        }
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        self.need(8)?;
        Ok(self.buf.get_u64_le())
    }

    pub fn len(&mut self) -> Result<usize, DecodeError> {
        self.need(4)?;
        let len = self.buf.get_u32_le() as usize;
        // Every element takes at least one byte: a length beyond the rest is a lie.
        if len > self.buf.remaining() {
            return Err(DecodeError);
        }
        Ok(len)
    }

    pub fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.len()?;
        Ok(self.buf.split_to(len))
    }

    pub fn string(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| DecodeError)
    }

    pub fn opt_string(&mut self) -> Result<Option<String>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.string()?)),
            _ => Err(DecodeError),
        }
    }

    pub fn opt_u64(&mut self) -> Result<Option<u64>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.u64()?)),
            _ => Err(DecodeError),
        }
    }

    /// The rest of the payload (a shared slice).
    pub fn rest(&mut self) -> Bytes {
        self.buf.split_off(0)
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}
