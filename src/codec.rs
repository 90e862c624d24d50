//! A small binary codec for the payloads of peer frames. A type crosses the wire through its
//! [`Encode`] and [`Decode`] impls: its fields in order, each through its own impl. Decoding
//! never panics: a short or malformed payload is a [`DecodeError`].
//!
//! The layouts: a `u64` is 8 bytes LE (a `u32` travels widened to one); a `bool` one byte,
//! 0 or 1; a string or byte string its length (u32 LE) and its bytes; an `Option` a byte 0
//! (`None`) or 1 and the value; a `Vec` its length (u32 LE) and its elements; a tuple its
//! fields; a tag (a sum type's variant, see [`tags!`]) one byte.
//!
//! In a `Decode` impl, fields read in a struct expression are read in the order written
//! there, which must be the order on the wire.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed peer payload")]
pub struct DecodeError;

/// A value that writes itself to a payload.
pub trait Encode {
    fn encode(&self, writer: &mut Writer);
}

/// A value that reads itself from a payload, as its [`Encode`] impl wrote it.
pub trait Decode: Sized {
    fn decode(reader: &mut Reader) -> Result<Self, DecodeError>;
}

/// Builds a payload, and the tail sent after it.
#[derive(Default)]
pub struct Writer {
    buf: BytesMut,
    tail: Bytes,
}

impl Writer {
    pub fn new() -> Self {
        Writer { buf: BytesMut::with_capacity(128), tail: Bytes::new() }
    }

    pub fn put<T: Encode + ?Sized>(&mut self, value: &T) -> &mut Self {
        value.encode(self);
        self
    }

    fn buf(&mut self) -> &mut BytesMut {
        debug_assert!(self.tail.is_empty(), "nothing follows a frame's tail");
        &mut self.buf
    }

    pub fn u8(&mut self, value: u8) -> &mut Self {
        self.buf().put_u8(value);
        self
    }

    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.buf().put_u64_le(value);
        self
    }

    pub fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.len(value.len()).buf().put_slice(value);
        self
    }

    pub fn len(&mut self, len: usize) -> &mut Self {
        self.buf().put_u32_le(len as u32);
        self
    }

    /// The rest of the frame, without a length: sent from its own buffer after the payload
    /// (no copy), read back by [`Reader::rest`]. Nothing may follow it.
    pub fn tail(&mut self, tail: &Bytes) -> &mut Self {
        debug_assert!(self.tail.is_empty(), "a frame has one tail");
        self.tail = tail.clone();
        self
    }

    /// The payload and its tail.
    pub fn finish(self) -> (Bytes, Bytes) {
        (self.buf.freeze(), self.tail)
    }
}

/// Reads a payload; byte fields are slices of it, not copies.
pub struct Reader {
    buf: Bytes,
}

impl Reader {
    pub fn new(buf: Bytes) -> Self {
        Reader { buf }
    }

    pub fn get<T: Decode>(&mut self) -> Result<T, DecodeError> {
        T::decode(self)
    }

    /// A field added at the end of a value: absent (its default) from the frames of older
    /// builds, which end before it.
    pub fn get_added<T: Decode + Default>(&mut self) -> Result<T, DecodeError> {
        if self.buf.has_remaining() {
            self.get()
        } else {
            Ok(T::default())
        }
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

    /// `read` of a string field, borrowed from the payload (the caller copies what it keeps).
    pub fn str<T>(&mut self, read: impl FnOnce(&str) -> T) -> Result<T, DecodeError> {
        let len = self.len()?;
        let value = read(std::str::from_utf8(&self.buf[..len]).map_err(|_| DecodeError)?);
        self.buf.advance(len);
        Ok(value)
    }

    /// The rest of the payload (a shared slice): a frame's tail.
    pub fn rest(&mut self) -> Bytes {
        self.buf.split_off(0)
    }
}

/// A sum type's tags on the wire: a `#[repr(u8)]` enum with one variant per variant of the
/// type, each with its byte (never reused: nodes of two builds share a cluster during an
/// upgrade), its `TryFrom<u8>`, and its [`Encode`]/[`Decode`] as that byte.
macro_rules! tags {
    ($($(#[$meta:meta])* $vis:vis enum $name:ident { $($variant:ident = $value:literal,)+ })+) => {
        $(
            $(#[$meta])*
            #[derive(Debug, Clone, Copy, PartialEq, Eq)]
            #[repr(u8)]
            $vis enum $name {
                $($variant = $value,)+
            }

            impl TryFrom<u8> for $name {
                type Error = $crate::codec::DecodeError;

                fn try_from(value: u8) -> Result<Self, Self::Error> {
                    match value {
                        $($value => Ok($name::$variant),)+
                        _ => Err($crate::codec::DecodeError),
                    }
                }
            }

            impl $crate::codec::Encode for $name {
                fn encode(&self, writer: &mut $crate::codec::Writer) {
                    writer.u8(*self as u8);
                }
            }

            impl $crate::codec::Decode for $name {
                fn decode(reader: &mut $crate::codec::Reader) -> Result<Self, $crate::codec::DecodeError> {
                    Self::try_from(reader.u8()?)
                }
            }
        )+
    };
}
pub(crate) use tags;

/// [`Encode`] and [`Decode`] for structs that are their fields in the order listed, each
/// through its own impl: `fields! { Since { seq, epoch } }`. The one list serves both sides,
/// and the decoder names every field, so a field added to the struct fails to compile here
/// until it is given its place on the wire.
macro_rules! fields {
    ($($name:ident { $($field:ident),+ $(,)? })+) => {
        $(
            impl $crate::codec::Encode for $name {
                fn encode(&self, writer: &mut $crate::codec::Writer) {
                    $(writer.put(&self.$field);)+
                }
            }

            impl $crate::codec::Decode for $name {
                fn decode(reader: &mut $crate::codec::Reader) -> Result<Self, $crate::codec::DecodeError> {
                    Ok($name { $($field: reader.get()?,)+ })
                }
            }
        )+
    };
}
pub(crate) use fields;

impl Encode for u64 {
    fn encode(&self, writer: &mut Writer) {
        writer.u64(*self);
    }
}

impl Decode for u64 {
    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        reader.u64()
    }
}

impl Encode for u32 {
    fn encode(&self, writer: &mut Writer) {
        writer.u64(u64::from(*self));
    }
}

impl Decode for u32 {
    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        u32::try_from(reader.u64()?).map_err(|_| DecodeError)
    }
}

impl Encode for bool {
    fn encode(&self, writer: &mut Writer) {
        writer.u8(u8::from(*self));
    }
}

impl Decode for bool {
    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        match reader.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError),
        }
    }
}

impl Encode for [u8] {
    fn encode(&self, writer: &mut Writer) {
        writer.bytes(self);
    }
}

impl Encode for Bytes {
    fn encode(&self, writer: &mut Writer) {
        writer.bytes(self);
    }
}

impl Decode for Bytes {
    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        reader.bytes()
    }
}

impl Encode for str {
    fn encode(&self, writer: &mut Writer) {
        writer.bytes(self.as_bytes());
    }
}

impl Encode for String {
    fn encode(&self, writer: &mut Writer) {
        writer.put(self.as_str());
    }
}

impl Decode for String {
    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        reader.str(str::to_owned)
    }
}

impl Encode for Arc<str> {
    fn encode(&self, writer: &mut Writer) {
        writer.put(&**self);
    }
}

impl Decode for Arc<str> {
    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        reader.str(|value| Arc::from(value))
    }
}

impl<T: Encode + ?Sized> Encode for &T {
    fn encode(&self, writer: &mut Writer) {
        writer.put(*self);
    }
}

impl<T: Encode + ?Sized> Encode for Box<T> {
    fn encode(&self, writer: &mut Writer) {
        writer.put(&**self);
    }
}

impl<T: Decode> Decode for Box<T> {
    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Box::new(reader.get()?))
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encode(&self, writer: &mut Writer) {
        match self {
            None => writer.u8(0),
            Some(value) => writer.u8(1).put(value),
        };
    }
}

impl<T: Decode> Decode for Option<T> {
    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        match reader.u8()? {
            0 => Ok(None),
            1 => Ok(Some(reader.get()?)),
            _ => Err(DecodeError),
        }
    }
}

impl<T: Encode> Encode for Vec<T> {
    fn encode(&self, writer: &mut Writer) {
        writer.len(self.len());
        for item in self {
            writer.put(item);
        }
    }
}

impl<T: Decode> Decode for Vec<T> {
    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        let count = reader.len()?;
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(reader.get()?);
        }
        Ok(items)
    }
}

/// A tuple is its fields in order.
macro_rules! tuple {
    ($($field:ident)+) => {
        impl<$($field: Encode),+> Encode for ($($field,)+) {
            #[allow(non_snake_case)]
            fn encode(&self, writer: &mut Writer) {
                let ($($field,)+) = self;
                $(writer.put($field);)+
            }
        }

        impl<$($field: Decode),+> Decode for ($($field,)+) {
            fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
                Ok(($(reader.get::<$field>()?,)+))
            }
        }
    };
}
tuple!(A B);
tuple!(A B C);
tuple!(A B C D);
