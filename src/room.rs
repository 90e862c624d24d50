//! Room keys and the access rules of the name prefixes (PROTOCOL.md §4). The room-name rule
//! is checked where requests are parsed ([`is_valid_room_name`], from `protocol`).

use std::fmt;
use std::sync::Arc;

use crate::auth::{escape_user_id, Identity};
pub use crate::protocol::is_valid_room_name;
use crate::protocol::{ErrorCode, ReplyError};

/// The key of a room across the cluster: `{tenant}/{room}`. The ring places rooms by this
/// key, so the same name in two tenants is two rooms, possibly on two owners.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomKey(Arc<str>);

impl RoomKey {
    pub fn new(tenant: &str, room: &str) -> Self {
        RoomKey(Arc::from(format!("{tenant}/{room}")))
    }

    /// The key of a user's personal room: the id escaped ([`escape_user_id`]), so that any
    /// two users have two keys and a key holds no `/`, `{`, `}` or control character.
    pub fn user(tenant: &str, user_id: &str) -> Self {
        RoomKey(Arc::from(format!("{tenant}/{}", personal_room(user_id))))
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

/// The name of `user_id`'s personal room: `user:` and the escaped id.
pub fn personal_room(user_id: &str) -> String {
    format!("user:{}", escape_user_id(user_id))
}

/// Checks that `identity` may join `room` directly. The owner checks the rules that depend
/// on room state (bans, approvals); the ones here depend only on the token.
pub fn check_join(identity: &Identity, room: &str) -> Result<(), ReplyError> {
    if let Some(user_id) = room.strip_prefix("user:") {
        if user_id != escape_user_id(&identity.user_id) {
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
    fn test_keys_carry_the_tenant() {
        let key = RoomKey::new("acme", "lobby");
        assert_eq!(key.as_str(), "acme/lobby");
        assert_eq!(key.room(), "lobby");
        assert_eq!(key.tenant(), "acme");
        assert_ne!(RoomKey::new("a", "lobby"), RoomKey::new("b", "lobby"));
    }

    #[test]
    fn test_personal_keys_never_collide() {
        let users = ["auth0|x", "auth0%7Cx", "auth0%7cx", "a/b", "a%2Fb", "x}y", "é", "%C3%A9", "alice"];
        let keys: Vec<RoomKey> = users.iter().map(|user| RoomKey::user("t", user)).collect();
        for (index, key) in keys.iter().enumerate() {
            assert_eq!(key.tenant(), "t");
            assert!(!key.room().contains(['/', '{', '}']), "{key}");
            assert!(keys[index + 1..].iter().all(|other| other != key), "{key}");
        }
        assert_eq!(RoomKey::user("t", "alice").room(), "user:alice");
    }
}
