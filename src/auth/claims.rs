//! What a token's claims become: user ids of any UTF-8 (checked, and escaped where they
//! become part of a key), and the claim paths of roles, groups and tenant.

use std::borrow::Cow;

use serde_json::Value;

/// The longest `sub` accepted, in bytes.
pub const MAX_USER_ID_BYTES: usize = 256;

/// True for a user id: any UTF-8 string of 1–256 bytes without control characters.
pub fn is_valid_user_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_USER_ID_BYTES && !id.chars().any(char::is_control)
}

/// The bytes that stand for themselves in an escaped id; every other byte (`%` included) is
/// written `%XX`. So the escape is injective: two different ids never escape alike, and an id
/// of the old character set (`[A-Za-z0-9_.:@-]`) escapes to itself.
fn is_plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"_.:@-".contains(&byte)
}

/// `id` as it appears in keys (`{tenant}/user:{id}`, hence Redis keys and peer frames).
pub fn escape_user_id(id: &str) -> Cow<'_, str> {
    if id.bytes().all(is_plain) {
        return Cow::Borrowed(id);
    }
    let mut out = String::with_capacity(id.len() + 8);
    for byte in id.bytes() {
        if is_plain(byte) {
            out.push(byte as char);
        } else {
            out.push('%');
            out.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0').to_ascii_uppercase());
            out.push(char::from_digit(u32::from(byte & 15), 16).unwrap_or('0').to_ascii_uppercase());
        }
    }
    Cow::Owned(out)
}

/// The user id of an escaped one ([`escape_user_id`] read back); a malformed escape is kept
/// as it is.
pub fn unescape_user_id(escaped: &str) -> Cow<'_, str> {
    if !escaped.contains('%') {
        return Cow::Borrowed(escaped);
    }
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex =
            || std::str::from_utf8(bytes.get(index + 1..index + 3)?).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[index], hex()) {
            (b'%', Some(byte)) => {
                out.push(byte);
                index += 3;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    match String::from_utf8(out) {
        Ok(id) => Cow::Owned(id),
        Err(_) => Cow::Borrowed(escaped),
    }
}

/// Where roles, groups and the tenant are read in a token: a claim name, or a dotted path
/// into nested objects (`realm_access.roles`). A name that is itself a key of the claims
/// (`https://example.com/roles`, dots and all) wins over the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPaths {
    pub roles: String,
    pub groups: String,
    pub tenant: String,
}

impl Default for ClaimPaths {
    fn default() -> Self {
        ClaimPaths { roles: "roles".into(), groups: "groups".into(), tenant: "tenant".into() }
    }
}

/// Checks a claim path given on the command line.
pub fn check_claim_path(path: &str) -> Result<(), String> {
    if path.is_empty() || path.len() > 256 || path.split('.').any(str::is_empty) {
        return Err(format!("claim path {path:?} must be names joined by dots"));
    }
    Ok(())
}

/// The value at `path` in `claims`.
pub fn at_path<'a>(claims: &'a serde_json::Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    let mut parts = path.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// A list claim: an array of strings, or one string of space-separated items (as OAuth's
/// `scope`); absent or null is empty. Anything else is refused.
pub fn string_list(value: Option<&Value>) -> Result<Vec<String>, ()> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(text.split_whitespace().map(str::to_string).collect()),
        Some(Value::Array(items)) => items.iter().map(|item| item.as_str().map(str::to_string).ok_or(())).collect(),
        Some(_) => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_escape_is_injective_and_reads_back() {
        let ids =
            ["alice", "auth0|x", "auth0%7Cx", "a+b@example.com", "a b", "a%20b", "jürgen", "a/b", "a}b", "%", "%25"];
        let escaped: Vec<String> = ids.iter().map(|id| escape_user_id(id).into_owned()).collect();
        for (index, one) in escaped.iter().enumerate() {
            assert_eq!(unescape_user_id(one), ids[index]);
            assert!(one.bytes().all(|byte| is_plain(byte) || byte == b'%'), "{one}");
            for other in &escaped[index + 1..] {
                assert_ne!(one, other);
            }
        }
        assert_eq!(escape_user_id("alice"), "alice");
        assert_eq!(escape_user_id("auth0|x"), "auth0%7Cx");
    }

    #[test]
    fn test_user_ids() {
        assert!(is_valid_user_id("auth0|64f1c2"));
        assert!(is_valid_user_id(&"é".repeat(128)));
        assert!(!is_valid_user_id(&"é".repeat(129)));
        assert!(!is_valid_user_id(""));
        assert!(!is_valid_user_id("a\nb"));
        assert!(!is_valid_user_id("a\u{7f}"));
    }

    #[test]
    fn test_paths() {
        let claims: serde_json::Map<String, Value> =
            serde_json::from_str(r#"{"realm_access":{"roles":["admin"]},"https://x.example/roles":"a b","scope":3}"#)
                .unwrap();
        assert_eq!(string_list(at_path(&claims, "realm_access.roles")).unwrap(), ["admin"]);
        assert_eq!(string_list(at_path(&claims, "https://x.example/roles")).unwrap(), ["a", "b"]);
        assert!(string_list(at_path(&claims, "nothing.here")).unwrap().is_empty());
        assert!(string_list(at_path(&claims, "scope")).is_err());
        assert!(check_claim_path("a..b").is_err());
    }
}
