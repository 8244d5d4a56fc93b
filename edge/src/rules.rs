//! The checks every transport applies to what a client hands in, before
//! anything reaches the bus. Who may use which conversation is
//! [`crate::auth::Identity::may_access`].

use crate::config::Limits;
use crate::error::ApiError;

/// The longest conversation id or client_msg_id accepted.
pub const MAX_ID_LEN: usize = 128;

/// Ids become bus subject tokens and database keys: keep them short and printable.
pub fn check_id(field: &str, id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!("{field} must be 1 to {MAX_ID_LEN} printable characters")));
    }
    Ok(())
}

/// Text a client wants stored, within the limits.
pub fn check_text(limits: &Limits, text: &str) -> Result<(), ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::bad_request("text must not be empty"));
    }
    let max = limits.max_text_len;
    if text.chars().count() > max {
        return Err(ApiError::too_large(format!("text is longer than {max} characters")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_and_printable() {
        assert!(check_id("id", "x\u{2028} .*>%").is_ok());
        assert!(check_id("id", &"a".repeat(MAX_ID_LEN)).is_ok());
        assert!(check_id("id", &"a".repeat(MAX_ID_LEN + 1)).is_err());
        assert!(check_id("id", "").is_err());
        assert!(check_id("id", "a\u{7f}").is_err());
    }

    #[test]
    fn text_is_not_blank_and_within_the_limit() {
        let limits = Limits { max_text_len: 3, ..Limits::default() };
        assert!(check_text(&limits, "abc").is_ok());
        assert!(check_text(&limits, "  ").is_err());
        assert_eq!(check_text(&limits, "abcd").unwrap_err().code, crate::error::ErrorCode::TooLarge);
    }
}
