//! Typed readers of a request's `data` object, with errors that name the field, and the
//! room-name rule they apply.

use simd_json::prelude::*;
use simd_json::BorrowedValue;

use super::error::ReplyError;
use super::request::{Attachment, Meta, Since, MAX_ATTACHMENTS, MAX_META_BYTES, MAX_PRESENCE_USERS};

/// Typed access to the `data` object with errors that name the field.
#[derive(Clone, Copy)]
pub(super) struct Data<'v, 'a>(pub(super) Option<&'v BorrowedValue<'a>>);

impl<'v, 'a> Data<'v, 'a> {
    pub(super) fn get(&self, field: &str) -> Option<&'v BorrowedValue<'a>> {
        self.0.and_then(|data| data.get(field)).filter(|value| !value.is_null())
    }

    pub(super) fn string(&self, field: &'static str) -> Result<String, ReplyError> {
        self.optional_string(field)?.ok_or_else(|| ReplyError::invalid(format!("data.{field} is required")))
    }

    pub(super) fn optional_string(&self, field: &'static str) -> Result<Option<String>, ReplyError> {
        match self.get(field) {
            None => Ok(None),
            Some(value) => match value.as_str() {
                Some(text) => Ok(Some(text.to_string())),
                None => Err(ReplyError::invalid(format!("data.{field} must be a string"))),
            },
        }
    }

    pub(super) fn bounded_string(&self, field: &'static str, max_chars: usize) -> Result<Option<String>, ReplyError> {
        let value = self.optional_string(field)?;
        if value.as_ref().is_some_and(|value| value.is_empty() || value.chars().count() > max_chars) {
            return Err(ReplyError::invalid(format!("data.{field} must be 1-{max_chars} chars")));
        }
        Ok(value)
    }

    pub(super) fn bool(&self, field: &'static str) -> Result<bool, ReplyError> {
        match self.get(field) {
            None => Err(ReplyError::invalid(format!("data.{field} is required"))),
            Some(value) => {
                value.as_bool().ok_or_else(|| ReplyError::invalid(format!("data.{field} must be true or false")))
            }
        }
    }

    pub(super) fn u64(&self, field: &'static str) -> Result<u64, ReplyError> {
        match self.get(field) {
            None => Err(ReplyError::invalid(format!("data.{field} is required"))),
            Some(value) => {
                value.as_u64().ok_or_else(|| ReplyError::invalid(format!("data.{field} must be an integer >= 0")))
            }
        }
    }

    pub(super) fn users(&self) -> Result<Vec<String>, ReplyError> {
        let bad = || ReplyError::invalid(format!("data.users must be 1-{MAX_PRESENCE_USERS} user ids"));
        let items = self.get("users").and_then(|users| users.as_array()).ok_or_else(bad)?;
        if items.is_empty() || items.len() > MAX_PRESENCE_USERS {
            return Err(bad());
        }
        let mut users: Vec<String> = Vec::with_capacity(items.len());
        for item in items {
            let user = item.as_str().filter(|user| crate::auth::is_valid_user_id(user)).ok_or_else(bad)?;
            if !users.iter().any(|known| known == user) {
                users.push(user.to_string());
            }
        }
        Ok(users)
    }

    /// `data.meta`: a JSON object of at most [`MAX_META_BYTES`] serialized.
    pub(super) fn meta(&self) -> Result<Option<Meta>, ReplyError> {
        let Some(value) = self.get("meta") else {
            return Ok(None);
        };
        if !value.is_object() {
            return Err(ReplyError::invalid("data.meta must be a json object"));
        }
        let text = value.encode();
        if text.len() > MAX_META_BYTES {
            let message = format!("data.meta is over {MAX_META_BYTES} bytes");
            return Err(ReplyError::new(super::error::ErrorCode::TooLarge, message));
        }
        let meta = serde_json::from_str(&text).map_err(|_| ReplyError::invalid("data.meta must be a json object"))?;
        Ok(Some(std::sync::Arc::new(meta)))
    }

    pub(super) fn user_id(&self, field: &'static str) -> Result<String, ReplyError> {
        let user_id = self.string(field)?;
        if !crate::auth::is_valid_user_id(&user_id) {
            return Err(ReplyError::invalid(format!("data.{field} is not a valid user id")));
        }
        Ok(user_id)
    }

    pub(super) fn message_id(&self) -> Result<String, ReplyError> {
        self.bounded_string("id", 64)?.ok_or_else(|| ReplyError::invalid("data.id is required"))
    }

    pub(super) fn room(&self) -> Result<String, ReplyError> {
        let room = self.string("room")?;
        if !is_valid_room_name(&room) {
            return Err(ReplyError::invalid("invalid room name: 1-128 chars of [A-Za-z0-9_.:@-]"));
        }
        Ok(room)
    }

    pub(super) fn since(&self) -> Result<Option<Since>, ReplyError> {
        let Some(since) = self.get("since") else {
            return Ok(None);
        };
        let bad = || ReplyError::invalid("data.since must be {seq: integer >= 0, epoch: string}");
        let seq = since.get("seq").and_then(|seq| seq.as_u64()).ok_or_else(bad)?;
        let epoch = since.get("epoch").and_then(|epoch| epoch.as_str()).ok_or_else(bad)?;
        Ok(Some(Since { seq, epoch: epoch.to_string() }))
    }

    pub(super) fn attachments(&self) -> Result<Vec<Attachment>, ReplyError> {
        let Some(value) = self.get("attachments") else {
            return Ok(Vec::new());
        };
        let Some(items) = value.as_array() else {
            return Err(ReplyError::invalid("data.attachments must be an array"));
        };
        if items.len() > MAX_ATTACHMENTS {
            return Err(ReplyError::invalid(format!("data.attachments holds more than {MAX_ATTACHMENTS} items")));
        }
        let bad = || ReplyError::invalid("each attachment must be {url, name, size, mime}");
        items
            .iter()
            .map(|item| {
                let field = |name: &str| item.get(name).and_then(|value| value.as_str()).map(str::to_string);
                let attachment = Attachment {
                    url: field("url").ok_or_else(bad)?,
                    name: field("name").ok_or_else(bad)?,
                    size: item.get("size").and_then(|size| size.as_u64()).ok_or_else(bad)?,
                    mime: field("mime").ok_or_else(bad)?,
                };
                let url_ok = attachment.url.starts_with("https://") || attachment.url.starts_with("http://");
                if !url_ok || attachment.url.len() > 2048 || attachment.name.is_empty() || attachment.name.len() > 256 {
                    return Err(ReplyError::invalid("attachment url must be http(s), name 1-256 chars"));
                }
                if !attachment.mime.contains('/') || attachment.mime.len() > 128 {
                    return Err(ReplyError::invalid("attachment mime must look like type/subtype"));
                }
                Ok(attachment)
            })
            .collect()
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
}
