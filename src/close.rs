//! Close codes of PROTOCOL.md §10, each with the reason the server sends.
//!
//! Reasons stay under 123 bytes so they fit a WebSocket close frame.

/// Why the server closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnect {
    pub code: u16,
    pub reason: &'static str,
}

impl Disconnect {
    pub const NORMAL: Disconnect = Disconnect { code: 1000, reason: "normal closure" };
    pub const SHUTDOWN: Disconnect = Disconnect { code: 1001, reason: "server shutting down" };
    pub const IDLE: Disconnect = Disconnect { code: 1001, reason: "idle timeout" };
    pub const PROTOCOL_ERROR: Disconnect = Disconnect { code: 1002, reason: "websocket protocol error" };
    pub const INVALID_UTF8: Disconnect = Disconnect { code: 1007, reason: "invalid utf-8" };
    /// A compressed message (permessage-deflate) that is not valid deflate data.
    pub const BAD_COMPRESSED_DATA: Disconnect = Disconnect { code: 1007, reason: "invalid compressed data" };
    pub const TOO_MANY_ERRORS: Disconnect = Disconnect { code: 1008, reason: "too many failed requests" };
    /// `DELETE /v1/connections/{id}` and the admin disconnects (policy: do not retry at once).
    pub const ADMIN: Disconnect = Disconnect { code: 1008, reason: "disconnected by admin" };
    pub const TOO_LARGE: Disconnect = Disconnect { code: 1009, reason: "message too large" };
    pub const INTERNAL: Disconnect = Disconnect { code: 1011, reason: "internal error" };
    pub const RESTART: Disconnect = Disconnect { code: 1012, reason: "service restart" };
    pub const OVERLOADED: Disconnect = Disconnect { code: 1013, reason: "try again later" };
    pub const UNAUTHORIZED: Disconnect = Disconnect { code: 4001, reason: "unauthorized" };
    pub const TOKEN_EXPIRED: Disconnect = Disconnect { code: 4003, reason: "token expired" };
    pub const RATE_LIMITED: Disconnect = Disconnect { code: 4008, reason: "rate limit exceeded" };
    pub const SLOW_CONSUMER: Disconnect = Disconnect { code: 4009, reason: "slow consumer" };
    /// The connect hook refused the connection (its reason goes in the `error` before).
    pub const HOOK_REFUSED: Disconnect = Disconnect { code: 4403, reason: "refused by the application" };
    /// The user has `--max-connections-per-user` connections already (counted cluster-wide
    /// by the owner of its personal room).
    pub const USER_CONNECTIONS: Disconnect = Disconnect { code: 4029, reason: "too many connections for this user" };
}
