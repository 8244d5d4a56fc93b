//! The checks every transport applies to what a client hands in, before
//! anything reaches the bus. Who may use which conversation is
//! [`crate::auth::Identity::may_access`].

use crate::config::Limits;
use crate::error::ApiError;

/// The longest id a client may name (a conversation's, a `client_msg_id`, a
/// customer's), in characters.
pub const MAX_ID_LEN: usize = 128;

/// The schema of an id [`check_id`] takes: 1 to [`MAX_ID_LEN`] characters,
/// none a control character (Unicode's Cc, `char::is_control`).
pub fn id_schema() -> utoipa::openapi::schema::Object {
    id_builder().build()
}

/// [`id_schema`], or `null`: an optional field's id.
pub fn optional_id_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{SchemaType, Type};
    id_builder().schema_type(SchemaType::from_iter([Type::String, Type::Null])).build()
}

fn id_builder() -> utoipa::openapi::schema::ObjectBuilder {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_ID_LEN))
        .pattern(Some(r"^[^\u0000-\u001f\u007f-\u009f]*$"))
}

/// Text [`check_text`] takes: at least one character that is not white
/// space (as `str::trim` means it). Its longest is a setting, which the
/// served document adds to every schema with [`TEXT_PATTERN`].
pub fn text_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new().schema_type(Type::String).pattern(Some(TEXT_PATTERN)).build()
}

/// A character that is not white space, as Unicode's White_Space (what `str::trim` trims) spells it.
pub const TEXT_PATTERN: &str =
    r"[^\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";

/// A query's count (a page's `limit`): what a `u32` holds.
pub fn count_schema() -> utoipa::openapi::schema::Object {
    integer_up_to(f64::from(u32::MAX))
}

/// The largest offset a client may name: the largest integer a JSON number
/// (a JavaScript client's) holds exactly.
pub const MAX_OFFSET: u64 = (1 << 53) - 1;

/// A query's offset, up to [`MAX_OFFSET`].
pub fn offset_schema() -> utoipa::openapi::schema::Object {
    integer_up_to(MAX_OFFSET as f64)
}

fn integer_up_to(max: f64) -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0.0)).maximum(Some(max)).build()
}

/// A path's `{id}`: a conversation's.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ConversationPath {
    /// The conversation's id.
    #[param(schema_with = id_schema)]
    pub id: String,
}

/// Ids become bus subject tokens and database keys: keep them short and printable.
pub fn check_id(field: &str, id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.chars().count() > MAX_ID_LEN || id.chars().any(char::is_control) {
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
        // Counted in characters, as the OpenAPI document's maxLength counts them.
        assert!(check_id("id", &"é".repeat(MAX_ID_LEN)).is_ok());
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
