//! Rendering of server frames. Each frame is rendered once into a [`Bytes`] that every
//! recipient shares (PROTOCOL.md §2 envelope: `type`, `op_id`, `data`, `ts`).

use bytes::Bytes;
use serde::Serialize;

use crate::metrics;
use crate::protocol::ReplyError;

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    op_id: Option<&'a str>,
    data: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    ts: Option<&'a str>,
}

fn render<T: Serialize>(kind: &str, op_id: Option<&str>, data: T, ts: Option<&str>) -> Bytes {
    let mut out = Vec::with_capacity(128);
    // Serializing plain structs of strings and numbers into a Vec cannot fail.
    if serde_json::to_writer(&mut out, &Envelope { kind, op_id, data, ts }).is_err() {
        out.clear();
        out.extend_from_slice(br#"{"type":"error","data":{"code":"internal","message":"render failed"}}"#);
    }
    metrics::frame_rendered();
    Bytes::from(out)
}

/// An event pushed by the server; `ts` is the time of the event.
pub fn event<T: Serialize>(kind: &str, data: T, ts: &str) -> Bytes {
    render(kind, None, data, Some(ts))
}

/// The `ack` of a request, or nothing when the request had no `op_id`.
pub fn ack<T: Serialize>(op_id: Option<&str>, data: T) -> Option<Bytes> {
    op_id.map(|op_id| render("ack", Some(op_id), data, None))
}

/// A reply that answers a request by its own type (for example `presence.pong`).
pub fn reply<T: Serialize>(kind: &str, op_id: Option<&str>, data: T) -> Bytes {
    render(kind, op_id, data, None)
}

#[derive(Serialize)]
struct ErrorData<'a> {
    code: &'a str,
    message: &'a str,
}

/// An `error` frame; sent whether or not the request had an `op_id`.
pub fn error(op_id: Option<&str>, error: &ReplyError) -> Bytes {
    render("error", op_id, ErrorData { code: error.code.as_str(), message: &error.message }, None)
}

/// The refusal of a connection's personal room when its user has `--max-connections-per-user`
/// already: the owner answers the join with it (`EdgeMsg::Left`), and the edge that finds
/// exactly these bytes there closes the connection with 4029 instead of welcoming it.
pub fn user_connections_refused() -> Bytes {
    let error = ReplyError::new(crate::protocol::ErrorCode::Forbidden, "too many connections for this user");
    render("error", None, ErrorData { code: error.code.as_str(), message: &error.message }, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorCode;

    #[test]
    fn test_error_frame_shape() {
        let frame = error(Some("c-1"), &ReplyError::new(ErrorCode::Forbidden, "no \"way\""));
        assert_eq!(
            std::str::from_utf8(&frame).unwrap(),
            r#"{"type":"error","op_id":"c-1","data":{"code":"forbidden","message":"no \"way\""}}"#
        );
    }

    #[test]
    fn test_ack_needs_op_id() {
        assert!(ack(None, ()).is_none());
        assert_eq!(
            &ack(Some("x"), serde_json::json!({"a":1})).unwrap()[..],
            br#"{"type":"ack","op_id":"x","data":{"a":1}}"#
        );
    }
}
