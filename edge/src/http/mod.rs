//! The HTTP side of an edge (contract §4).
//!
//! - [`conversations`]: conversations and their messages, the service API.
//! - [`compat`]: the endpoints our users' existing systems call (seeds 000,
//!   001, 004).
//! - [`sync`]: sync changes for POS clients, pulled and confirmed with an API key.
//! - [`ops`]: health, readiness, metrics and the OpenAPI document.

pub mod compat;
pub mod conversations;
pub mod ops;
pub mod pages;
pub mod sync;
pub mod whatsapp;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::Identity;
use crate::error::ApiError;
use crate::socketio::query_param;
use crate::state::EdgeState;

pub type AppState = Arc<EdgeState>;

pub fn router(state: AppState) -> Router {
    let limits = &state.config.limits;
    Router::new()
        .merge(conversations::routes())
        .merge(compat::routes())
        .merge(ops::routes())
        .merge(pages::routes())
        .merge(sync::routes())
        .layer(DefaultBodyLimit::max(limits.max_payload))
        // Its own, larger limit (Meta's payloads reach 3 MB), and signed, not authenticated.
        .merge(whatsapp::routes())
        .with_state(state)
}

/// Every error in the one shape, including those answered before a handler
/// runs (an unknown route or method, a body over its limit, a rejected
/// extractor), which axum writes as plain text or not at all.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = match text.trim() {
        "" => status.canonical_reason().unwrap_or("error").to_lowercase(),
        text => text.to_owned(),
    };
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let error = ApiError::new(status, code, message).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.extend(error.headers().clone());
    Response::from_parts(parts, error.into_body())
}

/// An allow-list of browser origins; no list, no cross-origin access.
pub fn cors(origins: &[String]) -> CorsLayer {
    let allowed: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed))
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .allow_credentials(true)
}

/// The caller, from `Authorization: Bearer <token>` or, for clients that
/// cannot set headers (a bot's webhook URL), `?token=`.
pub struct Caller(pub Identity);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::to_owned);
        let token = bearer.or_else(|| parts.uri.query().and_then(|q| query_param(q, "token")));
        Ok(Caller(state.verifier.verify(token.as_deref())?))
    }
}

/// A JSON body, whatever its content type says (bots often send none), with
/// errors in our shape naming what was wrong.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status();
            let code =
                if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE { "too_large" } else { "bad_request" };
            ApiError::new(status, code, rejection.body_text())
        })?;
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// Query strings parsed into our error shape too.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|r| ApiError::bad_request(r.body_text()))
    }
}
