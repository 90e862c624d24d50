//! Room names, room keys and the access rules of the name prefixes (PROTOCOL.md §4).

use std::fmt;
use std::sync::Arc;

use crate::auth::Identity;
use crate::protocol::{ErrorCode, ReplyError};

/// The key of a room across the cluster: `{tenant}/{room}`. The ring places rooms by this
/// key, so the same name in two tenants is two rooms, possibly on two owners.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomKey(Arc<str>);

impl RoomKey {
    pub fn new(tenant: &str, room: &str) -> Self {
        RoomKey(Arc::from(format!("{tenant}/{room}")))
    }

    /// The key of a user's personal room.
    pub fn user(tenant: &str, user_id: &str) -> Self {
        RoomKey(Arc::from(format!("{tenant}/user:{user_id}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The room name as clients see it (without the tenant).
    pub fn room(&self) -> &str {
        self.0.split_once('/').map(|(_, room)| room).unwrap_or(&self.0)
    }

    pub fn tenant(&self) -> &str {
        self.0.split_once('/').map(|(tenant, _)| tenant).unwrap_or("")
    }
}

impl fmt::Debug for RoomKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl fmt::Display for RoomKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Room names: 1–128 chars of `[A-Za-z0-9_.:@-]`; a prefix (`user:`, `group:`, `private:`)
/// must be followed by a non-empty id.
pub fn is_valid_room_name(room: &str) -> bool {
    if !crate::auth::is_valid_id(room) {
        return false;
    }
    for prefix in ["user:", "group:", "private:"] {
        if let Some(rest) = room.strip_prefix(prefix) {
            return !rest.is_empty();
        }
    }
    true
}

/// Checks that `identity` may join `room` directly. The owner checks the rules that depend
/// on room state (bans, approvals); the ones here depend only on the token.
pub fn check_join(identity: &Identity, room: &str) -> Result<(), ReplyError> {
    if let Some(user_id) = room.strip_prefix("user:") {
        if user_id != &*identity.user_id {
            return Err(ReplyError::new(ErrorCode::Forbidden, "user: rooms are personal"));
        }
    } else if let Some(group) = room.strip_prefix("group:") {
        if !identity.groups.iter().any(|g| g == group) {
            return Err(ReplyError::new(ErrorCode::Forbidden, "not a member of this group"));
        }
    } else if room.starts_with("private:") && !identity.is_moderator() {
        return Err(ReplyError::new(ErrorCode::Forbidden, "private room: use room.request_join"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_room_names() {
        assert!(is_valid_room_name("lobby"));
        assert!(is_valid_room_name("a.b_c-d:e@f"));
        assert!(is_valid_room_name(&"x".repeat(128)));
        assert!(!is_valid_room_name(&"x".repeat(129)));
        assert!(!is_valid_room_name(""));
        assert!(!is_valid_room_name("has space"));
        assert!(!is_valid_room_name("slash/no"));
        assert!(!is_valid_room_name("user:"));
        assert!(!is_valid_room_name("émoji"));
    }

    #[test]
    fn test_keys_carry_the_tenant() {
        let key = RoomKey::new("acme", "lobby");
        assert_eq!(key.as_str(), "acme/lobby");
        assert_eq!(key.room(), "lobby");
        assert_eq!(key.tenant(), "acme");
        assert_ne!(RoomKey::new("a", "lobby"), RoomKey::new("b", "lobby"));
    }
}
