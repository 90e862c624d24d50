//! The client protocol (PROTOCOL.md §2): the envelope is parsed once, in place, with simd-json
//! on the frame's own buffer, then turned into a typed [`Request`].
//!
//! Parsing never panics and never allocates more than the strings the request keeps.
//!
//! The envelope parser is in `protocol/envelope.rs`, the typed requests in
//! `protocol/request.rs`, the readers of the `data` fields in `protocol/fields.rs` and the
//! error codes in `protocol/error.rs`.

mod envelope;
mod error;
mod fields;
mod request;

pub use envelope::parse;
pub use error::{ErrorCode, ReplyError};
pub use fields::is_valid_room_name;
pub use request::{Attachment, CallSignal, ChatSend, Meta, Request, RoomAction, Since};
