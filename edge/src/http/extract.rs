//! What handlers take from a request, in our error shape when it is wrong:
//! the caller, a JSON body, a query string; and that error shape for the
//! OpenAPI document.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use crate::auth::Identity;
use crate::error::ApiError;
use crate::query;
use crate::state::EdgeState;

pub type AppState = Arc<EdgeState>;

/// The caller, from `Authorization: Bearer <token>` or, for clients that
/// cannot set headers (a bot's webhook URL), `?token=`.
pub struct Caller(pub Identity);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)
            .map(str::to_owned)
            .or_else(|| parts.uri.query().and_then(|q| query::param(q, "token")));
        Ok(Caller(state.verifier.verify(token.as_deref())?))
    }
}

/// What `Authorization: Bearer <credential>` carries (a token or an API key).
pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "))
}

/// A JSON body, whatever its content type says (bots often send none), with
/// errors in our shape naming what was wrong.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|rejection| ApiError::with_status(rejection.status(), rejection.body_text()))?;
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

/// `{error:{code, message}}`, for the OpenAPI document.
#[derive(Serialize, ToSchema)]
pub struct ErrorResponse {
    error: switchboard_proto::model::ErrorBody,
}
