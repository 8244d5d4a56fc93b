//! The one error shape: a stable `code` and a human `message`, the same in
//! HTTP answers (`{error:{code,message}}`), socket acks
//! (`{ok:false,error:{code,message}}`) and `error` events.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use switchboard_proto::model::ErrorBody;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self { status, code: code.into(), message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }

    pub fn rate_limited(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// An error a worker answered with, keeping its code.
    pub fn from_body(body: ErrorBody) -> Self {
        let status = match body.code.as_str() {
            "bad_request" => StatusCode::BAD_REQUEST,
            "forbidden" => StatusCode::FORBIDDEN,
            "not_found" => StatusCode::NOT_FOUND,
            "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self { status, code: body.code, message: body.message }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody { code: self.code.clone(), message: self.message.clone() }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
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
