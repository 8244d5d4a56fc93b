//! The one error shape: a stable `code` and a human `message`, the same in
//! HTTP answers (`{error:{code,message}}`), socket acks
//! (`{ok:false,error:{code,message}}`) and `error` events. Every code a client
//! can see is an [`ErrorCode`], with its HTTP status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use switchboard_proto::model::ErrorBody;

/// Declares each code once: its wire name and its HTTP status.
macro_rules! codes {
    ($($(#[$doc:meta])* $code:ident = $name:literal, $status:ident;)+) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode {
            $($(#[$doc])* $code,)+
        }

        impl ErrorCode {
            /// Every code, for documentation and tests.
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$code,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$code => $name,)+
                }
            }

            pub fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$code => StatusCode::$status,)+
                }
            }

            pub fn parse(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(ErrorCode::$code),)+
                    _ => None,
                }
            }
        }
    };
}

codes! {
    /// Malformed input: the message says what was wrong.
    BadRequest = "bad_request", BAD_REQUEST;
    TokenRequired = "token_required", UNAUTHORIZED;
    InvalidToken = "invalid_token", UNAUTHORIZED;
    TokenExpired = "token_expired", UNAUTHORIZED;
    /// The token's `nbf` is still in the future.
    TokenNotYetValid = "token_not_yet_valid", UNAUTHORIZED;
    ApiKeyRequired = "api_key_required", UNAUTHORIZED;
    InvalidApiKey = "invalid_api_key", UNAUTHORIZED;
    /// WhatsApp's verification handshake named the wrong token.
    InvalidVerifyToken = "invalid_verify_token", UNAUTHORIZED;
    /// A webhook whose `X-Hub-Signature-256` does not match its body.
    InvalidSignature = "invalid_signature", UNAUTHORIZED;
    /// A widget session named a site key this server does not have (§12).
    InvalidSiteKey = "invalid_site_key", UNAUTHORIZED;
    /// A widget session from a page whose origin the site key does not allow.
    OriginNotAllowed = "origin_not_allowed", FORBIDDEN;
    /// A widget session's `user_id` without its valid `user_hash`.
    InvalidUserHash = "invalid_user_hash", UNAUTHORIZED;
    Forbidden = "forbidden", FORBIDDEN;
    NotFound = "not_found", NOT_FOUND;
    /// Another agent holds the conversation a claim asked for: nothing changed.
    Conflict = "conflict", CONFLICT;
    MethodNotAllowed = "method_not_allowed", METHOD_NOT_ALLOWED;
    TooLarge = "too_large", PAYLOAD_TOO_LARGE;
    UnsupportedMediaType = "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE;
    RateLimited = "rate_limited", TOO_MANY_REQUESTS;
    TooManyJoins = "too_many_joins", TOO_MANY_REQUESTS;
    /// The bus, the database or the workers cannot do it now, and nothing was
    /// done: try again.
    Unavailable = "unavailable", SERVICE_UNAVAILABLE;
    /// A write was handed to the workers but no answer came in time: it may
    /// still be stored. Retry with the same `client_msg_id` to get the one
    /// stored message (a retry never stores it twice).
    OutcomeUnknown = "outcome_unknown", GATEWAY_TIMEOUT;
    /// A fault of ours, never of the request.
    Internal = "internal", INTERNAL_SERVER_ERROR;
}

impl ErrorCode {
    /// The code of an error answered with only a status (by axum or hyper).
    pub fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => ErrorCode::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::TooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
            StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
            StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
            s if s.is_server_error() => ErrorCode::Internal,
            _ => ErrorCode::BadRequest,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { status: code.status(), code, message: message.into() }
    }

    /// An error answered with a status of its own choosing (one axum wrote).
    pub fn with_status(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, code: ErrorCode::for_status(status), message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::TooLarge, message)
    }

    pub fn rate_limited(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::RateLimited, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    /// An error a worker answered with, keeping its code.
    pub fn from_body(body: ErrorBody) -> Self {
        match ErrorCode::parse(&body.code) {
            Some(code) => Self::new(code, body.message),
            None => Self::new(ErrorCode::Internal, format!("{}: {}", body.code, body.message)),
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody { code: self.code.as_str().to_owned(), message: self.message.clone() }
    }

    /// The `error` event a client gets for a failure it asked no answer for.
    pub fn event(&self) -> serde_json::Value {
        serde_json::json!({ "message": self.message, "code": self.code.as_str() })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "error": self.body() }))).into_response()
    }
}

impl From<switchboard_store::StoreError> for ApiError {
    fn from(e: switchboard_store::StoreError) -> Self {
        match e {
            switchboard_store::StoreError::ConversationNotFound(id) => {
                Self::not_found(format!("conversation {id} not found"))
            }
            other => {
                tracing::error!(error = %other, "store failed");
                Self::unavailable("the database is unavailable")
            }
        }
    }
}

impl From<switchboard_bus::BusError> for ApiError {
    fn from(e: switchboard_bus::BusError) -> Self {
        tracing::warn!(error = %e, "bus failed");
        Self::unavailable(format!("the bus is unavailable: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_reads_back_from_its_name() {
        for &code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
        let unknown = ApiError::from_body(ErrorBody { code: "odd".into(), message: "m".into() });
        assert_eq!((unknown.code, unknown.status), (ErrorCode::Internal, StatusCode::INTERNAL_SERVER_ERROR));
    }
}
